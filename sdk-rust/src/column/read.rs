//! Argument columns, read in place: readers borrow the host's buffers and never allocate per row
//! (except for the owned `String`/`Vec` argument types, which say so).

use std::borrow::Cow;

use super::{
    ARGS_BLOCK, ArgReader, ArgValue, FixedWidth, bit, check_type, offset_at, primitive, values_of,
};
use crate::wit::{Buffers, Column, DataType, PrimitiveType};
use crate::{Date, Timestamp};

macro_rules! fixed_value {
    ($($t:ty => $p:ident),*) => {$(
        impl<'a> ArgValue<'a> for $t {
            const DATA_TYPE: DataType = primitive(PrimitiveType::$p);
            type Reader = FixedReader<'a, $t>;
            fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String> {
                FixedReader::new(column, &<Self as ArgValue<'a>>::DATA_TYPE, num_rows)
            }
        }
    )*};
}

fixed_value!(
    i32 => Int32,
    i64 => Int64,
    f32 => Float32,
    f64 => Float64,
    Date => Date32,
    Timestamp => TimestampMicros
);

/// Reads a fixed-width column as a typed slice, in place when the buffer is aligned (it is: the
/// guest allocator aligns every list), through one decoded copy otherwise.
#[derive(Debug)]
pub struct FixedReader<'a, T: FixedWidth> {
    values: Cow<'a, [T]>,
    validity: Option<&'a [u8]>,
}

impl<'a, T: FixedWidth> FixedReader<'a, T> {
    fn new(column: &'a Column, expected: &DataType, num_rows: usize) -> Result<Self, String> {
        check_type(column, expected, num_rows)?;
        Self::from_buffers(
            &column.data.values,
            column.data.validity.as_deref(),
            num_rows,
        )
    }

    pub(super) fn from_buffers(
        values: &'a [u8],
        validity: Option<&'a [u8]>,
        len: usize,
    ) -> Result<Self, String> {
        if values.len() < len * T::WIDTH {
            return Err(format!(
                "values buffer holds {} bytes, {len} rows need {}",
                values.len(),
                len * T::WIDTH
            ));
        }
        Ok(FixedReader {
            values: values_of(&values[..len * T::WIDTH]),
            validity,
        })
    }
}

impl<'a, T: FixedWidth> ArgReader<'a> for FixedReader<'a, T> {
    type Item = T;
    #[inline]
    fn get(&self, row: usize) -> Option<T> {
        if let Some(validity) = self.validity
            && !bit(validity, row)
        {
            return None;
        }
        Some(self.values[row])
    }
    fn nulls(&self) -> bool {
        self.validity.is_some()
    }
    #[inline]
    fn get_valid(&self, row: usize) -> T {
        self.values[row]
    }
    #[inline]
    fn get_valid_block(&self, start: usize) -> [T; ARGS_BLOCK] {
        match self
            .values
            .get(start..)
            .and_then(<[T]>::first_chunk::<ARGS_BLOCK>)
        {
            Some(block) => *block,
            None => panic!("rows {start}.. are past the end of the column"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Booleans (bit-packed values)

/// Reads a boolean column.
#[derive(Debug)]
pub struct BoolReader<'a> {
    values: &'a [u8],
    validity: Option<&'a [u8]>,
}

impl<'a> ArgValue<'a> for bool {
    const DATA_TYPE: DataType = primitive(PrimitiveType::Boolean);
    type Reader = BoolReader<'a>;
    fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String> {
        check_type(column, &<Self as ArgValue<'a>>::DATA_TYPE, num_rows)?;
        if column.data.values.len() < num_rows.div_ceil(8) {
            return Err("boolean values bitmap is shorter than the column".to_string());
        }
        Ok(BoolReader {
            values: &column.data.values,
            validity: column.data.validity.as_deref(),
        })
    }
}

impl<'a> ArgReader<'a> for BoolReader<'a> {
    type Item = bool;
    #[inline]
    fn get(&self, row: usize) -> Option<bool> {
        if let Some(validity) = self.validity
            && !bit(validity, row)
        {
            return None;
        }
        Some(bit(self.values, row))
    }
    fn nulls(&self) -> bool {
        self.validity.is_some()
    }
}

// ---------------------------------------------------------------------------------------------
// Variable width: utf8 and binary

/// Checks offsets once per batch so that per-row reads cannot go out of bounds.
fn check_offsets(buffers: &Buffers, len: usize) -> Result<(), String> {
    let offsets = &buffers.offsets;
    if offsets.len() < (len + 1) * 4 {
        return Err(format!(
            "offsets buffer holds {} bytes, {len} rows need {}",
            offsets.len(),
            (len + 1) * 4
        ));
    }
    let (words, _) = offsets[..(len + 1) * 4].as_chunks::<4>();
    // A branch-free pass the compiler vectorises; the slow loop below only names the culprit.
    // Non-decreasing from a non-negative first offset means every offset is non-negative.
    let mut decreasing = false;
    for pair in words.windows(2) {
        decreasing |= i32::from_le_bytes(pair[1]) < i32::from_le_bytes(pair[0]);
    }
    let first = words.first().map_or(0, |w| i32::from_le_bytes(*w));
    let last = words.last().map_or(0, |w| i32::from_le_bytes(*w));
    if !decreasing && first >= 0 && usize::try_from(last).is_ok_and(|l| l <= buffers.values.len()) {
        return Ok(());
    }
    let mut previous = 0usize;
    for (i, word) in words.iter().enumerate() {
        let raw = i32::from_le_bytes(*word);
        let offset = usize::try_from(raw).map_err(|_| format!("negative offset {raw}"))?;
        if offset < previous || offset > buffers.values.len() {
            return Err(format!(
                "offset {offset} at row {i} is out of order or out of bounds"
            ));
        }
        previous = offset;
    }
    Ok(())
}

/// Whether every byte is ASCII: 32 bytes per step as four `u64` words (which Wasm has natively,
/// unlike core's `usize`-wide scan on wasm32).
fn is_ascii(bytes: &[u8]) -> bool {
    let (blocks, tail) = bytes.as_chunks::<32>();
    let mut high = 0u64;
    for block in blocks {
        let (words, _) = block.as_chunks::<8>();
        for word in words {
            high |= u64::from_le_bytes(*word);
        }
    }
    high & 0x8080_8080_8080_8080 == 0 && tail.is_ascii()
}

/// Reads a binary column.
#[derive(Debug)]
pub struct BytesReader<'a> {
    offsets: &'a [u8],
    values: &'a [u8],
    validity: Option<&'a [u8]>,
}

impl<'a> BytesReader<'a> {
    fn new(column: &'a Column, expected: &DataType, num_rows: usize) -> Result<Self, String> {
        check_type(column, expected, num_rows)?;
        check_offsets(&column.data, num_rows)?;
        Ok(BytesReader {
            // Exactly the checked offsets: a row past the end panics, never reads an unchecked one.
            offsets: &column.data.offsets[..(num_rows + 1) * 4],
            values: &column.data.values,
            validity: column.data.validity.as_deref(),
        })
    }
}

impl<'a> ArgReader<'a> for BytesReader<'a> {
    type Item = &'a [u8];
    #[inline]
    fn get(&self, row: usize) -> Option<&'a [u8]> {
        if let Some(validity) = self.validity
            && !bit(validity, row)
        {
            return None;
        }
        Some(&self.values[offset_at(self.offsets, row)..offset_at(self.offsets, row + 1)])
    }
    fn nulls(&self) -> bool {
        self.validity.is_some()
    }
}

impl<'a> ArgValue<'a> for &'a [u8] {
    const DATA_TYPE: DataType = primitive(PrimitiveType::Binary);
    type Reader = BytesReader<'a>;
    fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String> {
        BytesReader::new(column, &<Self as ArgValue<'a>>::DATA_TYPE, num_rows)
    }
}

/// Reads a utf8 column. The whole buffer is validated once; rows are then sliced without checks.
#[derive(Debug)]
pub struct StrReader<'a> {
    bytes: BytesReader<'a>,
    text: &'a str,
}

impl<'a> ArgValue<'a> for &'a str {
    const DATA_TYPE: DataType = primitive(PrimitiveType::Utf8);
    type Reader = StrReader<'a>;
    fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String> {
        let bytes = BytesReader::new(column, &<Self as ArgValue<'a>>::DATA_TYPE, num_rows)?;
        if is_ascii(bytes.values) {
            // SAFETY: ASCII is UTF-8, and every offset of ASCII text is on a char boundary.
            let text = unsafe { std::str::from_utf8_unchecked(bytes.values) };
            return Ok(StrReader { bytes, text });
        }
        let text = std::str::from_utf8(bytes.values).map_err(|e| format!("invalid utf-8: {e}"))?;
        let (words, _) = bytes.offsets.as_chunks::<4>();
        if let Some(row) = words
            .iter()
            .position(|w| !text.is_char_boundary(i32::from_le_bytes(*w) as usize))
        {
            return Err(format!("offset of row {row} splits a utf-8 character"));
        }
        Ok(StrReader { bytes, text })
    }
}

impl<'a> ArgReader<'a> for StrReader<'a> {
    type Item = &'a str;
    #[inline]
    fn get(&self, row: usize) -> Option<&'a str> {
        if let Some(validity) = self.bytes.validity
            && !bit(validity, row)
        {
            return None;
        }
        let start = offset_at(self.bytes.offsets, row);
        let end = offset_at(self.bytes.offsets, row + 1);
        // SAFETY: `reader` checked every offset (and `offsets` holds no others) is in order, in
        // bounds and on a char boundary; re-checking per row kept this call out of line.
        Some(unsafe { self.text.get_unchecked(start..end) })
    }
    fn nulls(&self) -> bool {
        self.bytes.validity.is_some()
    }
}

/// Reads an owned `String` (allocates per row: prefer `&str`).
#[derive(Debug)]
pub struct StringReader<'a>(StrReader<'a>);

impl<'a> ArgValue<'a> for String {
    const DATA_TYPE: DataType = primitive(PrimitiveType::Utf8);
    type Reader = StringReader<'a>;
    fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String> {
        <&str>::reader(column, num_rows).map(StringReader)
    }
}

impl<'a> ArgReader<'a> for StringReader<'a> {
    type Item = String;
    fn get(&self, row: usize) -> Option<String> {
        self.0.get(row).map(str::to_owned)
    }
    fn nulls(&self) -> bool {
        self.0.nulls()
    }
}

/// Reads an owned `Vec<u8>` (allocates per row: prefer `&[u8]`).
#[derive(Debug)]
pub struct ByteVecReader<'a>(BytesReader<'a>);

impl<'a> ArgValue<'a> for Vec<u8> {
    const DATA_TYPE: DataType = primitive(PrimitiveType::Binary);
    type Reader = ByteVecReader<'a>;
    fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String> {
        BytesReader::new(column, &<Self as ArgValue<'a>>::DATA_TYPE, num_rows).map(ByteVecReader)
    }
}

impl<'a> ArgReader<'a> for ByteVecReader<'a> {
    type Item = Vec<u8>;
    fn get(&self, row: usize) -> Option<Vec<u8>> {
        self.0.get(row).map(<[u8]>::to_vec)
    }
    fn nulls(&self) -> bool {
        self.0.nulls()
    }
}

// ---------------------------------------------------------------------------------------------
// Lists of fixed-width primitives

/// Reads a list column into a `Vec<T>` per row.
#[derive(Debug)]
pub struct ListReader<'a, T: FixedWidth> {
    offsets: &'a [u8],
    validity: Option<&'a [u8]>,
    elements: FixedReader<'a, T>,
}

impl<'a, T: FixedWidth + ArgValue<'a> + 'a> ArgValue<'a> for Vec<T> {
    const DATA_TYPE: DataType = match T::DATA_TYPE {
        DataType::Primitive(p) | DataType::List(p) => DataType::List(p),
    };
    type Reader = ListReader<'a, T>;
    fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String> {
        check_type(column, &<Self as ArgValue<'a>>::DATA_TYPE, num_rows)?;
        let elements = column
            .elements
            .as_ref()
            .ok_or_else(|| "a list column has no element buffers".to_string())?;
        let offsets = &column.data.offsets;
        if offsets.len() < (num_rows + 1) * 4 {
            return Err("list offsets buffer is shorter than the column".to_string());
        }
        let element_count = offset_at(offsets, num_rows);
        let mut previous = 0;
        for row in 0..=num_rows {
            let offset = offset_at(offsets, row);
            if offset < previous || offset > element_count {
                return Err(format!("list offset at row {row} is out of order"));
            }
            previous = offset;
        }
        if elements.values.len() < element_count * T::WIDTH {
            return Err("list element buffer is shorter than its offsets say".to_string());
        }
        Ok(ListReader {
            offsets,
            validity: column.data.validity.as_deref(),
            elements: FixedReader::from_buffers(
                &elements.values,
                elements.validity.as_deref(),
                element_count,
            )?,
        })
    }
}

impl<'a, T: FixedWidth> ArgReader<'a> for ListReader<'a, T> {
    type Item = Vec<T>;
    fn get(&self, row: usize) -> Option<Vec<T>> {
        if let Some(validity) = self.validity
            && !bit(validity, row)
        {
            return None;
        }
        let (start, end) = (
            offset_at(self.offsets, row),
            offset_at(self.offsets, row + 1),
        );
        // Null elements read as the type's default: lists of Option<T> are not offered.
        Some(
            (start..end)
                .map(|i| self.elements.get(i).unwrap_or_default())
                .collect(),
        )
    }
    fn nulls(&self) -> bool {
        self.validity.is_some()
    }
}

// ---------------------------------------------------------------------------------------------
// Option: nulls in, nulls out

/// Reads a column that may hold nulls, for `Option<T>` arguments.
#[derive(Debug)]
pub struct NullableReader<R>(R);

impl<'a, T: ArgValue<'a>> ArgValue<'a> for Option<T> {
    const DATA_TYPE: DataType = T::DATA_TYPE;
    type Reader = NullableReader<T::Reader>;
    fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String> {
        T::reader(column, num_rows).map(NullableReader)
    }
}

impl<'a, R: ArgReader<'a>> ArgReader<'a> for NullableReader<R> {
    type Item = Option<R::Item>;
    #[inline]
    fn get(&self, row: usize) -> Option<Option<R::Item>> {
        Some(self.0.get(row))
    }
    fn nulls(&self) -> bool {
        // A null reaches the function as `None`: no row is skipped.
        false
    }
    #[inline]
    fn get_valid(&self, row: usize) -> Option<R::Item> {
        self.0.get(row)
    }
}
