//! The quick path for json lines of flat objects: one pass over each line, every value appended
//! straight into its column.
//!
//! Arrow's decoder tokenizes a block into a tape, then builds each column from the tape: two
//! passes and two copies of every string. Most json lines are flat objects of numbers, strings,
//! booleans and timestamps, which one pass can decode. This decoder takes exactly those: a block
//! holding anything else (a nested value, a number in quotes, a value that does not fit its column,
//! a missing non-null column, a duplicate key, bad UTF-8, anything malformed) is refused as a whole
//! and goes to Arrow's decoder, which reads what it can and explains what it cannot. So the quick
//! path never changes what a file means, only how fast the common case is read.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, BooleanBufferBuilder, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, StringArray,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::lines::newlines;
use super::timestamp::{in_unit, naive_utc, timestamp_array, units_per_second};

/// The block is not for this decoder (Arrow's decoder takes it).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refused;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int {
        min: i64,
        max: i64,
    },
    Float64,
    Float32,
    Boolean,
    Utf8,
    /// Units per second of the column's unit.
    Timestamp {
        per_second: i64,
    },
}

/// One column being built.
#[derive(Debug)]
struct Column {
    name: Box<[u8]>,
    kind: Kind,
    nullable: bool,
    valid: BooleanBufferBuilder,
    /// Integers, timestamps, and floats as their bits.
    numbers: Vec<i64>,
    /// Strings: bytes and end offsets.
    bytes: Vec<u8>,
    offsets: Vec<i32>,
}

/// Decodes blocks of json lines of flat objects into batches of `schema`.
#[derive(Debug)]
pub(super) struct FlatDecoder {
    schema: SchemaRef,
    columns: Vec<Column>,
    rows: usize,
    batch_size: usize,
    /// Unescaped string bytes.
    scratch: Vec<u8>,
}

impl FlatDecoder {
    /// `None` when a column's type is not one this decoder builds.
    pub(super) fn new(schema: &SchemaRef, batch_size: usize) -> Option<Self> {
        if schema.fields().len() > 64 {
            return None;
        }
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let kind = match field.data_type() {
                DataType::Int8 => Kind::Int {
                    min: i8::MIN.into(),
                    max: i8::MAX.into(),
                },
                DataType::Int16 => Kind::Int {
                    min: i16::MIN.into(),
                    max: i16::MAX.into(),
                },
                DataType::Int32 => Kind::Int {
                    min: i32::MIN.into(),
                    max: i32::MAX.into(),
                },
                DataType::Int64 => Kind::Int {
                    min: i64::MIN,
                    max: i64::MAX,
                },
                DataType::Float64 => Kind::Float64,
                DataType::Float32 => Kind::Float32,
                DataType::Boolean => Kind::Boolean,
                DataType::Utf8 => Kind::Utf8,
                DataType::Timestamp(unit, zone)
                    if zone
                        .as_deref()
                        .is_none_or(|z| matches!(z, "UTC" | "+00:00")) =>
                {
                    Kind::Timestamp {
                        per_second: units_per_second(*unit),
                    }
                }
                _ => return None,
            };
            if columns
                .iter()
                .any(|c: &Column| *c.name == *field.name().as_bytes())
            {
                return None;
            }
            columns.push(Column {
                name: field.name().as_bytes().into(),
                kind,
                nullable: field.is_nullable(),
                valid: BooleanBufferBuilder::new(batch_size),
                numbers: Vec::new(),
                bytes: Vec::new(),
                offsets: vec![0],
            });
        }
        Some(Self {
            schema: schema.clone(),
            columns,
            rows: 0,
            batch_size: batch_size.max(1),
            scratch: Vec::new(),
        })
    }

    /// Decodes every line of `lines` (whole lines), appending batches to `out`; on `Refused` the
    /// caller drops what was appended, and the decoder holds nothing.
    pub(super) fn decode(
        &mut self,
        lines: &[u8],
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), Refused> {
        let result = self.decode_lines(lines, out);
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn decode_lines(&mut self, lines: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), Refused> {
        let mut start = 0;
        for newline in newlines(lines) {
            let line = &lines[start..newline];
            start = newline + 1;
            if self.line(line)? {
                self.rows += 1;
                if self.rows >= self.batch_size {
                    out.push(self.flush()?);
                }
            }
        }
        if start < lines.len() {
            return Err(Refused);
        }
        if self.rows > 0 {
            out.push(self.flush()?);
        }
        Ok(())
    }

    fn clear(&mut self) {
        for column in &mut self.columns {
            column.valid = BooleanBufferBuilder::new(self.batch_size);
            column.numbers.clear();
            column.bytes.clear();
            column.offsets.truncate(1);
        }
        self.rows = 0;
    }

    /// One line: `true` if it held an object (a row), `false` if blank.
    fn line(&mut self, line: &[u8]) -> Result<bool, Refused> {
        let mut p = Cursor {
            bytes: line,
            pos: 0,
        };
        p.skip_blanks();
        if p.at_end() {
            return Ok(false);
        }
        p.expect(b'{')?;
        let mut seen = 0u64;
        p.skip_blanks();
        if p.peek() == Some(b'}') {
            p.pos += 1;
        } else {
            loop {
                p.expect(b'"')?;
                let key = p.plain_string()?;
                p.skip_blanks();
                p.expect(b':')?;
                p.skip_blanks();
                match self.columns.iter().position(|c| *c.name == *key) {
                    Some(index) => {
                        let bit = 1u64 << index;
                        if seen & bit != 0 {
                            return Err(Refused);
                        }
                        seen |= bit;
                        self.value(index, &mut p)?;
                    }
                    None => p.skip_scalar()?,
                }
                p.skip_blanks();
                match p.next() {
                    Some(b',') => p.skip_blanks(),
                    Some(b'}') => break,
                    _ => return Err(Refused),
                }
            }
        }
        p.skip_blanks();
        if !p.at_end() {
            return Err(Refused);
        }
        for (index, column) in self.columns.iter_mut().enumerate() {
            if seen & (1u64 << index) == 0 {
                if !column.nullable {
                    return Err(Refused);
                }
                column.push_null();
            }
        }
        Ok(true)
    }

    /// The value at `p` into column `index`.
    fn value(&mut self, index: usize, p: &mut Cursor<'_>) -> Result<(), Refused> {
        let column = &mut self.columns[index];
        if p.literal(b"null") {
            if !column.nullable {
                return Err(Refused);
            }
            column.push_null();
            return Ok(());
        }
        match column.kind {
            Kind::Int { min, max } => {
                let value = p.integer()?;
                if value < min || value > max {
                    return Err(Refused);
                }
                column.push_number(value);
            }
            Kind::Float64 => {
                let value: f64 = parse_number(p.number()?)?;
                column.push_number(value.to_bits() as i64);
            }
            Kind::Float32 => {
                let value: f32 = parse_number(p.number()?)?;
                column.push_number(i64::from(value.to_bits()));
            }
            Kind::Boolean => {
                let value = if p.literal(b"true") {
                    true
                } else if p.literal(b"false") {
                    false
                } else {
                    return Err(Refused);
                };
                column.push_number(i64::from(value));
            }
            Kind::Utf8 => {
                p.expect(b'"')?;
                let text = p.string(&mut self.scratch)?;
                column.bytes.extend_from_slice(text);
                let end = i32::try_from(column.bytes.len()).map_err(|_| Refused)?;
                column.offsets.push(end);
                column.valid.append(true);
            }
            Kind::Timestamp { per_second } => {
                p.expect(b'"')?;
                let text = p.plain_string()?;
                let (seconds, nanos) = naive_utc(text).ok_or(Refused)?;
                let value = in_unit(seconds, nanos, per_second).ok_or(Refused)?;
                column.push_number(value);
            }
        }
        Ok(())
    }

    /// The rows so far as a batch.
    fn flush(&mut self) -> Result<RecordBatch, Refused> {
        let rows = std::mem::take(&mut self.rows);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (column, field) in self.columns.iter_mut().zip(self.schema.fields()) {
            let mut valid = std::mem::replace(&mut column.valid, BooleanBufferBuilder::new(rows));
            let nulls = Some(NullBuffer::new(valid.finish())).filter(|n| n.null_count() > 0);
            let numbers = std::mem::take(&mut column.numbers);
            let array: ArrayRef = match column.kind {
                Kind::Int { .. } => match field.data_type() {
                    DataType::Int8 => Arc::new(Int8Array::new(
                        numbers.iter().map(|&v| v as i8).collect(),
                        nulls,
                    )),
                    DataType::Int16 => Arc::new(Int16Array::new(
                        numbers.iter().map(|&v| v as i16).collect(),
                        nulls,
                    )),
                    DataType::Int32 => Arc::new(Int32Array::new(
                        numbers.iter().map(|&v| v as i32).collect(),
                        nulls,
                    )),
                    _ => Arc::new(Int64Array::new(numbers.into(), nulls)),
                },
                Kind::Float64 => Arc::new(Float64Array::new(
                    numbers.iter().map(|&v| f64::from_bits(v as u64)).collect(),
                    nulls,
                )),
                Kind::Float32 => Arc::new(Float32Array::new(
                    numbers.iter().map(|&v| f32::from_bits(v as u32)).collect(),
                    nulls,
                )),
                Kind::Boolean => Arc::new(BooleanArray::new(
                    numbers.iter().map(|&v| v != 0).collect(),
                    nulls,
                )),
                Kind::Timestamp { .. } => {
                    timestamp_array(field.data_type(), numbers, nulls).map_err(|_| Refused)?
                }
                Kind::Utf8 => {
                    let offsets = std::mem::replace(&mut column.offsets, vec![0]);
                    let bytes = std::mem::take(&mut column.bytes);
                    // Checks the UTF-8 of every string at once.
                    Arc::new(
                        StringArray::try_new(
                            OffsetBuffer::new(ScalarBuffer::from(offsets)),
                            Buffer::from_vec(bytes),
                            nulls,
                        )
                        .map_err(|_| Refused)?,
                    )
                }
            };
            arrays.push(array);
        }
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|_| Refused)
    }
}

impl Column {
    fn push_null(&mut self) {
        self.valid.append(false);
        match self.kind {
            Kind::Utf8 => self.offsets.push(self.offsets.last().copied().unwrap_or(0)),
            _ => self.numbers.push(0),
        }
    }

    fn push_number(&mut self, value: i64) {
        self.valid.append(true);
        self.numbers.push(value);
    }
}

fn parse_number<T: std::str::FromStr>(text: &[u8]) -> Result<T, Refused> {
    std::str::from_utf8(text)
        .map_err(|_| Refused)?
        .parse()
        .map_err(|_| Refused)
}

/// A position in one line.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, byte: u8) -> Result<(), Refused> {
        if self.next() == Some(byte) {
            Ok(())
        } else {
            Err(Refused)
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes `word` if it is next, as a whole word.
    fn literal(&mut self, word: &[u8]) -> bool {
        let rest = &self.bytes[self.pos..];
        let whole = rest.starts_with(word)
            && !rest
                .get(word.len())
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if whole {
            self.pos += word.len();
        }
        whole
    }

    /// The rest of a string after its opening quote, without escapes (keys, timestamps).
    fn plain_string(&mut self) -> Result<&'a [u8], Refused> {
        let rest = &self.bytes[self.pos..];
        match memchr::memchr2(b'"', b'\\', rest) {
            Some(end) if rest[end] == b'"' => {
                self.pos += end + 1;
                Ok(&rest[..end])
            }
            _ => Err(Refused),
        }
    }

    /// The rest of a string after its opening quote, unescaped (into `scratch` if it must be).
    fn string<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Result<&'s [u8], Refused>
    where
        'a: 's,
    {
        let rest = &self.bytes[self.pos..];
        let Some(end) = memchr::memchr2(b'"', b'\\', rest) else {
            return Err(Refused);
        };
        if rest[end] == b'"' {
            self.pos += end + 1;
            return Ok(&rest[..end]);
        }
        scratch.clear();
        scratch.extend_from_slice(&rest[..end]);
        self.pos += end;
        loop {
            match self.next() {
                Some(b'"') => return Ok(scratch.as_slice()),
                Some(b'\\') => self.escape(scratch)?,
                Some(_) => {
                    // Copy up to the next quote or backslash in one go.
                    let from = self.pos - 1;
                    let rest = &self.bytes[from..];
                    let run = memchr::memchr2(b'"', b'\\', rest).ok_or(Refused)?;
                    scratch.extend_from_slice(&rest[..run]);
                    self.pos = from + run;
                }
                None => return Err(Refused),
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Refused> {
        let byte = match self.next().ok_or(Refused)? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let mut code = u32::from(self.hex4()?);
                if (0xd800..0xdc00).contains(&code) {
                    // A high surrogate must be followed by its low half.
                    if !(self.literal_bytes(b"\\u")) {
                        return Err(Refused);
                    }
                    let low = u32::from(self.hex4()?);
                    if !(0xdc00..0xe000).contains(&low) {
                        return Err(Refused);
                    }
                    code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                }
                let c = char::from_u32(code).ok_or(Refused)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                return Ok(());
            }
            _ => return Err(Refused),
        };
        out.push(byte);
        Ok(())
    }

    fn literal_bytes(&mut self, bytes: &[u8]) -> bool {
        let found = self.bytes[self.pos..].starts_with(bytes);
        if found {
            self.pos += bytes.len();
        }
        found
    }

    fn hex4(&mut self) -> Result<u16, Refused> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(Refused)?;
        let text = std::str::from_utf8(digits).map_err(|_| Refused)?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refused);
        }
        self.pos += 4;
        u16::from_str_radix(text, 16).map_err(|_| Refused)
    }

    /// A JSON number's text (validated by whoever parses it).
    fn number(&mut self) -> Result<&'a [u8], Refused> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.pos += 1;
        }
        let text = &self.bytes[start..self.pos];
        // JSON has no leading `+`, `.`, or leading zeros, which Rust's parser would take.
        match text {
            [] | [b'+' | b'.', ..] | [b'-', b'+' | b'-' | b'.', ..] => Err(Refused),
            [b'0', b'0'..=b'9', ..] | [b'-', b'0', b'0'..=b'9', ..] => Err(Refused),
            _ if text.last().is_some_and(|b| !b.is_ascii_digit()) => Err(Refused),
            _ => Ok(text),
        }
    }

    /// A JSON integer (no fraction or exponent) that fits an i64.
    fn integer(&mut self) -> Result<i64, Refused> {
        let text = self.number()?;
        let (negative, digits) = match text {
            [b'-', rest @ ..] => (true, rest),
            _ => (false, text),
        };
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Refused);
        }
        let magnitude = digits
            .iter()
            .try_fold(0i128, |v, &d| Some(v * 10 + i128::from(d - b'0')))
            .ok_or(Refused)?;
        let value = if negative { -magnitude } else { magnitude };
        i64::try_from(value).map_err(|_| Refused)
    }

    /// Skips a scalar value of an undeclared key (a nested one is refused: Arrow checks those).
    fn skip_scalar(&mut self) -> Result<(), Refused> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let mut sink = Vec::new();
                self.string(&mut sink).map(drop)
            }
            Some(b'-' | b'0'..=b'9') => {
                let text = self.number()?;
                parse_number::<f64>(text).map(drop)
            }
            _ if self.literal(b"true") || self.literal(b"false") || self.literal(b"null") => Ok(()),
            _ => Err(Refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use arrow::util::pretty::pretty_format_batches;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("small", DataType::Int16, true),
            Field::new("price", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]))
    }

    /// What Arrow's decoder makes of the same lines, timestamps through our parser as in
    /// the json format.
    fn arrow_decode(lines: &str) -> String {
        let schema = schema();
        let mut decoder = arrow::json::ReaderBuilder::new(schema)
            .with_coerce_primitive(true)
            .build_decoder()
            .expect("decoder");
        decoder.decode(lines.as_bytes()).expect("arrow decodes");
        let batch = decoder.flush().expect("flush").expect("rows");
        pretty_format_batches(&[batch]).expect("prints").to_string()
    }

    fn flat_decode(lines: &str, batch_size: usize) -> Result<String, Refused> {
        let mut decoder = FlatDecoder::new(&schema(), batch_size).expect("supported");
        let mut out = Vec::new();
        decoder.decode(lines.as_bytes(), &mut out)?;
        Ok(pretty_format_batches(&out).expect("prints").to_string())
    }

    #[test]
    fn flat_lines_decode_as_arrow_decodes_them() {
        let lines = concat!(
            r#"{"id": 1, "small": -32768, "price": 1.5, "ok": true, "name": "plain", "ts": "2026-01-01 10:00:00.250"}"#,
            "\n",
            r#"{"ts":"2026-01-01T00:00:01","name":"tab\tquote\" slash\/ \u00e9 \ud83d\ude00 end","id":-9223372036854775808}"#,
            "\r\n\n  \t\n",
            r#"  { "id" : 3 , "price" : -2.5e-3 , "ok" : false , "name" : null , "other" : [1] }"#,
            "\n",
            r#"{"id": 4, "unknown": "x\"y", "more": -1.25, "flag": true, "nothing": null, "price": 0, "name": "é"}"#,
            "\n",
        );
        // The nested value makes the quick path refuse the block; the rest is the same.
        assert_eq!(flat_decode(lines, 1024), Err(Refused));
        let flat_only = lines.replace(r#", "other" : [1]"#, "");
        let expected = arrow_decode(&flat_only);
        assert_eq!(flat_decode(&flat_only, 1024), Ok(expected.clone()));
        // Batches split at the batch size and hold the same rows.
        let mut decoder = FlatDecoder::new(&schema(), 3).expect("supported");
        let mut out = Vec::new();
        decoder
            .decode(flat_only.as_bytes(), &mut out)
            .expect("decodes");
        assert_eq!(
            out.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
            [3, 1]
        );
        assert_eq!(
            pretty_format_batches(&out).expect("prints").to_string(),
            expected
        );
    }

    #[test]
    fn anything_unusual_is_refused_for_arrow_to_judge() {
        for line in [
            r#"{"id": "3"}"#,
            r#"{"id": 1.0}"#,
            r#"{"id": 01}"#,
            r#"{"id": 1, "small": 40000}"#,
            r#"{"id": 99999999999999999999}"#,
            r#"{"small": 1}"#,
            r#"{"id": null}"#,
            r#"{"id": 1, "id": 2}"#,
            r#"{"id": 1, "name": 5}"#,
            r#"{"id": 1, "ok": 1}"#,
            r#"{"id": 1, "price": .5}"#,
            r#"{"id": 1, "price": 1.}"#,
            r#"{"id": 1, "ts": "2026-01-01T00:00:00Z"}"#,
            r#"{"id": 1, "ts": 1700000000000}"#,
            r#"{"id": 1, "name": "\x"}"#,
            r#"{"id": 1, "name": "\ud800"}"#,
            r#"{"id": 1, "extra": {"a": 1}}"#,
            r#"{"id": 1, "extra": tru}"#,
            r#"{"id": 1,}"#,
            r#"{"id": 1} {"id": 2}"#,
            r#"{"id": 1"#,
            r#"[1]"#,
        ] {
            assert_eq!(
                flat_decode(&format!("{line}\n"), 16),
                Err(Refused),
                "{line}"
            );
        }
        let mut decoder = FlatDecoder::new(&schema(), 16).expect("supported");
        let mut out = Vec::new();
        let mut bytes = b"{\"id\": 1, \"name\": \"".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(b"\"}\n");
        assert_eq!(decoder.decode(&bytes, &mut out), Err(Refused), "bad UTF-8");
        // After a refusal the decoder starts clean.
        out.clear();
        decoder.decode(b"{\"id\": 7}\n", &mut out).expect("decodes");
        assert_eq!(out[0].num_rows(), 1);
    }

    #[test]
    fn other_column_types_are_left_to_arrow() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "d",
            DataType::Decimal128(10, 2),
            true,
        )]));
        assert!(FlatDecoder::new(&schema, 16).is_none());
    }
}
