//! Arrow arrays to WIT columns and back, once per batch, with no per-row allocation.
//!
//! Going in, every buffer is an Arrow `Buffer` (a reference-counted slice, no copy), except where
//! Arrow's layout differs from the contract: a bitmap that does not start on a byte boundary, or
//! offsets of a sliced array that do not start at zero. Coming out, the guest's `Vec<u8>`s become
//! Arrow buffers without a copy, after checks that a hostile module cannot get past: lengths,
//! offsets, UTF-8. A malformed result is an error, never a panic.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, GenericListArray, NullArray,
    PrimitiveArray, StringArray,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{ArrowPrimitiveType, Field};

use super::abi;
use crate::udf::{PrimitiveType, UdfType};

impl From<PrimitiveType> for abi::PrimitiveType {
    fn from(p: PrimitiveType) -> Self {
        match p {
            PrimitiveType::Null => abi::PrimitiveType::Null,
            PrimitiveType::Boolean => abi::PrimitiveType::Boolean,
            PrimitiveType::Int32 => abi::PrimitiveType::Int32,
            PrimitiveType::Int64 => abi::PrimitiveType::Int64,
            PrimitiveType::Float32 => abi::PrimitiveType::Float32,
            PrimitiveType::Float64 => abi::PrimitiveType::Float64,
            PrimitiveType::Utf8 => abi::PrimitiveType::Utf8,
            PrimitiveType::Binary => abi::PrimitiveType::Binary,
            PrimitiveType::Date32 => abi::PrimitiveType::Date32,
            PrimitiveType::TimestampMicros => abi::PrimitiveType::TimestampMicros,
        }
    }
}

impl From<abi::PrimitiveType> for PrimitiveType {
    fn from(p: abi::PrimitiveType) -> Self {
        match p {
            abi::PrimitiveType::Null => PrimitiveType::Null,
            abi::PrimitiveType::Boolean => PrimitiveType::Boolean,
            abi::PrimitiveType::Int32 => PrimitiveType::Int32,
            abi::PrimitiveType::Int64 => PrimitiveType::Int64,
            abi::PrimitiveType::Float32 => PrimitiveType::Float32,
            abi::PrimitiveType::Float64 => PrimitiveType::Float64,
            abi::PrimitiveType::Utf8 => PrimitiveType::Utf8,
            abi::PrimitiveType::Binary => PrimitiveType::Binary,
            abi::PrimitiveType::Date32 => PrimitiveType::Date32,
            abi::PrimitiveType::TimestampMicros => PrimitiveType::TimestampMicros,
        }
    }
}

impl From<UdfType> for abi::DataType {
    fn from(t: UdfType) -> Self {
        match t {
            UdfType::Primitive(p) => abi::DataType::Primitive(p.into()),
            UdfType::List(p) => abi::DataType::List(p.into()),
        }
    }
}

impl From<abi::DataType> for UdfType {
    fn from(t: abi::DataType) -> Self {
        match t {
            abi::DataType::Primitive(p) => UdfType::Primitive(p.into()),
            abi::DataType::List(p) => UdfType::List(p.into()),
        }
    }
}

/// One level of buffers of a column about to be lowered.
#[derive(Debug)]
pub(crate) struct PreparedBuffers {
    validity: Option<Buffer>,
    offsets: Buffer,
    values: Buffer,
}

/// A column about to be lowered: owns (cheap clones of) the buffers its parameter borrows.
#[derive(Debug)]
pub(crate) struct PreparedColumn {
    data_type: UdfType,
    len: usize,
    data: PreparedBuffers,
    elements: Option<PreparedBuffers>,
}

impl PreparedBuffers {
    fn param(&self) -> abi::BuffersParam<'_> {
        abi::BuffersParam {
            validity: self.validity.as_ref().map(|b| b.as_slice()),
            offsets: self.offsets.as_slice(),
            values: self.values.as_slice(),
        }
    }
}

impl PreparedColumn {
    pub(crate) fn param(&self) -> abi::ColumnParam<'_> {
        abi::ColumnParam {
            data_type: self.data_type.into(),
            len: self.len as u32,
            data: self.data.param(),
            elements: self.elements.as_ref().map(PreparedBuffers::param),
        }
    }
}

/// A bitmap starting at bit `offset` of `buffer`, as bytes starting at bit 0.
fn bitmap_bytes(bits: &BooleanBuffer) -> Buffer {
    if bits.offset().is_multiple_of(8) {
        bits.inner()
            .slice_with_length(bits.offset() / 8, bits.len().div_ceil(8))
    } else {
        // Realigns (copies) only in this case.
        bits.sliced()
    }
}

fn validity_of(nulls: Option<&NullBuffer>) -> Option<Buffer> {
    nulls
        .filter(|n| n.null_count() > 0)
        .map(|n| bitmap_bytes(n.inner()))
}

/// Offsets rebased to start at zero, with the range of values they index.
fn rebased_offsets(offsets: &OffsetBuffer<i32>) -> (Buffer, usize, usize) {
    let first = offsets.first().copied().unwrap_or(0);
    let last = offsets.last().copied().unwrap_or(0);
    let buffer = if first == 0 {
        offsets.inner().inner().clone()
    } else {
        let rebased: Vec<i32> = offsets.iter().map(|o| o - first).collect();
        Buffer::from_vec(rebased)
    };
    (buffer, first as usize, last as usize)
}

fn fixed_values<T: ArrowPrimitiveType>(array: &dyn Array) -> Buffer {
    array.as_primitive::<T>().values().inner().clone()
}

fn primitive_buffers(
    array: &dyn Array,
    primitive: PrimitiveType,
) -> Result<PreparedBuffers, String> {
    use arrow::datatypes as dt;
    let validity = validity_of(array.logical_nulls().as_ref());
    let empty = Buffer::from_vec(Vec::<u8>::new());
    let (offsets, values) = match primitive {
        PrimitiveType::Null => (empty.clone(), empty),
        PrimitiveType::Boolean => (empty, bitmap_bytes(array.as_boolean().values())),
        PrimitiveType::Int32 => (empty, fixed_values::<dt::Int32Type>(array)),
        PrimitiveType::Int64 => (empty, fixed_values::<dt::Int64Type>(array)),
        PrimitiveType::Float32 => (empty, fixed_values::<dt::Float32Type>(array)),
        PrimitiveType::Float64 => (empty, fixed_values::<dt::Float64Type>(array)),
        PrimitiveType::Date32 => (empty, fixed_values::<dt::Date32Type>(array)),
        PrimitiveType::TimestampMicros => {
            (empty, fixed_values::<dt::TimestampMicrosecondType>(array))
        }
        PrimitiveType::Utf8 => {
            let strings = array.as_string::<i32>();
            let (offsets, first, last) = rebased_offsets(strings.offsets());
            (
                offsets,
                strings.values().slice_with_length(first, last - first),
            )
        }
        PrimitiveType::Binary => {
            let bytes = array.as_binary::<i32>();
            let (offsets, first, last) = rebased_offsets(bytes.offsets());
            (
                offsets,
                bytes.values().slice_with_length(first, last - first),
            )
        }
    };
    // A null column has every row null; say so explicitly rather than relying on the type.
    let validity = if primitive == PrimitiveType::Null && !array.is_empty() {
        Some(Buffer::from_vec(vec![0u8; array.len().div_ceil(8)]))
    } else {
        validity
    };
    Ok(PreparedBuffers {
        validity,
        offsets,
        values,
    })
}

/// Prepares an Arrow array of type `expected` for lowering.
///
/// # Errors
/// The array's type is not `expected` (callers coerce first; see [`crate::wasm::coerce`]).
pub(crate) fn prepare(array: &dyn Array, expected: UdfType) -> Result<PreparedColumn, String> {
    let actual = UdfType::from_arrow(array.data_type());
    if actual != Some(expected) {
        return Err(format!(
            "expected {expected}, got Arrow type {}",
            array.data_type()
        ));
    }
    let len = array.len();
    match expected {
        UdfType::Primitive(p) => Ok(PreparedColumn {
            data_type: expected,
            len,
            data: primitive_buffers(array, p)?,
            elements: None,
        }),
        UdfType::List(p) => {
            let list = array.as_list::<i32>();
            let (offsets, first, last) = rebased_offsets(list.offsets());
            let children = list.values().slice(first, last - first);
            let elements = primitive_buffers(children.as_ref(), p)?;
            Ok(PreparedColumn {
                data_type: expected,
                len,
                data: PreparedBuffers {
                    validity: validity_of(list.nulls()),
                    offsets,
                    values: Buffer::from_vec(Vec::<u8>::new()),
                },
                elements: Some(elements),
            })
        }
    }
}

/// A buffer for `T`s: the guest's vector itself when its allocation is aligned for `T` (it is,
/// from any real allocator), a copy otherwise.
fn aligned_buffer<T>(bytes: Vec<u8>) -> Buffer {
    if (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        Buffer::from_vec(bytes)
    } else {
        Buffer::from_slice_ref(&bytes)
    }
}

fn nulls_from(validity: Option<Vec<u8>>, len: usize) -> Result<Option<NullBuffer>, String> {
    match validity {
        None => Ok(None),
        Some(bits) => {
            if bits.len() < len.div_ceil(8) {
                return Err(format!(
                    "validity bitmap has {} bytes for {len} rows",
                    bits.len()
                ));
            }
            let nulls = NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(bits), 0, len));
            Ok((nulls.null_count() > 0).then_some(nulls))
        }
    }
}

fn primitive_array<T: ArrowPrimitiveType>(
    values: Vec<u8>,
    len: usize,
    nulls: Option<NullBuffer>,
) -> Result<PrimitiveArray<T>, String> {
    let width = std::mem::size_of::<T::Native>();
    if values.len() != len * width {
        return Err(format!(
            "values buffer has {} bytes, {len} rows of {width} bytes need {}",
            values.len(),
            len * width
        ));
    }
    let values = ScalarBuffer::<T::Native>::new(aligned_buffer::<T::Native>(values), 0, len);
    PrimitiveArray::<T>::try_new(values, nulls).map_err(|e| e.to_string())
}

/// Checks offsets: len + 1 of them, non-negative, non-decreasing, within `values_len`.
fn checked_offsets(
    raw: Vec<u8>,
    len: usize,
    values_len: usize,
) -> Result<OffsetBuffer<i32>, String> {
    if raw.len() != (len + 1) * 4 {
        return Err(format!(
            "offsets buffer has {} bytes, {len} rows need {}",
            raw.len(),
            (len + 1) * 4
        ));
    }
    let offsets = ScalarBuffer::<i32>::new(aligned_buffer::<i32>(raw), 0, len + 1);
    // A branch-free pass the compiler vectorises; the loop below only runs to name the culprit.
    let decreasing = offsets.windows(2).fold(false, |bad, w| bad | (w[1] < w[0]));
    if decreasing || offsets.first().is_some_and(|&o| o != 0) {
        let mut previous = 0i32;
        for (i, &o) in offsets.iter().enumerate() {
            if o < previous || (i == 0 && o != 0) {
                return Err(format!(
                    "offset {o} at position {i} is negative or out of order"
                ));
            }
            previous = o;
        }
    }
    let previous = offsets.last().copied().unwrap_or(0);
    if previous as usize > values_len {
        return Err(format!(
            "last offset {previous} is past the end of {values_len} value bytes"
        ));
    }
    // SAFETY: checked just above: len + 1 >= 1 offsets, starting at zero, never decreasing.
    // (`OffsetBuffer::new` would check again, element by element.)
    Ok(unsafe { OffsetBuffer::new_unchecked(offsets) })
}

fn primitive_from_buffers(
    primitive: PrimitiveType,
    len: usize,
    buffers: abi::Buffers,
) -> Result<ArrayRef, String> {
    use arrow::datatypes as dt;
    let nulls = nulls_from(buffers.validity, len)?;
    let values = buffers.values;
    Ok(match primitive {
        PrimitiveType::Null => Arc::new(NullArray::new(len)),
        PrimitiveType::Boolean => {
            if values.len() < len.div_ceil(8) {
                return Err(format!(
                    "boolean bitmap has {} bytes for {len} rows",
                    values.len()
                ));
            }
            let bits = BooleanBuffer::new(Buffer::from_vec(values), 0, len);
            Arc::new(BooleanArray::new(bits, nulls))
        }
        PrimitiveType::Int32 => {
            Arc::new(primitive_array::<dt::Int32Type>(values, len, nulls)?) as ArrayRef
        }
        PrimitiveType::Int64 => Arc::new(primitive_array::<dt::Int64Type>(values, len, nulls)?),
        PrimitiveType::Float32 => Arc::new(primitive_array::<dt::Float32Type>(values, len, nulls)?),
        PrimitiveType::Float64 => Arc::new(primitive_array::<dt::Float64Type>(values, len, nulls)?),
        PrimitiveType::Date32 => Arc::new(primitive_array::<dt::Date32Type>(values, len, nulls)?),
        PrimitiveType::TimestampMicros => Arc::new(
            primitive_array::<dt::TimestampMicrosecondType>(values, len, nulls)?,
        ),
        PrimitiveType::Utf8 => {
            let offsets = checked_offsets(buffers.offsets, len, values.len())?;
            if values.is_ascii() {
                // SAFETY: `checked_offsets` found the offsets in order from 0 and within the
                // values; ASCII is UTF-8 and every offset into it is a char boundary; `nulls`
                // has `len` rows. So `try_new` would not fail: skip its second pass over both.
                Arc::new(unsafe {
                    StringArray::new_unchecked(offsets, Buffer::from_vec(values), nulls)
                })
            } else {
                Arc::new(
                    StringArray::try_new(offsets, Buffer::from_vec(values), nulls)
                        .map_err(|e| e.to_string())?,
                )
            }
        }
        PrimitiveType::Binary => {
            let offsets = checked_offsets(buffers.offsets, len, values.len())?;
            Arc::new(
                BinaryArray::try_new(offsets, Buffer::from_vec(values), nulls)
                    .map_err(|e| e.to_string())?,
            )
        }
    })
}

/// Lifts a guest column into an Arrow array, checking it is of type `expected` with `len` rows.
///
/// # Errors
/// Anything that breaks the contract, described for a `BadOutput` error.
pub(crate) fn to_arrow(
    column: abi::Column,
    expected: UdfType,
    len: usize,
) -> Result<ArrayRef, String> {
    let actual = UdfType::from(column.data_type);
    if actual != expected {
        return Err(format!("a column of {actual}, expected {expected}"));
    }
    if column.len as usize != len {
        return Err(format!("{} rows, expected {len}", column.len));
    }
    match expected {
        UdfType::Primitive(p) => primitive_from_buffers(p, len, column.data),
        UdfType::List(p) => {
            let elements = column
                .elements
                .ok_or_else(|| "a list column without element buffers".to_string())?;
            let nulls = nulls_from(column.data.validity, len)?;
            // Element count is the last offset; check against a generous bound first, then build.
            let raw = column.data.offsets;
            if raw.len() != (len + 1) * 4 {
                return Err(format!(
                    "list offsets buffer has {} bytes for {len} rows",
                    raw.len()
                ));
            }
            let last = i32::from_le_bytes([
                raw[len * 4],
                raw[len * 4 + 1],
                raw[len * 4 + 2],
                raw[len * 4 + 3],
            ]);
            let element_count =
                usize::try_from(last).map_err(|_| format!("negative list offset {last}"))?;
            let offsets = checked_offsets(raw, len, element_count)?;
            let children = primitive_from_buffers(p, element_count, elements)?;
            let field = Arc::new(Field::new("item", p.arrow_type(), true));
            Ok(Arc::new(
                GenericListArray::<i32>::try_new(field, offsets, children, nulls)
                    .map_err(|e| e.to_string())?,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, ListArray};
    use arrow::datatypes::Int64Type;

    fn round_trip(array: &dyn Array, t: UdfType) -> ArrayRef {
        let prepared = prepare(array, t).expect("prepare");
        let p = prepared.param();
        // What the guest would receive, returned as it would return it.
        let owned = |b: abi::BuffersParam<'_>| abi::Buffers {
            validity: b.validity.map(<[u8]>::to_vec),
            offsets: b.offsets.to_vec(),
            values: b.values.to_vec(),
        };
        let column = abi::Column {
            data_type: p.data_type,
            len: p.len,
            data: owned(p.data),
            elements: p.elements.map(owned),
        };
        to_arrow(column, t, array.len()).expect("to_arrow")
    }

    #[test]
    fn sliced_arrays_are_rebased() {
        let ints = Int64Array::from(vec![
            Some(1),
            None,
            Some(3),
            Some(4),
            None,
            Some(6),
            Some(7),
            Some(8),
            None,
            Some(10),
        ]);
        let sliced = ints.slice(3, 6);
        let back = round_trip(&sliced, UdfType::Primitive(PrimitiveType::Int64));
        assert_eq!(back.as_primitive::<Int64Type>(), &sliced);

        let strings = StringArray::from(vec![Some("a"), Some("bb"), None, Some("dddd"), Some("")]);
        let sliced = strings.slice(1, 3);
        let back = round_trip(&sliced, UdfType::Primitive(PrimitiveType::Utf8));
        assert_eq!(back.as_string::<i32>(), &sliced);
    }

    #[test]
    fn lists_round_trip() {
        let lists = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![]),
            Some(vec![Some(5)]),
        ]);
        let sliced = lists.slice(1, 3);
        let back = round_trip(&sliced, UdfType::List(PrimitiveType::Int64));
        assert_eq!(back.as_list::<i32>(), &sliced);
    }

    #[test]
    fn malformed_output_is_an_error_not_a_panic() {
        let bad = |offsets: Vec<i32>, values: &[u8]| abi::Column {
            data_type: abi::DataType::Primitive(abi::PrimitiveType::Utf8),
            len: (offsets.len() - 1) as u32,
            data: abi::Buffers {
                validity: None,
                offsets: offsets.iter().flat_map(|o| o.to_le_bytes()).collect(),
                values: values.to_vec(),
            },
            elements: None,
        };
        let utf8 = UdfType::Primitive(PrimitiveType::Utf8);
        assert!(to_arrow(bad(vec![0, 5], b"abc"), utf8, 1).is_err());
        assert!(to_arrow(bad(vec![0, 2, 1], b"abc"), utf8, 2).is_err());
        assert!(to_arrow(bad(vec![1, 2], b"abc"), utf8, 1).is_err());
        assert!(to_arrow(bad(vec![-1, 2], b"abc"), utf8, 1).is_err());
        assert!(to_arrow(bad(vec![0, 1], "é".as_bytes()), utf8, 1).is_err());
        assert!(to_arrow(bad(vec![0, 2], b"\xff\xfe"), utf8, 1).is_err());
        assert!(to_arrow(bad(vec![0, 2], b"ab"), utf8, 2).is_err());
        let short = abi::Column {
            data_type: abi::DataType::Primitive(abi::PrimitiveType::Int64),
            len: 2,
            data: abi::Buffers {
                validity: Some(vec![]),
                offsets: vec![],
                values: vec![0; 16],
            },
            elements: None,
        };
        assert!(to_arrow(short, UdfType::Primitive(PrimitiveType::Int64), 2).is_err());
    }
}
