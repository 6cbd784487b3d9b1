//! Result columns, encoded in bulk from per-row results: each buffer is sized once and written in
//! one pass, and a validity bitmap exists only when a row is null.

use super::{BLOCK, FixedWidth, Produce, ResultValue, primitive, values_of_uninit};
use crate::wit::{Buffers, Column, DataType, PrimitiveType};
use crate::{Date, Timestamp};

/// A validity bitmap for `len` rows, or `None` when every row is valid.
fn validity<T>(values: &[Option<T>]) -> Option<Vec<u8>> {
    if values.iter().all(Option::is_some) {
        return None;
    }
    let mut bits = vec![0u8; values.len().div_ceil(8)];
    for (i, value) in values.iter().enumerate() {
        if value.is_some() {
            bits[i >> 3] |= 1 << (i & 7);
        }
    }
    Some(bits)
}

fn column(data_type: DataType, len: usize, data: Buffers, elements: Option<Buffers>) -> Column {
    Column {
        data_type,
        len: len as u32,
        data,
        elements,
    }
}

/// Fixed-width values back to back; a null row holds the type's default.
fn fixed_bytes<T: FixedWidth>(values: &[Option<T>]) -> Vec<u8> {
    let mut bytes = vec![0u8; values.len() * T::WIDTH];
    for (chunk, value) in bytes.chunks_exact_mut(T::WIDTH).zip(values) {
        value.unwrap_or_default().write(chunk);
    }
    bytes
}

macro_rules! fixed_result {
    ($($t:ty => $p:ident),* $(,)?) => {$(
        impl ResultValue for $t {
            const DATA_TYPE: DataType = primitive(PrimitiveType::$p);
            fn encode(values: Vec<Option<Self>>) -> Column {
                let data = Buffers {
                    validity: validity(&values),
                    offsets: Vec::new(),
                    values: fixed_bytes(&values),
                };
                column(Self::DATA_TYPE, values.len(), data, None)
            }
            fn encode_valid<E>(
                len: usize,
                produce: impl Produce<Self, E>,
            ) -> Result<Column, (usize, E)> {
                let data = Buffers {
                    validity: None,
                    offsets: Vec::new(),
                    values: fixed_valid(len, produce)?,
                };
                Ok(column(Self::DATA_TYPE, len, data, None))
            }
        }
    )*};
}

/// The bytes of `len` values asked of `produce` in row order, written once (no zeroing first).
fn fixed_valid<T: FixedWidth, E>(
    len: usize,
    mut produce: impl Produce<T, E>,
) -> Result<Vec<u8>, (usize, E)> {
    let size = len * T::WIDTH;
    let mut bytes: Vec<u8> = Vec::with_capacity(size);
    if let Some(out) = values_of_uninit::<T>(&mut bytes.spare_capacity_mut()[..size]) {
        let (blocks, tail) = out.as_chunks_mut::<BLOCK>();
        let mut row = 0;
        for block in blocks {
            produce.block(row, block)?;
            row += BLOCK;
        }
        for slot in tail {
            slot.write(produce.one(row).map_err(|e| (row, e))?);
            row += 1;
        }
        // SAFETY: the loops above initialised all `len` values, that is all `size` bytes.
        unsafe { bytes.set_len(size) };
    } else {
        bytes.resize(size, 0);
        for (row, chunk) in bytes.chunks_exact_mut(T::WIDTH).enumerate() {
            produce.one(row).map_err(|e| (row, e))?.write(chunk);
        }
    }
    Ok(bytes)
}

fixed_result!(
    i32 => Int32,
    i64 => Int64,
    f32 => Float32,
    f64 => Float64,
    Date => Date32,
    Timestamp => TimestampMicros,
);

impl ResultValue for bool {
    const DATA_TYPE: DataType = primitive(PrimitiveType::Boolean);
    fn encode(values: Vec<Option<Self>>) -> Column {
        let mut bits = vec![0u8; values.len().div_ceil(8)];
        for (i, value) in values.iter().enumerate() {
            if *value == Some(true) {
                bits[i >> 3] |= 1 << (i & 7);
            }
        }
        let data = Buffers {
            validity: validity(&values),
            offsets: Vec::new(),
            values: bits,
        };
        column(Self::DATA_TYPE, values.len(), data, None)
    }
}

/// Copies `src` into `dst` (same length). Short values are copied with fixed-size moves: a
/// variable-length copy compiles to `memory.copy`, which the Wasm runtime executes as a call out
/// of the guest, far dearer than moving a few bytes for the typical short string.
#[inline]
fn copy_value(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (16..=32).contains(&n) {
        // Two overlapping 16-byte moves cover any length from 16 to 32.
        let head: [u8; 16] = src[..16].try_into().unwrap_or_default();
        let tail: [u8; 16] = src[n - 16..].try_into().unwrap_or_default();
        dst[..16].copy_from_slice(&head);
        dst[n - 16..].copy_from_slice(&tail);
    } else if (8..16).contains(&n) {
        // Two overlapping 8-byte moves cover any length from 8 to 16.
        let head: [u8; 8] = src[..8].try_into().unwrap_or_default();
        let tail: [u8; 8] = src[n - 8..].try_into().unwrap_or_default();
        dst[..8].copy_from_slice(&head);
        dst[n - 8..].copy_from_slice(&tail);
    } else if (4..8).contains(&n) {
        let head: [u8; 4] = src[..4].try_into().unwrap_or_default();
        let tail: [u8; 4] = src[n - 4..].try_into().unwrap_or_default();
        dst[..4].copy_from_slice(&head);
        dst[n - 4..].copy_from_slice(&tail);
    } else if (2..4).contains(&n) {
        dst[..2].copy_from_slice(&[src[0], src[1]]);
        dst[n - 2..].copy_from_slice(&[src[n - 2], src[n - 1]]);
    } else if n == 1 {
        dst[0] = src[0];
    } else if n > 32 {
        dst.copy_from_slice(src);
    }
}

/// Offsets and bytes of variable-width values.
fn variable_width<'v>(
    values: impl Iterator<Item = Option<&'v [u8]>> + Clone,
    len: usize,
) -> (Vec<u8>, Vec<u8>) {
    let total: usize = values.clone().map(|v| v.map_or(0, <[u8]>::len)).sum();
    let mut bytes = vec![0u8; total];
    let mut offsets = vec![0u8; (len + 1) * 4];
    let mut position = 0usize;
    for (slot, value) in offsets[4..].chunks_exact_mut(4).zip(values) {
        if let Some(value) = value {
            let end = position + value.len();
            copy_value(&mut bytes[position..end], value);
            position = end;
        }
        // A guest cannot hold 2 GiB under any sane memory cap; the host checks offsets anyway.
        slot.copy_from_slice(&(position as i32).to_le_bytes());
    }
    (offsets, bytes)
}

macro_rules! bytes_result {
    ($($t:ty => $p:ident, |$v:ident| $as_bytes:expr);* $(;)?) => {$(
        impl ResultValue for $t {
            const DATA_TYPE: DataType = primitive(PrimitiveType::$p);
            fn encode(values: Vec<Option<Self>>) -> Column {
                let (offsets, bytes) = variable_width(
                    values.iter().map(|value| value.as_ref().map(|$v| $as_bytes)),
                    values.len(),
                );
                let data = Buffers {
                    validity: validity(&values),
                    offsets,
                    values: bytes,
                };
                column(Self::DATA_TYPE, values.len(), data, None)
            }
            fn encode_valid<E>(
                len: usize,
                produce: impl Produce<Self, E>,
            ) -> Result<Column, (usize, E)> {
                // Named: for `&str` and `&[u8]` elision cannot tell which lifetime is meant.
                #[allow(clippy::needless_lifetimes)]
                fn bytes_of<'x>($v: &'x $t) -> &'x [u8] {
                    $as_bytes
                }
                let (offsets, bytes) = variable_width_valid(len, produce, bytes_of)?;
                let data = Buffers {
                    validity: None,
                    offsets,
                    values: bytes,
                };
                Ok(column(Self::DATA_TYPE, len, data, None))
            }
        }
    )*};
}

/// Offsets and bytes of `len` valid values, in one pass: each value is copied as it is produced
/// (no vector of results, no second pass to size the bytes), into a buffer that doubles when full.
fn variable_width_valid<T, E>(
    len: usize,
    mut produce: impl Produce<T, E>,
    bytes_of: fn(&T) -> &[u8],
) -> Result<(Vec<u8>, Vec<u8>), (usize, E)> {
    let mut offsets = vec![0u8; (len + 1) * 4];
    let mut bytes = vec![0u8; (len * 16).max(64)];
    let mut position = 0usize;
    let (slots, _) = offsets[4..].as_chunks_mut::<4>();
    for (row, slot) in slots.iter_mut().enumerate() {
        let value = produce.one(row).map_err(|e| (row, e))?;
        let value = bytes_of(&value);
        let end = position + value.len();
        if end > bytes.len() {
            grow(&mut bytes, end);
        }
        copy_value(&mut bytes[position..end], value);
        position = end;
        // A guest cannot hold 2 GiB under any sane memory cap; the host checks offsets anyway.
        *slot = (position as i32).to_le_bytes();
    }
    bytes.truncate(position);
    Ok((offsets, bytes))
}

/// Out of line, so that the row loop keeps its state in registers.
#[cold]
#[inline(never)]
fn grow(bytes: &mut Vec<u8>, at_least: usize) {
    bytes.resize(at_least.max(bytes.len() * 2), 0);
}

bytes_result!(
    String => Utf8, |v| v.as_bytes();
    &str => Utf8, |v| v.as_bytes();
    Vec<u8> => Binary, |v| v.as_slice();
    &[u8] => Binary, |v| *v;
);

impl<T: FixedWidth + ResultValue> ResultValue for Vec<T> {
    const DATA_TYPE: DataType = match T::DATA_TYPE {
        DataType::Primitive(p) | DataType::List(p) => DataType::List(p),
    };
    fn encode(values: Vec<Option<Self>>) -> Column {
        let mut offsets = vec![0u8; (values.len() + 1) * 4];
        let mut count = 0usize;
        for (slot, value) in offsets[4..].chunks_exact_mut(4).zip(&values) {
            count += value.as_ref().map_or(0, Vec::len);
            slot.copy_from_slice(&(count as i32).to_le_bytes());
        }
        let elements: Vec<Option<T>> = values
            .iter()
            .flatten()
            .flatten()
            .copied()
            .map(Some)
            .collect();
        let data = Buffers {
            validity: validity(&values),
            offsets,
            values: Vec::new(),
        };
        let elements = Buffers {
            validity: None,
            offsets: Vec::new(),
            values: fixed_bytes(&elements),
        };
        column(Self::DATA_TYPE, values.len(), data, Some(elements))
    }
}

impl<T: ResultValue> ResultValue for Option<T> {
    const DATA_TYPE: DataType = T::DATA_TYPE;
    fn encode(values: Vec<Option<Self>>) -> Column {
        T::encode(values.into_iter().map(Option::flatten).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::column::{ArgReader, ArgValue};

    #[test]
    fn fixed_width_round_trip_keeps_nulls() {
        let input = vec![
            Some(1),
            None,
            Some(-3),
            Some(i64::MAX),
            None,
            None,
            Some(0),
            Some(7),
            None,
        ];
        let column = i64::encode(input.clone());
        assert!(column.data.validity.is_some());
        let reader = i64::reader(&column, input.len()).expect("reader");
        let read: Vec<Option<i64>> = (0..input.len()).map(|i| reader.get(i)).collect();
        assert_eq!(read, input);
    }

    #[test]
    fn no_nulls_means_no_bitmap() {
        let column = i64::encode(vec![Some(1), Some(2)]);
        assert!(column.data.validity.is_none());
        assert_eq!(column.data.values.len(), 16);
    }

    #[test]
    fn strings_round_trip_and_borrow() {
        let column = <&str>::encode(vec![Some("héllo"), None, Some("")]);
        let reader = <Option<&str>>::reader(&column, 3).expect("reader");
        assert_eq!(reader.get(0), Some(Some("héllo")));
        assert_eq!(reader.get(1), Some(None));
        assert_eq!(reader.get(2), Some(Some("")));
    }

    #[test]
    fn option_results_are_nulls() {
        let column = <Option<String>>::encode(vec![Some(Some("a".into())), Some(None), None]);
        let reader = <Option<&str>>::reader(&column, 3).expect("reader");
        let read: Vec<Option<Option<&str>>> = (0..3).map(|i| reader.get(i)).collect();
        assert_eq!(read, [Some(Some("a")), Some(None), Some(None)]);
    }

    #[test]
    fn bad_offsets_are_refused_not_trusted() {
        let mut column = <&str>::encode(vec![Some("abc")]);
        column.data.offsets = [0i32, 99].iter().flat_map(|o| o.to_le_bytes()).collect();
        let err = <&str>::reader(&column, 1).expect_err("out of bounds offsets");
        assert!(err.contains("out of bounds"), "{err}");
    }

    #[test]
    fn a_split_utf8_character_is_refused() {
        let mut column = <&str>::encode(vec![Some("é")]);
        column.data.offsets = [0i32, 1].iter().flat_map(|o| o.to_le_bytes()).collect();
        assert!(<&str>::reader(&column, 1).is_err());
    }

    #[test]
    fn decreasing_or_negative_offsets_are_refused() {
        for offsets in [[0i32, 2, 1, 3], [-1, 0, 1, 2], [0, 1, 2, 99]] {
            let mut column = <&str>::encode(vec![Some("a"), Some("b"), Some("c")]);
            column.data.offsets = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
            assert!(<&str>::reader(&column, 3).is_err(), "{offsets:?}");
        }
    }

    #[test]
    fn non_ascii_past_the_first_32_bytes_is_still_checked() {
        for at in [0, 31, 32, 33, 64, 70] {
            let mut text = "a".repeat(72);
            text.replace_range(at..at + 1, "\u{e9}");
            let mut column = <&str>::encode(vec![Some(text.as_str())]);
            // An offset inside the two-byte character.
            column.data.offsets = [0i32, at as i32 + 1]
                .iter()
                .flat_map(|o| o.to_le_bytes())
                .collect();
            assert!(<&str>::reader(&column, 1).is_err(), "at {at}");
        }
    }

    #[test]
    fn booleans_are_bit_packed() {
        let input: Vec<Option<bool>> = (0..10).map(|i| (i != 4).then_some(i % 3 == 0)).collect();
        let column = bool::encode(input.clone());
        assert_eq!(column.data.values.len(), 2);
        let reader = bool::reader(&column, 10).expect("reader");
        let read: Vec<Option<bool>> = (0..10).map(|i| reader.get(i)).collect();
        assert_eq!(read, input);
    }

    #[test]
    fn strings_of_every_short_length_copy_exactly() {
        let text = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ";
        let values: Vec<Option<&str>> = (0..text.len()).map(|n| Some(&text[..n])).collect();
        let column = <&str>::encode(values.clone());
        let reader = <&str>::reader(&column, values.len()).expect("reader");
        for (i, value) in values.iter().enumerate() {
            assert_eq!(reader.get(i), *value, "length {i}");
        }
    }

    #[test]
    fn lists_round_trip() {
        let column = <Vec<i32>>::encode(vec![Some(vec![1, 2, 3]), None, Some(vec![])]);
        let reader = <Option<Vec<i32>>>::reader(&column, 3).expect("reader");
        assert_eq!(reader.get(0), Some(Some(vec![1, 2, 3])));
        assert_eq!(reader.get(1), Some(None));
        assert_eq!(reader.get(2), Some(Some(vec![])));
    }

    #[test]
    fn a_wrongly_typed_column_names_both_types() {
        let column = i64::encode(vec![Some(1)]);
        let err = f64::reader(&column, 1).expect_err("type mismatch");
        assert_eq!(err, "expected a double column, got bigint");
    }
}
