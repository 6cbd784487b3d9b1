//! `weir serve` driven by the `weir` CLI, both real processes: deploy, submit, watch, stop with
//! a savepoint, resume, upgrade, cancel; a server killed with SIGKILL resumes its job with
//! exactly-once output; refusals change nothing; `/metrics` parses and moves; many clients at
//! once leak nothing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::checkpoints::{apply_changelog, changelog_in_order, committed_rows};
use super::{built, python, repo, scratch};

/// A `weir serve` process on loopback ports of its own.
struct Server {
    child: Child,
    url: String,
    metrics: String,
    data: PathBuf,
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .current_dir(repo())
            .env("WEIR_CACHE_DIR", scratch().join("cache"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start weir serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut url = String::new();
        let mut metrics = String::new();
        for line in lines.by_ref() {
            let line = line.expect("server stdout");
            if let Some(rest) = line.strip_prefix("listening on ") {
                url = rest.to_string();
            } else if let Some(rest) = line.strip_prefix("metrics on ") {
                metrics = rest.to_string();
                break;
            }
        }
        assert!(
            !url.is_empty() && !metrics.is_empty(),
            "the server did not start"
        );
        // Keep reading its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            metrics,
            data: data.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let guest_target = std::env::var_os("WEIR_GUEST_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("udfs/target"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args(args)
            .current_dir(repo())
            .env("WEIR_SERVER", &self.url)
            .env("WEIR_DATA_DIR", &self.data)
            .env_remove("WEIR_TOKEN")
            .env("CARGO_TARGET_DIR", guest_target)
            .env("WEIR_CACHE_DIR", scratch().join("cache"))
            .env("WEIR_PYTHON", python())
            .stdin(Stdio::null());
        command
    }

    fn weir(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run weir")
    }

    /// `weir args`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.weir(args);
        assert!(
            out.status.success(),
            "weir {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `weir args`, which must exit with `code` and say `expected` on stderr.
    fn refused(&self, args: &[&str], code: i32, expected: &str) -> String {
        let out = self.weir(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "weir {args:?}: {stderr}");
        assert!(stderr.contains(expected), "weir {args:?}: {stderr}");
        stderr
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("json output")
    }

    fn job(&self, id: u64) -> serde_json::Value {
        self.json(&["job", &id.to_string()])
    }

    /// Polls `weir job id` until `done` holds (or panics after `limit`).
    fn wait_for(
        &self,
        id: u64,
        limit: Duration,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let job = self.job(id);
            if done(&job) {
                return job;
            }
            assert!(
                started.elapsed() < limit,
                "job {id}: no {what} after {limit:?}: {job:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn scrape(&self) -> String {
        let address = self
            .metrics
            .trim_start_matches("http://")
            .trim_end_matches("/metrics");
        let mut stream = std::net::TcpStream::connect(address).expect("connect to metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\n\r\n")
            .expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        let (head, body) = response.split_once("\r\n\r\n").expect("http response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        body.to_string()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn fresh(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).expect("write");
    path.display().to_string()
}

/// Prometheus text: every sample line is `name{labels} value` with a number, every family has
/// HELP and TYPE; the samples by `name{labels}`.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge"].contains(&kind),
                "unknown type in {line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let name = series.split('{').next().expect("name");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in {line}"
        );
        assert!(typed.contains(name), "no TYPE before {line}");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "labels in {line}"
            );
        }
        samples.insert(series.to_string(), value);
    }
    samples
}

/// The job of the end-to-end test: nexmark bids (bounded, throttled), a Rust scalar function
/// and a Python aggregate, an updating GROUP BY into a changelog file table.
fn totals_script(out: &Path, events: u64, per_second: u64, functions: &str) -> String {
    format!(
        "SET 'execution.runtime-mode' = 'streaming';\n\
         SET 'execution.checkpointing.interval' = '300 ms';\n\
         SET 'parallelism.default' = '2';\n\
         CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, \
           url STRING, dateTime TIMESTAMP(3), extra STRING) \
         WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '{events}', \
           'events.per-second' = '{per_second}', 'events.throttle' = 'true', 'seed' = '5');\n\
         {functions}\
         CREATE TABLE totals (bucket BIGINT, bids BIGINT, cs BIGINT, avg_price BIGINT) \
         WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv', \
           'sink.changelog-mode' = 'all');\n\
         INSERT INTO totals \
         SELECT auction % 10, COUNT(*), SUM(count_char(extra, 'c')), \
           CAST(weighted_avg(CAST(price AS DOUBLE), 1) AS BIGINT) \
         FROM bid GROUP BY auction % 10;\n",
        out = out.display()
    )
}

/// The final rows of `totals_script` from an uninterrupted batch run of `weir run`.
fn reference_totals(dir: &Path, events: u64) -> BTreeMap<String, String> {
    let currency = built("currency");
    let stats = built("stats");
    let functions = format!(
        "CREATE FUNCTION count_char AS 'count_char' LANGUAGE WASM USING JAR '{currency}';\n\
         CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR '{stats}';\n"
    );
    let out = dir.join("reference");
    let script = write(
        &dir.join("reference.sql"),
        &totals_script(&out, events, 1_000_000, &functions)
            .replace("'streaming'", "'batch'")
            .replace("'events.throttle' = 'true'", "'events.throttle' = 'false'"),
    );
    super::ok(&["run", &script]);
    apply_changelog(changelog_in_order(&out))
}

#[test]
fn a_job_on_the_server_is_deployed_watched_stopped_resumed_upgraded_and_cancelled() {
    let dir = fresh("server-lifecycle");
    let server = Server::start(&dir.join("data"), &[]);
    // About 160 s at 1,500 events a second: long enough for everything below to happen while
    // it runs, even on a loaded machine (100 s was not, once, with the Kafka tests beside it:
    // the job had ended when the upgrade came).
    let events = 240_000;
    let reference = reference_totals(&dir, events);

    // Deploy: a Rust component and a Python source (built first).
    let currency = built("currency");
    let deployed = server.json(&["deploy", &currency, "--name", "currency"]);
    assert_eq!(deployed["version"], "1");
    let deployed = server.json(&["deploy", "udfs/python/stats.py", "--name", "stats"]);
    assert_eq!(deployed["version"], "1");
    let functions = server.ok(&["functions"]);
    assert!(
        functions.contains("count_char") && functions.contains("currency@1"),
        "{functions}"
    );
    assert!(
        functions.contains("weighted_avg") && functions.contains("stats@1"),
        "{functions}"
    );
    // The same bytes again change nothing.
    let again = server.json(&["deploy", &currency, "--name", "currency"]);
    assert_eq!(again["unchanged"], true);
    assert_eq!(again["version"], "1");

    // Submit a streaming job and watch it produce.
    let out = dir.join("totals");
    let script = write(
        &dir.join("job.sql"),
        &totals_script(&out, events, 1_500, ""),
    );
    let submitted = server.json(&["submit", &script]);
    let id = submitted[0]["id"].as_u64().expect("job id");
    assert_eq!(submitted[0]["mode"], "streaming");
    assert_eq!(submitted[0]["status"], "running");
    let job = server.wait_for(id, Duration::from_secs(60), "output", |j| {
        j["rows_out"].as_u64() > Some(0) && !j["checkpoints"].as_array().is_some_and(Vec::is_empty)
    });
    assert!(
        job["graph"]
            .as_str()
            .is_some_and(|g| g.contains("Aggregate")),
        "{job:#}"
    );
    let calls = |job: &serde_json::Value, name: &str| {
        job["functions"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["name"] == name))
            .and_then(|f| f["calls"].as_u64())
            .unwrap_or(0)
    };
    assert!(
        calls(&job, "count_char") > 0 && calls(&job, "weighted_avg") > 0,
        "{job:#}"
    );

    // A savepoint while it runs, then a stop with one, then resume.
    let savepoint = server.ok(&["savepoint", &id.to_string()]);
    assert!(
        Path::new(savepoint.trim()).join("_metadata").is_file(),
        "savepoint {savepoint}"
    );
    assert_eq!(server.job(id)["status"], "running");
    let stopped = server.json(&["stop", &id.to_string(), "--savepoint"]);
    assert_eq!(stopped["status"], "stopped");
    let stopped_at = stopped["savepoint"]
        .as_str()
        .expect("savepoint")
        .to_string();
    assert!(
        Path::new(&stopped_at).join("_metadata").is_file(),
        "{stopped:#}"
    );
    let resumed = server.json(&["resume", &id.to_string()]);
    assert_eq!(resumed["status"], "running");
    let rows_before = server.job(id)["rows_in"].as_u64().unwrap_or(0);
    server.wait_for(
        id,
        Duration::from_secs(60),
        "progress after resuming",
        |j| j["rows_in"].as_u64() > Some(rows_before),
    );

    // Upgrade the scalar function's module to its Python twin, keeping the job's state.
    let v2 = server.json(&["deploy", "udfs/python/currency.py", "--name", "currency"]);
    assert_eq!(v2["version"], "2");
    let upgraded = server.json(&["upgrade", &id.to_string(), "--module", "currency@2"]);
    assert_eq!(upgraded["status"], "running");
    let modules = upgraded["modules"].as_array().expect("modules");
    assert!(
        modules
            .iter()
            .any(|m| m["name"] == "currency" && m["version"] == "2"),
        "{upgraded:#}"
    );
    server.wait_for(id, Duration::from_secs(60), "count_char calls on v2", |j| {
        calls(j, "count_char") > 0
    });
    // Version 1 stays while a job may go back to it; version 2 is in use.
    server.refused(&["modules", "--drop", "currency@2"], 5, "used by job(s) 1");

    // The job runs to its end; its totals are an uninterrupted run's: no state was lost at
    // the stop, the resume or the upgrade (counts would restart from zero), nothing doubled.
    let finished = server.wait_for(id, Duration::from_secs(300), "end", |j| {
        j["status"] != "running"
    });
    assert_eq!(finished["status"], "finished", "{finished:#}");
    assert_eq!(apply_changelog(changelog_in_order(&out)), reference);

    // An unbounded job, cancelled: it ends, for good.
    let endless = write(
        &dir.join("endless.sql"),
        &totals_script(&dir.join("endless"), 0, 1_000, "").replace("'events.num' = '0', ", ""),
    );
    let id = server.json(&["submit", &endless])[0]["id"]
        .as_u64()
        .expect("id");
    server.wait_for(id, Duration::from_secs(60), "output", |j| {
        j["rows_out"].as_u64() > Some(0)
    });
    let cancelled = server.json(&["cancel", &id.to_string()]);
    assert_eq!(cancelled["status"], "cancelled");
    server.refused(
        &["resume", &id.to_string()],
        5,
        "only a stopped or failed job",
    );
    let metrics = parse_prometheus(&server.scrape());
    assert_eq!(metrics.get("weir_jobs{status=\"running\"}"), Some(&0.0));
    // Nothing uses version 1 any more (job 1 finished): it can go.
    server.ok(&["modules", "--drop", "currency@1"]);
}

#[test]
fn a_killed_server_resumes_its_streaming_job_and_the_output_is_exactly_once() {
    let dir = fresh("server-restart");
    let data = dir.join("data");
    let events = 40_000;
    let reference = reference_totals(&dir, events);
    let mut server = Server::start(&data, &[]);
    server.ok(&["deploy", &built("currency"), "--name", "currency"]);
    // A crate directory: built first.
    server.ok(&["deploy", "udfs/rust/stats", "--name", "stats"]);
    let out = dir.join("totals");
    let script = write(
        &dir.join("job.sql"),
        &totals_script(&out, events, 2_000, ""),
    );
    let id = server.json(&["submit", &script])[0]["id"]
        .as_u64()
        .expect("id");
    for kill in 0..2 {
        let checkpointed = server.wait_for(id, Duration::from_secs(60), "checkpoints", |j| {
            j["checkpoints"].as_array().is_some_and(|c| c.len() >= 2)
        });
        assert_eq!(checkpointed["status"], "running");
        std::thread::sleep(Duration::from_millis(300 + 400 * kill));
        server.kill();
        server = Server::start(&data, &[]);
        let job = server.job(id);
        assert!(
            job["status"] == "running" || job["status"] == "finished",
            "after restart {kill}: {job:#}"
        );
    }
    let finished = server.wait_for(id, Duration::from_secs(180), "end", |j| {
        j["status"] != "running"
    });
    assert_eq!(finished["status"], "finished", "{finished:#}");
    // The committed changelog applies cleanly (no change of a row twice) to the reference.
    assert_eq!(apply_changelog(changelog_in_order(&out)), reference);
    assert!(!committed_rows(&out).is_empty());
}

#[test]
fn the_server_refuses_bad_calls_clearly_and_they_change_nothing() {
    let dir = fresh("server-refusals");
    let server = Server::start(&dir.join("data"), &["--max-module-mib", "1"]);
    server.ok(&["deploy", &built("currency"), "--name", "currency"]);
    // A running job that uses the module.
    let job = write(
        &dir.join("job.sql"),
        &format!(
            "SET 'execution.runtime-mode' = 'streaming';\n\
             CREATE TABLE bid (auction BIGINT, extra STRING) WITH ('connector' = 'nexmark', \
               'nexmark.table' = 'bid', 'events.per-second' = '100', 'events.throttle' = 'true');\n\
             CREATE TABLE out (n BIGINT) WITH ('connector' = 'blackhole');\n\
             SET 'execution.checkpointing.dir' = '{}';\n\
             INSERT INTO out SELECT count_char(extra, 'c') FROM bid;\n",
            dir.join("checkpoints").display()
        ),
    );
    let id = server.json(&["submit", &job])[0]["id"]
        .as_u64()
        .expect("id");
    let modules_before = server.json(&["modules"]);

    // Tokens: none (no data dir to read it from), and a wrong one.
    let out = server
        .command(&["functions"])
        .env_remove("WEIR_DATA_DIR")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", &dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no token"),
        "{out:?}"
    );
    let out = server
        .command(&["functions"])
        .env("WEIR_TOKEN", "not-the-token")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong token"),
        "{out:?}"
    );

    // Uploads: garbage, too large, a component of another world.
    let garbage = write(&dir.join("garbage.wasm"), "this is not wasm");
    server.refused(&["deploy", &garbage], 3, "WebAssembly magic bytes");
    let large = dir.join("large.wasm");
    std::fs::write(&large, vec![0u8; 3 << 20]).expect("write");
    server.refused(
        &["deploy", &large.display().to_string()],
        3,
        "larger than this server accepts",
    );
    let other = dir.join("other.wasm");
    std::fs::write(&other, wat::parse_str("(component)").expect("component")).expect("write");
    server.refused(
        &["deploy", &other.display().to_string()],
        3,
        "not a usable weir:udf component",
    );

    // SQL with an error: its place comes back to the CLI.
    let bad = write(
        &dir.join("bad.sql"),
        "CREATE TABLE bid (auction BIGINT) WITH ('connector' = 'nexmark', \
           'nexmark.table' = 'bid');\n\
         CREATE TABLE out (n BIGINT) WITH ('connector' = 'blackhole');\n\
         INSERT INTO out SELECT count_char(auction, 'c', 3) FROM bid;\n",
    );
    let stderr = server.refused(&["submit", &bad], 3, "bad.sql:3:");
    assert!(stderr.contains('^'), "{stderr}");
    let select = write(&dir.join("select.sql"), "SELECT 1;\n");
    server.refused(&["submit", &select], 3, "INSERT INTO");

    // Dropping a module a running job uses.
    server.refused(&["modules", "--drop", "currency"], 5, "is used by job(s)");
    server.refused(&["job", "999"], 4, "no job 999");

    // None of it changed the catalog or the job.
    assert_eq!(server.json(&["modules"]), modules_before);
    let jobs = server.json(&["jobs"]);
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs:#}");
    assert_eq!(server.job(id)["status"], "running");
    server.ok(&["cancel", &id.to_string()]);
}

#[test]
fn a_trap_in_one_job_does_not_touch_another() {
    let dir = fresh("server-isolation");
    let server = Server::start(&dir.join("data"), &[]);
    server.ok(&["deploy", &built("hostile"), "--name", "hostile"]);
    let job = |name: &str, function: &str| {
        write(
            &dir.join(format!("{name}.sql")),
            &format!(
                "SET 'execution.runtime-mode' = 'streaming';\n\
                 SET 'restart-strategy.type' = 'none';\n\
                 SET 'execution.checkpointing.interval' = '0';\n\
                 CREATE TABLE bid (auction BIGINT) WITH ('connector' = 'nexmark', \
                   'nexmark.table' = 'bid', 'events.num' = '20000', \
                   'events.per-second' = '5000', 'events.throttle' = 'true');\n\
                 CREATE TABLE out (n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', \
                   'format' = 'csv');\n\
                 INSERT INTO out SELECT {function}(auction) FROM bid;\n",
                dir.join(name).display()
            ),
        )
    };
    let good = job("good", "double");
    let bad = job("bad", "explode");
    let good = server.json(&["submit", &good])[0]["id"]
        .as_u64()
        .expect("id");
    let bad = server.json(&["submit", &bad])[0]["id"]
        .as_u64()
        .expect("id");
    let failed = server.wait_for(bad, Duration::from_secs(60), "end", |j| {
        j["status"] != "running"
    });
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("explode")),
        "{failed:#}"
    );
    assert_eq!(server.job(good)["status"], "running");
    let finished = server.wait_for(good, Duration::from_secs(60), "end", |j| {
        j["status"] != "running"
    });
    assert_eq!(finished["status"], "finished", "{finished:#}");
    // 46 of every 50 nexmark events are bids.
    assert_eq!(committed_rows(&dir.join("good")).len(), 18_400);
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_while_a_job_runs() {
    let dir = fresh("server-metrics");
    let server = Server::start(&dir.join("data"), &[]);
    server.ok(&["deploy", &built("currency"), "--name", "currency"]);
    let script = write(
        &dir.join("job.sql"),
        "SET 'execution.runtime-mode' = 'streaming';\n\
         CREATE TABLE bid (auction BIGINT, dateTime TIMESTAMP(3), extra STRING, \
           WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND) \
         WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.per-second' = '2000', \
           'events.throttle' = 'true');\n\
         CREATE TABLE out (n BIGINT) WITH ('connector' = 'blackhole');\n\
         SET 'execution.checkpointing.interval' = '0';\n\
         INSERT INTO out SELECT SUM(count_char(extra, 'c')) \
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND)) \
         GROUP BY window_start, window_end;\n",
    );
    let id = server.json(&["submit", &script])[0]["id"]
        .as_u64()
        .expect("id");
    let label = format!("job=\"{id}\"");
    let rows_out = |samples: &BTreeMap<String, f64>, metric: &str| -> f64 {
        samples
            .iter()
            .filter(|(series, _)| series.starts_with(metric) && series.contains(&label))
            .map(|(_, v)| *v)
            .sum()
    };
    server.wait_for(id, Duration::from_secs(60), "output", |j| {
        j["rows_out"].as_u64() > Some(0)
    });
    let first = parse_prometheus(&server.scrape());
    std::thread::sleep(Duration::from_millis(1500));
    let second = parse_prometheus(&server.scrape());
    for metric in [
        "weir_operator_rows_out_total",
        "weir_udf_calls_total",
        "weir_udf_rows_total",
    ] {
        assert!(
            rows_out(&second, metric) > rows_out(&first, metric),
            "{metric} did not move: {} then {}",
            rows_out(&first, metric),
            rows_out(&second, metric)
        );
    }
    assert!(
        rows_out(&second, "weir_operator_watermark_milliseconds") > 0.0,
        "{second:#?}"
    );
    assert_eq!(second.get("weir_jobs{status=\"running\"}"), Some(&1.0));
    server.ok(&["cancel", &id.to_string()]);
}

/// Resident memory in MiB, from a scrape.
fn rss_of(samples: &BTreeMap<String, f64>) -> f64 {
    samples["weir_process_resident_bytes"] / f64::from(1 << 20)
}

/// Runs `clients` concurrent CLI clients against `server` for `duration`, each deploying,
/// listing functions and submitting `script(client)` with `--wait` in turn; every call must
/// succeed. Returns (calls, batch jobs).
fn hammer(
    server: &std::sync::Arc<Server>,
    clients: usize,
    duration: Duration,
    module: &str,
    script: &dyn Fn(usize) -> String,
) -> (usize, usize) {
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            let server = server.clone();
            let module = module.to_string();
            let script = script(client);
            std::thread::spawn(move || {
                let mut calls = 0;
                let mut jobs = 0;
                while started.elapsed() < duration {
                    match calls % 3 {
                        0 => server.ok(&["deploy", &module, "--name", "currency"]),
                        1 => server.ok(&["functions"]),
                        _ => {
                            jobs += 1;
                            server.ok(&["submit", &script, "--wait"])
                        }
                    };
                    calls += 1;
                }
                (calls, jobs)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|client| client.join().expect("a client failed"))
        .fold((0, 0), |(c, j), (dc, dj)| (c + dc, j + dj))
}

/// Sixteen clients deploying, listing and submitting short batch jobs for a minute: no call
/// fails, every job finishes, no job or task is left behind, and memory comes back to what
/// it was before the minute.
#[test]
fn sixteen_clients_for_a_minute_leave_nothing_behind() {
    const HISTORY: usize = 50;
    let dir = fresh("server-load");
    let server = std::sync::Arc::new(Server::start(
        &dir.join("data"),
        &["--job-history", &HISTORY.to_string()],
    ));
    let currency = built("currency");
    server.ok(&["deploy", &currency, "--name", "currency"]);
    let script = |n: usize| {
        write(
            &dir.join(format!("batch-{n}.sql")),
            "CREATE TABLE bid (auction BIGINT, extra STRING) WITH ('connector' = 'nexmark', \
               'nexmark.table' = 'bid', 'events.num' = '2000');\n\
             CREATE TABLE out (n BIGINT) WITH ('connector' = 'blackhole');\n\
             INSERT INTO out SELECT count_char(extra, 'c') FROM bid;\n",
        )
    };
    // The baseline is a server that has seen this concurrency once: the first burst pays
    // one-off costs (thread stacks, allocator arenas, code paged in, the job history filling
    // up) that stay whether the server then runs ten jobs or ten thousand. What the minute
    // leaves above it grows with the jobs, and that is what must not exist.
    hammer(&server, 16, Duration::from_secs(8), &currency, &script);
    let settled = |floor: f64| {
        // Idle blocking threads (and the instances they cache) go after 10 s.
        std::thread::sleep(Duration::from_secs(11));
        let waited = Instant::now();
        let mut samples = parse_prometheus(&server.scrape());
        while rss_of(&samples) > floor && waited.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_secs(1));
            samples = parse_prometheus(&server.scrape());
        }
        samples
    };
    let baseline = settled(f64::INFINITY);
    let started = Instant::now();
    let (calls, jobs) = hammer(&server, 16, Duration::from_secs(60), &currency, &script);
    let elapsed = started.elapsed();
    let after = settled(rss_of(&baseline) + 1.0);

    let listed = server.json(&["jobs"]);
    let listed = listed.as_array().expect("jobs");
    assert!(jobs > HISTORY, "only {jobs} jobs ran");
    assert_eq!(
        listed.len(),
        HISTORY,
        "the ended jobs beyond the history stay"
    );
    assert!(
        listed.iter().all(|j| j["status"] == "finished"),
        "{listed:#?}"
    );
    let job_dirs = std::fs::read_dir(dir.join("data/jobs"))
        .expect("jobs dir")
        .count();
    assert_eq!(job_dirs, HISTORY, "forgotten jobs' files stay");
    assert_eq!(after.get("weir_jobs{status=\"running\"}"), Some(&0.0));
    let tasks = |m: &BTreeMap<String, f64>| m["weir_runtime_alive_tasks"];
    assert!(tasks(&baseline) > 0.0);
    assert_eq!(tasks(&after), tasks(&baseline), "tasks left behind");
    eprintln!(
        "load: {calls} calls ({jobs} batch jobs) from 16 clients in {elapsed:.0?}; resident \
         memory {:.1} MiB before, {:.1} MiB after",
        rss_of(&baseline),
        rss_of(&after)
    );
    // Measured here: 74 MiB before and 78 after, then flat over two more minutes (about
    // 1,000 jobs each). Before the arena limit and trim it was 26 MiB and growing.
    assert!(
        rss_of(&after) < rss_of(&baseline) + 10.0,
        "resident memory {:.1} MiB after, {:.1} MiB before",
        rss_of(&after),
        rss_of(&baseline)
    );
}

/// Over TLS, the CLI reaches the server with the CA certificate and not without it.
#[test]
fn with_a_certificate_the_server_speaks_tls() {
    let dir = fresh("server-tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // An end-entity certificate (openssl makes a CA by default, which rustls refuses to
        // see serve a connection).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (scripts/setup.sh installs it)");
    assert!(made.success(), "openssl could not make a certificate");
    let server = Server::start(
        &dir.join("data"),
        &[
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let out = server
        .command(&["functions"])
        .env("WEIR_CA_CERT", &cert)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP/2 to a TLS port, and TLS without trusting the certificate, both fail.
    let plain = server.url.replacen("https://", "http://", 1);
    let out = server
        .command(&["functions", "--server", &plain])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let out = server.command(&["functions"]).output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Tables made on the server are used by jobs and listed; dropping one leaves the jobs that
/// used it alone. A module's sandbox grant is shown at deploy and applies in its jobs.
#[test]
fn server_tables_and_granted_modules_serve_jobs() {
    let dir = fresh("server-tables");
    let server = Server::start(&dir.join("data"), &[]);
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).expect("dir");
    std::fs::write(shared.join("greeting.txt"), "hello").expect("write");
    let deployed = server.json(&[
        "deploy",
        &built("hostile"),
        "--name",
        "hostile",
        "--allow-read",
        &shared.display().to_string(),
    ]);
    assert_eq!(
        deployed["grants"]["read_dirs"][0],
        shared.display().to_string()
    );
    let shown = server.weir(&["deploy", &built("hostile"), "--name", "hostile"]);
    // Without the grant these bytes are another deployment: shown as having none.
    let shown = String::from_utf8_lossy(&shown.stderr);
    assert!(shown.contains("no filesystem"), "{shown}");

    let bids = write(
        &dir.join("bids.sql"),
        "CREATE TABLE bids (auction BIGINT) WITH ('connector' = 'nexmark', \
           'nexmark.table' = 'bid', 'events.num' = '2000');",
    );
    server.ok(&["tables", "--create", &bids]);
    let out = write(
        &dir.join("out.sql"),
        &format!(
            "CREATE TABLE out (auction BIGINT, text STRING) WITH ('connector' = 'filesystem', \
               'path' = '{}', 'format' = 'csv');",
            dir.join("out").display()
        ),
    );
    server.ok(&["tables", "--create", &out]);
    let listed = server.json(&["tables"]);
    let names: Vec<&str> = listed
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["bids", "out"]);
    server.refused(&["tables", "--create", &out], 5, "table 'out' exists");
    let bad = write(
        &dir.join("bad.sql"),
        "CREATE TABLE broken (a NOT_A_TYPE) WITH ('connector' = 'blackhole');",
    );
    server.refused(&["tables", "--create", &bad], 3, "bad.sql:1:");

    let job = write(
        &dir.join("job.sql"),
        &format!(
            "INSERT INTO out SELECT auction, read_file('{}') FROM bids;",
            shared.join("greeting.txt").display()
        ),
    );
    // hostile@2 (no grant) is the newest: the read is refused and the job fails, by name.
    let failed = server.refused(&["submit", &job, "--wait"], 1, "read_file");
    assert!(failed.contains("cannot read"), "{failed}");
    server.ok(&["modules", "--drop", "hostile@2"]);
    let jobs = server.json(&["submit", &job, "--wait"]);
    assert_eq!(jobs[0]["status"], "finished", "{jobs:#}");
    let rows = committed_rows(&dir.join("out"));
    assert_eq!(rows.len(), 1_840);
    assert!(
        rows.iter().all(|r| r.ends_with(",hello")),
        "{:?}",
        &rows[..3]
    );
    server.ok(&["tables", "--drop", "bids"]);
    server.refused(&["tables", "--drop", "bids"], 4, "no table 'bids'");
    let listed = server.json(&["tables"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}
