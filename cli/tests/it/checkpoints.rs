//! Exactly-once with checkpoints, in real processes: `weir run` killed with SIGKILL at random
//! moments and started again with the same command must commit exactly the output of a run
//! that was never interrupted; a function that traps once must be survived by an in-process
//! restart.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{built, scratch, script};

/// The job under test: nexmark bids (a generator), a Wasm scalar function, a tumbling-window
/// aggregation with a Wasm aggregate (weighted_avg), into an append-only file table; then a
/// regular GROUP BY over the windows' results (an updating result) into a changelog file table.
/// `throttled`: events come at 20,000 per second (else as fast as they can be made).
fn job_script(name: &str, dir: &Path, (events, throttled): (u64, bool), extra: &str) -> String {
    let currency = built("currency");
    let stats = built("stats");
    let hostile = built("hostile");
    script(
        name,
        &format!(
            "SET 'execution.runtime-mode' = 'streaming';\n\
             SET 'execution.checkpointing.interval' = '150 ms';\n\
             {extra}\
             CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, \
               url STRING, dateTime TIMESTAMP(3), extra STRING, \
               WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND) \
             WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '{events}', \
               'events.per-second' = '20000', 'events.throttle' = '{throttled}', 'seed' = '11');\n\
             CREATE FUNCTION count_char AS 'count_char' LANGUAGE WASM USING JAR '{currency}';\n\
             CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR '{stats}';\n\
             CREATE FUNCTION explode_while_armed AS 'explode_while_armed' LANGUAGE WASM \
               USING JAR '{hostile}';\n\
             CREATE TABLE windows (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, \
               avg_price DOUBLE, cs BIGINT) \
             WITH ('connector' = 'filesystem', 'path' = '{out}/windows', 'format' = 'csv');\n\
             CREATE TABLE totals (bucket BIGINT, windows BIGINT, bids BIGINT, cs BIGINT, \
               top_avg DOUBLE) \
             WITH ('connector' = 'filesystem', 'path' = '{out}/totals', 'format' = 'csv', \
               'sink.changelog-mode' = 'all');\n\
             INSERT INTO windows \
             SELECT auction, window_start, COUNT(*), weighted_avg(CAST(price AS DOUBLE), 1), \
               SUM(count_char(extra, 'c')) \
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND)) \
             WHERE explode_while_armed(auction, 1003, '{armed}') >= 0 \
             GROUP BY auction, window_start, window_end;\n\
             INSERT INTO totals \
             SELECT bucket, COUNT(*), SUM(bids), SUM(cs), MAX(avg_price) FROM ( \
               SELECT auction % 7 AS bucket, window_start, COUNT(*) AS bids, \
                 weighted_avg(CAST(price AS DOUBLE), 1) AS avg_price, \
                 SUM(count_char(extra, 'c')) AS cs \
               FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND)) \
               GROUP BY auction % 7, window_start, window_end) \
             GROUP BY bucket;\n",
            out = dir.display(),
            armed = dir.join("trap/armed").display(),
        ),
    )
}

/// `weir run script -p parallelism`, keeping its state under `dir/state`.
fn command(script: &str, dir: &Path, parallelism: usize) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(["run", script, "-p", &parallelism.to_string(), "--state-dir"])
        .arg(dir.join("state"))
        .arg("--allow-read")
        .arg(dir.join("trap"))
        .env("WEIR_CACHE_DIR", scratch().join("cache"))
        .stdout(Stdio::null());
    command
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("trap")).expect("dir");
    dir
}

/// Every committed row of a table: the csv part files' lines, sorted.
pub(super) fn committed_rows(dir: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return rows;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("part-") {
            let text = std::fs::read_to_string(&path).expect("read part");
            rows.extend(text.lines().map(str::to_string));
        }
    }
    rows.sort();
    rows
}

/// A changelog (`op,key,values...`) applied: the final rows by key. Panics on a change that
/// does not fit (a retraction of a row that is not there: a duplicate or a lost row).
pub(super) fn apply_changelog(ordered: Vec<String>) -> BTreeMap<String, String> {
    let mut table = BTreeMap::new();
    for line in ordered {
        let (op, rest) = line.split_once(',').expect("op column");
        let (key, values) = rest.split_once(',').expect("key column");
        match op {
            "+I" | "+U" => {
                assert!(
                    table.insert(key.to_string(), values.to_string()).is_none(),
                    "{op} of key {key} which is already there: {line}"
                );
            }
            "-U" | "-D" => {
                assert_eq!(
                    table.remove(key).as_deref(),
                    Some(values),
                    "{op} of a row that is not there: {line}"
                );
            }
            _ => panic!("unknown row kind in {line}"),
        }
    }
    table
}

/// The committed changelog in commit order: part files by (number, subtask), lines in order.
/// (One key's changes all come from one subtask, in order, so this order is right per key.)
pub(super) fn changelog_in_order(dir: &Path) -> Vec<String> {
    let mut parts: Vec<(u64, u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).expect("totals dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if let Some(rest) = name.strip_prefix("part-") {
            let mut numbers = rest.trim_end_matches(".csv").split('-');
            let subtask: u64 = numbers
                .next()
                .and_then(|n| n.parse().ok())
                .expect("subtask");
            let number: u64 = numbers.next().and_then(|n| n.parse().ok()).expect("number");
            parts.push((number, subtask, path));
        }
    }
    parts.sort();
    let mut lines = Vec::new();
    for (_, _, path) in parts {
        let text = std::fs::read_to_string(&path).expect("read part");
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

/// What a finished job committed: the window rows, and the totals table after applying its
/// changelog.
fn results(dir: &Path) -> (Vec<String>, BTreeMap<String, String>) {
    let windows = committed_rows(&dir.join("windows"));
    let totals = apply_changelog(changelog_in_order(&dir.join("totals")));
    (windows, totals)
}

/// What an ended child wrote on its (piped) stderr.
fn stderr_of(child: &mut std::process::Child) -> String {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    stderr
}

/// A small deterministic generator for kill moments (its seed is printed to replay a failure).
struct Moments(u64);

impl Moments {
    fn next_millis(&mut self, low: u64, high: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        low + (self.0 >> 33) % (high - low)
    }
}

/// Starts `command` again and again, killing it with SIGKILL after a random time in
/// `millis` (low, high) until it was killed `kills` times, then lets it finish; every run that
/// ends by itself must succeed, and one must not end before the kills are done (the job is
/// then too short to prove anything). Returns the kills and how many restarts said they
/// resumed from a checkpoint. The seed of the moments is printed, to replay a failure.
pub(super) fn kill_until_done(
    name: &str,
    command: impl Fn() -> Command,
    millis: (u64, u64),
    kills: usize,
) -> (usize, usize) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    eprintln!("{name}: kill moments seeded with {seed}");
    let mut moments = Moments(seed);
    let mut killed = 0;
    let mut resumed = 0;
    for run in 1.. {
        assert!(
            run < 40,
            "{name}: the job never finished after {killed} kills"
        );
        let mut child = command()
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weir");
        let deadline =
            Instant::now() + Duration::from_millis(moments.next_millis(millis.0, millis.1));
        let mut exited = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait") {
                exited = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match exited {
            Some(status) => {
                let stderr = stderr_of(&mut child);
                assert!(status.success(), "{name}: a run failed: {stderr}");
                assert!(
                    killed >= kills,
                    "{name}: the job finished after only {killed} kills; make it longer ({stderr})"
                );
                break;
            }
            None if killed >= kills => {
                // Enough kills: let this run finish.
                let status = child.wait().expect("wait");
                assert!(status.success(), "{name}: the last run failed");
                break;
            }
            None => {
                child.kill().expect("SIGKILL");
                let _ = child.wait();
                killed += 1;
                resumed += stderr_of(&mut child)
                    .matches("resuming from checkpoint")
                    .count();
            }
        }
    }
    (killed, resumed)
}

/// Runs the job uninterrupted, then again killed with SIGKILL at random moments at least
/// `kills` times (restarted each time with the same command), and compares what each committed.
fn crash_and_compare(name: &str, parallelism: usize, extra: &str) {
    let reference = fresh_dir(&format!("{name}-reference"));
    let events = 100_000;
    let text = job_script(
        &format!("{name}-reference.sql"),
        &reference,
        (events, false),
        &extra.replace("{run}", "reference"),
    );
    let status = command(&text, &reference, parallelism)
        .status()
        .expect("run");
    assert!(status.success(), "the uninterrupted run failed");
    let expected = results(&reference);
    assert!(
        expected.0.len() > 1_000,
        "too few window rows: {}",
        expected.0.len()
    );
    assert_eq!(
        expected.1.len(),
        7,
        "one total per bucket: {:?}",
        expected.1
    );

    let crashed = fresh_dir(&format!("{name}-crashed"));
    let text = job_script(
        &format!("{name}-crashed.sql"),
        &crashed,
        (events, true),
        &extra.replace("{run}", "crashed"),
    );
    let (kills, resumed) = kill_until_done(
        name,
        || command(&text, &crashed, parallelism),
        (400, 2_500),
        5,
    );
    // Most runs after a kill resume from a checkpoint (one killed before its first checkpoint
    // starts that query afresh, which is right too).
    assert!(
        resumed >= 2,
        "{name}: only {resumed} of {kills} restarts resumed a checkpoint"
    );
    let got = results(&crashed);
    assert_eq!(
        got.0.len(),
        expected.0.len(),
        "window rows: lost or duplicated"
    );
    assert_eq!(got.0, expected.0, "window rows differ");
    assert_eq!(got.1, expected.1, "totals differ");
    // Nothing left hidden: every pre-committed file was committed or discarded.
    for table in ["windows", "totals"] {
        for entry in std::fs::read_dir(crashed.join(table)).expect("dir") {
            let name = entry.expect("entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                !name.ends_with(".inprogress"),
                "{table}: {name} left behind"
            );
        }
    }
}

#[test]
fn killed_at_random_moments_the_job_commits_exactly_once_at_parallelism_1() {
    crash_and_compare("crash-p1", 1, HASHMAP);
}

#[test]
fn killed_at_random_moments_the_job_commits_exactly_once_at_parallelism_2() {
    crash_and_compare("crash-p2", 2, HASHMAP);
}

#[test]
fn killed_at_random_moments_the_job_on_rocksdb_commits_exactly_once_at_parallelism_1() {
    crash_and_compare("crash-rocksdb-p1", 1, ROCKSDB);
}

#[test]
fn killed_at_random_moments_the_job_on_rocksdb_commits_exactly_once_at_parallelism_2() {
    crash_and_compare("crash-rocksdb-p2", 2, ROCKSDB);
}

#[test]
fn killed_at_random_moments_the_job_checkpointing_to_s3_commits_exactly_once() {
    let settings = format!("{ROCKSDB}{}", s3_settings("crash-s3"));
    crash_and_compare("crash-s3", 2, &settings);
}

const HASHMAP: &str = "SET 'state.backend.type' = 'hashmap';\n";
const ROCKSDB: &str = "SET 'state.backend.type' = 'rocksdb';\n";

/// Settings that put checkpoints in the S3-compatible server the test command started
/// (`scripts/servers.sh`), under a prefix of their own (`{run}` in it is for the caller to
/// replace, when one test runs several jobs).
fn s3_settings(name: &str) -> String {
    let (Ok(endpoint), Ok(bucket)) = (
        std::env::var("WEIR_TEST_S3_ENDPOINT"),
        std::env::var("WEIR_TEST_S3_BUCKET"),
    ) else {
        panic!(
            "WEIR_TEST_S3_ENDPOINT and WEIR_TEST_S3_BUCKET are not set: run the tests with \
             scripts/test.sh, which starts an S3 server, or start one with \
             `source scripts/servers.sh`"
        );
    };
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "SET 'execution.checkpointing.dir' = 's3://{bucket}/{name}-{unique}-{{run}}';\n\
         SET 's3.endpoint' = '{endpoint}';\n\
         SET 's3.access-key' = 'weir';\n\
         SET 's3.secret-key' = 'weir';\n\
         SET 's3.region' = 'us-east-1';\n"
    )
}

#[test]
fn a_function_that_traps_once_is_survived_by_an_in_process_restart() {
    let reference = fresh_dir("trap-reference");
    let events = 30_000;
    let text = job_script("trap-reference.sql", &reference, (events, false), "");
    assert!(
        command(&text, &reference, 2)
            .status()
            .expect("run")
            .success()
    );
    let expected = results(&reference);

    let dir = fresh_dir("trap");
    let armed = dir.join("trap/armed");
    std::fs::write(&armed, "").expect("arm");
    let text = job_script(
        "trap.sql",
        &dir,
        (events, true),
        "SET 'restart-strategy.type' = 'fixed-delay';\n\
         SET 'restart-strategy.fixed-delay.delay' = '1 s';\n",
    );
    let mut child = command(&text, &dir, 2)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    // Disarm as soon as the restart is announced: the restarted job gets past the row.
    while !text.contains("restarting") {
        let read = stderr.read(&mut buffer).expect("read stderr");
        assert!(read > 0, "the job ended without a restart:\n{text}");
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    std::fs::remove_file(&armed).expect("disarm");
    let _ = stderr.read_to_string(&mut text);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{text}");
    assert!(
        text.contains("explode_while_armed"),
        "the trap is named:\n{text}"
    );
    assert_eq!(text.matches("restarting").count(), 1, "{text}");
    let got = results(&dir);
    assert_eq!(got.0, expected.0, "window rows differ");
    assert_eq!(got.1, expected.1, "totals differ");
}

/// The committed results of an uninterrupted run of [`job_script`] over `events` events.
fn reference_results(name: &str, events: u64) -> (Vec<String>, BTreeMap<String, String>) {
    let dir = fresh_dir(name);
    let text = job_script(&format!("{name}.sql"), &dir, (events, false), "");
    let out = command(&text, &dir, 2).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    results(&dir)
}

/// Starts `weir run`, waits `after`, sends SIGTERM, and returns (stdout, stderr, success).
fn stop_with_signal(mut command: Command, after: Duration) -> (String, String, bool) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    std::thread::sleep(after);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn stopped_with_a_savepoint_at_parallelism_2_the_job_resumes_at_1_and_at_4() {
    rescale("hashmap", HASHMAP, &[1, 4]);
}

#[test]
fn stopped_with_a_savepoint_on_rocksdb_at_parallelism_2_the_job_resumes_at_1_and_at_4() {
    rescale("rocksdb", ROCKSDB, &[1, 4]);
}

#[test]
fn a_savepoint_in_s3_taken_at_parallelism_2_resumes_at_3() {
    let settings = format!("{ROCKSDB}{}", s3_settings("rescale-s3"));
    rescale("s3", &settings, &[3]);
}

fn rescale(name: &str, settings: &str, parallelisms: &[usize]) {
    let events = 100_000;
    let expected = reference_results(&format!("rescale-{name}-reference"), events);
    for &parallelism in parallelisms {
        let dir = fresh_dir(&format!("rescale-{name}-{parallelism}"));
        let text = job_script(
            &format!("rescale-{name}-{parallelism}.sql"),
            &dir,
            (events, true),
            &settings.replace("{run}", &parallelism.to_string()),
        );
        let (stdout, stderr, ok) =
            stop_with_signal(command(&text, &dir, 2), Duration::from_millis(2_500));
        assert!(ok, "the stop failed: {stderr}");
        assert!(stderr.contains("stopped with a savepoint"), "{stderr}");
        let savepoint = stdout.trim().to_string();
        assert!(
            savepoint.starts_with("s3://") || Path::new(&savepoint).join("_metadata").is_file(),
            "no savepoint at {savepoint:?}: {stderr}"
        );
        assert_eq!(
            savepoint.starts_with("s3://"),
            settings.contains("s3://"),
            "the savepoint is beside the checkpoints: {savepoint}"
        );
        let stopped = committed_rows(&dir.join("windows"));
        assert!(
            stopped.len() < expected.0.len(),
            "the job had finished before the signal"
        );
        let out = command(&text, &dir, parallelism)
            .args(["--from-savepoint", &savepoint])
            .output()
            .expect("resume");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("resuming from savepoint"), "{stderr}");
        let got = results(&dir);
        assert_eq!(
            got.0, expected.0,
            "window rows at parallelism {parallelism}"
        );
        assert_eq!(got.1, expected.1, "totals at parallelism {parallelism}");
    }
}

/// Kills the job once it has completed a few checkpoints; its state dir then holds them.
fn killed_midway(name: &str, settings: &str) -> (PathBuf, String) {
    let dir = fresh_dir(name);
    let text = job_script(&format!("{name}.sql"), &dir, (100_000, true), settings);
    let mut child = command(&text, &dir, 2).spawn().expect("start");
    // Two completed checkpoints (one to damage, one to fall back to), however busy the machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoints_of(&dir).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no two checkpoints within a minute"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the job ended before two checkpoints"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    (dir, text)
}

/// The completed checkpoints of the first query, newest first.
fn checkpoints_of(dir: &Path) -> Vec<PathBuf> {
    let root = dir.join("state/job-0/checkpoints");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let id = path
                .file_name()?
                .to_str()?
                .strip_prefix("chk-")?
                .parse()
                .ok()?;
            path.join("_metadata").is_file().then_some((id, path))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// The files a checkpoint keeps for itself (not shared with others): a snapshot of the memory
/// backend, or RocksDB's manifest and options (its SST files are under `shared/`).
fn state_files(checkpoint: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut directories = vec![checkpoint.to_path_buf()];
    while let Some(directory) = directories.pop() {
        for entry in std::fs::read_dir(&directory).expect("checkpoint dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                directories.push(path);
            } else if path.file_name().is_some_and(|n| n != "_metadata") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_damaged_newest_checkpoint_is_reported_and_the_one_before_is_used() {
    for (backend, settings) in [("hashmap", HASHMAP), ("rocksdb", ROCKSDB)] {
        let (dir, text) = killed_midway(&format!("damaged-newest-{backend}"), settings);
        let checkpoints = checkpoints_of(&dir);
        assert!(checkpoints.len() >= 2, "two retained: {checkpoints:?}");
        let newest = state_files(&checkpoints[0]);
        let victim = newest.last().unwrap_or_else(|| {
            panic!(
                "{backend}: no state file in {}: {:?}",
                checkpoints[0].display(),
                std::fs::read_dir(&checkpoints[0]).map(|d| d.count())
            )
        });
        let length = std::fs::metadata(victim).expect("size").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(victim)
            .expect("open");
        file.set_len(length / 2).expect("truncate");
        let out = command(&text, &dir, 2).output().expect("resume");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{backend}: {stderr}");
        assert!(stderr.contains("(truncated?)"), "{backend}: {stderr}");
        assert!(
            stderr.contains("trying an older checkpoint"),
            "{backend}: {stderr}"
        );
        assert!(
            stderr.contains("resuming from checkpoint"),
            "{backend}: {stderr}"
        );
    }
}

#[test]
fn with_no_usable_checkpoint_nothing_starts() {
    let (dir, text) = killed_midway("none-usable", "");
    for checkpoint in checkpoints_of(&dir) {
        for file in state_files(&checkpoint) {
            std::fs::remove_file(file).expect("delete");
        }
    }
    let before = committed_rows(&dir.join("windows"));
    let out = command(&text, &dir, 2).output().expect("resume");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no usable checkpoint"), "{stderr}");
    assert!(stderr.contains("is missing"), "{stderr}");
    assert_eq!(committed_rows(&dir.join("windows")), before, "nothing ran");
}

#[test]
fn state_of_another_query_is_refused_naming_the_operator() {
    let (dir, text) = killed_midway("other-query", "");
    // The same tables, another aggregation: the window aggregate's state does not fit it.
    let changed = std::fs::read_to_string(&text).expect("script").replacen(
        "weighted_avg(CAST(price AS DOUBLE), 1)",
        "weighted_avg(CAST(price AS DOUBLE), 2)",
        1,
    );
    let changed_path = script("other-query-changed.sql", &changed);
    let out = command(&changed_path, &dir, 2).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("holds the state of operator WindowAggregate"),
        "{stderr}"
    );
    // A savepoint of it given to the changed query: refused the same way.
    let (stdout, stderr, ok) = stop_with_signal(
        command(&text, &fresh_dir("other-query-savepoint"), 2),
        Duration::from_millis(2_000),
    );
    assert!(ok, "{stderr}");
    let out = command(&changed_path, &fresh_dir("other-query-restore"), 2)
        .args(["--from-savepoint", stdout.trim()])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("holds the state of operator WindowAggregate"),
        "{stderr}"
    );
}

#[test]
fn an_unusable_checkpoint_directory_fails_before_anything_runs() {
    let dir = fresh_dir("unwritable");
    std::fs::write(dir.join("a-file"), "not a directory").expect("write");
    let text = job_script(
        "unwritable.sql",
        &dir,
        (1_000, false),
        &format!(
            "SET 'execution.checkpointing.dir' = '{}';\n",
            dir.join("a-file/checkpoints").display()
        ),
    );
    let out = command(&text, &dir, 1).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a-file/checkpoints"), "{stderr}");
    assert!(stderr.contains("cannot create it"), "{stderr}");
    assert!(committed_rows(&dir.join("windows")).is_empty());
}

/// The checkpoint directory fills up while the job runs (a small tmpfs, in a mount namespace of
/// the test's own): the job fails, saying so, after its restarts; nothing it had not
/// checkpointed is committed; once there is room again the same command resumes and commits
/// exactly what an uninterrupted run does.
#[test]
fn a_full_checkpoint_disk_fails_the_job_clearly_and_it_resumes_once_there_is_room() {
    let events = 100_000;
    let expected = reference_results("full-disk-reference", events);
    let dir = fresh_dir("full-disk");
    let checkpoints = dir.join("checkpoints");
    std::fs::create_dir_all(&checkpoints).expect("mount point");
    let text = job_script(
        "full-disk.sql",
        &dir,
        (events, true),
        &format!(
            "SET 'execution.checkpointing.dir' = '{}';\n\
             SET 'restart-strategy.fixed-delay.delay' = '200 ms';\n",
            checkpoints.display()
        ),
    );
    let run = |log: &str| {
        format!(
            "WEIR_CACHE_DIR={cache} {weir} run {text} -p 2 --state-dir {state} \
             --allow-read {trap} >/dev/null 2>{dir}/{log}",
            cache = scratch().join("cache").display(),
            weir = env!("CARGO_BIN_EXE_weir"),
            state = dir.join("state").display(),
            trap = dir.join("trap").display(),
            dir = dir.display(),
        )
    };
    let checkpoints = checkpoints.display();
    let steps = format!(
        "set -u\n\
         mount -t tmpfs -o size=32m tmpfs {checkpoints} || exit 90\n\
         {first} &\n\
         pid=$!\n\
         for _ in $(seq 1 400); do\n\
           ls {checkpoints}/job-0/chk-*/_metadata >/dev/null 2>&1 && break\n\
           sleep 0.01\n\
         done\n\
         dd if=/dev/zero of={checkpoints}/filler bs=64k 2>/dev/null\n\
         wait $pid\n\
         echo $? > {dir}/first.status\n\
         cp -r {dir}/windows {dir}/windows-after-first\n\
         rm {checkpoints}/filler\n\
         {second}\n\
         echo $? > {dir}/second.status\n",
        first = run("first.stderr"),
        second = run("second.stderr"),
        dir = dir.display(),
    );
    // A mount namespace of its own, so that the tmpfs goes when the test ends; root in it (the
    // test runs as root in CI; a user namespace makes it work for others too).
    let status = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", &steps])
        .status()
        .expect("unshare");
    assert_eq!(
        status.code(),
        Some(0),
        "could not mount a tmpfs in a new mount namespace (unshare --mount --map-root-user)"
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let first = read("first.stderr");
    assert_eq!(
        read("first.status").trim(),
        "1",
        "the full disk failed it: {first}"
    );
    assert!(first.contains("No space left on device"), "{first}");
    assert!(first.contains(&checkpoints.to_string()), "named: {first}");
    // What the failed run committed is what its completed checkpoints covered: a part of the
    // right answer, nothing else.
    let committed = committed_rows(&dir.join("windows-after-first"));
    assert!(
        committed.len() < expected.0.len(),
        "the disk filled only after the job had finished"
    );
    let mut left = expected.0.clone();
    for row in &committed {
        let at = left
            .binary_search(row)
            .unwrap_or_else(|_| panic!("committed a row the reference lacks: {row}"));
        left.remove(at);
    }
    let second = read("second.stderr");
    assert_eq!(read("second.status").trim(), "0", "{second}");
    assert!(second.contains("resuming from checkpoint"), "{second}");
    let got = results(&dir);
    assert_eq!(got.0, expected.0, "window rows differ");
    assert_eq!(got.1, expected.1, "totals differ");
}
