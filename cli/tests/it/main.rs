//! The `weir` binary end to end: build a crate, inspect it, call its functions over files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

mod checkpoints;
mod kafka;
mod server;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn weir(args: &[&str]) -> Output {
    let guest_target = std::env::var_os("WEIR_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("udfs/target"));
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(repo())
        // `weir build` runs cargo; keep it off the target dir the running `cargo test` holds.
        .env("CARGO_TARGET_DIR", guest_target)
        .env("WEIR_CACHE_DIR", scratch().join("cache"))
        .env("WEIR_PYTHON", python())
        .output()
        .expect("run weir")
}

fn ok(args: &[&str]) -> String {
    let out = weir(args);
    assert!(
        out.status.success(),
        "weir {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// The Python with the SDK and componentize-py (`scripts/setup.sh` makes `.venv`).
fn python() -> PathBuf {
    std::env::var_os("WEIR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

/// Runs `weir args`, which must exit with 1 and say `expected` on stderr.
fn fails_with(args: &[&str], expected: &str) {
    let out = weir(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "weir {args:?}: {stderr}");
    assert!(stderr.contains(expected), "weir {args:?}: {stderr}");
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

/// `weir build` of an example crate, once per crate per run.
fn built(name: &str) -> String {
    static BUILT: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();
    let done = BUILT.get_or_init(Default::default);
    let mut done = done.lock().expect("lock");
    let out = scratch().join(format!("{name}.wasm"));
    let out_str = out.to_string_lossy().into_owned();
    if !done.contains(&out_str) {
        let printed = ok(&["build", &format!("udfs/rust/{name}"), "-o", &out_str]);
        assert_eq!(printed.trim(), out_str);
        let bytes = std::fs::read(&out).expect("built component");
        assert_eq!(&bytes[..8], b"\0asm\x0d\x00\x01\x00", "a component");
        done.push(out_str.clone());
    }
    out_str
}

/// `weir call <module> <function> --input udfs/data/orders.csv --args <args> <extra>`.
fn call_orders(module: &str, function: &str, args: &str, extra: &[&str]) -> String {
    let mut argv = vec![
        "call",
        module,
        function,
        "--input",
        "udfs/data/orders.csv",
        "--args",
        args,
    ];
    argv.extend_from_slice(extra);
    ok(&argv)
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn inspect_prints_both_signatures() {
    let module = built("currency");
    let out = ok(&["inspect", &module]);
    assert!(
        out.contains("scalar    to_usd(price BIGINT) -> DOUBLE"),
        "{out}"
    );
    assert!(
        out.contains("scalar    count_char(s VARCHAR, c VARCHAR) -> BIGINT"),
        "{out}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", &module, "--output", "json"])).expect("json");
    let names: Vec<&str> = json["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["to_usd", "count_char"]);
}

#[test]
fn call_prints_correct_values_from_csv() {
    let module = built("currency");
    let out = call_orders(&module, "to_usd", "price_cents", &["--format", "csv"]);
    let rows = csv_rows(&out);
    assert_eq!(rows[0], ["price_cents", "to_usd"]);
    let usd: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(usd, ["19.99", "5.5", "120.0", "8.99", "", "25.0", "1.0"]);

    // The same through small batches: the answer does not depend on the batch size.
    let small = call_orders(
        &module,
        "to_usd",
        "price_cents",
        &["--format", "csv", "--batch-size", "2"],
    );
    assert_eq!(small, out);

    let table = call_orders(&module, "to_usd", "price_cents", &[]);
    assert!(table.contains("| 19.99"), "{table}");
}

#[test]
fn table_functions_print_the_input_row_of_each_output_row() {
    let module = built("urls");
    let out = call_orders(
        &module,
        "url_segments",
        "url",
        &["--format", "csv", "--batch-size", "3"],
    );
    let rows = csv_rows(&out);
    assert_eq!(rows[0], ["row", "position", "segment"]);
    let got: Vec<(&str, &str, &str)> = rows[1..]
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("0", "1", "books"),
            ("0", "2", "rust"),
            ("0", "3", "1"),
            ("1", "1", "music"),
            ("1", "2", "jazz"),
            ("2", "1", "posts"),
            ("2", "2", "2026"),
            ("2", "3", "11"),
            ("2", "4", "launch"),
            ("3", "1", "books"),
            ("4", "1", "not a url"),
            ("5", "1", "v1"),
            ("5", "2", "users"),
            ("5", "3", "42"),
        ]
    );
}

#[test]
fn aggregates_print_one_value_per_group() {
    let module = built("stats");
    let out = call_orders(
        &module,
        "weighted_avg",
        "price,quantity",
        &[
            "--group-by",
            "country",
            "--format",
            "csv",
            "--batch-size",
            "2",
        ],
    );
    let rows = csv_rows(&out);
    assert_eq!(rows[0], ["country", "weighted_avg"]);
    let got: Vec<(String, f64)> = rows[1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].parse().expect("a number")))
        .collect();
    let expected = [
        ("DE", (19.99 * 2.0 + 120.0 + 10.0) / 13.0),
        ("FR", 5.5),
        ("US", (8.99 * 5.0 + 25.0 * 4.0) / 9.0),
    ];
    assert_eq!(got.len(), expected.len(), "{out}");
    for ((country, value), (want_country, want)) in got.iter().zip(expected) {
        assert_eq!(country, want_country);
        assert!((value - want).abs() < 1e-9, "{country}: {value} != {want}");
    }
    let total = call_orders(
        &module,
        "weighted_avg",
        "price,quantity",
        &["--format", "csv"],
    );
    let total: f64 = csv_rows(&total)[1][0].parse().expect("a number");
    let want = (19.99 * 2.0 + 5.5 + 120.0 + 8.99 * 5.0 + 25.0 * 4.0 + 10.0) / 23.0;
    assert!((total - want).abs() < 1e-9, "{total} != {want}");
}

#[test]
fn a_failing_row_is_named_by_its_position_in_the_file() {
    let module = built("currency");
    let input = scratch().join("needles.csv");
    std::fs::write(&input, "s,c\naa,a\nbb,b\ncc,c\ndd,dd\n").expect("write csv");
    let out = weir(&[
        "call",
        &module,
        "count_char",
        "--input",
        &input.to_string_lossy(),
        "--batch-size",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("function `count_char`"), "{stderr}");
    assert!(stderr.contains("rows 2..4"), "{stderr}");
    assert!(stderr.contains("failed at row 3"), "{stderr}");
    assert!(stderr.contains("single character"), "{stderr}");
}

#[test]
fn json_lines_and_parquet_inputs_give_the_same_answer() {
    use arrow::array::{Int64Array, RecordBatch};
    let module = built("currency");
    let jsonl = scratch().join("prices.jsonl");
    std::fs::write(
        &jsonl,
        "{\"price\": 150}\n{\"price\": null}\n{\"price\": -5}\n",
    )
    .expect("write jsonl");
    let from_json = ok(&[
        "call",
        &module,
        "to_usd",
        "--input",
        &jsonl.to_string_lossy(),
        "--format",
        "csv",
    ]);
    assert_eq!(
        csv_rows(&from_json)[1..]
            .iter()
            .map(|r| r[1].clone())
            .collect::<Vec<_>>(),
        ["1.5", "", "-0.05"]
    );

    let parquet_path = scratch().join("prices.parquet");
    let batch = RecordBatch::try_from_iter([(
        "price",
        Arc::new(Int64Array::from(vec![Some(150), None, Some(-5)])) as _,
    )])
    .expect("batch");
    let file = std::fs::File::create(&parquet_path).expect("create parquet");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    let from_parquet = ok(&[
        "call",
        &module,
        "to_usd",
        "--input",
        &parquet_path.to_string_lossy(),
        "--format",
        "csv",
    ]);
    assert_eq!(from_parquet, from_json);
}

#[test]
fn bad_invocations_exit_non_zero_with_a_clear_message() {
    fails_with(&["build", "no/such/crate"], "has no Cargo.toml");
    fails_with(
        &["inspect", "udfs/data/orders.csv"],
        "is not a WebAssembly component",
    );

    let module = built("currency");
    let out = weir(&[
        "call",
        &module,
        "no_such_function",
        "--input",
        "udfs/data/orders.csv",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no function `no_such_function`"));

    let out = weir(&[
        "call",
        &module,
        "to_usd",
        "--input",
        "udfs/data/orders.csv",
        "--args",
        "country",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("column `country` for parameter `price`"),
        "{stderr}"
    );

    let out = weir(&["call"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

/// The function lines of `weir inspect` (the first line names the module and its hash).
fn signatures(module: &str) -> Vec<String> {
    ok(&["inspect", module])
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn a_python_module_builds_and_inspects_like_its_rust_twin() {
    let python = scratch().join("currency_py.wasm");
    let python = python.to_string_lossy().into_owned();
    let printed = ok(&["build", "udfs/python/currency.py", "-o", &python]);
    assert_eq!(printed.trim(), python);
    assert_eq!(signatures(&python), signatures(&built("currency")));
    let call = |module: &str| call_orders(module, "to_usd", "price_cents", &["--format", "csv"]);
    assert_eq!(call(&python), call(&built("currency")));
}

#[test]
fn a_bad_python_module_fails_the_build_with_its_reason() {
    fails_with(
        &[
            "build",
            "udfs/python/hostile/missing_hint.py",
            "-o",
            "/dev/null",
        ],
        "function `to_usd`, parameter `price`: missing type hint",
    );
    fails_with(
        &[
            "build",
            "udfs/python/currency.py",
            "--python",
            "/nonexistent/python",
        ],
        "cannot run /nonexistent/python",
    );
}

/// Writes a script into the scratch directory (beside the built modules) and returns its path.
fn script(name: &str, text: &str) -> String {
    let path = scratch().join(name);
    std::fs::write(&path, text).expect("write script");
    path.to_string_lossy().into_owned()
}

#[test]
fn run_prints_query_results_and_writes_tables() {
    built("currency");
    let data = repo().join("udfs/data/orders.csv");
    let text = format!(
        "CREATE TABLE orders (order_id BIGINT, country STRING, url STRING, price_cents BIGINT, \
         price DOUBLE, quantity INT, c STRING) WITH ('connector' = 'filesystem', 'path' = '{}', \
         'format' = 'csv', 'csv.header' = 'true');\n\
         CREATE FUNCTION to_usd AS 'to_usd' LANGUAGE WASM USING JAR 'currency.wasm';\n\
         CREATE TABLE out (order_id BIGINT, usd DOUBLE) WITH ('connector' = 'filesystem', \
         'path' = 'run_out', 'format' = 'csv');\n\
         INSERT INTO out SELECT order_id, to_usd(price_cents) FROM orders WHERE country = 'DE';\n\
         SELECT country, COUNT(*) AS n FROM orders GROUP BY country ORDER BY country;\n",
        data.display()
    );
    let path = script("run_ok.sql", &text);
    let out = weir(&["run", &path, "--parallelism", "2", "--stats"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| DE      | 3 |"), "{stdout}");
    assert!(stderr.contains("inserted 3 row(s) into 'out'"), "{stderr}");
    assert!(
        stderr.contains("function to_usd: "),
        "--stats names the UDF: {stderr}"
    );
    // The sink's part files hold exactly the inserted rows.
    let mut rows: Vec<String> = std::fs::read_dir(scratch().join("run_out"))
        .expect("sink dir")
        .flat_map(|e| {
            let path = e.expect("entry").path();
            std::fs::read_to_string(path)
                .expect("part file")
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    rows.sort();
    assert_eq!(rows, ["1,19.99", "3,120.0", "7,1.0"]);
}

#[test]
fn run_counts_skipped_rows_in_stats() {
    let data = repo().join("udfs/data/bad_orders.jsonl");
    let text = format!(
        "CREATE TABLE bad (order_id BIGINT, country STRING, quantity INT) WITH (\
         'connector' = 'filesystem', 'path' = '{}', 'format' = 'json', \
         'json.ignore-parse-errors' = 'true');\n\
         CREATE TABLE out (order_id BIGINT, quantity INT) WITH ('connector' = 'blackhole');\n\
         INSERT INTO out SELECT order_id, quantity FROM bad;\n",
        data.display()
    );
    let path = script("run_skipped.sql", &text);
    let out = weir(&["run", &path, "--stats"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("inserted 2 row(s) into 'out'"), "{stderr}");
    assert!(stderr.contains("skipped 2 unparsable row(s)"), "{stderr}");
    // The source's line of the table: rows in, rows out, busy, skipped, late.
    let source = stderr
        .lines()
        .find(|l| l.contains("Source bad"))
        .unwrap_or_else(|| panic!("no source line: {stderr}"));
    let fields: Vec<&str> = source.split_whitespace().collect();
    assert_eq!(fields[fields.len() - 2..], ["2", "0"], "{source}");
}

#[test]
fn run_counts_late_rows_in_stats() {
    // Bids at 1..=12 s, then one at 2 s: its window [0, 5) fired when the watermark (5 s
    // behind) passed 5 s, so it is late.
    let mut rows = String::new();
    for second in (1..=12).chain([2]) {
        rows.push_str(&format!(
            "{{\"auction\":1,\"dateTime\":\"2026-01-01 10:00:{second:02}\"}}\n"
        ));
    }
    let data = script("late.jsonl", &rows);
    let text = format!(
        "SET 'execution.runtime-mode' = 'streaming';\n\
         SET 'pipeline.batch-size' = '1';\n\
         CREATE TABLE bid (auction BIGINT, dateTime TIMESTAMP(3), \
         WATERMARK FOR dateTime AS dateTime - INTERVAL '5' SECOND) WITH (\
         'connector' = 'filesystem', 'path' = '{data}', 'format' = 'json');\n\
         CREATE TABLE out (window_start TIMESTAMP(3), bids BIGINT) WITH ('connector' = 'blackhole');\n\
         INSERT INTO out SELECT window_start, COUNT(*) FROM \
         TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '5' SECOND)) \
         GROUP BY window_start, window_end;\n"
    );
    let path = script("run_late.sql", &text);
    let out = weir(&["run", &path, "--stats"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("dropped 1 late row(s)"), "{stderr}");
    assert!(stderr.contains("inserted 3 row(s) into 'out'"), "{stderr}");
    let window = stderr
        .lines()
        .find(|l| l.contains("WindowAggregate"))
        .unwrap_or_else(|| panic!("no window line: {stderr}"));
    assert_eq!(window.split_whitespace().last(), Some("1"), "{window}");
}

#[test]
fn run_reports_a_bad_script_with_its_line() {
    let path = script(
        "run_bad.sql",
        "CREATE TABLE t (a BIGINT) WITH ('connector' = 'print');\nSELECT b FROM t;\n",
    );
    let out = weir(&["run", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run_bad.sql:2:8: no field named b"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  SELECT b FROM t;\n         ^"),
        "{stderr}"
    );

    let path = script(
        "run_reader.sql",
        "CREATE TABLE t (a BIGINT) WITH ('connector' = 'print');\nSELECT a FROM t;\n",
    );
    fails_with(&["run", &path], "the 'print' connector cannot be read from");
    fails_with(
        &["run", &path, "--set", "no.such=1"],
        "unknown setting 'no.such'",
    );
}

/// Runs `script` in a `weir run` process for at most `wait`, until its stdout shows every one
/// of `expected`; kills it then and returns the stdout so far.
fn run_until(script: &str, expected: &[&str], wait: std::time::Duration) -> String {
    run_until_after(script, expected, wait, || {})
}

/// [`run_until`], calling `meanwhile` once the process has started.
fn run_until_after(
    script: &str,
    expected: &[&str],
    wait: std::time::Duration,
    meanwhile: impl FnOnce(),
) -> String {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", script])
        .env("WEIR_CACHE_DIR", scratch().join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start weir");
    let mut stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = stdout.read(&mut buffer) {
            if read == 0 || sender.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });
    meanwhile();
    let deadline = std::time::Instant::now() + wait;
    let mut text = String::new();
    while std::time::Instant::now() < deadline && !expected.iter().all(|line| text.contains(line)) {
        if let Ok(bytes) = receiver.recv_timeout(std::time::Duration::from_millis(50)) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
fn an_idle_split_stops_holding_windows_back() {
    // One small file: subtask 0 reads it, subtask 1 has nothing. The source watches the
    // directory for more (unbounded), so subtask 1 never ends; only its idle timeout lets the
    // watermark (19 s behind... 20 s - 1 s) fire the windows before 15 s.
    let dir = scratch().join("idle-input");
    std::fs::create_dir_all(&dir).expect("dir");
    let rows: String = (1..=20)
        .map(|s| format!("{{\"auction\":1,\"dateTime\":\"2026-01-01 10:00:{s:02}\"}}\n"))
        .collect();
    std::fs::write(dir.join("bids.json"), rows).expect("write");
    let script_for = |name: &str, idle: &str| {
        script(
            name,
            &format!(
                "SET 'execution.runtime-mode' = 'streaming';\n\
                 SET 'parallelism.default' = '2';\n\
                 CREATE TABLE bid (auction BIGINT, dateTime TIMESTAMP(3), \
                 WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND) WITH (\
                 'connector' = 'filesystem', 'path' = '{}', 'format' = 'json', \
                 'source.monitor-interval' = '100 ms'{idle});\n\
                 CREATE TABLE out (window_start TIMESTAMP(3), bids BIGINT) WITH ('connector' = 'print');\n\
                 INSERT INTO out SELECT window_start, COUNT(*) FROM \
                 TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '5' SECOND)) \
                 GROUP BY window_start, window_end;\n",
                dir.display()
            ),
        )
    };
    let expected = [
        "| 2026-01-01T10:00:00 | 4    |",
        "| 2026-01-01T10:00:05 | 5    |",
        "| 2026-01-01T10:00:10 | 5    |",
    ];
    let with_idle = script_for("idle.sql", ", 'scan.watermark.idle-timeout' = '300 ms'");
    let printed = run_until(&with_idle, &expected, std::time::Duration::from_secs(60));
    for line in expected {
        assert!(printed.contains(line), "missing {line:?} in:\n{printed}");
    }
    // The window [15 s, 20 s) ends after the watermark: it has not fired.
    assert!(!printed.contains("10:00:15"), "{printed}");
    // Without the timeout the idle subtask holds every window back.
    let without = script_for("not_idle.sql", "");
    let printed = run_until(&without, &expected, std::time::Duration::from_secs(3));
    assert!(!printed.contains("2026-01-01T10:00:00"), "{printed}");
}

#[test]
fn state_ttl_forgets_join_rows_by_the_wall_clock() {
    // Names arrive at once; bids on them 1.5 s later (a file moved into a watched directory).
    // With 'table.exec.state.ttl' = '300 ms' the names have left the join's state by then.
    let run = |name: &str, ttl: &str, wait_secs: u64| {
        let names = scratch().join(format!("{name}-names"));
        let bids = scratch().join(format!("{name}-bids"));
        for dir in [&names, &bids] {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).expect("dir");
        }
        std::fs::write(
            names.join("names.json"),
            "{\"id\":1,\"name\":\"ada\"}\n{\"id\":2,\"name\":\"bo\"}\n",
        )
        .expect("write names");
        let text = format!(
            "SET 'execution.runtime-mode' = 'streaming';\n{ttl}\
             CREATE TABLE names (id BIGINT, name STRING) WITH ('connector' = 'filesystem', \
             'path' = '{}', 'format' = 'json', 'source.monitor-interval' = '100 ms');\n\
             CREATE TABLE bids (id BIGINT, price BIGINT) WITH ('connector' = 'filesystem', \
             'path' = '{}', 'format' = 'json', 'source.monitor-interval' = '100 ms');\n\
             CREATE TABLE out (name STRING, price BIGINT) WITH ('connector' = 'print');\n\
             INSERT INTO out SELECT n.name, b.price FROM bids b JOIN names n ON b.id = n.id;\n",
            names.display(),
            bids.display()
        );
        let path = script(&format!("{name}.sql"), &text);
        run_until_after(
            &path,
            &["| ada  | 7     |"],
            std::time::Duration::from_secs(wait_secs),
            || {
                std::thread::sleep(std::time::Duration::from_millis(1_500));
                let hidden = bids.join(".bids.json");
                std::fs::write(&hidden, "{\"id\":1,\"price\":7}\n").expect("write bids");
                std::fs::rename(&hidden, bids.join("bids.json")).expect("move bids in");
            },
        )
    };
    let without = run("no-ttl", "", 30);
    assert!(without.contains("| ada  | 7     |"), "{without}");
    let with = run("ttl", "SET 'table.exec.state.ttl' = '300 ms';\n", 3);
    assert!(
        !with.contains("ada"),
        "the name should have expired:\n{with}"
    );
}

/// A granted file read in a constant expression runs while the query is planned (DataFusion
/// folds it), on the thread that drives the job: WASI's file calls must not panic there.
#[test]
fn a_granted_file_read_folded_at_planning_time_works() {
    let hostile = built("hostile");
    let dir = scratch().join("folded-read");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("word.txt"), "folded").expect("write");
    let script = script(
        "folded_read",
        &format!(
            "CREATE FUNCTION read_file AS 'read_file' LANGUAGE WASM USING JAR '{hostile}';\n\
             SELECT read_file('{}') AS word;\n",
            dir.join("word.txt").display()
        ),
    );
    let out = ok(&[
        "run",
        &script,
        "--format",
        "csv",
        "--allow-read",
        &dir.display().to_string(),
    ]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["word", "folded"]);
}
