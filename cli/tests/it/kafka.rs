//! The kafka connector against the real broker the test command starts (`scripts/servers.sh`:
//! tansu, in memory), driven through `weir run`.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::checkpoints::{apply_changelog, changelog_in_order, committed_rows};
use super::{built, scratch, script, weir};

fn bootstrap() -> String {
    std::env::var("WEIR_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "WEIR_TEST_KAFKA_BOOTSTRAP is not set: run the tests with scripts/test.sh, which \
             starts a Kafka broker, or start one with `source scripts/servers.sh`"
        )
    })
}

/// A topic of its own for each test (and each run: the broker outlives a test).
fn create_topic(name: &str, partitions: i32) -> String {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let topic = format!("{name}-{unique}");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(
                &topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create topic");
    for result in results {
        result.unwrap_or_else(|(topic, e)| panic!("cannot create topic {topic}: {e}"));
    }
    topic
}

/// Sends `messages` (payloads) to partition `partition` of `topic`, and waits for them.
fn produce(topic: &str, partition: i32, messages: &[&str]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer");
    for message in messages {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(partition)
                    .payload(message),
            )
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// `weir run script -p parallelism`, which must succeed.
fn run(script: &str, parallelism: usize) -> String {
    let out = weir(&["run", script, "-p", &parallelism.to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "weir run {script}: {stderr}");
    stderr
}

fn kafka_table(name: &str, columns: &str, topic: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE {name} ({columns}) WITH ('connector' = 'kafka', 'topic' = '{topic}', \
           'properties.bootstrap.servers' = '{}', 'format' = 'json'{extra});\n",
        bootstrap()
    )
}

/// A message's key and value, as text.
type KeyAndValue = (Option<String>, Option<String>);

const BID_COLUMNS: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, \
                           url STRING, dateTime TIMESTAMP(3), extra STRING";

/// The bids of the nexmark generator (deterministic by seed) into a 4-partition topic and a
/// json file; a windowed aggregation with a Wasm aggregate at parallelism 2 over each: over
/// Kafka in streaming mode (watermarks per partition, no delay) written to another topic, over
/// the files in batch mode. The topic read back equals the file query's result: no row was
/// late, and both modes give the same answer.
#[test]
fn a_windowed_aggregation_from_kafka_to_kafka_equals_the_same_query_over_files() {
    const EVENTS: u64 = 1_000_000;
    let dir = fresh_dir("kafka-windows");
    let bids = create_topic("bids", 4);
    let results = create_topic("results", 2);
    let stats = built("stats");
    let generator = format!(
        "CREATE TABLE gen ({BID_COLUMNS}) WITH ('connector' = 'nexmark', \
           'nexmark.table' = 'bid', 'events.num' = '{EVENTS}', 'seed' = '5');\n"
    );
    let file_bids = format!(
        "CREATE TABLE file_bids ({BID_COLUMNS}) WITH ('connector' = 'filesystem', \
           'path' = '{}', 'format' = 'json');\n",
        dir.join("bids").display()
    );
    // One writer, so that each partition holds its bids in time order, as a producer
    // writing events as they happen would leave them.
    let load = script(
        "kafka-load.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'batch';\n{generator}{}\
             INSERT INTO kafka_bids SELECT * FROM gen;\n",
            kafka_table("kafka_bids", BID_COLUMNS, &bids, "")
        ),
    );
    run(&load, 1);
    let load = script(
        "file-load.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'batch';\n{generator}{file_bids}\
             INSERT INTO file_bids SELECT * FROM gen;\n"
        ),
    );
    run(&load, 2);

    let query = |source: &str, sink: &str| {
        format!(
            "INSERT INTO {sink} \
             SELECT auction, window_start, COUNT(*), weighted_avg(CAST(price AS DOUBLE), 1) \
             FROM TABLE(TUMBLE(TABLE {source}, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) \
             GROUP BY auction, window_start, window_end;\n"
        )
    };
    let result_columns = "auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, avg_price DOUBLE";
    let function = format!(
        "CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR '{stats}';\n"
    );
    let from_kafka = script(
        "kafka-windows.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'streaming';\n{function}{}{}{}",
            kafka_table(
                "kafka_bids",
                &format!("{BID_COLUMNS}, WATERMARK FOR dateTime AS dateTime"),
                &bids,
                ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'"
            ),
            kafka_table("kafka_results", result_columns, &results, ""),
            query("kafka_bids", "kafka_results"),
        ),
    );
    let stderr = run(&from_kafka, 2);
    assert!(!stderr.contains("late row"), "{stderr}");
    let from_files = script(
        "file-windows.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'batch';\n{function}{file_bids}\
             CREATE TABLE file_results ({result_columns}) WITH ('connector' = 'filesystem', \
               'path' = '{}', 'format' = 'csv');\n{}",
            dir.join("expected").display(),
            query("file_bids", "file_results"),
        ),
    );
    run(&from_files, 2);
    // The Kafka result, read back into csv files the same way.
    let read_back = script(
        "kafka-read-back.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'batch';\n{}\
             CREATE TABLE copied ({result_columns}) WITH ('connector' = 'filesystem', \
               'path' = '{}', 'format' = 'csv');\n\
             INSERT INTO copied SELECT * FROM kafka_results;\n",
            kafka_table(
                "kafka_results",
                result_columns,
                &results,
                ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'"
            ),
            dir.join("actual").display(),
        ),
    );
    run(&read_back, 1);
    let expected = committed_rows(&dir.join("expected"));
    let actual = committed_rows(&dir.join("actual"));
    assert!(expected.len() > 1000, "only {} windows", expected.len());
    assert_eq!(actual.len(), expected.len());
    assert_eq!(actual, expected);
}

/// A bad message fails the job naming its topic, partition and offset; with
/// `'json.ignore-parse-errors'` it is skipped and counted; a missing topic and an unreachable
/// broker are named.
#[test]
fn bad_messages_missing_topics_and_unreachable_brokers_are_reported() {
    let dir = fresh_dir("kafka-bad");
    let topic = create_topic("bad", 1);
    produce(
        &topic,
        0,
        &[r#"{"n": 1}"#, r#"{"n": 2}"#, "not json", r#"{"n": 4}"#],
    );
    let bounded =
        ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'";
    let job = |name: &str, source: String| {
        script(
            name,
            &format!(
                "SET 'execution.runtime-mode' = 'batch';\n{source}\
                 CREATE TABLE out (n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', \
                   'format' = 'csv');\n\
                 INSERT INTO out SELECT n FROM numbers;\n",
                dir.join(name).display()
            ),
        )
    };
    let failing = job(
        "fails.sql",
        kafka_table("numbers", "n BIGINT", &topic, bounded),
    );
    let out = weir(&["run", &failing]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("topic '{topic}', partition 0, offset 2")),
        "{stderr}"
    );

    let skipping = job(
        "skips.sql",
        kafka_table(
            "numbers",
            "n BIGINT",
            &topic,
            &format!("{bounded}, 'json.ignore-parse-errors' = 'true'"),
        ),
    );
    let stderr = run(&skipping, 1);
    assert!(stderr.contains("skipped 1 unparsable row(s)"), "{stderr}");
    assert_eq!(committed_rows(&dir.join("skips.sql")), ["1", "2", "4"]);

    let missing = job(
        "missing.sql",
        kafka_table("numbers", "n BIGINT", "no-such-topic", bounded),
    );
    let out = weir(&["run", &missing]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("topic 'no-such-topic' does not exist"),
        "{stderr}"
    );

    let unreachable = job(
        "unreachable.sql",
        format!(
            "CREATE TABLE numbers (n BIGINT) WITH ('connector' = 'kafka', 'topic' = 't', \
               'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'json', \
               'connect.timeout' = '2 s'{bounded});\n"
        ),
    );
    let out = weir(&["run", &unreachable]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach Kafka at 127.0.0.1:1 within 2s"),
        "{stderr}"
    );
}

/// Exactly-once with Kafka as the source: a streaming job with checkpoints reads a topic (to
/// its end as it was at the start) through a Wasm function into an append-only file table and an
/// updating GROUP BY into a changelog file table. Killed with SIGKILL at random moments and
/// restarted each time, it commits exactly what an uninterrupted run commits: the checkpointed
/// offsets and the two-phase file sink between them neither lose nor repeat a message.
#[test]
fn killed_at_random_moments_a_job_reading_kafka_commits_exactly_once() {
    use std::process::{Command, Stdio};

    use super::checkpoints::kill_until_done;

    // Long enough to be killed four times on a busy machine (each restart resumes, so only
    // the time before a kill's first checkpoint is lost).
    const EVENTS: u64 = 800_000;
    let topic = create_topic("crash", 4);
    let dir = fresh_dir("kafka-crash");
    let load = script(
        "kafka-crash-load.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'batch';\n\
             CREATE TABLE gen ({BID_COLUMNS}) WITH ('connector' = 'nexmark', \
               'nexmark.table' = 'bid', 'events.num' = '{EVENTS}', 'seed' = '9');\n{}\
             INSERT INTO kafka_bids SELECT * FROM gen;\n",
            kafka_table("kafka_bids", BID_COLUMNS, &topic, "")
        ),
    );
    let loaded = run(&load, 2);
    let produced: usize = loaded
        .split_whitespace()
        .skip_while(|w| *w != "inserted")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row count in: {loaded}"));
    // What the broker holds, read apart from Weir: a shortfall here is the broker's (or the
    // loading sink's), not the job's under test.
    assert_eq!(
        read_topic(&topic).len(),
        produced,
        "the topic holds fewer messages than the load wrote"
    );
    let currency = built("currency");
    let mut sink_topics = std::collections::HashMap::new();
    let mut job = |run: &str| {
        let out = dir.join(run);
        let (copied_topic, totals_topic) = sink_topics
            .entry(run.to_string())
            .or_insert_with(|| {
                (
                    create_topic(&format!("crash-copied-{run}"), 2),
                    create_topic(&format!("crash-totals-{run}"), 2),
                )
            })
            .clone();
        script(
            &format!("kafka-crash-{run}.sql"),
            &format!(
                "SET 'execution.runtime-mode' = 'streaming';\n\
                 SET 'execution.checkpointing.interval' = '150 ms';\n\
                 SET 'pipeline.batch-size' = '500';\n\
                 CREATE FUNCTION count_char AS 'count_char' LANGUAGE WASM USING JAR '{currency}';\n\
                 {}\
                 CREATE TABLE copied (auction BIGINT, bidder BIGINT, price BIGINT, cs BIGINT) \
                 WITH ('connector' = 'filesystem', 'path' = '{out}/copied', 'format' = 'csv');\n\
                 CREATE TABLE totals (bucket BIGINT, bids BIGINT, price BIGINT) \
                 WITH ('connector' = 'filesystem', 'path' = '{out}/totals', 'format' = 'csv', \
                   'sink.changelog-mode' = 'all');\n\
                 INSERT INTO copied \
                 SELECT auction, bidder, price, count_char(extra, 'c') FROM kafka_bids;\n\
                 INSERT INTO totals \
                 SELECT auction % 7, COUNT(*), SUM(price) FROM kafka_bids GROUP BY auction % 7;\n\
                 {}\
                 CREATE TABLE kafka_totals (bucket BIGINT, bids BIGINT, price BIGINT, \
                   PRIMARY KEY (bucket) NOT ENFORCED) \
                 WITH ('connector' = 'upsert-kafka', 'topic' = '{totals_topic}', \
                   'properties.bootstrap.servers' = '{bootstrap}', 'key.format' = 'json', \
                   'value.format' = 'json');\n\
                 INSERT INTO kafka_copied \
                 SELECT auction, bidder, price, count_char(extra, 'c') FROM kafka_bids;\n\
                 INSERT INTO kafka_totals \
                 SELECT auction % 7, COUNT(*), SUM(price) FROM kafka_bids GROUP BY auction % 7;\n",
                kafka_table(
                    "kafka_bids",
                    BID_COLUMNS,
                    &topic,
                    ", 'scan.startup.mode' = 'earliest-offset', \
                     'scan.bounded.mode' = 'latest-offset'"
                ),
                kafka_table(
                    "kafka_copied",
                    "auction BIGINT, bidder BIGINT, price BIGINT, cs BIGINT",
                    &copied_topic,
                    ""
                ),
                out = out.display(),
                bootstrap = bootstrap(),
            ),
        )
    };
    let command = |script: &str, run: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args(["run", script, "-p", "2", "--state-dir"])
            .arg(dir.join(run).join("state"))
            .env("WEIR_CACHE_DIR", scratch().join("cache"))
            .stdout(Stdio::null());
        command
    };
    let results = |run: &str| {
        (
            committed_rows(&dir.join(run).join("copied")),
            apply_changelog(changelog_in_order(&dir.join(run).join("totals"))),
        )
    };

    let reference = job("reference");
    let output = command(&reference, "reference").output().expect("run");
    assert!(
        output.status.success(),
        "the uninterrupted run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = results("reference");
    assert_eq!(expected.0.len(), produced, "every bid copied once");
    assert_eq!(expected.1.len(), 7);

    let crashed = job("crashed");
    let (kills, resumed) =
        kill_until_done("kafka", || command(&crashed, "crashed"), (300, 1_500), 4);
    assert!(
        resumed >= 2,
        "only {resumed} of {kills} restarts resumed a checkpoint"
    );
    let got = results("crashed");
    assert_eq!(
        got.0.len(),
        expected.0.len(),
        "copied rows lost or repeated"
    );
    assert_eq!(got.0, expected.0, "copied rows differ");
    assert_eq!(got.1, expected.1, "totals differ");

    // The at-least-once Kafka sink: every row of the reference, each at least as often (a
    // replay after a kill may repeat rows written since the last checkpoint).
    let count = |messages: Vec<KeyAndValue>| {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for (_, value) in messages {
            *counts.entry(value.expect("a value")).or_default() += 1;
        }
        counts
    };
    let (reference_copied, reference_totals) = sink_topics["reference"].clone();
    let (crashed_copied, crashed_totals) = sink_topics["crashed"].clone();
    let expected_copies = count(read_topic(&reference_copied));
    let got_copies = count(read_topic(&crashed_copied));
    assert_eq!(expected_copies.values().sum::<usize>(), produced);
    assert_eq!(
        got_copies.keys().collect::<Vec<_>>(),
        expected_copies.keys().collect::<Vec<_>>(),
        "rows lost from the at-least-once topic"
    );
    let short: Vec<_> = expected_copies
        .iter()
        .filter(|(row, n)| got_copies[*row] < **n)
        .collect();
    assert!(short.is_empty(), "rows written too few times: {short:?}");
    eprintln!(
        "at-least-once topic: {} messages for {produced} rows",
        got_copies.values().sum::<usize>()
    );
    // The upsert-kafka sink: the last value of each key (what compaction keeps) is the same.
    let latest = |messages: Vec<KeyAndValue>| {
        let mut state = std::collections::BTreeMap::new();
        for (key, value) in messages {
            let key = key.expect("a key");
            match value {
                Some(value) => state.insert(key, value),
                None => state.remove(&key),
            };
        }
        state
    };
    let expected_totals = latest(read_topic(&reference_totals));
    assert_eq!(expected_totals.len(), 7, "{expected_totals:?}");
    assert_eq!(latest(read_topic(&crashed_totals)), expected_totals);
}

/// Every message of `topic` as (key, value) text, each partition in offset order; it reads
/// until every partition reports its end (not by the listed end offsets, which tansu gets
/// wrong).
fn read_topic(topic: &str) -> Vec<KeyAndValue> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", "weir-tests")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut list = TopicPartitionList::new();
    for &partition in &partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut by_partition: std::collections::BTreeMap<i32, Vec<KeyAndValue>> = Default::default();
    let mut ended = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    while ended.len() < partitions.len() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reading {topic} took too long"
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(message)) => {
                let text =
                    |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
                by_partition
                    .entry(message.partition())
                    .or_default()
                    .push((text(message.key()), text(message.payload())));
            }
        }
    }
    by_partition.into_values().flatten().collect()
}

/// A partition with nothing in it does not hold windows back for ever: its subtask's polls
/// come back empty, and after `'scan.watermark.idle-timeout'` downstream stops waiting for it.
#[test]
fn an_empty_partition_goes_idle_and_windows_fire() {
    use std::process::{Command, Stdio};
    use std::time::Instant;

    let topic = create_topic("idle", 2);
    let dir = fresh_dir("kafka-idle");
    let messages: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"n": {i}, "ts": "2026-01-01 00:00:{:02}.000"}}"#, i / 5))
        .collect();
    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
    // Partitions 0 and 1 go to subtasks 0 and 1: subtask 1's partition stays empty.
    produce(&topic, 0, &messages);
    let job = script(
        "kafka-idle.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'streaming';\n\
             SET 'execution.checkpointing.interval' = '200 ms';\n\
             CREATE TABLE numbers (n BIGINT, ts TIMESTAMP(3), \
               WATERMARK FOR ts AS ts - INTERVAL '0' SECOND) \
             WITH ('connector' = 'kafka', 'topic' = '{topic}', \
               'properties.bootstrap.servers' = '{}', 'format' = 'json', \
               'scan.startup.mode' = 'earliest-offset', \
               'scan.watermark.idle-timeout' = '1 s');\n\
             CREATE TABLE counts (window_start TIMESTAMP(3), n BIGINT) \
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');\n\
             INSERT INTO counts SELECT window_start, COUNT(*) \
             FROM TABLE(TUMBLE(TABLE numbers, DESCRIPTOR(ts), INTERVAL '1' SECOND)) \
             GROUP BY window_start, window_end;\n",
            bootstrap(),
            dir.join("counts").display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", &job, "-p", "2", "--state-dir"])
        .arg(dir.join("state"))
        .env("WEIR_CACHE_DIR", scratch().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weir");
    let started = Instant::now();
    let mut rows = Vec::new();
    while started.elapsed() < Duration::from_secs(60) && rows.len() < 9 {
        std::thread::sleep(Duration::from_millis(200));
        rows = committed_rows(&dir.join("counts"));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    // Windows up to 00:00:09 close (the watermark stands at the last row's time).
    assert_eq!(rows.len(), 9, "{rows:?}");
    assert_eq!(rows[0], "2026-01-01T00:00:00,5");
}

/// Watermarks are per partition: one subtask reads two partitions over the same minute, the
/// first fetched wholly before the second. With one watermark per subtask the second
/// partition's rows would all be late; with one per partition none is, and every window counts
/// both partitions' rows.
#[test]
fn each_partition_has_its_own_watermark() {
    let topic = create_topic("two-clocks", 2);
    let dir = fresh_dir("kafka-partition-watermarks");
    // 600 rows per partition, one per 100 ms of the same minute.
    let messages: Vec<String> = (0..600)
        .map(|i| {
            format!(
                r#"{{"n": {i}, "ts": "2026-01-01 00:{:02}:{:02}.{}00"}}"#,
                i / 600,
                (i / 10) % 60,
                i % 10
            )
        })
        .collect();
    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
    produce(&topic, 0, &messages);
    produce(&topic, 1, &messages);
    let job = script(
        "kafka-partition-watermarks.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'streaming';\n\
             SET 'pipeline.batch-size' = '50';\n\
             CREATE TABLE numbers (n BIGINT, ts TIMESTAMP(3), \
               WATERMARK FOR ts AS ts - INTERVAL '0' SECOND) \
             WITH ('connector' = 'kafka', 'topic' = '{topic}', \
               'properties.bootstrap.servers' = '{}', 'format' = 'json', \
               'scan.startup.mode' = 'earliest-offset', \
               'scan.bounded.mode' = 'latest-offset');\n\
             CREATE TABLE counts (window_start TIMESTAMP(3), n BIGINT) \
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');\n\
             INSERT INTO counts SELECT window_start, COUNT(*) \
             FROM TABLE(TUMBLE(TABLE numbers, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
             GROUP BY window_start, window_end;\n",
            bootstrap(),
            dir.join("counts").display()
        ),
    );
    let stderr = run(&job, 1);
    assert!(!stderr.contains("late row"), "{stderr}");
    let rows = committed_rows(&dir.join("counts"));
    let expected: Vec<String> = (0..6)
        .map(|w| format!("2026-01-01T00:00:{:02},200", w * 10))
        .collect();
    assert_eq!(rows, expected);
}

/// Metadata columns: a sink writes a `METADATA FROM 'timestamp'` column as each message's
/// timestamp and leaves VIRTUAL ones out of the INSERT and the payload; a source reads the
/// partition, offset, key, timestamp and its type of each message. Unknown keys, read-only
/// metadata in a sink and metadata on a connector without any are refused.
#[test]
fn metadata_columns_read_and_write_what_the_message_carries() {
    let dir = fresh_dir("kafka-metadata");
    let topic = create_topic("metadata", 1);
    std::fs::create_dir_all(dir.join("input")).expect("input dir");
    std::fs::write(
        dir.join("input/words.csv"),
        "1,apple,2026-01-01 00:00:01\n2,pear,2026-01-01 00:00:02\n3,fig,2026-01-01 00:00:03\n",
    )
    .expect("write input");
    let kafka = |name: &str, columns: &str| {
        kafka_table(
            name,
            columns,
            &topic,
            ", 'key.format' = 'raw', 'key.fields' = 'word', \
             'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'",
        )
    };
    let write = script(
        "metadata-write.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'batch';\n\
             CREATE TABLE words (n BIGINT, word STRING, ts TIMESTAMP(3)) WITH ( \
               'connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');\n{}\
             INSERT INTO sink SELECT n, word, ts FROM words;\n",
            dir.join("input").display(),
            kafka(
                "sink",
                "n BIGINT, word STRING, ts TIMESTAMP(3) METADATA FROM 'timestamp', \
                 `offset` BIGINT METADATA VIRTUAL"
            ),
        ),
    );
    run(&write, 1);
    let read = script(
        "metadata-read.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'batch';\n{}{}\
             CREATE TABLE copied (n BIGINT, word STRING, p INT, o BIGINT, k STRING, \
               ts TIMESTAMP(3), kind STRING) WITH ('connector' = 'filesystem', 'path' = '{}', \
               'format' = 'csv');\n\
             CREATE TABLE payloads (line STRING) WITH ('connector' = 'filesystem', \
               'path' = '{}', 'format' = 'csv');\n\
             INSERT INTO copied SELECT n, word, p, o, k, ts, kind FROM source;\n\
             INSERT INTO payloads SELECT line FROM raw_source;\n",
            kafka(
                "source",
                "p INT METADATA FROM 'partition' VIRTUAL, n BIGINT, \
                 o BIGINT METADATA FROM 'offset' VIRTUAL, word STRING, \
                 k STRING METADATA FROM 'key' VIRTUAL, ts TIMESTAMP(3) METADATA FROM 'timestamp', \
                 kind STRING METADATA FROM 'timestamp-type' VIRTUAL"
            ),
            kafka_table(
                "raw_source",
                "line STRING",
                &topic,
                ", 'format' = 'raw', 'scan.startup.mode' = 'earliest-offset', \
                 'scan.bounded.mode' = 'latest-offset'"
            )
            .replace(", 'format' = 'json'", ""),
            dir.join("copied").display(),
            dir.join("payloads").display(),
        ),
    );
    run(&read, 1);
    assert_eq!(
        committed_rows(&dir.join("copied")),
        [
            "1,apple,0,0,apple,2026-01-01T00:00:01,CreateTime",
            "2,pear,0,1,pear,2026-01-01T00:00:02,CreateTime",
            "3,fig,0,2,fig,2026-01-01T00:00:03,CreateTime",
        ]
    );
    assert_eq!(
        committed_rows(&dir.join("payloads")),
        [
            r#""{""n"":1,""word"":""apple""}""#,
            r#""{""n"":2,""word"":""pear""}""#,
            r#""{""n"":3,""word"":""fig""}""#,
        ]
    );

    let refused = |name: &str, table: String| {
        let job = script(
            name,
            &format!(
                "SET 'execution.runtime-mode' = 'batch';\n{table}\
                 CREATE TABLE words (n BIGINT, word STRING, ts TIMESTAMP(3)) WITH ( \
                   'connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');\n\
                 INSERT INTO t SELECT n, word, ts FROM words;\n",
                dir.join("input").display()
            ),
        );
        let out = weir(&["run", &job]);
        assert!(!out.status.success(), "{name} ran");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let unknown = refused(
        "unknown-key.sql",
        kafka(
            "t",
            "n BIGINT, word STRING, ts TIMESTAMP(3) METADATA FROM 'leader-epoch'",
        ),
    );
    assert!(
        unknown.contains("unknown metadata key 'leader-epoch'"),
        "{unknown}"
    );
    let read_only = refused(
        "read-only.sql",
        kafka(
            "t",
            "n BIGINT, word STRING, ts BIGINT METADATA FROM 'offset'",
        ),
    );
    assert!(
        read_only.contains("column 'ts' is read-only metadata"),
        "{read_only}"
    );
    let no_metadata = refused(
        "no-metadata.sql",
        format!(
            "CREATE TABLE t (n BIGINT, word STRING, ts TIMESTAMP(3) METADATA FROM 'timestamp') \
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');\n",
            dir.join("elsewhere").display()
        ),
    );
    assert!(
        no_metadata
            .contains("column 'ts' is METADATA, but the 'filesystem' connector has no metadata"),
        "{no_metadata}"
    );
}

/// A consumer slower than the broker is held back rather than buffering the topic: a job
/// reading 1 GiB of 64 KiB messages through a Wasm function keeps its peak memory well under
/// the topic's size (librdkafka fetches ahead a bounded amount, a poll stops at 16 MiB, and
/// the channels between operators hold a few batches each).
#[test]
fn a_slow_consumer_does_not_buffer_the_topic() {
    use std::process::{Command, Stdio};

    const MESSAGE_BYTES: usize = 64 << 10;
    const MESSAGES: usize = 16 << 10;
    let topic = create_topic("large", 1);
    let dir = fresh_dir("kafka-slow-consumer");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    let payload: String = (0..MESSAGE_BYTES)
        .map(|i| if i % 64 == 0 { 'c' } else { 'a' })
        .collect();
    for _ in 0..MESSAGES {
        let mut record = BaseRecord::<(), str>::to(&topic).payload(payload.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(20));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let currency = built("currency");
    let job = script(
        "kafka-slow-consumer.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'batch';\n\
             CREATE FUNCTION count_char AS 'count_char' LANGUAGE WASM USING JAR '{currency}';\n{}\
             CREATE TABLE counted (cs BIGINT) WITH ('connector' = 'blackhole');\n\
             INSERT INTO counted SELECT count_char(line, 'c') FROM large;\n",
            kafka_table(
                "large",
                "line STRING",
                &topic,
                ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'"
            )
            .replace("'format' = 'json'", "'format' = 'raw'"),
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", &job, "-p", "1"])
        .env("WEIR_CACHE_DIR", scratch().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    // The high-water mark of resident memory, read until the process exits.
    let status = std::path::PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut peak_kib = 0u64;
    let exit = loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(exit.success(), "{stderr}");
    let _ = dir;
    assert!(
        stderr.contains(&format!("inserted {MESSAGES} row(s)")),
        "{stderr}"
    );
    let topic_mib = (MESSAGE_BYTES * MESSAGES) >> 20;
    let peak_mib = peak_kib >> 10;
    eprintln!("slow consumer: peak RSS {peak_mib} MiB reading a {topic_mib} MiB topic");
    assert!(
        peak_mib < 512,
        "peak RSS {peak_mib} MiB reading a {topic_mib} MiB topic: the topic is being buffered"
    );
}

/// After each checkpoint completes (the final one included) the source commits its offsets to
/// the consumer group named in `'properties.group.id'`, as Flink does, for monitoring.
#[test]
fn completed_checkpoints_commit_offsets_to_the_consumer_group() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    let topic = create_topic("commits", 2);
    let dir = fresh_dir("kafka-commits");
    let messages: Vec<String> = (0..50).map(|i| format!(r#"{{"n": {i}}}"#)).collect();
    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
    produce(&topic, 0, &messages[..30]);
    produce(&topic, 1, &messages[30..]);
    let group = format!("{topic}-group");
    let job = script(
        "kafka-commits.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'streaming';\n\
             SET 'execution.checkpointing.interval' = '100 ms';\n{}\
             CREATE TABLE out (n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', \
               'format' = 'csv');\n\
             INSERT INTO out SELECT n FROM numbers;\n",
            kafka_table(
                "numbers",
                "n BIGINT",
                &topic,
                &format!(
                    ", 'properties.group.id' = '{group}', 'scan.startup.mode' = 'earliest-offset', \
                     'scan.bounded.mode' = 'latest-offset'"
                )
            ),
            dir.join("out").display()
        ),
    );
    let out = weir(&[
        "run",
        &job,
        "-p",
        "2",
        "--state-dir",
        &dir.join("state").display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(committed_rows(&dir.join("out")).len(), 50);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(&topic, 0);
    list.add_partition(&topic, 1);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    let offsets: Vec<(i32, Offset)> = committed
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    assert_eq!(offsets, [(0, Offset::Offset(30)), (1, Offset::Offset(20))]);
}

/// `'value.fields-include' = 'EXCEPT_KEY'`: the key columns live in the message key only; a
/// table so declared writes and reads them there. A message without a key cannot make a row
/// and is named.
#[test]
fn key_columns_round_trip_through_the_message_key() {
    let dir = fresh_dir("kafka-except-key");
    let topic = create_topic("except-key", 2);
    std::fs::create_dir_all(dir.join("input")).expect("input dir");
    std::fs::write(dir.join("input/rows.csv"), "1,a,10\n2,b,20\n3,c,30\n").expect("input");
    let table = |name: &str| {
        kafka_table(
            name,
            "id BIGINT, tag STRING, amount BIGINT",
            &topic,
            ", 'key.format' = 'json', 'key.fields' = 'tag;id', \
             'value.fields-include' = 'EXCEPT_KEY', 'scan.startup.mode' = 'earliest-offset', \
             'scan.bounded.mode' = 'latest-offset'",
        )
    };
    let write = script(
        "except-key-write.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'batch';\n\
             CREATE TABLE rows_in (id BIGINT, tag STRING, amount BIGINT) WITH ( \
               'connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');\n{}\
             INSERT INTO keyed SELECT * FROM rows_in;\n",
            dir.join("input").display(),
            table("keyed"),
        ),
    );
    run(&write, 1);
    let mut values: Vec<KeyAndValue> = read_topic(&topic);
    values.sort();
    assert_eq!(
        values,
        [
            (
                Some(r#"{"tag":"a","id":1}"#.into()),
                Some(r#"{"amount":10}"#.into())
            ),
            (
                Some(r#"{"tag":"b","id":2}"#.into()),
                Some(r#"{"amount":20}"#.into())
            ),
            (
                Some(r#"{"tag":"c","id":3}"#.into()),
                Some(r#"{"amount":30}"#.into())
            ),
        ]
    );
    let read = |name: &str| {
        script(
            name,
            &format!(
                "SET 'execution.runtime-mode' = 'batch';\n{}\
                 CREATE TABLE copied (amount BIGINT, id BIGINT, tag STRING) WITH ( \
                   'connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');\n\
                 INSERT INTO copied SELECT amount, id, tag FROM keyed;\n",
                table("keyed"),
                dir.join(name).display(),
            ),
        )
    };
    run(&read("read.sql"), 2);
    assert_eq!(
        committed_rows(&dir.join("read.sql")),
        ["10,1,a", "20,2,b", "30,3,c"]
    );
    // A message with no key: its key columns cannot be read.
    produce(&topic, 1, &[r#"{"amount": 40}"#]);
    let out = weir(&["run", &read("keyless.sql")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("partition 1") && stderr.contains("the message has no key"),
        "{stderr}"
    );
}

/// `'topic-pattern'` reads every topic whose whole name matches, and partition discovery finds
/// a matching topic created while the job runs (read from its start).
#[test]
fn a_topic_pattern_reads_matching_topics_and_finds_new_ones() {
    use std::process::{Command, Stdio};
    use std::time::Instant;

    let first = create_topic("pattern-a", 1);
    let prefix = first.trim_end_matches(|c: char| c.is_ascii_digit());
    let unrelated = create_topic("unrelated", 1);
    produce(&first, 0, &[r#"{"n": 1}"#, r#"{"n": 2}"#]);
    produce(&unrelated, 0, &[r#"{"n": 100}"#]);
    let dir = fresh_dir("kafka-pattern");
    // The test's own topics only: `pattern-a-<time>` now, `pattern-b-<time>` later.
    let stamp = &first[prefix.len()..];
    let pattern = format!("pattern-[ab]-{stamp}");
    let job = script(
        "kafka-pattern.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'streaming';\n\
             SET 'execution.checkpointing.interval' = '200 ms';\n\
             CREATE TABLE numbers (n BIGINT, t STRING METADATA FROM 'topic' VIRTUAL) \
             WITH ('connector' = 'kafka', 'topic-pattern' = '{pattern}', \
               'properties.bootstrap.servers' = '{}', 'format' = 'json', \
               'scan.startup.mode' = 'earliest-offset', \
               'scan.topic-partition-discovery.interval' = '300 ms');\n\
             CREATE TABLE out (n BIGINT, t STRING) WITH ('connector' = 'filesystem', \
               'path' = '{}', 'format' = 'csv');\n\
             INSERT INTO out SELECT n, t FROM numbers;\n",
            bootstrap(),
            dir.join("out").display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", &job, "-p", "1", "--state-dir"])
        .arg(dir.join("state"))
        .env("WEIR_CACHE_DIR", scratch().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weir");
    let wait_for = |count: usize| {
        let started = Instant::now();
        let mut rows = Vec::new();
        while started.elapsed() < Duration::from_secs(60) && rows.len() < count {
            std::thread::sleep(Duration::from_millis(100));
            rows = committed_rows(&dir.join("out"));
        }
        rows
    };
    let before = wait_for(2);
    // A matching topic made while the job runs.
    let second = format!("pattern-b-{stamp}");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(&second, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create topic");
    produce(&second, 0, &[r#"{"n": 3}"#]);
    let after = wait_for(3);
    child.kill().expect("kill");
    let _ = child.wait();
    assert_eq!(before, [format!("1,{first}"), format!("2,{first}")]);
    assert_eq!(
        after,
        [
            format!("1,{first}"),
            format!("2,{first}"),
            format!("3,{second}")
        ]
    );
}

/// Sends keyed messages (`None`: a tombstone) to partition `partition` of `topic`.
fn produce_keyed(topic: &str, partition: i32, messages: &[(&str, Option<&str>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer");
    for (key, value) in messages {
        let mut record = BaseRecord::<str, str>::to(topic)
            .partition(partition)
            .key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer.send(record).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Reading an `upsert-kafka` table: each message is its key's latest value, a tombstone its
/// deletion. In batch mode the job sees each key's last value; in streaming mode a changelog
/// (inserts, updates with their rows before, deletes) that an updating GROUP BY follows (one
/// message per batch, so that each change reaches the result).
#[test]
fn an_upsert_kafka_table_reads_as_each_keys_latest_value() {
    let dir = fresh_dir("kafka-upsert-source");
    let topic = create_topic("upsert-source", 2);
    let key = |k: &str| format!(r#"{{"k": "{k}"}}"#);
    let value = |k: &str, v: i64| format!(r#"{{"k": "{k}", "v": {v}}}"#);
    let (a, b, c) = (key("a"), key("b"), key("c"));
    let values = [
        value("a", 1),
        value("b", 2),
        value("a", 3),
        value("c", 5),
        value("c", 6),
    ];
    produce_keyed(
        &topic,
        0,
        &[
            (&a, Some(&values[0])),
            (&b, Some(&values[1])),
            (&a, Some(&values[2])),
            (&b, None),
        ],
    );
    produce_keyed(&topic, 1, &[(&c, Some(&values[3])), (&c, Some(&values[4]))]);
    let table = format!(
        "CREATE TABLE ups (k STRING, v BIGINT, PRIMARY KEY (k) NOT ENFORCED) \
         WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}', \
           'properties.bootstrap.servers' = '{}', 'key.format' = 'json', \
           'value.format' = 'json', 'scan.bounded.mode' = 'latest-offset');\n",
        bootstrap()
    );
    let batch = script(
        "upsert-batch.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'batch';\n{table}\
             CREATE TABLE latest (v BIGINT, k STRING) WITH ('connector' = 'filesystem', \
               'path' = '{}', 'format' = 'csv');\n\
             INSERT INTO latest SELECT v, k FROM ups;\n",
            dir.join("latest").display()
        ),
    );
    run(&batch, 2);
    let mut latest = committed_rows(&dir.join("latest"));
    latest.sort();
    assert_eq!(latest, ["3,a", "6,c"]);

    let streaming = script(
        "upsert-streaming.sql",
        &format!(
            "SET 'execution.runtime-mode' = 'streaming';\n\
             SET 'pipeline.batch-size' = '1';\n{table}\
             CREATE TABLE sizes (size STRING, n BIGINT, total BIGINT) WITH ( \
               'connector' = 'filesystem', 'path' = '{}', 'format' = 'csv', \
               'sink.changelog-mode' = 'all');\n\
             INSERT INTO sizes SELECT CASE WHEN v > 4 THEN 'big' ELSE 'small' END, COUNT(*), \
               SUM(v) FROM ups GROUP BY CASE WHEN v > 4 THEN 'big' ELSE 'small' END;\n",
            dir.join("sizes").display()
        ),
    );
    run(&streaming, 2);
    let changes = changelog_in_order(&dir.join("sizes"));
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("-U") || c.starts_with("-D")),
        "updates and deletes flow: {changes:?}"
    );
    let sizes = apply_changelog(changes);
    assert_eq!(
        sizes.into_iter().collect::<Vec<_>>(),
        [
            ("big".to_string(), "1,6".to_string()),
            ("small".to_string(), "1,3".to_string())
        ]
    );
}
