//! Metadata columns (`offset BIGINT METADATA VIRTUAL`, `ts TIMESTAMP(3) METADATA FROM
//! 'timestamp'`): what a kafka table reads of each message besides its payload, with Flink's
//! keys, and the one a sink writes (the timestamp).

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, Int32Array, Int64Array, StringArray};
use arrow::array::{TimestampMillisecondArray, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use rdkafka::Message;
use rdkafka::message::Timestamp;

use crate::connector::{ConnectorError, TableDef};

const KNOWN_KEYS: &str = "topic, partition, offset, timestamp, timestamp-type, key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MetaKey {
    Topic,
    Partition,
    Offset,
    /// The message's timestamp (create or log-append time); the only one a sink writes.
    Timestamp,
    /// `NoTimestampType`, `CreateTime` or `LogAppendTime`.
    TimestampType,
    /// The message key's bytes as they are (Weir's; Flink reads keys with `'key.format'`).
    Key,
}

impl MetaKey {
    fn parse(key: &str) -> Option<Self> {
        Some(match key {
            "topic" => MetaKey::Topic,
            "partition" => MetaKey::Partition,
            "offset" => MetaKey::Offset,
            "timestamp" => MetaKey::Timestamp,
            "timestamp-type" => MetaKey::TimestampType,
            "key" => MetaKey::Key,
            _ => return None,
        })
    }

    /// The type the value comes in; the declared column's type must be reachable by a cast.
    fn natural_type(self) -> DataType {
        match self {
            MetaKey::Topic | MetaKey::TimestampType => DataType::Utf8,
            MetaKey::Partition => DataType::Int32,
            MetaKey::Offset => DataType::Int64,
            MetaKey::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            MetaKey::Key => DataType::Binary,
        }
    }
}

/// A metadata column of the table.
#[derive(Debug, Clone)]
pub(super) struct Meta {
    /// Its index in the table's columns.
    pub column: usize,
    pub key: MetaKey,
    pub is_virtual: bool,
}

/// The table's metadata columns, checked: known keys, and types their values cast to.
pub(super) fn parse(table: &TableDef) -> Result<Vec<Meta>, ConnectorError> {
    let mut metas = Vec::with_capacity(table.metadata.len());
    for declared in &table.metadata {
        let Some(key) = MetaKey::parse(&declared.key) else {
            return Err(ConnectorError::option(
                table,
                format!(
                    "column '{}': unknown metadata key '{}' (known: {KNOWN_KEYS})",
                    declared.column, declared.key
                ),
            ));
        };
        let column = table.schema.index_of(&declared.column).map_err(|_| {
            ConnectorError::option(table, format!("no column '{}'", declared.column))
        })?;
        let data_type = table.schema.field(column).data_type();
        let text = matches!(data_type, DataType::Utf8 | DataType::LargeUtf8);
        let castable = match key {
            MetaKey::Topic | MetaKey::TimestampType => text,
            MetaKey::Partition | MetaKey::Offset => data_type.is_integer(),
            MetaKey::Timestamp => matches!(data_type, DataType::Timestamp(..)),
            MetaKey::Key => text || matches!(data_type, DataType::Binary | DataType::LargeBinary),
        };
        if !castable {
            return Err(ConnectorError::option(
                table,
                format!(
                    "column '{}': metadata '{}' is {}, which does not fit {data_type}",
                    declared.column,
                    declared.key,
                    key.natural_type()
                ),
            ));
        }
        metas.push(Meta {
            column,
            key,
            is_virtual: declared.is_virtual,
        });
    }
    Ok(metas)
}

/// What a poll keeps of each message for the metadata columns (topic, partition and offset are
/// in every poll's origins).
#[derive(Debug, Default)]
pub(super) struct Polled {
    timestamps: Vec<Option<i64>>,
    kinds: Vec<&'static str>,
    key_bytes: Vec<u8>,
    keys: Vec<Option<(usize, usize)>>,
}

impl Polled {
    pub fn push<M: Message>(&mut self, message: &M) {
        let (millis, kind) = match message.timestamp() {
            Timestamp::NotAvailable => (None, "NoTimestampType"),
            Timestamp::CreateTime(t) => (Some(t), "CreateTime"),
            Timestamp::LogAppendTime(t) => (Some(t), "LogAppendTime"),
        };
        self.timestamps.push(millis);
        self.kinds.push(kind);
        self.keys.push(message.key().map(|key| {
            let start = self.key_bytes.len();
            self.key_bytes.extend_from_slice(key);
            (start, self.key_bytes.len())
        }));
    }

    /// The key of message `index` of the poll.
    pub fn key(&self, index: usize) -> Option<&[u8]> {
        self.keys
            .get(index)
            .copied()
            .flatten()
            .map(|(start, end)| &self.key_bytes[start..end])
    }

    pub fn clear(&mut self) {
        self.timestamps.clear();
        self.kinds.clear();
        self.key_bytes.clear();
        self.keys.clear();
    }

    /// The column of `key` for the messages `kept` (indexes into the poll), as `data_type`.
    pub fn column(
        &self,
        key: MetaKey,
        data_type: &DataType,
        origins: &[(usize, i32, i64)],
        topics: &[String],
        kept: &[usize],
    ) -> Result<ArrayRef, String> {
        let natural: ArrayRef = match key {
            MetaKey::Topic => Arc::new(StringArray::from_iter_values(
                kept.iter()
                    .map(|&i| topics.get(origins[i].0).map_or("", String::as_str)),
            )),
            MetaKey::Partition => Arc::new(Int32Array::from_iter_values(
                kept.iter().map(|&i| origins[i].1),
            )),
            MetaKey::Offset => Arc::new(Int64Array::from_iter_values(
                kept.iter().map(|&i| origins[i].2),
            )),
            MetaKey::Timestamp if self.timestamps.is_empty() => {
                new_null_array(&key.natural_type(), kept.len())
            }
            MetaKey::Timestamp => Arc::new(TimestampMillisecondArray::from_iter(
                kept.iter().map(|&i| self.timestamps[i]),
            )),
            MetaKey::TimestampType => Arc::new(StringArray::from_iter_values(
                kept.iter().map(|&i| self.kinds[i]),
            )),
            MetaKey::Key => {
                Arc::new(BinaryArray::from_iter(kept.iter().map(|&i| {
                    self.keys[i].map(|(start, end)| &self.key_bytes[start..end])
                })))
            }
        };
        if natural.data_type() == data_type {
            return Ok(natural);
        }
        cast(&natural, data_type).map_err(|e| format!("metadata '{key:?}' as {data_type}: {e}"))
    }
}
