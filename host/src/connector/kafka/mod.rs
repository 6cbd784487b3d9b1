//! The `kafka` connector, with Flink's option names: a source whose splits are the topics'
//! partitions and whose checkpointed position is the next offset of each, and an at-least-once
//! sink; and `upsert-kafka`, a sink of updating results keyed by the primary key (a tombstone
//! for a delete), which a replay after a failure overwrites rather than repeats, and a source
//! whose messages are each key's latest value (normalized into a changelog by the runtime).
//!
//! The client is librdkafka (the `rdkafka` crate, built from its bundled source): it is the
//! client every other stream processor without a JVM uses (Arroyo among them), it speaks every
//! part of the protocol a full connector needs (consumer-group offsets, idempotent and
//! transactional producers, compression), and its mock cluster serves unit tests. The pure-Rust
//! `rskafka` builds faster but has no consumer-group offset calls and no transactions.
//!
//! Readers and writers are blocking, like every connector's: librdkafka's own threads do the
//! network I/O, and a reader's `poll` waits at most a short while, so that checkpoint barriers
//! are never held back by a quiet topic.

mod format;
mod metadata;
mod rows;
mod sink;
mod source;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

use super::{ConnectorError, SinkWriter, SourceReader, SourceRequest, Subtask, TableDef};
use format::Format;

const KNOWN_OPTIONS: &[&str] = &[
    "topic",
    "topic-pattern",
    "format",
    "value.format",
    "key.format",
    "key.fields",
    "value.fields-include",
    "json.ignore-parse-errors",
    "csv.ignore-parse-errors",
    "csv.field-delimiter",
    "csv.null-literal",
    "scan.startup.mode",
    "scan.startup.specific-offsets",
    "scan.startup.timestamp-millis",
    "scan.bounded.mode",
    "scan.bounded.specific-offsets",
    "scan.bounded.timestamp-millis",
    "scan.topic-partition-discovery.interval",
    "scan.poll-timeout",
    "sink.delivery-guarantee",
    "sink.partitioner",
    "connect.timeout",
];

/// `upsert-kafka` takes Flink's options for it: the key is the primary key, and both formats
/// are named.
const UPSERT_KNOWN_OPTIONS: &[&str] = &[
    "topic",
    "key.format",
    "value.format",
    "value.fields-include",
    "json.ignore-parse-errors",
    "csv.ignore-parse-errors",
    "csv.field-delimiter",
    "csv.null-literal",
    "sink.delivery-guarantee",
    "connect.timeout",
    "scan.bounded.mode",
    "scan.bounded.specific-offsets",
    "scan.bounded.timestamp-millis",
    "scan.topic-partition-discovery.interval",
    "scan.poll-timeout",
];

/// Where reading starts in a partition that no checkpoint has a position for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Startup {
    Earliest,
    Latest,
    /// The consumer group's committed offsets; `properties.auto.offset.reset` (Kafka's default:
    /// latest) where the group has none.
    GroupOffsets,
    Timestamp(i64),
    /// By partition; partitions not listed start at the earliest offset.
    Specific(BTreeMap<i32, i64>),
}

/// Where reading ends: never (a streaming source), or at offsets fixed when the job starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bounded {
    Unbounded,
    /// The end of each partition as it is when the reader opens.
    Latest,
    Timestamp(i64),
    Specific(BTreeMap<i32, i64>),
}

/// `'sink.delivery-guarantee'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    AtLeastOnce,
    None,
}

/// The checked options of a kafka table.
#[derive(Debug, Clone)]
struct Config {
    table: String,
    /// The topics read (or written): those named, or those found so far that match
    /// `topic_pattern`.
    topics: Vec<String>,
    /// `'topic-pattern'`: every topic whose whole name matches, found again at each discovery.
    topic_pattern: Option<regex::Regex>,
    /// `properties.*` as librdkafka settings (bootstrap.servers among them).
    properties: BTreeMap<String, String>,
    group_id: Option<String>,
    value: Format,
    key: Option<(Format, Vec<String>)>,
    /// `'value.fields-include' = 'EXCEPT_KEY'`: the key columns are in the key only.
    value_except_key: bool,
    ignore_parse_errors: bool,
    startup: Startup,
    bounded: Bounded,
    discovery_interval: Option<Duration>,
    poll_timeout: Duration,
    connect_timeout: Duration,
    delivery: Delivery,
    /// The table's metadata columns.
    metadata: Vec<metadata::Meta>,
    /// `upsert-kafka`: a changelog written as upserts and tombstones by key.
    upsert: bool,
}

impl Config {
    /// `upsert`: an `upsert-kafka` table.
    fn parse(table: &TableDef, upsert: bool) -> Result<Self, ConnectorError> {
        let options = &table.options;
        // `properties.*` go to librdkafka, which names any it does not know.
        let own = TableDef {
            options: options
                .iter()
                .filter(|(key, _)| !key.starts_with("properties."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..table.clone()
        };
        super::check_known_options(
            &own,
            if upsert {
                UPSERT_KNOWN_OPTIONS
            } else {
                KNOWN_OPTIONS
            },
        )?;
        let option = |message: String| ConnectorError::option(table, message);
        if upsert && table.primary_key.is_empty() {
            return Err(option(
                "an 'upsert-kafka' table writes each change keyed by its primary key: declare                  PRIMARY KEY (...) NOT ENFORCED"
                    .into(),
            ));
        }
        if upsert && !(options.contains_key("key.format") && options.contains_key("value.format")) {
            return Err(option(
                "an 'upsert-kafka' table needs 'key.format' and 'value.format' (json, csv or raw)"
                    .into(),
            ));
        }
        let topics: Vec<String> = options
            .get("topic")
            .map(|t| {
                t.split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        // As Java's `Pattern.matches`: the whole name.
        let topic_pattern = match options.get("topic-pattern") {
            None => None,
            Some(_) if !topics.is_empty() => {
                return Err(option("give 'topic' or 'topic-pattern', not both".into()));
            }
            Some(pattern) => Some(regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                option(format!(
                    "option 'topic-pattern' is not a regular expression: {e}"
                ))
            })?),
        };
        if topics.is_empty() && topic_pattern.is_none() {
            return Err(option("missing option 'topic' (or 'topic-pattern')".into()));
        }
        let properties: BTreeMap<String, String> = options
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("properties.")?.to_string(), v.clone())))
            .collect();
        if !properties.contains_key("bootstrap.servers") {
            return Err(option(
                "missing option 'properties.bootstrap.servers' (the brokers, host:port,...)".into(),
            ));
        }
        let group_id = properties.get("group.id").cloned();
        let value_name = options
            .get("value.format")
            .or_else(|| options.get("format"))
            .ok_or_else(|| option("missing option 'format' (json, csv or raw)".into()))?;
        let value = Format::parse(table, value_name, "csv.")?;
        let key_fields = if upsert {
            Some(table.primary_key.join(";"))
        } else {
            options.get("key.fields").cloned()
        };
        let key = match (options.get("key.format"), key_fields.as_ref()) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(option(
                    "option 'key.format' needs 'key.fields' (the key's columns, 'a;b')".into(),
                ));
            }
            (format, Some(fields)) => {
                let format = Format::parse(table, format.map_or("json", String::as_str), "")?;
                let fields: Vec<String> = fields.split(';').map(|f| f.trim().to_string()).collect();
                for field in &fields {
                    if table.schema.field_with_name(field).is_err() {
                        return Err(option(format!("key field '{field}' is not a column")));
                    }
                    if table.metadata.iter().any(|m| m.column == *field) {
                        return Err(option(format!(
                            "key field '{field}' is a METADATA column, not part of the key"
                        )));
                    }
                }
                Some((format, fields))
            }
        };
        let value_except_key = match options.get("value.fields-include").map(String::as_str) {
            None | Some("ALL") => false,
            Some("EXCEPT_KEY") if key.is_some() => true,
            Some("EXCEPT_KEY") => {
                return Err(option(
                    "'value.fields-include' = 'EXCEPT_KEY' needs 'key.fields'".into(),
                ));
            }
            Some(other) => {
                return Err(option(format!(
                    "option 'value.fields-include' is 'ALL' or 'EXCEPT_KEY', not '{other}'"
                )));
            }
        };
        let ignore_key = format!("{}.ignore-parse-errors", value.name());
        let ignore_parse_errors = match options.get(&ignore_key) {
            Some(v) => super::filesystem::parse_bool(table, &ignore_key, v)?,
            None => false,
        };
        let startup = match options.get("scan.startup.mode").map(String::as_str) {
            // A key's latest value may be anywhere in the topic.
            _ if upsert => Startup::Earliest,
            None | Some("group-offsets") => Startup::GroupOffsets,
            Some("earliest-offset") => Startup::Earliest,
            Some("latest-offset") => Startup::Latest,
            Some("timestamp") => {
                Startup::Timestamp(millis(table, "scan.startup.timestamp-millis")?)
            }
            Some("specific-offsets") => {
                Startup::Specific(offsets(table, "scan.startup.specific-offsets")?)
            }
            Some(other) => {
                return Err(option(format!(
                    "option 'scan.startup.mode' is earliest-offset, latest-offset, \
                     group-offsets, timestamp or specific-offsets, not '{other}'"
                )));
            }
        };
        if startup == Startup::GroupOffsets
            && group_id.is_none()
            && options.contains_key("scan.startup.mode")
        {
            return Err(option(
                "'scan.startup.mode' = 'group-offsets' needs 'properties.group.id'".into(),
            ));
        }
        let bounded = match options.get("scan.bounded.mode").map(String::as_str) {
            None | Some("unbounded") => Bounded::Unbounded,
            Some("latest-offset") => Bounded::Latest,
            Some("timestamp") => {
                Bounded::Timestamp(millis(table, "scan.bounded.timestamp-millis")?)
            }
            Some("specific-offsets") => {
                Bounded::Specific(offsets(table, "scan.bounded.specific-offsets")?)
            }
            Some(other) => {
                return Err(option(format!(
                    "option 'scan.bounded.mode' is unbounded, latest-offset, timestamp or \
                     specific-offsets, not '{other}'"
                )));
            }
        };
        let duration_option = |key: &str, default: Option<Duration>| match options.get(key) {
            None => Ok(default),
            Some(value) => super::duration(value).map(Some).ok_or_else(|| {
                option(format!(
                    "option '{key}' must be a duration such as '5 s', not '{value}'"
                ))
            }),
        };
        // Flink discovers new partitions every 5 minutes by default; '0' turns it off.
        let discovery_interval = duration_option(
            "scan.topic-partition-discovery.interval",
            Some(Duration::from_secs(300)),
        )?
        .filter(|d| !d.is_zero());
        let poll_timeout = duration_option("scan.poll-timeout", Some(Duration::from_millis(100)))?
            .unwrap_or(Duration::from_millis(100));
        let connect_timeout = duration_option("connect.timeout", Some(Duration::from_secs(30)))?
            .unwrap_or(Duration::from_secs(30));
        let delivery = match options.get("sink.delivery-guarantee").map(String::as_str) {
            None | Some("at-least-once") => Delivery::AtLeastOnce,
            Some("none") => Delivery::None,
            // A transaction pre-committed at a checkpoint must be committed after a restart
            // if the checkpoint completed; librdkafka cannot resume another producer's
            // transaction (Flink's KafkaSink reaches into the Java producer to do it), and a new
            // producer with the same transactional id aborts it. Refusing is honest.
            Some("exactly-once") => {
                return Err(option(
                    "'sink.delivery-guarantee' = 'exactly-once' is refused: a Kafka \
                     transaction prepared at a checkpoint cannot be resumed and committed after a \
                     restart with librdkafka, so a failure at the wrong moment would lose it. \
                     For an exactly-once result write to an 'upsert-kafka' table keyed by a \
                     primary key (a replay overwrites), or use 'at-least-once'"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(option(format!(
                    "option 'sink.delivery-guarantee' is at-least-once, exactly-once or none, \
                     not '{other}'"
                )));
            }
        };
        if let Some(partitioner) = options.get("sink.partitioner")
            && partitioner != "default"
        {
            return Err(option(format!(
                "option 'sink.partitioner' is 'default' (by key, else spread), not '{partitioner}'"
            )));
        }
        let metadata = metadata::parse(table)?;
        Ok(Config {
            upsert,
            metadata,
            table: table.name.clone(),
            topics,
            topic_pattern,
            properties,
            group_id,
            value,
            key,
            value_except_key,
            ignore_parse_errors,
            startup,
            bounded,
            discovery_interval,
            poll_timeout,
            connect_timeout,
            delivery,
        })
    }

    /// librdkafka's settings: the user's `properties.*` over ours.
    fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    fn error(&self, message: impl Into<String>) -> ConnectorError {
        ConnectorError::Other {
            table: self.table.clone(),
            message: message.into(),
        }
    }

    fn bootstrap(&self) -> &str {
        self.properties
            .get("bootstrap.servers")
            .map_or("", String::as_str)
    }
}

fn millis(table: &TableDef, key: &str) -> Result<i64, ConnectorError> {
    let value = table
        .options
        .get(key)
        .ok_or_else(|| ConnectorError::option(table, format!("missing option '{key}'")))?;
    value.trim().parse().map_err(|_| {
        ConnectorError::option(
            table,
            format!("option '{key}' must be milliseconds since the epoch, not '{value}'"),
        )
    })
}

/// `'partition:0,offset:42;partition:1,offset:300'`.
fn offsets(table: &TableDef, key: &str) -> Result<BTreeMap<i32, i64>, ConnectorError> {
    let value = table
        .options
        .get(key)
        .ok_or_else(|| ConnectorError::option(table, format!("missing option '{key}'")))?;
    let bad = || {
        ConnectorError::option(
            table,
            format!(
                "option '{key}' must look like 'partition:0,offset:42;partition:1,offset:300', \
                 not '{value}'"
            ),
        )
    };
    let mut offsets = BTreeMap::new();
    for entry in value.split(';').filter(|e| !e.trim().is_empty()) {
        let (partition, offset) = entry.split_once(',').ok_or_else(bad)?;
        let partition = partition
            .trim()
            .strip_prefix("partition:")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(bad)?;
        let offset = offset
            .trim()
            .strip_prefix("offset:")
            .and_then(|o| o.trim().parse().ok())
            .ok_or_else(bad)?;
        offsets.insert(partition, offset);
    }
    Ok(offsets)
}

pub(crate) fn validate(table: &TableDef) -> Result<(), ConnectorError> {
    Config::parse(table, false).map(drop)
}

pub(crate) fn validate_upsert(table: &TableDef) -> Result<(), ConnectorError> {
    Config::parse(table, true).map(drop)
}

/// Whether reading ends (`'scan.bounded.mode'`).
pub(crate) fn is_bounded(table: &TableDef) -> bool {
    table
        .options
        .get("scan.bounded.mode")
        .is_some_and(|mode| mode != "unbounded")
}

pub(crate) fn open_source(
    table: &TableDef,
    request: &SourceRequest,
) -> Result<Box<dyn SourceReader>, ConnectorError> {
    let config = Config::parse(table, false)?;
    Ok(Box::new(source::KafkaReader::open(table, config, request)?))
}

pub(crate) fn open_sink(
    table: &TableDef,
    subtask: Subtask,
) -> Result<Box<dyn SinkWriter>, ConnectorError> {
    let config = Config::parse(table, false)?;
    Ok(Box::new(sink::KafkaWriter::open(table, config, subtask)?))
}

/// An `upsert-kafka` table read from the start: each message the latest value of its key
/// (rows marked `+U`), a tombstone its deletion (`-D`, only the key columns set).
pub(crate) fn open_upsert_source(
    table: &TableDef,
    request: &SourceRequest,
) -> Result<Box<dyn SourceReader>, ConnectorError> {
    let config = Config::parse(table, true)?;
    Ok(Box::new(source::KafkaReader::open(table, config, request)?))
}

pub(crate) fn open_upsert_sink(
    table: &TableDef,
    subtask: Subtask,
) -> Result<Box<dyn SinkWriter>, ConnectorError> {
    let config = Config::parse(table, true)?;
    Ok(Box::new(sink::KafkaWriter::open(table, config, subtask)?))
}

/// Creates `topics` (name, partitions) on the cluster at `bootstrap`, for tools and
/// benchmarks: the connector itself never creates topics.
///
/// # Errors
/// The cluster cannot be reached, or refuses a topic (one that exists already among them).
pub async fn create_topics(bootstrap: &str, topics: &[(String, i32)]) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|e| format!("cannot create topics on Kafka at {bootstrap}: {e}"))?;
    for result in results {
        result.map_err(|(topic, e)| format!("cannot create topic '{topic}': {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::connector::MetadataColumn;

    fn table(connector: &str, options: &[(&str, &str)], primary_key: &[&str]) -> TableDef {
        let mut all: Vec<(String, String)> = vec![
            ("connector".into(), connector.into()),
            ("topic".into(), "t".into()),
            (
                "properties.bootstrap.servers".into(),
                "localhost:9092".into(),
            ),
        ];
        all.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        TableDef {
            name: "k".into(),
            schema: Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("n", DataType::Int64, true),
                Field::new(
                    "ts",
                    DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                    true,
                ),
            ])),
            options: all.into_iter().collect(),
            primary_key: primary_key.iter().map(|k| k.to_string()).collect(),
            metadata: Vec::new(),
        }
    }

    fn refusal(table: &TableDef, upsert: bool) -> String {
        match Config::parse(table, upsert) {
            Ok(_) => panic!("accepted: {:?}", table.options),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn upsert_kafka_keys_by_the_primary_key_and_names_both_formats() {
        let formats = [("key.format", "json"), ("value.format", "json")];
        let config = Config::parse(&table("upsert-kafka", &formats, &["id"]), true)
            .expect("an upsert table");
        let (_, key_fields) = config.key.expect("a key");
        assert_eq!(key_fields, ["id"]);
        assert!(config.upsert);
        assert!(
            refusal(&table("upsert-kafka", &formats, &[]), true).contains("PRIMARY KEY"),
            "no primary key"
        );
        assert!(
            refusal(
                &table("upsert-kafka", &[("value.format", "json")], &["id"]),
                true
            )
            .contains("'key.format' and 'value.format'")
        );
        let with_fields = [
            ("key.format", "json"),
            ("value.format", "json"),
            ("key.fields", "n"),
        ];
        assert!(
            refusal(&table("upsert-kafka", &with_fields, &["id"]), true)
                .contains("unknown option 'key.fields'")
        );
    }

    #[test]
    fn metadata_keys_and_types_are_checked() {
        let mut t = table("kafka", &[("format", "json")], &[]);
        let column = |column: &str, key: &str| MetadataColumn {
            column: column.into(),
            key: key.into(),
            is_virtual: true,
        };
        t.metadata = vec![column("n", "offset"), column("ts", "timestamp")];
        let config = Config::parse(&t, false).expect("offset and timestamp");
        assert_eq!(config.metadata.len(), 2);
        t.metadata = vec![column("n", "headers")];
        assert!(refusal(&t, false).contains("unknown metadata key 'headers'"));
        t.metadata = vec![column("n", "timestamp")];
        assert!(refusal(&t, false).contains("does not fit Int64"));
        t.metadata = vec![column("ts", "offset")];
        assert!(refusal(&t, false).contains("metadata 'offset' is Int64"));
        t.metadata = vec![column("id", "partition")];
        t.options.insert("key.fields".into(), "id".into());
        assert!(refusal(&t, false).contains("key field 'id' is a METADATA column"));
    }
}
