//! How a poll's messages become the rows the source returns: the payload decoded by the value
//! format, key columns by the key format (`'value.fields-include' = 'EXCEPT_KEY'`), metadata
//! columns from what each message carries, in the order the job reads the columns.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use rdkafka::Message;

use super::Config;
use super::format::{BadMessage, Format, Polled, ValueDecoder};
use super::metadata::{self, MetaKey};
use crate::connector::{ConnectorError, TableDef};

/// Where a returned column comes from.
#[derive(Debug, Clone, Copy)]
enum Output {
    /// A column of the decoded payload (an index into the decoder's columns).
    Payload(usize),
    /// A column of the decoded key (an index into the key decoder's columns).
    Key(usize),
    Meta(MetaKey),
}

/// Why a poll's messages did not become rows.
#[derive(Debug)]
pub(super) enum RowsError {
    /// One message (an index into the poll) cannot make a row.
    Message(BadMessage),
    Other(String),
}

/// A poll's rows: the batch, the messages skipped as bad (`'<format>.ignore-parse-errors'`)
/// and those that became rows, in row order (indexes into the poll).
pub(super) struct Rows {
    pub batch: RecordBatch,
    pub bad: Vec<BadMessage>,
    pub kept: Vec<usize>,
}

pub(super) struct RowBuilder {
    decoder: ValueDecoder,
    /// `EXCEPT_KEY`: decodes the key columns the job reads from the message keys.
    key_decoder: Option<ValueDecoder>,
    keys: Polled,
    /// What polled messages carry besides their payload, kept when columns need it.
    meta: Option<metadata::Polled>,
    /// The columns returned, and where each comes from.
    projected: SchemaRef,
    outputs: Vec<Output>,
    /// `upsert-kafka`: tombstones are rows too (deletes), and rows carry their kind.
    upsert: bool,
}

impl RowBuilder {
    /// For `projection` (indexes into the table's columns).
    pub(super) fn new(
        table: &TableDef,
        config: &Config,
        projection: &[usize],
        batch_size: usize,
    ) -> Result<Self, ConnectorError> {
        let projected: SchemaRef = std::sync::Arc::new(
            table
                .schema
                .project(projection)
                .map_err(|e| ConnectorError::option(table, e.to_string()))?,
        );
        let key_fields: Vec<usize> = config
            .key
            .iter()
            .flat_map(|(_, fields)| fields.iter())
            .filter_map(|f| table.schema.index_of(f).ok())
            .collect();
        // Read from the message key: `EXCEPT_KEY`'s key columns, and an upsert table's primary
        // key (a tombstone has nothing else).
        let key_columns = if config.upsert || config.value_except_key {
            key_fields.clone()
        } else {
            Vec::new()
        };
        // The payload holds the columns that are not metadata (less the key's with
        // `EXCEPT_KEY`), in order: csv reads them by position.
        let is_meta = |column: usize| config.metadata.iter().find(|m| m.column == column);
        let payload_columns: Vec<usize> = (0..table.schema.fields().len())
            .filter(|&c| {
                is_meta(c).is_none() && !(config.value_except_key && key_fields.contains(&c))
            })
            .collect();
        let mut outputs = Vec::with_capacity(projection.len());
        let mut payload_projection = Vec::new();
        let mut key_projection = Vec::new();
        for &column in projection {
            if let Some(meta) = is_meta(column) {
                outputs.push(Output::Meta(meta.key));
            } else if let Some(at) = key_columns.iter().position(|&c| c == column) {
                outputs.push(Output::Key(key_projection.len()));
                key_projection.push(at);
            } else {
                outputs.push(Output::Payload(payload_projection.len()));
                payload_projection.push(
                    payload_columns
                        .iter()
                        .position(|&c| c == column)
                        .unwrap_or(0),
                );
            }
        }
        let decoder = part_decoder(
            table,
            &payload_columns,
            &payload_projection,
            &config.value,
            batch_size,
        )?;
        let key_decoder = match &config.key {
            Some((format, _)) if !key_projection.is_empty() => Some(part_decoder(
                table,
                &key_columns,
                &key_projection,
                format,
                batch_size,
            )?),
            _ => None,
        };
        let reads_more = config.upsert || outputs.iter().any(|o| !matches!(o, Output::Payload(_)));
        // An upsert table's rows carry their kind, and a tombstone's columns besides the key
        // are null whatever their declared nullability.
        let projected = if config.upsert {
            let fields: Vec<arrow::datatypes::Field> = projected
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            crate::runtime::changelog::with_row_kinds(&std::sync::Arc::new(
                arrow::datatypes::Schema::new(fields),
            ))
        } else {
            projected
        };
        Ok(Self {
            decoder,
            key_decoder,
            keys: Polled::default(),
            meta: reads_more.then(metadata::Polled::default),
            projected,
            outputs,
            upsert: config.upsert,
        })
    }

    /// A new poll begins.
    pub(super) fn clear(&mut self) {
        if let Some(meta) = &mut self.meta {
            meta.clear();
        }
    }

    /// Keeps what a polled message carries besides its payload, if columns need it; called for
    /// each message pushed to the poll, in order.
    pub(super) fn observe<M: Message>(&mut self, message: &M) {
        if let Some(meta) = &mut self.meta {
            meta.push(message);
        }
    }

    /// The rows of `polled`; `skip_bad`: a message whose payload does not decode is left out
    /// (and reported) instead of failing.
    pub(super) fn build(
        &mut self,
        polled: &Polled,
        topics: &[String],
        skip_bad: bool,
    ) -> Result<Rows, RowsError> {
        let (payload, bad) = self
            .decoder
            .decode(polled, skip_bad)
            .map_err(RowsError::Message)?;
        let with_value = polled.kept(&bad);
        if self.meta.is_none() {
            return Ok(Rows {
                batch: payload,
                bad,
                kept: with_value,
            });
        }
        if payload.num_rows() != with_value.len() {
            return Err(RowsError::Other(format!(
                "{} messages decoded into {} rows",
                with_value.len(),
                payload.num_rows()
            )));
        }
        // An upsert table's tombstones are rows too: the payload's columns null there.
        let (payload, kept) = if self.upsert {
            let kept: Vec<usize> = {
                let mut bad = bad.iter().map(|b| b.index).peekable();
                (0..polled.len())
                    .filter(|&i| {
                        let is_bad = bad.peek() == Some(&i);
                        if is_bad {
                            bad.next();
                        }
                        !is_bad
                    })
                    .collect()
            };
            let mut next = 0u32;
            let take: arrow::array::UInt32Array = kept
                .iter()
                .map(|&i| {
                    polled.payloads[i].map(|_| {
                        next += 1;
                        next - 1
                    })
                })
                .collect();
            let columns = payload
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c, &take, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RowsError::Other(e.to_string()))?;
            let options =
                arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(kept.len()));
            let nullable: Vec<arrow::datatypes::Field> = payload
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            let payload = RecordBatch::try_new_with_options(
                std::sync::Arc::new(arrow::datatypes::Schema::new(nullable)),
                columns,
                &options,
            )
            .map_err(|e| RowsError::Other(e.to_string()))?;
            (payload, kept)
        } else {
            (payload, with_value)
        };
        let keys = self.decode_keys(polled, &kept)?;
        let Some(meta) = &self.meta else {
            return Err(RowsError::Other("no message metadata".into()));
        };
        let mut columns = Vec::with_capacity(self.outputs.len());
        for (output, field) in self.outputs.iter().zip(self.projected.fields()) {
            columns.push(match *output {
                Output::Payload(index) => payload.column(index).clone(),
                Output::Key(index) => match &keys {
                    Some(keys) => keys.column(index).clone(),
                    None => return Err(RowsError::Other("no key decoder".into())),
                },
                Output::Meta(key) => meta
                    .column(key, field.data_type(), &polled.origins, topics, &kept)
                    .map_err(RowsError::Other)?,
            });
        }
        if self.upsert {
            use crate::runtime::changelog::{RowKind, row_kind_column};
            columns.push(row_kind_column(kept.iter().map(|&i| {
                if polled.payloads[i].is_some() {
                    RowKind::UpdateAfter
                } else {
                    RowKind::Delete
                }
            })));
        }
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(kept.len()));
        let batch = RecordBatch::try_new_with_options(self.projected.clone(), columns, &options)
            .map_err(|e| RowsError::Other(e.to_string()))?;
        Ok(Rows { batch, bad, kept })
    }

    /// The key columns of the messages `kept`; a key that is missing or does not decode fails
    /// the poll, naming the message: its row cannot be built.
    fn decode_keys(
        &mut self,
        polled: &Polled,
        kept: &[usize],
    ) -> Result<Option<RecordBatch>, RowsError> {
        let (Some(decoder), Some(meta)) = (self.key_decoder.as_mut(), self.meta.as_ref()) else {
            return Ok(None);
        };
        self.keys.clear();
        for &index in kept {
            let key = meta.key(index);
            if key.is_none() {
                return Err(RowsError::Message(BadMessage {
                    index,
                    reason: "the message has no key".into(),
                }));
            }
            self.keys
                .push(key, polled.origins[index], polled.splits[index] as usize);
        }
        match decoder.decode(&self.keys, false) {
            Ok((batch, _)) => Ok(Some(batch)),
            Err(bad) => Err(RowsError::Message(BadMessage {
                index: kept.get(bad.index).copied().unwrap_or(0),
                reason: format!("its key: {}", bad.reason),
            })),
        }
    }
}

/// A decoder for part of the table's columns (`columns`, as a table of their own: the payload's
/// or the key's), returning `projection` of them (indexes into `columns`).
fn part_decoder(
    table: &TableDef,
    columns: &[usize],
    projection: &[usize],
    format: &Format,
    batch_size: usize,
) -> Result<ValueDecoder, ConnectorError> {
    let part = TableDef {
        schema: std::sync::Arc::new(
            table
                .schema
                .project(columns)
                .map_err(|e| ConnectorError::option(table, e.to_string()))?,
        ),
        metadata: Vec::new(),
        ..table.clone()
    };
    let projected: SchemaRef = std::sync::Arc::new(
        part.schema
            .project(projection)
            .map_err(|e| ConnectorError::option(table, e.to_string()))?,
    );
    ValueDecoder::new(&part, format, projection, projected, batch_size)
}
