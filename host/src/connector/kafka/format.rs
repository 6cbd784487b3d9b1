//! Message formats: a poll's messages decoded into one batch, and a batch encoded into one
//! payload per row, each in bulk.
//!
//! json and csv reuse the filesystem connector's decoders: a poll's payloads are joined into
//! lines and decoded in one call. Only when that fails are the messages decoded one at a time,
//! to name the bad one by topic, partition and offset (or to skip and count it).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, LargeStringArray, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::connector::filesystem::csv::CsvLines;
use crate::connector::filesystem::json::JsonLines;
use crate::connector::filesystem::lines::LineDecoder;
use crate::connector::filesystem::{CsvOptions, parse_delimiter};
use crate::connector::{ConnectorError, TableDef};

/// A message format (`'format'`, `'value.format'`, `'key.format'`).
#[derive(Debug, Clone)]
pub(super) enum Format {
    Json,
    Csv(CsvOptions),
    /// The whole payload as one STRING or BYTES column.
    Raw,
}

impl Format {
    pub(super) fn parse(
        table: &TableDef,
        name: &str,
        csv_prefix: &str,
    ) -> Result<Self, ConnectorError> {
        match name {
            "json" => Ok(Format::Json),
            "raw" => Ok(Format::Raw),
            "csv" => {
                let mut csv = CsvOptions {
                    delimiter: b',',
                    header: false,
                    null_literal: None,
                };
                if !csv_prefix.is_empty() {
                    if let Some(value) = table.options.get("csv.field-delimiter") {
                        csv.delimiter = parse_delimiter(table, value)?;
                    }
                    csv.null_literal = table.options.get("csv.null-literal").cloned();
                }
                Ok(Format::Csv(csv))
            }
            other => Err(ConnectorError::option(
                table,
                format!("unknown format '{other}' (known: json, csv, raw)"),
            )),
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv(_) => "csv",
            Format::Raw => "raw",
        }
    }
}

/// The payloads of one poll, copied out of librdkafka's buffers, with where each came from.
#[derive(Debug, Default)]
pub(super) struct Polled {
    pub bytes: Vec<u8>,
    /// Each message's payload in `bytes`; `None`: no payload (a tombstone).
    pub payloads: Vec<Option<(usize, usize)>>,
    /// Each message's topic (an index into the reader's topics), partition and offset.
    pub origins: Vec<(usize, i32, i64)>,
    /// Each message's split (an index into the reader's splits).
    pub splits: Vec<u32>,
}

impl Polled {
    pub fn push(&mut self, payload: Option<&[u8]>, origin: (usize, i32, i64), split: usize) {
        self.payloads.push(payload.map(|p| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(p);
            (start, self.bytes.len())
        }));
        self.origins.push(origin);
        self.splits.push(u32::try_from(split).unwrap_or(u32::MAX));
    }

    /// The messages that became rows, in row order: those with a payload, less `bad` (in
    /// poll order, as `decode` reports them).
    pub fn kept(&self, bad: &[BadMessage]) -> Vec<usize> {
        let mut bad = bad.iter().map(|b| b.index).peekable();
        (0..self.len())
            .filter(|&i| {
                if bad.peek() == Some(&i) {
                    bad.next();
                    return false;
                }
                self.payloads[i].is_some()
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.payloads.clear();
        self.origins.clear();
        self.splits.clear();
    }

    fn payload(&self, index: usize) -> Option<&[u8]> {
        self.payloads[index].map(|(start, end)| &self.bytes[start..end])
    }
}

/// A message that could not be decoded: which (an index into the poll) and why.
#[derive(Debug)]
pub(super) struct BadMessage {
    pub index: usize,
    pub reason: String,
}

/// Decodes polled values into batches of the projected columns.
pub(super) struct ValueDecoder {
    projected: SchemaRef,
    lines: Option<Box<dyn LineDecoder>>,
    /// json: line breaks inside a payload are whitespace between tokens, so they become
    /// spaces; a csv record must be one line.
    json: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for ValueDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueDecoder")
            .field("projected", &self.projected)
            .finish_non_exhaustive()
    }
}

impl ValueDecoder {
    pub(super) fn new(
        table: &TableDef,
        format: &Format,
        projection: &[usize],
        projected: SchemaRef,
        batch_size: usize,
    ) -> Result<Self, ConnectorError> {
        let lines: Option<Box<dyn LineDecoder>> = match format {
            Format::Json => Some(Box::new(JsonLines::new(
                table,
                projected.clone(),
                batch_size,
            )?)),
            Format::Csv(options) => Some(Box::new(CsvLines::new(
                table,
                options,
                projection,
                projected.clone(),
                batch_size,
            )?)),
            Format::Raw => {
                let fields = table.schema.fields();
                let readable = fields.len() == 1
                    && matches!(
                        fields[0].data_type(),
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary
                    );
                if !readable {
                    return Err(ConnectorError::option(
                        table,
                        "the raw format reads the whole message into one column: declare \
                         exactly one STRING or BYTES column",
                    ));
                }
                None
            }
        };
        Ok(Self {
            projected,
            lines,
            json: matches!(format, Format::Json),
            buf: Vec::new(),
        })
    }

    /// Decodes every message of `polled` with a payload; `skip_bad`: a bad message is left
    /// out and reported in the second value instead of failing the call.
    pub(super) fn decode(
        &mut self,
        polled: &Polled,
        skip_bad: bool,
    ) -> Result<(RecordBatch, Vec<BadMessage>), BadMessage> {
        if self.lines.is_none() {
            return self.decode_raw(polled, skip_bad);
        }
        let present: Vec<usize> = (0..polled.len())
            .filter(|&i| polled.payloads[i].is_some())
            .collect();
        self.buf.clear();
        for &index in &present {
            self.append_line(polled.payload(index).unwrap_or_default());
        }
        let mut out = Vec::new();
        let Some(lines) = self.lines.as_mut() else {
            return Err(BadMessage {
                index: 0,
                reason: "no decoder".into(),
            });
        };
        if lines.decode(&self.buf, &mut out).is_ok() {
            return Ok((self.concat(out)?, Vec::new()));
        }
        // One at a time, to find the bad ones.
        let _ = lines.reset();
        out.clear();
        let mut bad = Vec::new();
        for &index in &present {
            self.buf.clear();
            let payload = polled.payload(index).unwrap_or_default();
            self.append_line(payload);
            let Some(lines) = self.lines.as_mut() else {
                break;
            };
            let before = out.len();
            if let Err(error) = lines.decode(&self.buf, &mut out) {
                let _ = lines.reset();
                out.truncate(before);
                let line = self.buf.clone();
                let reason = self
                    .lines
                    .as_ref()
                    .map_or(error.clone(), |l| l.explain(&line, error));
                let bad_message = BadMessage { index, reason };
                if !skip_bad {
                    return Err(bad_message);
                }
                bad.push(bad_message);
            }
        }
        Ok((self.concat(out)?, bad))
    }

    fn append_line(&mut self, payload: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(payload);
        if self.json {
            let breaks: Vec<usize> =
                memchr::memchr2_iter(b'\n', b'\r', &self.buf[start..]).collect();
            for at in breaks {
                self.buf[start + at] = b' ';
            }
        }
        self.buf.push(b'\n');
    }

    /// One batch: the decoders flush at the batch size and a poll takes no more, so there is
    /// usually exactly one, handed on without a copy.
    fn concat(&self, mut batches: Vec<RecordBatch>) -> Result<RecordBatch, BadMessage> {
        if batches.len() == 1
            && let Some(batch) = batches.pop()
        {
            return Ok(batch);
        }
        arrow::compute::concat_batches(&self.projected, &batches).map_err(|e| BadMessage {
            index: 0,
            reason: e.to_string(),
        })
    }

    /// One row per message with a payload (a tombstone is no row, as with json and csv).
    fn decode_raw(
        &self,
        polled: &Polled,
        skip_bad: bool,
    ) -> Result<(RecordBatch, Vec<BadMessage>), BadMessage> {
        let mut bad = Vec::new();
        let present: Vec<usize> = (0..polled.len())
            .filter(|&i| polled.payloads[i].is_some())
            .collect();
        let column: ArrayRef = match self.projected.fields().first().map(|f| f.data_type()) {
            // A projection that reads no column still needs one row per message.
            None => {
                let options = arrow::record_batch::RecordBatchOptions::new()
                    .with_row_count(Some(present.len()));
                return RecordBatch::try_new_with_options(self.projected.clone(), vec![], &options)
                    .map(|b| (b, bad))
                    .map_err(|e| BadMessage {
                        index: 0,
                        reason: e.to_string(),
                    });
            }
            Some(DataType::Binary) => Arc::new(BinaryArray::from_iter(
                present.iter().map(|&i| polled.payload(i)),
            )),
            Some(data_type) => {
                let mut texts = Vec::with_capacity(present.len());
                for &index in &present {
                    match polled.payload(index).map(std::str::from_utf8) {
                        None => texts.push(None),
                        Some(Ok(text)) => texts.push(Some(text)),
                        Some(Err(e)) => {
                            let message = BadMessage {
                                index,
                                reason: format!("not UTF-8 text: {e}"),
                            };
                            if !skip_bad {
                                return Err(message);
                            }
                            bad.push(message);
                        }
                    }
                }
                if *data_type == DataType::LargeUtf8 {
                    Arc::new(LargeStringArray::from(texts))
                } else {
                    Arc::new(StringArray::from(texts))
                }
            }
        };
        RecordBatch::try_new(self.projected.clone(), vec![column])
            .map(|b| (b, bad))
            .map_err(|e| BadMessage {
                index: 0,
                reason: e.to_string(),
            })
    }
}

/// Each row of a batch encoded as one payload: `bytes[start..end]` of `spans[row]`; `None`: a
/// null payload.
#[derive(Debug, Default)]
pub(super) struct Encoded {
    pub bytes: Vec<u8>,
    pub spans: Vec<Option<(usize, usize)>>,
}

impl Encoded {
    pub fn payload(&self, row: usize) -> Option<&[u8]> {
        self.spans
            .get(row)
            .copied()
            .flatten()
            .map(|(start, end)| &self.bytes[start..end])
    }
}

/// Encodes every row of `batch` (whose columns carry the names to write).
pub(super) fn encode(format: &Format, batch: &RecordBatch) -> Result<Encoded, String> {
    let mut encoded = Encoded::default();
    match format {
        Format::Raw => {
            if batch.num_columns() != 1 {
                return Err("the raw format writes exactly one STRING or BYTES column".into());
            }
            let column = batch.column(0);
            let value = |row: usize| -> Result<Option<&[u8]>, String> {
                if column.is_null(row) {
                    return Ok(None);
                }
                if let Some(a) = column.as_any().downcast_ref::<StringArray>() {
                    Ok(Some(a.value(row).as_bytes()))
                } else if let Some(a) = column.as_any().downcast_ref::<LargeStringArray>() {
                    Ok(Some(a.value(row).as_bytes()))
                } else if let Some(a) = column.as_any().downcast_ref::<BinaryArray>() {
                    Ok(Some(a.value(row)))
                } else {
                    Err(format!(
                        "the raw format writes a STRING or BYTES column, not {}",
                        column.data_type()
                    ))
                }
            };
            for row in 0..batch.num_rows() {
                match value(row)? {
                    None => encoded.spans.push(None),
                    Some(bytes) => {
                        let start = encoded.bytes.len();
                        encoded.bytes.extend_from_slice(bytes);
                        encoded.spans.push(Some((start, encoded.bytes.len())));
                    }
                }
            }
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut encoded.bytes);
            writer.write(batch).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            drop(writer);
            split_lines(&mut encoded, batch.num_rows())?;
        }
        Format::Csv(options) => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(false)
                .with_delimiter(options.delimiter)
                .build(&mut encoded.bytes);
            writer.write(batch).map_err(|e| e.to_string())?;
            drop(writer);
            split_lines(&mut encoded, batch.num_rows())?;
        }
    }
    Ok(encoded)
}

/// One payload per line (json escapes line breaks inside strings; a csv field with one is
/// refused, as the file sink does).
fn split_lines(encoded: &mut Encoded, rows: usize) -> Result<(), String> {
    let mut start = 0;
    for (index, byte) in encoded.bytes.iter().enumerate() {
        if *byte == b'\n' {
            encoded.spans.push(Some((start, index)));
            start = index + 1;
        }
    }
    if encoded.spans.len() != rows {
        return Err(format!(
            "{rows} rows were encoded as {} lines: a csv field holds a line break (use json)",
            encoded.spans.len()
        ));
    }
    Ok(())
}
