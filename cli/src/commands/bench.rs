//! `weir bench nexmark`: Nexmark queries over the built-in generator into a blackhole sink,
//! printing events per second for each.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use weir_host::job::{NoProgress, Outcome, Session};
use weir_host::wasm::WasmRuntime;

/// Arguments of `weir bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub suite: Suite,
}

#[derive(Debug, clap::Subcommand)]
pub enum Suite {
    /// Nexmark queries over generated events.
    Nexmark(NexmarkArgs),
    /// Incremental RocksDB checkpoints of a large state: bytes written, retention, recovery.
    Checkpoint(super::bench_checkpoint::CheckpointArgs),
    /// Throughput through a Kafka broker: into a topic, through a Wasm function, topic to topic.
    Kafka(super::bench_kafka::KafkaArgs),
}

#[derive(Debug, clap::Args)]
pub struct NexmarkArgs {
    /// Queries to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q0,q1,q2,q14,q17,q22,q5-counts,q7-max,tumble-10ms,q18,q19,q20"
    )]
    pub queries: Vec<String>,
    /// Events to generate per query (all kinds; 46 in 50 are bids).
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Subtasks per operator.
    #[arg(long, short, default_value_t = 2)]
    pub parallelism: usize,
    /// The component with `count_char` (q14).
    #[arg(long, default_value = "examples/modules/currency.wasm")]
    pub module: PathBuf,
    /// Also read the same bids from a JSON-lines file written first (q0 only).
    #[arg(long)]
    pub json: bool,
    /// A setting for every query, as `SET 'key' = 'value'` (e.g.
    /// `execution.checkpointing.interval=1s`: checkpoints of the streaming queries go to a
    /// temporary directory); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
}

const BID_COLUMNS: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, \
                           url STRING, dateTime TIMESTAMP(3), extra STRING, \
                           WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND";

const AUCTION_COLUMNS: &str = "id BIGINT, itemName STRING, description STRING, initialBid BIGINT, \
                               reserve BIGINT, dateTime TIMESTAMP(3), expires TIMESTAMP(3), \
                               seller BIGINT, category BIGINT, extra STRING, \
                               WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND";

/// The queries `query` knows.
const QUERIES: &str = "q0, q1, q2, q14, q17, q22, q5-counts, q7-max, tumble-10ms, q18, q19, q20";

/// Whether `query` runs in streaming mode (windows fire as the watermark passes them).
fn streaming(query: &str) -> bool {
    matches!(
        query,
        "q5-counts" | "q7-max" | "tumble-10ms" | "q18" | "q19" | "q20"
    )
}

/// The Nexmark query `name`, in Flink SQL as Weir runs it, reading `bid` and writing `sink`.
pub fn query(name: &str) -> Option<(&'static str, &'static str)> {
    // (sink columns, INSERT statement)
    Some(match name {
        "q0" => (
            "auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3), extra STRING",
            "INSERT INTO sink SELECT auction, bidder, price, dateTime, extra FROM bid",
        ),
        "q1" => (
            "auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), dateTime TIMESTAMP(3), extra STRING",
            "INSERT INTO sink SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid",
        ),
        "q2" => (
            "auction BIGINT, price BIGINT",
            "INSERT INTO sink SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
        ),
        "q14" => (
            "auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), bidTimeType STRING, \
             dateTime TIMESTAMP(3), extra STRING, c_counts BIGINT",
            "INSERT INTO sink \
             SELECT auction, bidder, 0.908 * price AS price, \
               CASE WHEN EXTRACT(HOUR FROM dateTime) >= 8 AND EXTRACT(HOUR FROM dateTime) <= 18 THEN 'dayTime' \
                    WHEN EXTRACT(HOUR FROM dateTime) <= 6 OR EXTRACT(HOUR FROM dateTime) >= 20 THEN 'nightTime' \
                    ELSE 'otherTime' END AS bidTimeType, \
               dateTime, extra, count_char(extra, 'c') AS c_counts \
             FROM bid WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000",
        ),
        "q17" => (
            "auction BIGINT, `day` DATE, total_bids BIGINT, rank1_bids BIGINT, rank2_bids BIGINT, \
             rank3_bids BIGINT, min_price BIGINT, max_price BIGINT, avg_price DOUBLE, sum_price BIGINT",
            "INSERT INTO sink \
             SELECT auction, CAST(dateTime AS DATE) AS `day`, COUNT(*) AS total_bids, \
               COUNT(*) FILTER (WHERE price < 10000) AS rank1_bids, \
               COUNT(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, \
               COUNT(*) FILTER (WHERE price >= 1000000) AS rank3_bids, \
               MIN(price), MAX(price), AVG(price), SUM(price) \
             FROM bid GROUP BY auction, CAST(dateTime AS DATE)",
        ),
        // Nexmark q5's hot-items count: bids per auction in hopping windows.
        "q5-counts" => (
            "auction BIGINT, num BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)",
            "INSERT INTO sink \
             SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime \
             FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
             GROUP BY auction, window_start, window_end",
        ),
        // Nexmark q7's highest bid per window.
        "q7-max" => (
            "maxprice BIGINT, window_end TIMESTAMP(3)",
            "INSERT INTO sink \
             SELECT MAX(price) AS maxprice, window_end \
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) \
             GROUP BY window_start, window_end",
        ),
        // Many small windows (the default rate makes 10 ms 100,000 events): firing costs.
        "tumble-10ms" => (
            "auction BIGINT, window_end TIMESTAMP(3), bids BIGINT, total BIGINT",
            "INSERT INTO sink \
             SELECT auction, window_end, COUNT(*), SUM(price) \
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' MILLISECOND)) \
             GROUP BY auction, window_start, window_end",
        ),
        // Dedup: each (bidder, auction)'s last bid.
        "q18" => (
            "auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3)",
            "INSERT INTO sink SELECT auction, bidder, price, dateTime FROM ( \
               SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY dateTime DESC) AS rn \
               FROM bid) WHERE rn <= 1",
        ),
        // Top-N: each auction's ten highest bids.
        "q19" => (
            "auction BIGINT, bidder BIGINT, price BIGINT, rn BIGINT",
            "INSERT INTO sink SELECT auction, bidder, price, rn FROM ( \
               SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn \
               FROM bid) WHERE rn <= 10",
        ),
        // A regular join: bids with their auction's category.
        "q20" => (
            "auction BIGINT, price BIGINT, category BIGINT",
            "INSERT INTO sink SELECT B.auction, B.price, A.category \
             FROM bid B JOIN auction A ON B.auction = A.id WHERE A.category = 10",
        ),
        "q22" => (
            "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, dir1 STRING, dir2 STRING, dir3 STRING",
            "INSERT INTO sink \
             SELECT auction, bidder, price, channel, \
               SPLIT_PART(url, '/', 4) AS dir1, SPLIT_PART(url, '/', 5) AS dir2, \
               SPLIT_PART(url, '/', 6) AS dir3 \
             FROM bid",
        ),
        _ => return None,
    })
}

/// Runs the suite and prints one line per query.
pub fn run(args: Args, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let args = match args.suite {
        Suite::Nexmark(args) => args,
        Suite::Checkpoint(args) => return super::bench_checkpoint::run(args),
        Suite::Kafka(args) => return super::bench_kafka::run(args, cache_dir),
    };
    let (tokio, runtime, module) = prepare(cache_dir, &args.module)?;
    println!(
        "nexmark: {} events per query, parallelism {}",
        args.events, args.parallelism
    );
    let mut queries: Vec<(String, String)> = args
        .queries
        .iter()
        .map(|q| {
            (
                q.clone(),
                format!(
                    "'connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '{}'",
                    args.events
                ),
            )
        })
        .collect();
    let json_dir = json_scratch_dir();
    if args.json {
        // Write the bids once, then read them back for q0.
        let script = format!(
            "CREATE TABLE bid ({BID_COLUMNS}) WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '{}');\n\
             CREATE TABLE bids_json ({BID_COLUMNS}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
             INSERT INTO bids_json SELECT * FROM bid;",
            args.events,
            json_dir.display()
        );
        run_script(&tokio, &runtime, &script, (args.parallelism, false), &[])?;
        queries.push((
            "q0-json".into(),
            format!(
                "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
                json_dir.display()
            ),
        ));
    }
    for (name, source) in &queries {
        let base = name.trim_end_matches("-json");
        let Some((sink_columns, insert)) = query(base) else {
            bail!("unknown query '{name}' (known: {QUERIES})");
        };
        let script = format!(
            "CREATE TABLE bid ({BID_COLUMNS}) WITH ({source});\n\
             CREATE TABLE auction ({AUCTION_COLUMNS}) WITH ({});\n\
             CREATE TABLE sink ({sink_columns}) WITH ('connector' = 'blackhole');\n\
             CREATE FUNCTION count_char AS 'count_char' LANGUAGE WASM USING JAR '{}';\n\
             {insert};",
            source.replace("'bid'", "'auction'"),
            module.display()
        );
        let started = Instant::now();
        let (rows, checkpoints) = run_script(
            &tokio,
            &runtime,
            &script,
            (args.parallelism, streaming(base)),
            &args.settings,
        )?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{name:<8} {:>12.0} events/s  ({} events in {seconds:.2} s, {rows} rows out){checkpoints}",
            args.events as f64 / seconds,
            args.events
        );
    }
    let _ = std::fs::remove_dir_all(&json_dir);
    Ok(())
}

/// A runtime for the jobs, the Wasm engine, and the path of the module with `count_char`.
pub(super) fn prepare(
    cache_dir: Option<PathBuf>,
    module: &std::path::Path,
) -> anyhow::Result<(tokio::runtime::Runtime, WasmRuntime, PathBuf)> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let runtime = WasmRuntime::shared(cache_dir)?;
    let module = std::fs::canonicalize(module).with_context(|| {
        format!(
            "{} (build it with `weir build udfs/rust/currency -o {}`)",
            module.display(),
            module.display()
        )
    })?;
    Ok((tokio, runtime, module))
}

/// Where `--json` writes the bids it reads back (removed at the end).
fn json_scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()))
}

/// Runs a query's script; the rows it wrote, and a summary of its checkpoints (if any).
pub(super) fn run_script(
    tokio: &tokio::runtime::Runtime,
    runtime: &WasmRuntime,
    script: &str,
    (parallelism, streaming): (usize, bool),
    settings: &[String],
) -> anyhow::Result<(u64, String)> {
    let mut session = Session::new(runtime.clone(), ".");
    session.set("parallelism.default", &parallelism.to_string())?;
    if streaming {
        session.set("execution.runtime-mode", "streaming")?;
    }
    for setting in settings {
        let Some((key, value)) = setting.split_once('=') else {
            anyhow::bail!("--set takes KEY=VALUE, not '{setting}'");
        };
        session.set(key.trim(), value.trim())?;
    }
    // Checkpoints (if set) go here, and go when the query is done.
    let state_dir = json_scratch_dir().with_extension("state");
    let _ = std::fs::remove_dir_all(&state_dir);
    session.set_state_dir(&state_dir);
    let statements = weir_host::sql::parse_script(script)?;
    let mut rows = 0;
    let mut summary = String::new();
    for statement in &statements {
        if let Outcome::Inserted { stats, graph, .. } =
            tokio.block_on(session.execute(statement, script, &mut NoProgress))?
        {
            rows = stats.rows_in_out(&graph).1;
            let checkpoints = stats
                .checkpoints
                .lock()
                .map(|c| c.clone())
                .unwrap_or_default();
            let regular: Vec<_> = checkpoints.iter().filter(|c| !c.finished).collect();
            if let Some(largest) = regular.iter().max_by_key(|c| c.state_size) {
                let mean = regular
                    .iter()
                    .map(|c| c.duration)
                    .sum::<std::time::Duration>()
                    / u32::try_from(regular.len()).unwrap_or(u32::MAX);
                summary = format!(
                    "; {} checkpoints, mean {mean:.1?}, largest {} bytes of state",
                    regular.len(),
                    largest.state_size
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok((rows, summary))
}
