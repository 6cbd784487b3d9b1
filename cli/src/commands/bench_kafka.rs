//! `weir bench kafka`: throughput through a Kafka broker, in three jobs over the same bids:
//! the generator into a topic, the topic through a Wasm function into a blackhole, and the
//! topic through the function into another topic. Each prints events per second and this
//! process's peak resident memory during the job.

use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct KafkaArgs {
    /// The broker, host:port.
    #[arg(long)]
    pub bootstrap: String,
    /// Events to generate (46 in 50 are bids, which go to the topic).
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,
    /// Partitions of the topics the benchmark creates.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Subtasks per operator.
    #[arg(long, short, default_value_t = 2)]
    pub parallelism: usize,
    /// The component with `count_char`.
    #[arg(long, default_value = "examples/modules/currency.wasm")]
    pub module: PathBuf,
}

const BID_COLUMNS: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, \
                           url STRING, dateTime TIMESTAMP(3), extra STRING";

pub fn run(args: KafkaArgs, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (tokio, runtime, module) = super::bench::prepare(cache_dir, &args.module)?;
    // Topics of this run's own, so that runs never read each other's messages.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let (bids, copies) = (
        format!("weir-bench-bids-{stamp}"),
        format!("weir-bench-copies-{stamp}"),
    );
    tokio
        .block_on(weir_host::connector::kafka::create_topics(
            &args.bootstrap,
            &[
                (bids.clone(), args.partitions),
                (copies.clone(), args.partitions),
            ],
        ))
        .map_err(anyhow::Error::msg)?;
    println!(
        "kafka at {}: {} events, {} partitions, parallelism {}",
        args.bootstrap, args.events, args.partitions, args.parallelism
    );
    let table = |name: &str, topic: &str, columns: &str, extra: &str| {
        format!(
            "CREATE TABLE {name} ({columns}) WITH ('connector' = 'kafka', 'topic' = '{topic}', \
               'properties.bootstrap.servers' = '{}', 'format' = 'json'{extra});\n",
            args.bootstrap
        )
    };
    let reading =
        ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'";
    let function = format!(
        "CREATE FUNCTION count_char AS 'count_char' LANGUAGE WASM USING JAR '{}';\n",
        module.display()
    );
    let copy_columns = "auction BIGINT, bidder BIGINT, price BIGINT, cs BIGINT";
    let jobs = [
        (
            "nexmark -> kafka",
            format!(
                "CREATE TABLE gen ({BID_COLUMNS}) WITH ('connector' = 'nexmark', \
                   'nexmark.table' = 'bid', 'events.num' = '{}');\n{}\
                 INSERT INTO bids SELECT * FROM gen;",
                args.events,
                table("bids", &bids, BID_COLUMNS, "")
            ),
        ),
        (
            "kafka -> wasm -> blackhole",
            format!(
                "{function}{}CREATE TABLE sink ({copy_columns}) WITH ('connector' = 'blackhole');\n\
                 INSERT INTO sink SELECT auction, bidder, price, count_char(extra, 'c') FROM bids;",
                table("bids", &bids, BID_COLUMNS, reading)
            ),
        ),
        (
            "kafka -> wasm -> kafka",
            format!(
                "{function}{}{}\
                 INSERT INTO copies SELECT auction, bidder, price, count_char(extra, 'c') FROM bids;",
                table("bids", &bids, BID_COLUMNS, reading),
                table("copies", &copies, copy_columns, "")
            ),
        ),
    ];
    for (name, script) in &jobs {
        reset_peak_rss();
        let started = Instant::now();
        let (rows, _) =
            super::bench::run_script(&tokio, &runtime, script, (args.parallelism, false), &[])?;
        let seconds = started.elapsed().as_secs_f64();
        let peak = peak_rss_mib().map_or("?".to_string(), |m| format!("{m} MiB"));
        println!(
            "{name:<28} {:>10.0} rows/s  ({rows} rows in {seconds:.2} s, peak RSS {peak})",
            rows as f64 / seconds
        );
    }
    Ok(())
}

/// Resets this process's resident-memory high-water mark (Linux: `clear_refs` 5), so that each
/// job's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's resident-memory high-water mark (`VmHWM`), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib >> 10)
}
