//! The kafka sink, at least once: each batch is encoded in one pass and handed to librdkafka's
//! idempotent producer, which batches and retries; at a checkpoint's barrier (and at the end)
//! the sink waits until every message is acknowledged, so a completed checkpoint never covers
//! a lost one. After a failure the job replays from the checkpoint: messages since it may be
//! written twice, never lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use super::format::{Format, encode};
use super::metadata::MetaKey;
use super::{Config, Delivery};
use crate::connector::{ConnectorError, SinkWriter, Subtask, TableDef};

/// A batch's data columns, and which rows are deletes (for an upsert sink).
type Changes = (Vec<arrow::array::ArrayRef>, Option<Vec<bool>>);

/// How long a barrier waits for the broker to acknowledge what was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// Collects delivery failures, reported by librdkafka on the thread that polls.
#[derive(Debug, Default, Clone)]
struct Deliveries {
    failed: Arc<Mutex<Option<(u64, String)>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, _)) = result
            && let Ok(mut failed) = self.failed.lock()
        {
            let entry = failed.get_or_insert_with(|| (0, error.to_string()));
            entry.0 += 1;
        }
    }
}

pub(super) struct KafkaWriter {
    config: Config,
    topic: String,
    producer: BaseProducer<Deliveries>,
    deliveries: Deliveries,
    schema: arrow::datatypes::SchemaRef,
    /// Indexes of the key columns, and of the columns the value holds.
    key_columns: Vec<usize>,
    value_columns: Vec<usize>,
    /// A writable `METADATA FROM 'timestamp'` column: each message's timestamp.
    timestamp_column: Option<usize>,
}

impl std::fmt::Debug for KafkaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaWriter")
            .field("table", &self.config.table)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaWriter {
    pub(super) fn open(
        table: &TableDef,
        config: Config,
        _subtask: Subtask,
    ) -> Result<Self, ConnectorError> {
        if config.topic_pattern.is_some() {
            return Err(ConnectorError::option(
                table,
                "a kafka sink writes to one topic: give it in 'topic', not 'topic-pattern'",
            ));
        }
        let [topic] = config.topics.as_slice() else {
            return Err(ConnectorError::option(
                table,
                "a kafka sink writes to one topic: give one name in 'topic'",
            ));
        };
        let topic = topic.clone();
        let deliveries = Deliveries::default();
        let acks = if config.delivery == Delivery::None {
            "1"
        } else {
            "all"
        };
        let idempotent = if config.delivery == Delivery::None {
            "false"
        } else {
            "true"
        };
        let producer: BaseProducer<Deliveries> = config
            .client_config(&[
                ("enable.idempotence", idempotent),
                ("acks", acks),
                ("linger.ms", "5"),
                // Keys go to the partition Java clients (and so Flink) choose for them.
                ("partitioner", "murmur2_random"),
            ])
            .create_with_context(deliveries.clone())
            .map_err(|e| config.error(format!("cannot create a Kafka producer: {e}")))?;
        let index_of = |name: &str| {
            table
                .schema
                .index_of(name)
                .map_err(|_| ConnectorError::option(table, format!("no column '{name}'")))
        };
        let key_columns: Vec<usize> = match &config.key {
            Some((_, fields)) => fields
                .iter()
                .map(|f| index_of(f))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        // Metadata columns are not in the payload; of them only the timestamp is written.
        if let Some(read_only) = config
            .metadata
            .iter()
            .find(|m| !m.is_virtual && m.key != MetaKey::Timestamp)
        {
            return Err(ConnectorError::option(
                table,
                format!(
                    "column '{}' is read-only metadata ({:?}): declare it VIRTUAL to write to                      this table",
                    table.schema.field(read_only.column).name(),
                    read_only.key
                ),
            ));
        }
        let timestamp_column = config
            .metadata
            .iter()
            .find(|m| !m.is_virtual && m.key == MetaKey::Timestamp)
            .map(|m| m.column);
        let value_columns: Vec<usize> = (0..table.schema.fields().len())
            .filter(|i| !(config.value_except_key && key_columns.contains(i)))
            .filter(|i| !config.metadata.iter().any(|m| m.column == *i))
            .collect();
        let writer = KafkaWriter {
            topic,
            producer,
            deliveries,
            schema: table.schema.clone(),
            key_columns,
            value_columns,
            timestamp_column,
            config,
        };
        writer.check_topic()?;
        Ok(writer)
    }

    /// The topic must exist: a sink does not create topics (their partitions and retention are
    /// the operator's choice), and writing to a missing one would only fail at the first flush.
    fn check_topic(&self) -> Result<(), ConnectorError> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), self.config.connect_timeout)
            .map_err(|e| {
                self.config.error(format!(
                    "cannot reach Kafka at {} within {:?} ('connect.timeout'): {e}",
                    self.config.bootstrap(),
                    self.config.connect_timeout
                ))
            })?;
        let exists = metadata
            .topics()
            .iter()
            .any(|t| t.name() == self.topic && t.error().is_none() && !t.partitions().is_empty());
        if !exists {
            return Err(self.config.error(format!(
                "topic '{}' does not exist on Kafka at {}",
                self.topic,
                self.config.bootstrap()
            )));
        }
        Ok(())
    }

    fn encode_columns(
        &self,
        format: &Format,
        batch: &RecordBatch,
        columns: &[usize],
    ) -> Result<super::format::Encoded, ConnectorError> {
        let projected = batch
            .project(columns)
            .map_err(|e| self.config.error(e.to_string()))?;
        encode(format, &projected).map_err(|e| self.config.error(format!("cannot encode: {e}")))
    }

    /// The data columns of `batch`, and for an upsert sink which rows are deletes. A changelog
    /// batch (an `op` column first) written as upserts leaves out the rows before an update: the
    /// row after replaces it under the same key.
    fn changes(&self, batch: &RecordBatch) -> Result<Changes, ConnectorError> {
        let is_changelog = batch.num_columns() == self.schema.fields().len() + 1
            && batch.schema().field(0).name() == crate::runtime::changelog::OP_FIELD;
        if !is_changelog {
            return Ok((batch.columns().to_vec(), None));
        }
        let ops = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .ok_or_else(|| {
                self.config
                    .error("a changelog batch's op column is not text")
            })?;
        if !self.config.upsert {
            return Err(self.config.error(
                "a kafka table takes appended rows only: write an updating result to an \
                 'upsert-kafka' table",
            ));
        }
        let keep: arrow::array::BooleanArray =
            ops.iter().map(|op| Some(op != Some("-U"))).collect();
        let kept = arrow::compute::filter_record_batch(batch, &keep)
            .map_err(|e| self.config.error(e.to_string()))?;
        let deletes = kept
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .map(|ops| ops.iter().map(|op| op == Some("-D")).collect())
            .unwrap_or_default();
        Ok((kept.columns()[1..].to_vec(), Some(deletes)))
    }

    /// Fails with the first delivery error librdkafka reported.
    fn check_deliveries(&self) -> Result<(), ConnectorError> {
        let failed = self.deliveries.failed.lock().ok().and_then(|f| f.clone());
        match failed {
            None => Ok(()),
            Some((count, first)) => Err(self.config.error(format!(
                "{count} message(s) could not be delivered to topic '{}': {first}",
                self.topic
            ))),
        }
    }

    fn flush(&self) -> Result<(), ConnectorError> {
        self.producer.flush(FLUSH_TIMEOUT).map_err(|e| {
            self.config.error(format!(
                "Kafka at {} did not acknowledge the messages sent to '{}' within \
                 {FLUSH_TIMEOUT:?}: {e}",
                self.config.bootstrap(),
                self.topic
            ))
        })?;
        self.check_deliveries()
    }
}

impl SinkWriter for KafkaWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let (columns, deletes) = self.changes(batch)?;
        // Encoded with the declared names (the json keys), whatever the job's.
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| {
            self.config
                .error(format!("a batch does not fit the table's columns: {e}"))
        })?;
        let values = self.encode_columns(&self.config.value, &batch, &self.value_columns)?;
        let keys = match &self.config.key {
            Some((format, _)) => Some(self.encode_columns(format, &batch, &self.key_columns)?),
            None => None,
        };
        let timestamps = match self.timestamp_column {
            Some(column) => {
                Some(millis_of(batch.column(column)).map_err(|e| self.config.error(e))?)
            }
            None => None,
        };
        for row in 0..batch.num_rows() {
            let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic);
            if let Some(millis) = timestamps
                .as_ref()
                .and_then(|t| t.get(row).copied().flatten())
            {
                record = record.timestamp(millis);
            }
            // A delete is the key with no value: a tombstone, which compaction honours.
            let deleted = deletes.as_ref().is_some_and(|d| d[row]);
            if let Some(value) = values.payload(row).filter(|_| !deleted) {
                record = record.payload(value);
            }
            if let Some(key) = keys.as_ref().and_then(|k| k.payload(row)) {
                record = record.key(key);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    // librdkafka's queue is full: serve acknowledgements, then try again.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((error, _)) => {
                        return Err(self
                            .config
                            .error(format!("cannot send to topic '{}': {error}", self.topic)));
                    }
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        self.flush()
    }

    fn pre_commit(
        &mut self,
        _checkpoint: u64,
    ) -> Result<Option<serde_json::Value>, ConnectorError> {
        self.flush()?;
        Ok(None)
    }
}

/// A timestamp column's values in milliseconds since the epoch.
fn millis_of(column: &arrow::array::ArrayRef) -> Result<Vec<Option<i64>>, String> {
    let millis = arrow::compute::cast(
        column,
        &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
    )
    .map_err(|e| format!("the timestamp column: {e}"))?;
    let millis = millis
        .as_any()
        .downcast_ref::<arrow::array::TimestampMillisecondArray>()
        .ok_or("the timestamp column is not a TIMESTAMP")?;
    Ok(millis.iter().collect())
}
