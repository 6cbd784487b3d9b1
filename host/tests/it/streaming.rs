//! Streaming keeps batch's answer: every windowed query below, run in streaming mode over
//! shuffled, out-of-order input (within the watermark's bound) at parallelism 1, 2 and 4 in small
//! batches, gives the rows the batch run gives. Over many generated inputs, one per seed
//! (`WEIR_EQUIVALENCE_SEEDS` sets how many; failures name the seed). And late rows: dropped and
//! counted.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use weir_host::job::{NoProgress, Outcome, Session};

use crate::common::{Lcg, component, python_runtime};

/// The bound on out-of-orderness in the generated input; the tables' watermarks allow 5 s.
const DISORDER_MILLIS: u64 = 4_000;

/// Queries whose streaming result must equal their batch result (for updating queries, the
/// streamed changelog applied).
const QUERIES: &[&str] = &[
    // Updating: a GROUP BY without a window, keyed and global, and a HAVING over its changelog.
    "SELECT auction, COUNT(*), SUM(price), MIN(price), MAX(price), AVG(price), \
     weighted_avg(price, bidder) FROM bid GROUP BY auction",
    "SELECT COUNT(*), COUNT(DISTINCT bidder), MAX(price) FROM bid",
    "SELECT bidder % 3 AS b, auction, COUNT(*) AS n FROM bid WHERE price > 100 \
     GROUP BY bidder % 3, auction HAVING COUNT(*) > 20",
    // Aggregates over updating inputs take rows back: a GROUP BY over a GROUP BY (groups come
    // and go: -D), and over a left join's changelog, with a Wasm aggregate's retract.
    "SELECT n % 7 AS bucket, COUNT(*), SUM(total), AVG(n) FROM (SELECT auction, COUNT(*) AS n, \
     SUM(price) AS total FROM bid GROUP BY auction) GROUP BY n % 7",
    "SELECT COUNT(*), SUM(n) FROM (SELECT bidder, COUNT(*) AS n FROM bid GROUP BY bidder)",
    "SELECT seller, COUNT(*), SUM(price), weighted_avg(price, auction) FROM ( \
       SELECT b.auction, b.price, COALESCE(a.seller, -1) AS seller FROM bid b LEFT JOIN auction a \
       ON b.auction = a.id AND b.price > a.seller * 40) GROUP BY seller",
    // Interval joins (state freed by the watermark): inner, and left, whose unmatched rows
    // come out once no match can come.
    "SELECT a.auction, a.price, b.price, b.bidder FROM bid a JOIN bid b ON a.auction = b.auction \
     AND a.dateTime BETWEEN b.dateTime - INTERVAL '100' MILLISECOND \
     AND b.dateTime + INTERVAL '50' MILLISECOND",
    "SELECT a.bidder, a.price, b.price FROM bid a LEFT JOIN bid b ON a.bidder = b.bidder \
     AND b.dateTime > a.dateTime AND b.dateTime <= a.dateTime + INTERVAL '300' MILLISECOND",
    // Window joins (on both sides' window_end: state freed as windows pass), of two window
    // aggregations and, Flink's form, of two window table functions' rows; and a left one.
    "SELECT L.auction, L.window_start, L.n, R.m FROM ( \
       SELECT auction, window_start, window_end, COUNT(*) AS n \
       FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND)) \
       GROUP BY auction, window_start, window_end) L \
     JOIN ( \
       SELECT auction, window_start, window_end, MAX(price) AS m \
       FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND)) \
       WHERE price > 400 GROUP BY auction, window_start, window_end) R \
     ON L.auction = R.auction AND L.window_start = R.window_start AND L.window_end = R.window_end",
    "SELECT L.bidder, L.window_start, R.bidder FROM ( \
       SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND)) \
       WHERE price < 60) L \
     LEFT JOIN ( \
       SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND)) \
       WHERE price > 470) R \
     ON L.auction = R.auction AND L.window_start = R.window_start AND L.window_end = R.window_end",
    // Regular joins with a small table: inner (append-only, so a GROUP BY may follow) and left
    // (auctions 10 to 12 have no row there: padded rows, retracted in streaming mode if a
    // match came later, which it never does here; a join condition beyond the keys).
    "SELECT b.auction, a.category, b.price, b.bidder FROM bid b JOIN auction a ON b.auction = a.id",
    "SELECT a.category, COUNT(*), SUM(b.price) FROM bid b JOIN auction a ON b.auction = a.id \
     GROUP BY a.category",
    "SELECT b.auction, b.price, a.seller FROM bid b LEFT JOIN auction a \
     ON b.auction = a.id AND b.price > a.seller * 40",
    "SELECT a.id, b.bidder, b.price FROM auction a LEFT JOIN bid b ON a.id + 8 = b.auction \
     AND b.price < 30",
    // Top-N per key (Nexmark q19's form), global Top-N, and dedup keeping the last and the
    // first row per key (q18's form).
    "SELECT auction, bidder, price, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction \
     ORDER BY price DESC, dateTime) AS rn FROM bid) WHERE rn <= 3",
    "SELECT * FROM (SELECT auction, price, bidder, ROW_NUMBER() OVER (ORDER BY price DESC, \
     bidder, auction) AS rn FROM bid) WHERE rn <= 5",
    "SELECT bidder, auction, price, dateTime FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY \
     bidder ORDER BY dateTime DESC) AS rn FROM bid) WHERE rn = 1",
    "SELECT auction, bidder, dateTime FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction \
     ORDER BY dateTime) AS rn FROM bid) WHERE rn = 1",
    // Tumbling, keyed, built-ins and a Wasm aggregate.
    "SELECT auction, window_start, window_end, COUNT(*) AS n, SUM(price) AS total, MIN(price), \
     MAX(price), AVG(price), COUNT(DISTINCT bidder), weighted_avg(price, bidder) \
     FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND)) \
     GROUP BY auction, window_start, window_end",
    // Hopping, global, sharing 1-second slices.
    "SELECT window_start, window_end, window_time, COUNT(*), SUM(price), weighted_avg(price, bidder) \
     FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND, INTERVAL '5' SECOND)) \
     GROUP BY window_start, window_end, window_time",
    // Hopping with a size that is not a multiple of the slide, keyed by an expression.
    "SELECT bidder % 5 AS b, window_start, window_end, COUNT(*), MAX(price) \
     FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '3' SECOND)) \
     GROUP BY bidder % 5, window_start, window_end",
    // Cumulating, with a filter before the windows.
    "SELECT auction, window_start, window_end, COUNT(*), SUM(price) \
     FROM TABLE(CUMULATE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND, INTERVAL '4' SECOND)) \
     WHERE price > 50 GROUP BY auction, window_start, window_end",
    // A filter on a window column: rows are copied per window rather than sliced.
    "SELECT window_start, window_end, COUNT(*), SUM(price) \
     FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '6' SECOND)) \
     WHERE window_start >= TIMESTAMP '2026-01-01 10:00:03' GROUP BY window_start, window_end",
    // A window aggregation over a window aggregation's output.
    "SELECT window_start, window_end, COUNT(*) AS auctions, MAX(n) FROM ( \
       SELECT auction, window_start, window_end, COUNT(*) AS n \
       FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '3' SECOND)) \
       GROUP BY auction, window_start, window_end) \
     GROUP BY window_start, window_end",
    // Sessions per bidder, in the group-window form (states merge as sessions join).
    "SELECT bidder, COUNT(*), SUM(price), weighted_avg(price, auction), \
     SESSION_START(dateTime, INTERVAL '1' SECOND), SESSION_END(dateTime, INTERVAL '1' SECOND) \
     FROM bid GROUP BY bidder, SESSION(dateTime, INTERVAL '1' SECOND)",
    // A global session over a sparse filter, in the table-function form.
    "SELECT window_start, window_end, COUNT(*), MAX(price) \
     FROM TABLE(SESSION(TABLE (SELECT * FROM bid WHERE price < 20), DESCRIPTOR(dateTime), \
     INTERVAL '300' MILLISECOND)) GROUP BY window_start, window_end",
    "SELECT TUMBLE_START(dateTime, INTERVAL '2' SECOND), auction, COUNT(*) FROM bid \
     GROUP BY TUMBLE(dateTime, INTERVAL '2' SECOND), auction",
    // The table function alone.
    "SELECT auction, price, dateTime, window_start, window_end \
     FROM TABLE(CUMULATE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND, INTERVAL '3' SECOND)) \
     WHERE bidder = 3",
];

/// Bids a few hundred ms apart, written in an order shuffled within [`DISORDER_MILLIS`].
fn write_bids(seed: u64, path: &std::path::Path) -> usize {
    let mut random = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xB1D5);
    let count = 1_000 + random.below(3_000) as usize;
    let mut millis = 0u64;
    let mut rows = Vec::with_capacity(count);
    for _ in 0..count {
        millis += random.below(40);
        let arrival = millis + random.below(DISORDER_MILLIS + 1);
        rows.push((
            arrival,
            millis,
            1 + random.below(12),
            1 + random.below(30),
            random.below(500),
        ));
    }
    rows.sort_by_key(|r| r.0);
    let mut text = String::new();
    for (_, millis, auction, bidder, price) in &rows {
        let _ = writeln!(
            text,
            r#"{{"auction":{auction},"bidder":{bidder},"price":{price},"dateTime":"2026-01-01 10:{:02}:{:02}.{:03}"}}"#,
            millis / 60_000,
            millis / 1_000 % 60,
            millis % 1_000
        );
    }
    std::fs::write(path, text).expect("write bids");
    // Auctions 1 to 9 (of 12) in a small table to join with.
    let auctions: String = (1..=9)
        .map(|id| {
            format!(
                "{{\"id\":{id},\"category\":{},\"seller\":{}}}\n",
                id % 3,
                id * 7 % 10
            )
        })
        .collect();
    std::fs::write(path.with_file_name("auctions.jsonl"), auctions).expect("write auctions");
    count
}

struct Run {
    rows: Vec<String>,
    late: u64,
}

fn run(path: &std::path::Path, query: &str, settings: &[(&str, String)]) -> Run {
    let script = format!(
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3), \
         WATERMARK FOR dateTime AS dateTime - INTERVAL '5' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
         CREATE TABLE auction (id BIGINT, category BIGINT, seller BIGINT) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
         CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR '{}';\n\
         {query};",
        path.display(),
        path.with_file_name("auctions.jsonl").display(),
        component("stats").display()
    );
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let mut session = Session::new(python_runtime(), ".");
    for (key, value) in settings {
        session.set(key, value).expect("setting");
    }
    let mut result = None;
    for statement in weir_host::sql::parse_script(&script).expect("parses") {
        match tokio.block_on(session.execute(&statement, &script, &mut NoProgress)) {
            Ok(Outcome::Rows { batches, stats, .. }) => {
                let late = stats
                    .operators
                    .iter()
                    .map(|(_, s)| s.late_rows.load(Ordering::Relaxed))
                    .sum();
                result = Some(Run {
                    rows: sorted_rows(&batches),
                    late,
                });
            }
            Ok(_) => {}
            Err(e) => panic!("{query}: {e}"),
        }
    }
    result.expect("the query's rows")
}

/// Each row as text, sorted: the result as a multiset. A changelog (an `op` column first) is
/// applied in order: `+I` and `+U` add their row, `-U` and `-D` take theirs away.
pub(crate) fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows: Vec<String> = Vec::new();
    for batch in batches {
        let changelog = batch.schema().field(0).name() == "op";
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..batch.num_rows() {
            let mut cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            if !changelog {
                rows.push(cells.join(" | "));
                continue;
            }
            let op = cells.remove(0);
            let text = cells.join(" | ");
            match op.as_str() {
                "+I" | "+U" => rows.push(text),
                "-U" | "-D" => {
                    let at = rows
                        .iter()
                        .position(|r| *r == text)
                        .unwrap_or_else(|| panic!("{op} of a row never added: {text}"));
                    rows.swap_remove(at);
                }
                other => panic!("unknown row kind {other}"),
            }
        }
    }
    rows.sort_unstable();
    rows
}

#[test]
fn streaming_results_equal_batch_results_over_many_seeds() {
    let seeds: u64 = std::env::var("WEIR_EQUIVALENCE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for seed in 0..seeds {
        let path = dir.path().join(format!("bids-{seed}.jsonl"));
        let count = write_bids(seed, &path);
        let batch_size = 8 + (seed * 37 % 97) as usize;
        for query in QUERIES {
            let expected = run(&path, query, &[]);
            assert!(!expected.rows.is_empty(), "seed {seed}: {query}: no rows");
            for parallelism in [1, 2, 4] {
                let streamed = run(
                    &path,
                    query,
                    &[
                        ("execution.runtime-mode", "streaming".to_string()),
                        ("parallelism.default", parallelism.to_string()),
                        ("pipeline.batch-size", batch_size.to_string()),
                    ],
                );
                if streamed.rows != expected.rows || streamed.late != 0 {
                    let missing: Vec<_> = expected
                        .rows
                        .iter()
                        .filter(|r| !streamed.rows.contains(r))
                        .take(5)
                        .collect();
                    let extra: Vec<_> = streamed
                        .rows
                        .iter()
                        .filter(|r| !expected.rows.contains(r))
                        .take(5)
                        .collect();
                    failures.push(format!(
                        "seed {seed} ({count} bids, batches of {batch_size}), parallelism \
                         {parallelism}: {query}\n  {} late; {} rows vs {} in batch; missing \
                         {missing:?}; extra {extra:?}",
                        streamed.late,
                        streamed.rows.len(),
                        expected.rows.len()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rows_behind_the_watermark_are_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("late.jsonl");
    // One bid a second up to 20 s, then one at 3.5 s (its window [0, 10) fired when the
    // watermark passed 10 s) and one at 14.5 s (its window [10, 20) is still open: on time).
    let mut text = String::new();
    for second in 1..=20 {
        let _ = writeln!(
            text,
            r#"{{"auction":1,"bidder":1,"price":1,"dateTime":"2026-01-01 10:00:{second:02}.000"}}"#
        );
    }
    text.push_str(
        r#"{"auction":1,"bidder":1,"price":100,"dateTime":"2026-01-01 10:00:03.500"}
{"auction":1,"bidder":1,"price":100,"dateTime":"2026-01-01 10:00:14.500"}
"#,
    );
    std::fs::write(&path, text).expect("write");
    let query = "SELECT window_start, COUNT(*), SUM(price) \
                 FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) \
                 GROUP BY window_start, window_end";
    let streamed = run(
        &path,
        query,
        &[
            ("execution.runtime-mode", "streaming".to_string()),
            ("pipeline.batch-size", "1".to_string()),
        ],
    );
    assert_eq!(streamed.late, 1, "{:?}", streamed.rows);
    assert_eq!(
        streamed.rows,
        [
            "2026-01-01T10:00:00 | 9 | 9",
            "2026-01-01T10:00:10 | 11 | 110",
            "2026-01-01T10:00:20 | 1 | 1",
        ]
    );
    // In batch mode nothing is late: the watermark jumps to the end only after the last row.
    let batch = run(&path, query, &[]);
    assert_eq!(batch.late, 0);
    assert_eq!(batch.rows[0], "2026-01-01T10:00:00 | 10 | 109");
}

/// A row's cells with floating-point values cut to 12 significant digits: a sum of DOUBLEs
/// depends on the order it adds in, which parallelism changes.
fn rounded(rows: Vec<String>) -> Vec<String> {
    let mut rows: Vec<String> = rows
        .into_iter()
        .map(|row| {
            row.split(" | ")
                .map(|cell| match cell.parse::<f64>() {
                    Ok(v) if cell.contains('.') || cell.contains('e') => format!("{v:.11e}"),
                    _ => cell.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect();
    rows.sort_unstable();
    rows
}

/// Every SELECT of every golden case (with the tables, functions and settings before it) gives
/// the same rows in streaming mode, in small batches at parallelism 1, 2 and 4, as in batch
/// mode. Queries that only run in batch mode (ORDER BY, LIMIT) or fail are left to the goldens.
#[test]
fn golden_queries_stream_as_they_run_in_batch() {
    let mut compared = 0;
    let mut failures = Vec::new();
    let mut cases: Vec<_> = std::fs::read_dir(crate::golden::cases_dir())
        .expect("cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    cases.sort();
    let data = crate::common::repo_dir().join("udfs/data");
    for case in cases {
        let out = tempfile::tempdir().expect("tempdir");
        let script = std::fs::read_to_string(&case)
            .expect("case")
            .replace(
                "${MODULES}",
                &crate::golden::modules_dir().display().to_string(),
            )
            .replace("${DATA}", &data.display().to_string())
            .replace("${OUT}", &out.path().display().to_string());
        // Unbounded sources would never end.
        if script.contains("source.monitor-interval") {
            continue;
        }
        let Ok(statements) = weir_host::sql::parse_script(&script) else {
            continue;
        };
        let mut setup = Vec::new();
        for statement in &statements {
            use weir_host::sql::parser::Statement;
            match &statement.statement {
                Statement::Query {
                    explain: false,
                    statement: query,
                } if matches!(
                    query.as_ref(),
                    datafusion_sql::sqlparser::ast::Statement::Query(_)
                ) =>
                {
                    let run_in = |settings: &[(&str, String)]| -> Option<Vec<String>> {
                        let tokio = tokio::runtime::Builder::new_multi_thread()
                            .worker_threads(2)
                            .enable_all()
                            .build()
                            .expect("tokio");
                        let mut session = Session::new(python_runtime(), out.path());
                        for (key, value) in settings {
                            session.set(key, value).ok()?;
                        }
                        for located in &setup {
                            tokio
                                .block_on(session.execute(located, &script, &mut NoProgress))
                                .ok()?;
                        }
                        match tokio.block_on(session.execute(statement, &script, &mut NoProgress)) {
                            Ok(Outcome::Rows { batches, .. }) => {
                                Some(rounded(sorted_rows(&batches)))
                            }
                            _ => None,
                        }
                    };
                    let Some(batch) = run_in(&[]) else { continue };
                    for parallelism in [1, 2, 4] {
                        let streamed = run_in(&[
                            ("execution.runtime-mode", "streaming".to_string()),
                            ("parallelism.default", parallelism.to_string()),
                            ("pipeline.batch-size", "7".to_string()),
                        ]);
                        let Some(streamed) = streamed else { break };
                        compared += 1;
                        if streamed != batch {
                            failures.push(format!(
                                "{} line {}, parallelism {parallelism}: {} rows streamed, {} in batch",
                                case.display(),
                                statement.location.line,
                                streamed.len(),
                                batch.len()
                            ));
                        }
                    }
                }
                Statement::Query { .. } => {}
                // The case's own settings would undo the ones compared here.
                Statement::Set { key, .. }
                    if [
                        "execution.runtime-mode",
                        "parallelism.default",
                        "pipeline.batch-size",
                    ]
                    .contains(&key.as_str()) => {}
                _ => setup.push(statement.clone()),
            }
        }
    }
    assert!(
        compared >= 60,
        "only {compared} comparisons: the goldens changed?"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
