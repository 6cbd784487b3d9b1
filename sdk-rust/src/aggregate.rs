//! Aggregate functions whose state the host owns.
//!
//! The host keeps every group's state as bytes (so that it is checkpointed and rescaled like any
//! other state) and hands the states of the groups in a batch to the function. The SDK decodes them,
//! runs the author's [`Aggregate`] methods, and encodes them again: authors write plain Rust.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::column::{ARGS_BLOCK, ArgValue};

/// An aggregate function: a state type and the operations on it.
///
/// The state is serialized with serde (postcard encoding) between calls, so it must derive
/// `Serialize` and `Deserialize`. Mark the `impl` block with [`#[aggregate]`](crate::aggregate):
/// it registers the function and reads from the block whether `retract` and `merge` are provided.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use weir_udf::{Aggregate, Error, aggregate};
///
/// /// Sum of a bigint column, usable on updating input because it can retract.
/// #[derive(Default, Serialize, Deserialize)]
/// struct Total(i64);
///
/// #[aggregate(name = "total")]
/// impl Aggregate for Total {
///     type Args<'a> = (i64,);
///     type Output = i64;
///     fn create() -> Self {
///         Total(0)
///     }
///     fn accumulate(&mut self, (value,): (i64,)) -> Result<(), Error> {
///         self.0 += value;
///         Ok(())
///     }
///     fn retract(&mut self, (value,): (i64,)) -> Result<(), Error> {
///         self.0 -= value;
///         Ok(())
///     }
///     fn finish(&self) -> i64 {
///         self.0
///     }
/// }
/// # fn main() {}
/// ```
pub trait Aggregate: Serialize + DeserializeOwned + Sized {
    /// The arguments, as a tuple (`(f64,)` for one argument). A row in which a non-`Option`
    /// argument is null is skipped, as SQL aggregates skip nulls.
    type Args<'a>: ArgTuple<'a>;
    /// The final value's type.
    type Output: crate::column::ResultValue;

    /// The state of a group that has seen no rows.
    fn create() -> Self;

    /// Adds one row.
    ///
    /// # Errors
    /// An error fails the call and names the row.
    fn accumulate(&mut self, args: Self::Args<'_>) -> Result<(), Error>;

    /// Takes one row back out; provide it to run on updating (changelog) input.
    ///
    /// # Errors
    /// An error fails the call and names the row.
    fn retract(&mut self, args: Self::Args<'_>) -> Result<(), Error> {
        let _ = args;
        Err(Error::new("this aggregate does not support retract"))
    }

    /// Merges another state of the same group into this one; provide it for windows that merge.
    ///
    /// # Errors
    /// An error fails the call.
    fn merge(&mut self, other: Self) -> Result<(), Error> {
        let _ = other;
        Err(Error::new("this aggregate does not support merge"))
    }

    /// The final value.
    fn finish(&self) -> Self::Output;
}

/// A tuple of argument values read row by row.
pub trait ArgTuple<'a>: Sized {
    /// The readers of the tuple's columns.
    type Readers;
    /// The column types, in order.
    fn data_types() -> Vec<crate::wit::DataType>;
    /// Borrows the columns.
    ///
    /// # Errors
    /// A column of the wrong type or length, named by position.
    fn readers(columns: &'a [crate::wit::Column], num_rows: usize)
    -> Result<Self::Readers, String>;
    /// The row, or `None` if a non-`Option` argument is null.
    fn read(readers: &Self::Readers, row: usize) -> Option<Self>;
    /// Whether some row may be skipped for a null argument.
    fn nulls(readers: &Self::Readers) -> bool;
    /// The row, when [`ArgTuple::nulls`] said no row is skipped.
    fn read_valid(readers: &Self::Readers, row: usize) -> Self;
    /// Rows `start..start + ARGS_BLOCK`, when [`ArgTuple::nulls`] said no row is skipped.
    #[inline]
    fn read_valid_block(readers: &Self::Readers, start: usize) -> [Self; ARGS_BLOCK] {
        std::array::from_fn(|i| Self::read_valid(readers, start + i))
    }
}

macro_rules! arg_tuple {
    ($($name:ident $idx:tt),+) => {
        impl<'a, $($name: ArgValue<'a>),+> ArgTuple<'a> for ($($name,)+) {
            type Readers = ($($name::Reader,)+);
            fn data_types() -> Vec<crate::wit::DataType> {
                vec![$($name::DATA_TYPE),+]
            }
            fn readers(
                columns: &'a [crate::wit::Column],
                num_rows: usize,
            ) -> Result<Self::Readers, String> {
                let expected = [$($idx),+].len();
                if columns.len() != expected {
                    return Err(format!("expected {expected} arguments, got {}", columns.len()));
                }
                Ok(($(
                    $name::reader(&columns[$idx], num_rows)
                        .map_err(|e| format!("argument {}: {e}", $idx + 1))?,
                )+))
            }
            #[inline]
            fn read(readers: &Self::Readers, row: usize) -> Option<Self> {
                use crate::column::ArgReader;
                Some(($(readers.$idx.get(row)?,)+))
            }
            fn nulls(readers: &Self::Readers) -> bool {
                use crate::column::ArgReader;
                false $(|| readers.$idx.nulls())+
            }
            #[inline]
            fn read_valid(readers: &Self::Readers, row: usize) -> Self {
                use crate::column::ArgReader;
                ($(readers.$idx.get_valid(row),)+)
            }
            #[inline]
            fn read_valid_block(readers: &Self::Readers, start: usize) -> [Self; ARGS_BLOCK] {
                use crate::column::ArgReader;
                let mut columns = ($(readers.$idx.get_valid_block(start).into_iter(),)+);
                std::array::from_fn(|_| ($(
                    match columns.$idx.next() {
                        Some(value) => value,
                        None => unreachable!("a block holds ARGS_BLOCK rows"),
                    },
                )+))
            }
        }
    };
}

arg_tuple!(A 0);
arg_tuple!(A 0, B 1);
arg_tuple!(A 0, B 1, C 2);
arg_tuple!(A 0, B 1, C 2, D 3);
arg_tuple!(A 0, B 1, C 2, D 3, E 4);
arg_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
