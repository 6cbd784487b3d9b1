//! Columns in Arrow layout, once per batch.
//!
//! `read` borrows argument columns in place; `write` encodes result columns in bulk from a slice
//! of per-row results, so that the per-row loop in `driver` keeps its state in registers (no
//! capacity checks, no builder fields in memory) and each buffer is written in one pass.

mod read;
mod write;

use crate::wit::{Column, DataType, PrimitiveType};
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
    ///
    /// # Errors
    /// A column of another type or length, or buffers too short for it.
    fn reader(column: &'a Column, num_rows: usize) -> Result<Self::Reader, String>;
}

/// Reads one column row by row.
pub trait ArgReader<'a> {
    /// The argument type produced.
    type Item;
    /// The value at `row`, or `None` when the function must not be called for this row.
    fn get(&self, row: usize) -> Option<Self::Item>;
    /// Whether [`ArgReader::get`] can return `None` for some row of this batch.
    fn nulls(&self) -> bool;
    /// The value at `row` of a reader without nulls: the dense path, free of per-row null checks.
    ///
    /// # Panics
    /// If the row is null after all (a caller that did not ask [`ArgReader::nulls`]).
    #[inline]
    fn get_valid(&self, row: usize) -> Self::Item {
        match self.get(row) {
            Some(value) => value,
            None => panic!("row {row} is null; check `nulls` first"),
        }
    }
    /// Rows `start..start + ARGS_BLOCK` of a reader without nulls. Fixed-width readers check
    /// bounds once per block, so that the block's loop can be unrolled and vectorised.
    ///
    /// # Panics
    /// As [`ArgReader::get_valid`], or if the block goes past the end of the column.
    #[inline]
    fn get_valid_block(&self, start: usize) -> [Self::Item; ARGS_BLOCK] {
        std::array::from_fn(|i| self.get_valid(start + i))
    }
}

/// Rows per block of the dense loop. Wasmtime checks the epoch deadline at every loop header,
/// and cranelift keeps loop-invariant vectors on the stack across that check; a fixed-size block,
/// which LLVM unrolls, pays for both once per block rather than once per vector.
pub const BLOCK: usize = 64;

/// Rows whose arguments are read at once within a block: few enough that their values stay in
/// registers (the reads all come before the function's results are stored).
pub const ARGS_BLOCK: usize = 16;

/// The results of the rows of a batch without nulls, asked for in row order, one row or one
/// block of rows at a time.
pub trait Produce<T, E> {
    /// The result of `row`.
    ///
    /// # Errors
    /// The function's error for this row.
    fn one(&mut self, row: usize) -> Result<T, E>;
    /// Writes the results of rows `start..start + BLOCK` into `out`, in order.
    ///
    /// # Errors
    /// The first error, with its row; the rows after it are not computed.
    fn block(
        &mut self,
        start: usize,
        out: &mut [std::mem::MaybeUninit<T>; BLOCK],
    ) -> Result<(), (usize, E)>;
}

/// A value a function can return.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a result type of a Weir function",
    note = "results are bool, i32, i64, f32, f64, String, &str, Vec<u8>, &[u8], Date, Timestamp, \
            Vec<T> of a fixed-width T, or Option of any of them"
)]
pub trait ResultValue: Sized {
    /// The column type produced.
    const DATA_TYPE: DataType;
    /// Encodes one column from per-row results, `None` standing for null.
    fn encode(values: Vec<Option<Self>>) -> Column;

    /// Encodes one column of `len` rows that are all valid, asking `produce` for each row in
    /// order; stops at the first error, returning its row. Fixed-width types write straight into
    /// a typed output buffer, a block at a time, a loop the compiler can vectorise.
    ///
    /// # Errors
    /// The first error of `produce`, with its row.
    fn encode_valid<E>(
        len: usize,
        mut produce: impl Produce<Self, E>,
    ) -> Result<Column, (usize, E)> {
        let mut values = Vec::with_capacity(len);
        for row in 0..len {
            values.push(Some(produce.one(row).map_err(|e| (row, e))?));
        }
        Ok(Self::encode(values))
    }
}

pub(crate) const fn primitive(p: PrimitiveType) -> DataType {
    DataType::Primitive(p)
}

pub(crate) fn check_type(
    column: &Column,
    expected: &DataType,
    num_rows: usize,
) -> Result<(), String> {
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
pub(crate) fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap[i >> 3] & (1 << (i & 7)) != 0
}

// ---------------------------------------------------------------------------------------------
// Fixed-width values

/// A fixed-width little-endian value type.
///
/// # Safety
/// Implementors are plain numbers (or `repr(transparent)` wrappers of one): `WIDTH` bytes, no
/// padding, and every bit pattern a valid value, so that a byte buffer can be viewed as `[Self]`.
pub unsafe trait FixedWidth: Copy + Default + std::fmt::Debug {
    /// Its size in bytes.
    const WIDTH: usize;
    /// Reads one value from exactly `WIDTH` bytes.
    fn read(bytes: &[u8]) -> Self;
    /// Writes its bytes into exactly `WIDTH` bytes.
    fn write(self, out: &mut [u8]);
}

macro_rules! fixed_width {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: a primitive number.
        unsafe impl FixedWidth for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            #[inline]
            fn read(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_le_bytes(raw)
            }
            #[inline]
            fn write(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

fixed_width!(i32, i64, f32, f64);

// SAFETY: `repr(transparent)` over i32.
unsafe impl FixedWidth for Date {
    const WIDTH: usize = 4;
    #[inline]
    fn read(bytes: &[u8]) -> Self {
        Date(i32::read(bytes))
    }
    #[inline]
    fn write(self, out: &mut [u8]) {
        self.0.write(out)
    }
}

// SAFETY: `repr(transparent)` over i64.
unsafe impl FixedWidth for Timestamp {
    const WIDTH: usize = 8;
    #[inline]
    fn read(bytes: &[u8]) -> Self {
        Timestamp(i64::read(bytes))
    }
    #[inline]
    fn write(self, out: &mut [u8]) {
        self.0.write(out)
    }
}

#[inline]
pub(crate) fn offset_at(offsets: &[u8], i: usize) -> usize {
    i32::read(&offsets[i * 4..i * 4 + 4]) as usize
}

/// `bytes` as values: in place when aligned on a little-endian target, else a decoded copy.
pub(crate) fn values_of<T: FixedWidth>(bytes: &[u8]) -> std::borrow::Cow<'_, [T]> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: `FixedWidth` types accept every bit pattern and have no padding.
        let (prefix, values, suffix) = unsafe { bytes.align_to::<T>() };
        if prefix.is_empty() && suffix.is_empty() {
            return std::borrow::Cow::Borrowed(values);
        }
    }
    std::borrow::Cow::Owned(bytes.chunks_exact(T::WIDTH).map(T::read).collect())
}

/// Uninitialised `bytes` as uninitialised values, when aligned on a little-endian target.
pub(crate) fn values_of_uninit<T: FixedWidth>(
    bytes: &mut [std::mem::MaybeUninit<u8>],
) -> Option<&mut [std::mem::MaybeUninit<T>]> {
    if cfg!(target_endian = "little") {
        // SAFETY: `FixedWidth` types accept every bit pattern and have no padding; nothing is
        // read before it is written.
        let (prefix, values, suffix) = unsafe { bytes.align_to_mut::<std::mem::MaybeUninit<T>>() };
        if prefix.is_empty() && suffix.is_empty() {
            return Some(values);
        }
    }
    None
}
