//! `weir bench checkpoint`: incremental RocksDB checkpoints of a large state (1 GiB by default):
//! what a full checkpoint and the checkpoints after small changes write, what keeping only the
//! newest deletes, and how long recovering it takes.

use anyhow::{Context, bail};
use weir_host::checkpoint::StorageOptions;
use weir_host::runtime::checkpoint_bench::{IncrementalSettings, incremental};

#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// The state to build, in MiB of keys and values.
    #[arg(long, default_value_t = 1024)]
    pub state_mib: u64,
    /// The size of each value in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// The share of keys each small change rewrites.
    #[arg(long, default_value_t = 0.001)]
    pub changed: f64,
    /// How many checkpoints to take: the first holds everything, each later one follows a
    /// small change (enough of them, and RocksDB compacts, so that retention has files to
    /// delete).
    #[arg(long, default_value_t = 10)]
    pub checkpoints: u64,
    /// Milliseconds between checkpoints (RocksDB compacts in the background meanwhile).
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Where checkpoints go: a directory or `s3://bucket/path` (default: a temporary directory).
    #[arg(long)]
    pub location: Option<String>,
    /// How to reach S3: `s3.endpoint=...`, `s3.access-key=...`, `s3.secret-key=...`,
    /// `s3.region=...`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
}

pub fn run(args: CheckpointArgs) -> anyhow::Result<()> {
    if !(args.changed > 0.0 && args.changed <= 1.0) {
        bail!("--changed is a share of the keys, above 0 and at most 1");
    }
    let mut storage = StorageOptions::default();
    for setting in &args.settings {
        let Some((key, value)) = setting.split_once('=') else {
            bail!("--set takes KEY=VALUE, not '{setting}'");
        };
        let value = Some(value.trim().to_string());
        match key.trim() {
            "s3.endpoint" => storage.endpoint = value,
            "s3.access-key" => storage.access_key = value,
            "s3.secret-key" => storage.secret_key = value,
            "s3.region" => storage.region = value,
            other => bail!(
                "--set knows s3.endpoint, s3.access-key, s3.secret-key, s3.region, not '{other}'"
            ),
        }
    }
    let scratch =
        std::env::temp_dir().join(format!("weir-bench-checkpoint-{}", std::process::id()));
    let location = args
        .location
        .clone()
        .unwrap_or_else(|| scratch.join("checkpoints").display().to_string());
    let settings = IncrementalSettings {
        state_bytes: args.state_mib << 20,
        value_bytes: args.value_bytes.max(1),
        changed_fraction: args.changed,
        checkpoints: args.checkpoints,
        interval: std::time::Duration::from_millis(args.interval_ms),
        work_dir: scratch.join("work"),
        location: location.clone(),
        storage,
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = tokio.block_on(incremental(settings, &mut |line| eprintln!("  {line}")));
    let _ = std::fs::remove_dir_all(&scratch);
    let report = result?;
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    println!(
        "state: {} keys of {} bytes, written in {:.1?}; checkpoints in {location}",
        report.keys, args.value_bytes, report.fill
    );
    println!(
        "{:>4} {:>10} {:>10} {:>12} {:>12} {:>12} {:>8}",
        "id", "changed", "duration", "written MiB", "reused MiB", "state MiB", "written"
    );
    for c in &report.checkpoints {
        println!(
            "{:>4} {:>10} {:>10.2?} {:>12.1} {:>12.1} {:>12.1} {:>7.2}%",
            c.id,
            c.keys_changed,
            c.duration,
            mib(c.bytes_written),
            mib(c.bytes_reused),
            mib(c.state_size),
            100.0 * c.bytes_written as f64 / c.state_size.max(1) as f64
        );
    }
    println!(
        "retention: {} of the {} SST files uploaded were deleted (2 checkpoints retained, then 1); \
         the newest verified whole and restored",
        report.shared_files_deleted, report.shared_files_uploaded
    );
    println!(
        "recovery: {} entries in {:.2?} (same parallelism); {} entries in {:.2?} (half the key groups, rescaled)",
        report.restored_entries, report.restore, report.rescaled_entries, report.rescaled_restore
    );
    Ok(())
}
