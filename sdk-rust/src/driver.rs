//! The per-batch loops behind every function kind. The macros generate one call into these per
//! exported function; everything else (null handling, errors with row numbers, state encoding) is
//! written once, here.

use std::fmt::Display;

use crate::aggregate::{Aggregate, ArgTuple};
use crate::column::{ARGS_BLOCK, ArgReader, ArgValue, BLOCK, Produce, ResultValue};
use crate::wit::{Batch, Column, DataType, PrimitiveType, TableOutput, UdfError};

fn batch_error(message: String) -> UdfError {
    UdfError { message, row: None }
}

fn row_error(message: impl Display, row: usize) -> UdfError {
    UdfError {
        message: message.to_string(),
        row: Some(row as u32),
    }
}

impl<'a> ArgTuple<'a> for () {
    type Readers = ();
    fn data_types() -> Vec<DataType> {
        Vec::new()
    }
    fn readers(columns: &'a [Column], _num_rows: usize) -> Result<(), String> {
        if columns.is_empty() {
            Ok(())
        } else {
            Err(format!("expected no arguments, got {}", columns.len()))
        }
    }
    fn read(_: &(), _row: usize) -> Option<()> {
        Some(())
    }
    fn nulls(_: &()) -> bool {
        false
    }
    fn read_valid(_: &(), _row: usize) {}
}

/// The dense path of [`scalar`]: arguments read a block at a time, results in row order.
struct Dense<'r, 'a, A: ArgTuple<'a>, F> {
    readers: &'r A::Readers,
    function: F,
    args: std::marker::PhantomData<fn() -> A>,
}

impl<'a, A, R, E, F> Produce<R, E> for Dense<'_, 'a, A, F>
where
    A: ArgTuple<'a>,
    F: FnMut(A) -> Result<R, E>,
{
    #[inline]
    fn one(&mut self, row: usize) -> Result<R, E> {
        (self.function)(A::read_valid(self.readers, row))
    }
    #[inline]
    fn block(
        &mut self,
        start: usize,
        out: &mut [std::mem::MaybeUninit<R>; BLOCK],
    ) -> Result<(), (usize, E)> {
        let (parts, _) = out.as_chunks_mut::<ARGS_BLOCK>();
        for (k, part) in parts.iter_mut().enumerate() {
            let first = start + k * ARGS_BLOCK;
            let args = A::read_valid_block(self.readers, first);
            for (i, (slot, args)) in part.iter_mut().zip(args).enumerate() {
                slot.write((self.function)(args).map_err(|e| (first + i, e))?);
            }
        }
        Ok(())
    }
}

/// Runs a scalar function over a batch: one result per row, null where a non-`Option` argument
/// is null (the function is not called for that row).
///
/// # Errors
/// Argument columns that do not match the signature, or the first row whose call returned `Err`.
pub fn scalar<'a, A, R, E>(
    args: &'a Batch,
    mut function: impl FnMut(A) -> Result<R, E>,
) -> Result<Column, UdfError>
where
    A: ArgTuple<'a>,
    R: ResultValue,
    E: Display,
{
    let num_rows = args.num_rows as usize;
    let readers = A::readers(&args.columns, num_rows).map_err(batch_error)?;
    if !A::nulls(&readers) {
        // The common case: no row is skipped, so results go straight into the output buffer.
        let dense = Dense::<'_, 'a, A, _> {
            readers: &readers,
            function: &mut function,
            args: std::marker::PhantomData,
        };
        return R::encode_valid(num_rows, dense).map_err(|(row, e)| row_error(e, row));
    }
    // Results go to slots of a vector sized once; encoding follows in one pass per buffer. A
    // builder pushed row by row would keep its length in memory (its growth path escapes), and
    // that store-to-load chain, not the function, would set the pace.
    let mut results: Vec<Option<R>> = (0..num_rows).map(|_| None).collect();
    for (row, slot) in results.iter_mut().enumerate() {
        if let Some(values) = A::read(&readers, row) {
            match function(values) {
                Ok(value) => *slot = Some(value),
                Err(e) => return Err(row_error(e, row)),
            }
        }
    }
    Ok(R::encode(results))
}

/// One output row of a table function: a single value, or a tuple of values (one per column).
pub trait TableRow: Sized {
    /// The output column types.
    fn data_types() -> Vec<DataType>;
    /// The output columns of `rows`.
    fn encode(rows: Vec<Self>) -> Vec<Column>;
}

impl<T: ResultValue> TableRow for T {
    fn data_types() -> Vec<DataType> {
        vec![T::DATA_TYPE]
    }
    fn encode(rows: Vec<Self>) -> Vec<Column> {
        vec![T::encode(rows.into_iter().map(Some).collect())]
    }
}

macro_rules! table_row {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: ResultValue),+> TableRow for ($($name,)+) {
            fn data_types() -> Vec<DataType> {
                vec![$($name::DATA_TYPE),+]
            }
            fn encode(rows: Vec<Self>) -> Vec<Column> {
                let mut columns = ($(Vec::<Option<$name>>::with_capacity(rows.len()),)+);
                for row in rows {
                    $(columns.$idx.push(Some(row.$idx));)+
                }
                vec![$($name::encode(columns.$idx)),+]
            }
        }
    };
}

table_row!(A 0, B 1);
table_row!(A 0, B 1, C 2);
table_row!(A 0, B 1, C 2, D 3);
table_row!(A 0, B 1, C 2, D 3, E 4);
table_row!(A 0, B 1, C 2, D 3, E 4, F 5);

/// Runs a table function over a batch. Each output row records the input row it came from; a row
/// whose non-`Option` argument is null produces no output.
///
/// # Errors
/// Argument columns that do not match the signature, or the first row whose call returned `Err`.
pub fn table<'a, A, I, E>(
    args: &'a Batch,
    mut function: impl FnMut(A) -> Result<I, E>,
) -> Result<TableOutput, UdfError>
where
    A: ArgTuple<'a>,
    I: IntoIterator,
    I::Item: TableRow,
    E: Display,
{
    let num_rows = args.num_rows as usize;
    let readers = A::readers(&args.columns, num_rows).map_err(batch_error)?;
    let mut outputs: Vec<I::Item> = Vec::with_capacity(num_rows);
    // Row indexes as the contract carries them: 4 little-endian bytes each.
    let mut row_index: Vec<u8> = Vec::with_capacity(num_rows * 4);
    for row in 0..num_rows {
        let Some(values) = A::read(&readers, row) else {
            continue;
        };
        let rows = function(values).map_err(|e| row_error(e, row))?;
        for output in rows {
            outputs.push(output);
            row_index.extend_from_slice(&(row as u32).to_le_bytes());
        }
    }
    let columns = <I::Item as TableRow>::encode(outputs);
    Ok(TableOutput {
        rows: Batch {
            num_rows: (row_index.len() / 4) as u32,
            columns,
        },
        row_index,
    })
}

fn encode_state<A: Aggregate>(state: &A, out: &mut Vec<u8>) -> Result<(), UdfError> {
    let bytes = postcard::to_allocvec(state)
        .map_err(|e| batch_error(format!("cannot encode the aggregate state: {e}")))?;
    out.extend_from_slice(&bytes);
    Ok(())
}

fn decode_states<A: Aggregate>(states: &Column) -> Result<Vec<A>, UdfError> {
    let len = states.len as usize;
    let reader =
        <&[u8]>::reader(states, len).map_err(|e| batch_error(format!("aggregate states: {e}")))?;
    (0..len)
        .map(|i| {
            let bytes = reader.get(i).ok_or_else(|| {
                batch_error(format!(
                    "aggregate state {i} is null; states are never null"
                ))
            })?;
            postcard::from_bytes(bytes)
                .map_err(|e| batch_error(format!("aggregate state {i} cannot be decoded: {e}")))
        })
        .collect()
}

fn encode_states<A: Aggregate>(states: &[A]) -> Result<Column, UdfError> {
    let mut offsets = Vec::with_capacity((states.len() + 1) * 4);
    offsets.extend_from_slice(&0i32.to_le_bytes());
    let mut values = Vec::new();
    for state in states {
        encode_state(state, &mut values)?;
        let end = i32::try_from(values.len())
            .map_err(|_| batch_error("aggregate states exceed 2 GiB".to_string()))?;
        offsets.extend_from_slice(&end.to_le_bytes());
    }
    Ok(Column {
        data_type: DataType::Primitive(PrimitiveType::Binary),
        len: states.len() as u32,
        data: crate::wit::Buffers {
            validity: None,
            offsets,
            values,
        },
        elements: None,
    })
}

/// A new state, encoded.
///
/// # Errors
/// The state cannot be encoded.
pub fn aggregate_create<A: Aggregate>() -> Result<Vec<u8>, UdfError> {
    let mut out = Vec::new();
    encode_state(&A::create(), &mut out)?;
    Ok(out)
}

/// Accumulates (or, with `retract`, retracts) each row into the state of its group.
///
/// # Errors
/// Bad argument columns or states, a group index out of range, or the first row whose
/// accumulate/retract returned `Err`.
pub fn aggregate_update<A: Aggregate>(
    args: &Batch,
    groups: &[u8],
    states: &Column,
    retract: bool,
) -> Result<Column, UdfError> {
    let num_rows = args.num_rows as usize;
    if groups.len() != num_rows * 4 {
        return Err(batch_error(format!(
            "{} bytes of group indexes for {num_rows} rows (4 per row)",
            groups.len()
        )));
    }
    let groups = groups
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut decoded: Vec<A> = decode_states(states)?;
    let readers =
        <A::Args<'_> as ArgTuple>::readers(&args.columns, num_rows).map_err(batch_error)?;
    for (row, group) in groups.enumerate() {
        let Some(values) = <A::Args<'_> as ArgTuple>::read(&readers, row) else {
            continue;
        };
        let state = decoded
            .get_mut(group as usize)
            .ok_or_else(|| row_error(format!("group index {group} is out of range"), row))?;
        let result = if retract {
            state.retract(values)
        } else {
            state.accumulate(values)
        };
        result.map_err(|e| row_error(e, row))?;
    }
    encode_states(&decoded)
}

/// Merges `right[i]` into `left[i]`.
///
/// # Errors
/// Bad states, columns of different lengths, or a merge that returned `Err`.
pub fn aggregate_merge<A: Aggregate>(left: &Column, right: &Column) -> Result<Column, UdfError> {
    if left.len != right.len {
        return Err(batch_error(format!(
            "cannot merge {} states with {}",
            left.len, right.len
        )));
    }
    let mut merged: Vec<A> = decode_states(left)?;
    let others: Vec<A> = decode_states(right)?;
    for (i, (state, other)) in merged.iter_mut().zip(others).enumerate() {
        state.merge(other).map_err(|e| row_error(e, i))?;
    }
    encode_states(&merged)
}

/// The final value of each state.
///
/// # Errors
/// Bad states.
pub fn aggregate_finish<A: Aggregate>(states: &Column) -> Result<Column, UdfError> {
    let decoded: Vec<A> = decode_states(states)?;
    let results = decoded.iter().map(|state| Some(state.finish())).collect();
    Ok(<A::Output as ResultValue>::encode(results))
}
