//! Write Weir user functions in plain Rust; the macros turn them into a `weir:udf` component.
//!
//! A complete function module, built with `weir build path/to/crate` (or
//! `cargo build --release --target wasm32-wasip2` on a `cdylib` crate):
//!
//! ```
//! use weir_udf::{Error, scalar, table};
//!
//! /// Cents to dollars. A null price gives a null result: the function is not called.
//! #[scalar]
//! fn to_usd(cents: i64) -> f64 {
//!     cents as f64 / 100.0
//! }
//!
//! /// `Option` arguments receive nulls; a borrowed `&str` result costs no allocation.
//! #[scalar]
//! fn first_word(text: Option<&str>) -> Option<&str> {
//!     text?.split_whitespace().next()
//! }
//!
//! /// A `Result` return turns `Err` into an error that names the row.
//! #[scalar]
//! fn parse_port(text: &str) -> Result<i32, Error> {
//!     text.parse::<i32>().map_err(|e| Error::new(format!("not a port: {e}")))
//! }
//!
//! /// A table function: zero or more rows per input row, here two columns each.
//! #[table(columns = ["position", "word"])]
//! fn words(text: &str) -> impl Iterator<Item = (i32, &str)> {
//!     text.split_whitespace().enumerate().map(|(i, w)| (i as i32, w))
//! }
//!
//! weir_udf::export!(to_usd, first_word, parse_port, words);
//! # fn main() {}
//! ```
//!
//! Argument and result types map to SQL types: `bool` BOOLEAN, `i32` INT, `i64` BIGINT,
//! `f32` FLOAT, `f64` DOUBLE, `&str`/`String` VARCHAR, `&[u8]`/`Vec<u8>` VARBINARY, [`Date`] DATE,
//! [`Timestamp`] TIMESTAMP, `Vec<T>` of a fixed-width `T` ARRAY. Aggregates implement
//! [`Aggregate`]. The author never sees the WIT types: columns arrive and leave in Arrow layout, and
//! the loops over rows are generated.

mod aggregate;
mod column;
mod driver;

pub use aggregate::{Aggregate, ArgTuple};
pub use column::{ARGS_BLOCK, ArgReader, ArgValue, BLOCK, Produce, ResultValue};
pub use driver::TableRow;
pub use weir_udf_macros::{aggregate, scalar, table};

/// Bindings generated from `wit/` by wit-bindgen. Only this crate names them.
#[doc(hidden)]
pub mod wit_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "udf",
        pub_export_macro: true,
        export_macro_name: "__export_udf_world",
        default_bindings_module: "weir_udf::wit_bindings",
    });
}

pub(crate) mod wit {
    pub use crate::wit_bindings::weir::udf::types::{
        AggregateCapabilities, Batch, Buffers, Column, DataType, Field, FunctionKind, FunctionSpec,
        PrimitiveType, TableOutput, UdfError,
    };
}

/// A DATE: days since 1970-01-01.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Date(pub i32);

/// A TIMESTAMP: microseconds since 1970-01-01 00:00:00 UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Timestamp(pub i64);

/// An error from a user function; the host reports it with the function's name and the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error(message.to_string())
    }
}

/// Exports the listed functions (fn names marked `#[scalar]`/`#[table]`, types marked
/// `#[aggregate]`) as the component's `weir:udf/functions`. Call it once per crate; `describe`
/// lists the functions in this order.
#[macro_export]
macro_rules! export {
    ($($function:ident),+ $(,)?) => {
        #[doc(hidden)]
        pub struct __WeirUdfComponent;

        impl $crate::__private::Guest for __WeirUdfComponent {
            fn describe() -> ::std::vec::Vec<$crate::__private::FunctionSpec> {
                ::std::vec![$(<$function as $crate::__private::Function>::spec()),+]
            }
            fn call_scalar(
                index: u32,
                args: $crate::__private::Batch,
            ) -> ::std::result::Result<$crate::__private::Column, $crate::__private::UdfError> {
                let calls: &[fn($crate::__private::Batch) -> _] =
                    &[$(<$function as $crate::__private::Function>::call_scalar),+];
                $crate::__private::pick(calls, index)?(args)
            }
            fn call_table(
                index: u32,
                args: $crate::__private::Batch,
            ) -> ::std::result::Result<$crate::__private::TableOutput, $crate::__private::UdfError>
            {
                let calls: &[fn($crate::__private::Batch) -> _] =
                    &[$(<$function as $crate::__private::Function>::call_table),+];
                $crate::__private::pick(calls, index)?(args)
            }
            fn aggregate_create(
                index: u32,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::__private::UdfError> {
                let calls: &[fn() -> _] =
                    &[$(<$function as $crate::__private::Function>::aggregate_create),+];
                $crate::__private::pick(calls, index)?()
            }
            fn aggregate_accumulate(
                index: u32,
                args: $crate::__private::Batch,
                groups: ::std::vec::Vec<u8>,
                states: $crate::__private::Column,
            ) -> ::std::result::Result<$crate::__private::Column, $crate::__private::UdfError> {
                let calls: &[fn(_, _, _, bool) -> _] =
                    &[$(<$function as $crate::__private::Function>::aggregate_update),+];
                $crate::__private::pick(calls, index)?(args, groups, states, false)
            }
            fn aggregate_retract(
                index: u32,
                args: $crate::__private::Batch,
                groups: ::std::vec::Vec<u8>,
                states: $crate::__private::Column,
            ) -> ::std::result::Result<$crate::__private::Column, $crate::__private::UdfError> {
                let calls: &[fn(_, _, _, bool) -> _] =
                    &[$(<$function as $crate::__private::Function>::aggregate_update),+];
                $crate::__private::pick(calls, index)?(args, groups, states, true)
            }
            fn aggregate_merge(
                index: u32,
                left: $crate::__private::Column,
                right: $crate::__private::Column,
            ) -> ::std::result::Result<$crate::__private::Column, $crate::__private::UdfError> {
                let calls: &[fn(_, _) -> _] =
                    &[$(<$function as $crate::__private::Function>::aggregate_merge),+];
                $crate::__private::pick(calls, index)?(left, right)
            }
            fn aggregate_finish(
                index: u32,
                states: $crate::__private::Column,
            ) -> ::std::result::Result<$crate::__private::Column, $crate::__private::UdfError> {
                let calls: &[fn(_) -> _] =
                    &[$(<$function as $crate::__private::Function>::aggregate_finish),+];
                $crate::__private::pick(calls, index)?(states)
            }
        }

        $crate::wit_bindings::__export_udf_world!(__WeirUdfComponent with_types_in $crate::wit_bindings);
    };
}

/// What the macros expand to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::driver::{
        aggregate_create, aggregate_finish, aggregate_merge, aggregate_update, scalar, table,
    };
    pub use crate::wit::{
        AggregateCapabilities, Batch, Column, DataType, Field, FunctionKind, FunctionSpec,
        TableOutput, UdfError,
    };
    pub use crate::wit_bindings::exports::weir::udf::functions::Guest;

    /// Picks the function at `index`, as numbered by `describe`.
    pub fn pick<F: Copy>(calls: &[F], index: u32) -> Result<F, UdfError> {
        calls.get(index as usize).copied().ok_or_else(|| UdfError {
            message: format!("no function at index {index}"),
            row: None,
        })
    }

    /// A field of a function signature.
    pub fn field(name: &str, data_type: DataType) -> Field {
        Field {
            name: name.to_string(),
            data_type,
        }
    }

    fn wrong_kind(name: &str, kind: &str) -> UdfError {
        UdfError {
            message: format!("`{name}` is not {kind} function"),
            row: None,
        }
    }

    /// One exported function; the macros implement it on a type named after the function.
    pub trait Function {
        /// The name SQL uses.
        const NAME: &'static str;
        /// The signature reported by `describe`.
        fn spec() -> FunctionSpec;
        /// See `weir:udf/functions.call-scalar`.
        fn call_scalar(args: Batch) -> Result<Column, UdfError> {
            let _ = args;
            Err(wrong_kind(Self::NAME, "a scalar"))
        }
        /// See `weir:udf/functions.call-table`.
        fn call_table(args: Batch) -> Result<TableOutput, UdfError> {
            let _ = args;
            Err(wrong_kind(Self::NAME, "a table"))
        }
        /// See `weir:udf/functions.aggregate-create`.
        fn aggregate_create() -> Result<Vec<u8>, UdfError> {
            Err(wrong_kind(Self::NAME, "an aggregate"))
        }
        /// See `weir:udf/functions.aggregate-accumulate` and `aggregate-retract`.
        fn aggregate_update(
            args: Batch,
            groups: Vec<u8>,
            states: Column,
            retract: bool,
        ) -> Result<Column, UdfError> {
            let _ = (args, groups, states, retract);
            Err(wrong_kind(Self::NAME, "an aggregate"))
        }
        /// See `weir:udf/functions.aggregate-merge`.
        fn aggregate_merge(left: Column, right: Column) -> Result<Column, UdfError> {
            let _ = (left, right);
            Err(wrong_kind(Self::NAME, "an aggregate"))
        }
        /// See `weir:udf/functions.aggregate-finish`.
        fn aggregate_finish(states: Column) -> Result<Column, UdfError> {
            let _ = states;
            Err(wrong_kind(Self::NAME, "an aggregate"))
        }
    }
}
