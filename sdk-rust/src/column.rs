//! Reading argument columns and building result columns in Arrow layout, once per batch.
//!
//! Readers borrow the host's buffers and never allocate per row; builders append into one `Vec<u8>`
//! per Arrow buffer, so the result crosses back to the host as a handful of memcpys.

use crate::wit::{Buffers, Column, DataType, PrimitiveType};
use crate::{Date, Timestamp};

/// A value a function can take as an argument, read from one column of the batch.
///
/// `'a` is the lifetime of the batch: `&'a str` and `&'a [u8]` borrow from it without copying.
/// `Option<T>` receives nulls; any other type means "null in, null out" and the function is not
/// called for that row.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an argument type of a Weir function",
    note = "arguments are bool, i32, i64, f32, f64, &str, String, &[u8], Vec<u8>, Date, Timestamp, \
            Vec<T> of a fixed-width T, or Option of any of them"
)]
pub trait ArgValue<'a>: Sized {
    /// The column type this argument expects.
    const DATA_TYPE: DataType;
    /// Reads rows of one column.
    type Reader: ArgReader<'a, Item = Self>;
    /// Checks the column against [`Self::DATA_TYPE`] and `num_rows`, then borrows it.
    fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String>;
}

/// Reads one column row by row.
pub trait ArgReader<'a> {
    /// The argument type produced.
    type Item;
    /// The value at `row`, or `None` when the function must not be called for this row.
    fn get(&self, row: usize) -> Option<Self::Item>;
}

/// A value a function can return; a column of them is built for the host.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a result type of a Weir function",
    note = "results are bool, i32, i64, f32, f64, String, &str, Vec<u8>, &[u8], Date, Timestamp, \
            Vec<T> of a fixed-width T, or Option of any of them"
)]
pub trait ResultValue: Sized {
    /// The column type produced.
    const DATA_TYPE: DataType;
    /// Accumulates results into a column.
    type Builder: ColumnBuilder<Self>;
}

/// Builds a result column.
pub trait ColumnBuilder<T> {
    /// An empty builder with room for `capacity` rows.
    fn with_capacity(capacity: usize) -> Self;
    /// Appends one value.
    fn push(&mut self, value: T);
    /// Appends a null.
    fn push_null(&mut self);
    /// The finished column.
    fn finish(self) -> Column;
}

const fn primitive(p: PrimitiveType) -> DataType {
    DataType::Primitive(p)
}

fn check_type(column: &Column, expected: &DataType, num_rows: usize) -> Result<(), String> {
    if !same_type(&column.data_type, expected) {
        return Err(format!(
            "expected a {} column, got {}",
            type_name(expected),
            type_name(&column.data_type)
        ));
    }
    if column.len as usize != num_rows {
        return Err(format!(
            "column has {} rows, the batch {num_rows}",
            column.len
        ));
    }
    if let Some(validity) = &column.data.validity
        && validity.len() < num_rows.div_ceil(8)
    {
        return Err("validity bitmap is shorter than the column".to_string());
    }
    Ok(())
}

pub(crate) fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::Primitive(x), DataType::Primitive(y)) => x == y,
        (DataType::List(x), DataType::List(y)) => x == y,
        _ => false,
    }
}

pub(crate) fn type_name(t: &DataType) -> String {
    fn p(t: PrimitiveType) -> &'static str {
        match t {
            PrimitiveType::Null => "null",
            PrimitiveType::Boolean => "boolean",
            PrimitiveType::Int32 => "int",
            PrimitiveType::Int64 => "bigint",
            PrimitiveType::Float32 => "float",
            PrimitiveType::Float64 => "double",
            PrimitiveType::Utf8 => "varchar",
            PrimitiveType::Binary => "varbinary",
            PrimitiveType::Date32 => "date",
            PrimitiveType::TimestampMicros => "timestamp",
        }
    }
    match t {
        DataType::Primitive(x) => p(*x).to_string(),
        DataType::List(x) => format!("array<{}>", p(*x)),
    }
}

#[inline]
fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap[i >> 3] & (1 << (i & 7)) != 0
}

/// A validity bitmap that is only allocated once the first null arrives.
#[derive(Debug, Default)]
struct Validity {
    bits: Option<Vec<u8>>,
    len: usize,
}

impl Validity {
    #[inline]
    fn push_valid(&mut self) {
        if let Some(bits) = &mut self.bits {
            if self.len & 7 == 0 {
                bits.push(0);
            }
            let last = bits.len() - 1;
            bits[last] |= 1 << (self.len & 7);
        }
        self.len += 1;
    }

    fn push_null(&mut self) {
        let bits = self.bits.get_or_insert_with(|| {
            // every earlier row was valid
            let mut bits = vec![0xFF; self.len.div_ceil(8)];
            if self.len & 7 != 0
                && let Some(last) = bits.last_mut()
            {
                *last = (1u8 << (self.len & 7)) - 1;
            }
            bits
        });
        if self.len & 7 == 0 {
            bits.push(0);
        }
        self.len += 1;
    }

    fn finish(self) -> Option<Vec<u8>> {
        self.bits
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed-width values

/// A fixed-width little-endian value type.
pub trait FixedWidth: Copy + Default {
    /// Its size in bytes.
    const WIDTH: usize;
    /// Reads one value from exactly `WIDTH` bytes.
    fn read(bytes: &[u8]) -> Self;
    /// Appends its bytes.
    fn write(self, out: &mut Vec<u8>);
}

macro_rules! fixed_width {
    ($($t:ty => $p:ident),* $(,)?) => {$(
        impl FixedWidth for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            #[inline]
            fn read(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_le_bytes(raw)
            }
            #[inline]
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
        impl<'a> ArgValue<'a> for $t {
            const DATA_TYPE: DataType = primitive(PrimitiveType::$p);
            type Reader = FixedReader<'a, $t>;
            fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String> {
                FixedReader::new(column, &<Self as ArgValue<'a>>::DATA_TYPE, num_rows)
            }
        }
        impl ResultValue for $t {
            const DATA_TYPE: DataType = primitive(PrimitiveType::$p);
            type Builder = FixedBuilder<$t>;
        }
    )*};
}

fixed_width!(i32 => Int32, i64 => Int64, f32 => Float32, f64 => Float64);

impl FixedWidth for Date {
    const WIDTH: usize = 4;
    #[inline]
    fn read(bytes: &[u8]) -> Self {
        Date(i32::read(bytes))
    }
    #[inline]
    fn write(self, out: &mut Vec<u8>) {
        self.0.write(out)
    }
}

impl FixedWidth for Timestamp {
    const WIDTH: usize = 8;
    #[inline]
    fn read(bytes: &[u8]) -> Self {
        Timestamp(i64::read(bytes))
    }
    #[inline]
    fn write(self, out: &mut Vec<u8>) {
        self.0.write(out)
    }
}

macro_rules! fixed_newtype {
    ($($t:ty => $p:ident),*) => {$(
        impl<'a> ArgValue<'a> for $t {
            const DATA_TYPE: DataType = primitive(PrimitiveType::$p);
            type Reader = FixedReader<'a, $t>;
            fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String> {
                FixedReader::new(column, &<Self as ArgValue<'a>>::DATA_TYPE, num_rows)
            }
        }
        impl ResultValue for $t {
            const DATA_TYPE: DataType = primitive(PrimitiveType::$p);
            type Builder = FixedBuilder<$t>;
        }
    )*};
}

fixed_newtype!(Date => Date32, Timestamp => TimestampMicros);

/// Reads a fixed-width column.
#[derive(Debug)]
pub struct FixedReader<'a, T> {
    values: &'a [u8],
    validity: Option<&'a [u8]>,
    _t: std::marker::PhantomData<T>,
}

impl<'a, T: FixedWidth> FixedReader<'a, T> {
    fn new(column: &'a Column, expected: &DataType, num_rows: usize) -> Result<Self, String> {
        check_type(column, expected, num_rows)?;
        if column.data.values.len() < num_rows * T::WIDTH {
            return Err(format!(
                "values buffer holds {} bytes, {num_rows} rows need {}",
                column.data.values.len(),
                num_rows * T::WIDTH
            ));
        }
        Ok(FixedReader {
            values: &column.data.values[..num_rows * T::WIDTH],
            validity: column.data.validity.as_deref(),
            _t: std::marker::PhantomData,
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
        Some(T::read(&self.values[row * T::WIDTH..(row + 1) * T::WIDTH]))
    }
}

/// Builds a fixed-width column.
#[derive(Debug)]
pub struct FixedBuilder<T> {
    values: Vec<u8>,
    validity: Validity,
    _t: std::marker::PhantomData<T>,
}

impl<T: FixedWidth + ResultValue> ColumnBuilder<T> for FixedBuilder<T> {
    fn with_capacity(capacity: usize) -> Self {
        FixedBuilder {
            values: Vec::with_capacity(capacity * T::WIDTH),
            validity: Validity::default(),
            _t: std::marker::PhantomData,
        }
    }
    #[inline]
    fn push(&mut self, value: T) {
        value.write(&mut self.values);
        self.validity.push_valid();
    }
    fn push_null(&mut self) {
        T::default().write(&mut self.values);
        self.validity.push_null();
    }
    fn finish(self) -> Column {
        let len = self.validity.len as u32;
        Column {
            data_type: T::DATA_TYPE,
            len,
            data: Buffers {
                validity: self.validity.finish(),
                offsets: Vec::new(),
                values: self.values,
            },
            elements: None,
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
}

/// Builds a boolean column.
#[derive(Debug, Default)]
pub struct BoolBuilder {
    values: Vec<u8>,
    validity: Validity,
}

impl ResultValue for bool {
    const DATA_TYPE: DataType = primitive(PrimitiveType::Boolean);
    type Builder = BoolBuilder;
}

impl BoolBuilder {
    fn push_bit(&mut self, value: bool) {
        let i = self.validity.len;
        if i & 7 == 0 {
            self.values.push(0);
        }
        if value {
            let last = self.values.len() - 1;
            self.values[last] |= 1 << (i & 7);
        }
    }
}

impl ColumnBuilder<bool> for BoolBuilder {
    fn with_capacity(capacity: usize) -> Self {
        BoolBuilder {
            values: Vec::with_capacity(capacity.div_ceil(8)),
            validity: Validity::default(),
        }
    }
    fn push(&mut self, value: bool) {
        self.push_bit(value);
        self.validity.push_valid();
    }
    fn push_null(&mut self) {
        self.push_bit(false);
        self.validity.push_null();
    }
    fn finish(self) -> Column {
        Column {
            data_type: <bool as ResultValue>::DATA_TYPE,
            len: self.validity.len as u32,
            data: Buffers {
                validity: self.validity.finish(),
                offsets: Vec::new(),
                values: self.values,
            },
            elements: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Variable width: utf8 and binary

#[inline]
fn offset_at(offsets: &[u8], i: usize) -> usize {
    i32::read(&offsets[i * 4..i * 4 + 4]) as usize
}

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
    let mut previous = 0usize;
    for i in 0..=len {
        let raw = i32::read(&offsets[i * 4..i * 4 + 4]);
        let offset = usize::try_from(raw).map_err(|_| format!("negative offset {raw}"))?;
        if offset < previous || offset > buffers.values.len() {
            return Err(format!("offset {offset} at row {i} is out of order or out of bounds"));
        }
        previous = offset;
    }
    Ok(())
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
            offsets: &column.data.offsets,
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
        let text = std::str::from_utf8(bytes.values).map_err(|e| format!("invalid utf-8: {e}"))?;
        for row in 0..=num_rows {
            if !text.is_char_boundary(offset_at(bytes.offsets, row)) {
                return Err(format!("offset of row {row} splits a utf-8 character"));
            }
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
        // `reader` checked every offset is in order, in bounds and on a char boundary.
        self.text.get(start..end)
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
}

/// Builds a utf8 or binary column.
#[derive(Debug)]
pub struct BytesBuilder<const UTF8: bool> {
    offsets: Vec<u8>,
    values: Vec<u8>,
    validity: Validity,
}

impl<const UTF8: bool> BytesBuilder<UTF8> {
    fn push_bytes(&mut self, bytes: &[u8]) {
        self.values.extend_from_slice(bytes);
        // A guest cannot hold 2 GiB of strings under any sane memory cap; the host validates
        // offsets anyway.
        (self.values.len() as i32).write(&mut self.offsets);
        self.validity.push_valid();
    }

    fn new_with_capacity(capacity: usize) -> Self {
        let mut offsets = Vec::with_capacity((capacity + 1) * 4);
        0i32.write(&mut offsets);
        BytesBuilder {
            offsets,
            values: Vec::with_capacity(capacity * 8),
            validity: Validity::default(),
        }
    }

    fn push_empty_null(&mut self) {
        (self.values.len() as i32).write(&mut self.offsets);
        self.validity.push_null();
    }

    fn finish_as(self, data_type: DataType) -> Column {
        Column {
            data_type,
            len: self.validity.len as u32,
            data: Buffers {
                validity: self.validity.finish(),
                offsets: self.offsets,
                values: self.values,
            },
            elements: None,
        }
    }
}

macro_rules! bytes_result {
    ($utf8:literal, $p:ident, $($t:ty => |$v:ident| $as_bytes:expr),*) => {$(
        impl ResultValue for $t {
            const DATA_TYPE: DataType = primitive(PrimitiveType::$p);
            type Builder = BytesBuilder<$utf8>;
        }
        impl ColumnBuilder<$t> for BytesBuilder<$utf8> {
            fn with_capacity(capacity: usize) -> Self {
                Self::new_with_capacity(capacity)
            }
            #[inline]
            fn push(&mut self, $v: $t) {
                self.push_bytes($as_bytes)
            }
            fn push_null(&mut self) {
                self.push_empty_null()
            }
            fn finish(self) -> Column {
                self.finish_as(primitive(PrimitiveType::$p))
            }
        }
    )*};
}

bytes_result!(true, Utf8, String => |v| v.as_bytes(), &str => |v| v.as_bytes());
bytes_result!(false, Binary, Vec<u8> => |v| &v, &[u8] => |v| v);

// ---------------------------------------------------------------------------------------------
// Lists of fixed-width primitives

/// Reads a list column into a `Vec<T>` per row.
#[derive(Debug)]
pub struct ListReader<'a, T> {
    offsets: &'a [u8],
    validity: Option<&'a [u8]>,
    elements: FixedReader<'a, T>,
}

impl<'a, T: FixedWidth + ArgValue<'a>> ArgValue<'a> for Vec<T> {
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
            elements: FixedReader {
                values: &elements.values[..element_count * T::WIDTH],
                validity: elements.validity.as_deref(),
                _t: std::marker::PhantomData,
            },
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
        let (start, end) = (offset_at(self.offsets, row), offset_at(self.offsets, row + 1));
        // Null elements read as the type's default: lists of Option<T> are not offered.
        Some(
            (start..end)
                .map(|i| self.elements.get(i).unwrap_or_default())
                .collect(),
        )
    }
}

/// Builds a list column.
#[derive(Debug)]
pub struct ListBuilder<T> {
    offsets: Vec<u8>,
    elements: Vec<u8>,
    element_count: usize,
    validity: Validity,
    _t: std::marker::PhantomData<T>,
}

impl<T: FixedWidth + ResultValue> ResultValue for Vec<T> {
    const DATA_TYPE: DataType = match T::DATA_TYPE {
        DataType::Primitive(p) | DataType::List(p) => DataType::List(p),
    };
    type Builder = ListBuilder<T>;
}

impl<T: FixedWidth + ResultValue> ColumnBuilder<Vec<T>> for ListBuilder<T> {
    fn with_capacity(capacity: usize) -> Self {
        let mut offsets = Vec::with_capacity((capacity + 1) * 4);
        0i32.write(&mut offsets);
        ListBuilder {
            offsets,
            elements: Vec::new(),
            element_count: 0,
            validity: Validity::default(),
            _t: std::marker::PhantomData,
        }
    }
    fn push(&mut self, value: Vec<T>) {
        self.element_count += value.len();
        for v in value {
            v.write(&mut self.elements);
        }
        (self.element_count as i32).write(&mut self.offsets);
        self.validity.push_valid();
    }
    fn push_null(&mut self) {
        (self.element_count as i32).write(&mut self.offsets);
        self.validity.push_null();
    }
    fn finish(self) -> Column {
        Column {
            data_type: <Vec<T> as ResultValue>::DATA_TYPE,
            len: self.validity.len as u32,
            data: Buffers {
                validity: self.validity.finish(),
                offsets: self.offsets,
                values: Vec::new(),
            },
            elements: Some(Buffers {
                validity: None,
                offsets: Vec::new(),
                values: self.elements,
            }),
        }
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
}

/// Builds a column from `Option` results: `None` is null.
#[derive(Debug)]
pub struct OptionBuilder<B>(B);

impl<T: ResultValue> ResultValue for Option<T> {
    const DATA_TYPE: DataType = T::DATA_TYPE;
    type Builder = OptionBuilder<T::Builder>;
}

impl<T: ResultValue> ColumnBuilder<Option<T>> for OptionBuilder<T::Builder> {
    fn with_capacity(capacity: usize) -> Self {
        OptionBuilder(T::Builder::with_capacity(capacity))
    }
    #[inline]
    fn push(&mut self, value: Option<T>) {
        match value {
            Some(v) => self.0.push(v),
            None => self.0.push_null(),
        }
    }
    fn push_null(&mut self) {
        self.0.push_null()
    }
    fn finish(self) -> Column {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int64_column(values: &[Option<i64>]) -> Column {
        let mut b = <i64 as ResultValue>::Builder::with_capacity(values.len());
        for v in values {
            match v {
                Some(v) => b.push(*v),
                None => b.push_null(),
            }
        }
        b.finish()
    }

    #[test]
    fn fixed_width_round_trip_keeps_nulls() {
        let input = [Some(1), None, Some(-3), Some(i64::MAX), None, None, Some(0), Some(7), None];
        let column = int64_column(&input);
        assert!(column.data.validity.is_some());
        let reader = i64::reader(&column, input.len()).expect("reader");
        let read: Vec<Option<i64>> = (0..input.len()).map(|i| reader.get(i)).collect();
        assert_eq!(read, input);
    }

    #[test]
    fn no_nulls_means_no_bitmap() {
        let column = int64_column(&[Some(1), Some(2)]);
        assert!(column.data.validity.is_none());
        assert_eq!(column.data.values.len(), 16);
    }

    #[test]
    fn strings_round_trip_and_borrow() {
        let mut b = <BytesBuilder<true> as ColumnBuilder<&str>>::with_capacity(3);
        ColumnBuilder::<&str>::push(&mut b, "héllo");
        ColumnBuilder::<&str>::push_null(&mut b);
        ColumnBuilder::<&str>::push(&mut b, "");
        let column = ColumnBuilder::<&str>::finish(b);
        let reader = <Option<&str>>::reader(&column, 3).expect("reader");
        assert_eq!(reader.get(0), Some(Some("héllo")));
        assert_eq!(reader.get(1), Some(None));
        assert_eq!(reader.get(2), Some(Some("")));
    }

    #[test]
    fn bad_offsets_are_refused_not_trusted() {
        let mut column = int64_column(&[]);
        column.data_type = primitive(PrimitiveType::Utf8);
        column.len = 1;
        column.data.offsets = [0i32, 99].iter().flat_map(|o| o.to_le_bytes()).collect();
        column.data.values = b"abc".to_vec();
        let err = <&str>::reader(&column, 1).expect_err("out of bounds offsets");
        assert!(err.contains("out of bounds"), "{err}");
    }

    #[test]
    fn a_split_utf8_character_is_refused() {
        let mut b = <BytesBuilder<true> as ColumnBuilder<&str>>::with_capacity(1);
        ColumnBuilder::<&str>::push(&mut b, "é");
        let mut column = ColumnBuilder::<&str>::finish(b);
        column.data.offsets = [0i32, 1].iter().flat_map(|o| o.to_le_bytes()).collect();
        assert!(<&str>::reader(&column, 1).is_err());
    }

    #[test]
    fn booleans_are_bit_packed() {
        let mut b = BoolBuilder::with_capacity(10);
        for i in 0..10 {
            if i == 4 {
                b.push_null();
            } else {
                b.push(i % 3 == 0);
            }
        }
        let column = b.finish();
        assert_eq!(column.data.values.len(), 2);
        let reader = bool::reader(&column, 10).expect("reader");
        let read: Vec<Option<bool>> = (0..10).map(|i| reader.get(i)).collect();
        let expected: Vec<Option<bool>> =
            (0..10).map(|i| if i == 4 { None } else { Some(i % 3 == 0) }).collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn lists_round_trip() {
        let mut b = ListBuilder::<i32>::with_capacity(3);
        b.push(vec![1, 2, 3]);
        b.push_null();
        b.push(vec![]);
        let column = b.finish();
        let reader = <Option<Vec<i32>>>::reader(&column, 3).expect("reader");
        assert_eq!(reader.get(0), Some(Some(vec![1, 2, 3])));
        assert_eq!(reader.get(1), Some(None));
        assert_eq!(reader.get(2), Some(Some(vec![])));
    }

    #[test]
    fn a_wrongly_typed_column_names_both_types() {
        let column = int64_column(&[Some(1)]);
        let err = f64::reader(&column, 1).expect_err("type mismatch");
        assert_eq!(err, "expected a double column, got bigint");
    }
}
