//! What the rest of the engine knows about user functions, with no Wasm in sight: signatures,
//! the SQL types they use, and the typed errors a call can end in.
//!
//! `wasm/` implements these with wasmtime; operators, the planner and the CLI see only this.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::datatypes::{DataType, Field, TimeUnit};

/// The element types a function signature can use (the WIT `primitive-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrimitiveType {
    /// Only nulls.
    Null,
    /// BOOLEAN.
    Boolean,
    /// INT.
    Int32,
    /// BIGINT.
    Int64,
    /// FLOAT.
    Float32,
    /// DOUBLE.
    Float64,
    /// VARCHAR.
    Utf8,
    /// VARBINARY.
    Binary,
    /// DATE.
    Date32,
    /// TIMESTAMP, in microseconds.
    TimestampMicros,
}

/// A parameter or result type: a primitive, or an array of a primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdfType {
    /// One value per row.
    Primitive(PrimitiveType),
    /// A list of values per row.
    List(PrimitiveType),
}

impl PrimitiveType {
    /// The SQL name, as `weir inspect` prints it.
    pub fn sql_name(self) -> &'static str {
        match self {
            PrimitiveType::Null => "NULL",
            PrimitiveType::Boolean => "BOOLEAN",
            PrimitiveType::Int32 => "INT",
            PrimitiveType::Int64 => "BIGINT",
            PrimitiveType::Float32 => "FLOAT",
            PrimitiveType::Float64 => "DOUBLE",
            PrimitiveType::Utf8 => "VARCHAR",
            PrimitiveType::Binary => "VARBINARY",
            PrimitiveType::Date32 => "DATE",
            PrimitiveType::TimestampMicros => "TIMESTAMP(6)",
        }
    }

    /// The Arrow type of a column of this type.
    pub fn arrow_type(self) -> DataType {
        match self {
            PrimitiveType::Null => DataType::Null,
            PrimitiveType::Boolean => DataType::Boolean,
            PrimitiveType::Int32 => DataType::Int32,
            PrimitiveType::Int64 => DataType::Int64,
            PrimitiveType::Float32 => DataType::Float32,
            PrimitiveType::Float64 => DataType::Float64,
            PrimitiveType::Utf8 => DataType::Utf8,
            PrimitiveType::Binary => DataType::Binary,
            PrimitiveType::Date32 => DataType::Date32,
            PrimitiveType::TimestampMicros => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// The primitive an Arrow type maps to, if any. Time zones are dropped: values are UTC.
    pub fn from_arrow(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Null => PrimitiveType::Null,
            DataType::Boolean => PrimitiveType::Boolean,
            DataType::Int32 => PrimitiveType::Int32,
            DataType::Int64 => PrimitiveType::Int64,
            DataType::Float32 => PrimitiveType::Float32,
            DataType::Float64 => PrimitiveType::Float64,
            DataType::Utf8 => PrimitiveType::Utf8,
            DataType::Binary => PrimitiveType::Binary,
            DataType::Date32 => PrimitiveType::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, _) => PrimitiveType::TimestampMicros,
            _ => return None,
        })
    }
}

impl UdfType {
    /// The Arrow type of a column of this type.
    pub fn arrow_type(self) -> DataType {
        match self {
            UdfType::Primitive(p) => p.arrow_type(),
            UdfType::List(p) => DataType::List(Arc::new(Field::new("item", p.arrow_type(), true))),
        }
    }

    /// The type an Arrow type maps to, if any.
    pub fn from_arrow(data_type: &DataType) -> Option<Self> {
        match data_type {
            DataType::List(field) => {
                PrimitiveType::from_arrow(field.data_type()).map(UdfType::List)
            }
            other => PrimitiveType::from_arrow(other).map(UdfType::Primitive),
        }
    }
}

impl fmt::Display for UdfType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdfType::Primitive(p) => f.write_str(p.sql_name()),
            UdfType::List(p) => write!(f, "ARRAY<{}>", p.sql_name()),
        }
    }
}

/// A named, typed parameter or result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdfField {
    /// Its name.
    pub name: String,
    /// Its type.
    pub data_type: UdfType,
}

/// What kind of function, and for aggregates what they can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// One value per row.
    Scalar,
    /// Zero or more rows per row.
    Table,
    /// One value per group, from host-owned states.
    Aggregate {
        /// Can take rows back out of a state (needed on updating input).
        retract: bool,
        /// Can merge two states.
        merge: bool,
    },
}

impl FunctionKind {
    /// `scalar`, `table` or `aggregate`.
    pub fn name(self) -> &'static str {
        match self {
            FunctionKind::Scalar => "scalar",
            FunctionKind::Table => "table",
            FunctionKind::Aggregate { .. } => "aggregate",
        }
    }
}

/// A function's signature, as the component's `describe` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// The name SQL uses.
    pub name: String,
    /// Its kind.
    pub kind: FunctionKind,
    /// Its parameters.
    pub params: Vec<UdfField>,
    /// One result for scalar and aggregate functions, one per column for table functions.
    pub results: Vec<UdfField>,
    /// Same inputs, same output.
    pub deterministic: bool,
}

impl FunctionSpec {
    /// An SQL-style signature: `to_usd(price BIGINT) -> DOUBLE`, or for a table function
    /// `url_segments(url VARCHAR) -> TABLE(position INT, segment VARCHAR)`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| format!("{} {}", p.name, p.data_type))
            .collect();
        let results = match self.kind {
            FunctionKind::Table => {
                let columns: Vec<String> = self
                    .results
                    .iter()
                    .map(|r| format!("{} {}", r.name, r.data_type))
                    .collect();
                format!("TABLE({})", columns.join(", "))
            }
            _ => self
                .results
                .first()
                .map(|r| r.data_type.to_string())
                .unwrap_or_default(),
        };
        format!("{}({}) -> {}", self.name, params.join(", "), results)
    }
}

/// The rows a table function produced from one batch.
#[derive(Debug, Clone)]
pub struct TableRows {
    /// For each output row, the input row it came from.
    pub row_index: UInt32Array,
    /// The output columns, as `describe` lists them.
    pub columns: Vec<ArrayRef>,
}

/// Where a call went wrong: module, function and the input rows of the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSite {
    /// The module's name.
    pub module: String,
    /// The function's name.
    pub function: String,
    /// The input rows of the call, counted from the start of its batch unless the caller
    /// shifted them with [`UdfError::offset_rows`].
    pub rows: Range<u64>,
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "function `{}` (module `{}`, rows {}..{})",
            self.function, self.module, self.rows.start, self.rows.end
        )
    }
}

/// Why a Wasm instance stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapCause {
    /// The call ran past its deadline (epoch interruption).
    Deadline(Duration),
    /// The instance asked for more memory than its cap.
    MemoryCap(u64),
    /// Any other trap: a panic, an unreachable, an out-of-bounds access.
    Trap(String),
}

impl fmt::Display for TrapCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapCause::Deadline(d) => write!(f, "exceeded its deadline of {d:?}"),
            TrapCause::MemoryCap(bytes) => {
                write!(f, "exceeded its memory cap of {} MiB", bytes >> 20)
            }
            TrapCause::Trap(message) => write!(f, "trapped: {message}"),
        }
    }
}

/// Whose fault an error is, so that callers can decide to retry, report or file a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The user's module or input is wrong; retrying will not help.
    User,
    /// Something outside Weir failed (the disk, the machine); a retry may help.
    External,
    /// Weir itself is wrong.
    Bug,
}

/// Loading or calling a user function failed.
#[derive(Debug, thiserror::Error)]
pub enum UdfError {
    /// The bytes are not a WebAssembly component.
    #[error("module `{module}` is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// The module.
        module: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The component does not implement the `weir:udf` world.
    #[error("module `{module}` does not implement the weir:udf@0.2.0 world: {reason}")]
    WrongWorld {
        /// The module.
        module: String,
        /// What is missing or mistyped.
        reason: String,
    },
    /// The component imports something the sandbox does not grant.
    #[error("module `{module}` imports something the sandbox does not grant: {reason}")]
    ForbiddenImport {
        /// The module.
        module: String,
        /// The import, as wasmtime names it.
        reason: String,
    },
    /// The component's `describe` list is unusable.
    #[error("module `{module}` describes its functions wrongly: {reason}")]
    BadDescribe {
        /// The module.
        module: String,
        /// What is wrong.
        reason: String,
    },
    /// No function of that name.
    #[error("module `{module}` has no function `{function}`")]
    UnknownFunction {
        /// The module.
        module: String,
        /// The name asked for.
        function: String,
    },
    /// The function is of another kind than the call.
    #[error("`{function}` in module `{module}` is a {actual} function, not a {expected} function")]
    WrongKind {
        /// The module.
        module: String,
        /// The function.
        function: String,
        /// The kind the call needs.
        expected: &'static str,
        /// The function's kind.
        actual: &'static str,
    },
    /// The function does not support this operation (`retract` or `merge` of an aggregate).
    #[error("aggregate `{function}` in module `{module}` does not support {operation}")]
    Unsupported {
        /// The module.
        module: String,
        /// The function.
        function: String,
        /// What was asked.
        operation: &'static str,
    },
    /// The arguments do not fit the signature.
    #[error("{site}: {reason}")]
    Arguments {
        /// The call.
        site: CallSite,
        /// What does not fit.
        reason: String,
    },
    /// The function returned an error.
    #[error("{site} failed{}: {message}", row.map(|r| format!(" at row {r}")).unwrap_or_default())]
    Failed {
        /// The call.
        site: CallSite,
        /// The row at fault, when one is.
        row: Option<u64>,
        /// The function's message.
        message: String,
    },
    /// The instance trapped, ran out of time or hit its memory cap. The instance is discarded.
    #[error("{site} {cause}{}", guest_output(.guest_stderr))]
    Trap {
        /// The call.
        site: CallSite,
        /// Why it stopped.
        cause: TrapCause,
        /// What the guest wrote to stderr during the call (a panic message, a traceback).
        guest_stderr: String,
    },
    /// The function returned data that breaks the contract (wrong type, bad offsets, wrong length).
    #[error("{site} returned a malformed result: {reason}")]
    BadOutput {
        /// The call.
        site: CallSite,
        /// What is malformed.
        reason: String,
    },
    /// A new instance could not be created (for example, the instance pool is exhausted).
    #[error("cannot instantiate module `{module}`: {reason}")]
    Instantiate {
        /// The module.
        module: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing the compiled-module cache failed.
    #[error("compiled-module cache at {path}: {source}")]
    Cache {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Wasm engine failed in a way that is not the module's fault.
    #[error("wasm engine error in module `{module}`: {reason}")]
    Engine {
        /// The module.
        module: String,
        /// The engine's message.
        reason: String,
    },
}

fn guest_output(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("; guest stderr: {trimmed}")
    }
}

impl UdfError {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            UdfError::Cache { .. } | UdfError::Instantiate { .. } => Fault::External,
            UdfError::Engine { .. } => Fault::Bug,
            _ => Fault::User,
        }
    }

    /// The call site, for errors raised by a call.
    pub fn site(&self) -> Option<&CallSite> {
        match self {
            UdfError::Arguments { site, .. }
            | UdfError::Failed { site, .. }
            | UdfError::Trap { site, .. }
            | UdfError::BadOutput { site, .. } => Some(site),
            _ => None,
        }
    }

    /// Shifts the rows this error names by `offset`, for a caller that split a larger input into
    /// batches and wants rows counted from the start of the input.
    pub fn offset_rows(mut self, offset: u64) -> Self {
        if let UdfError::Failed { row: Some(row), .. } = &mut self {
            *row += offset;
        }
        if let UdfError::Arguments { site, .. }
        | UdfError::Failed { site, .. }
        | UdfError::Trap { site, .. }
        | UdfError::BadOutput { site, .. } = &mut self
        {
            site.rows = site.rows.start + offset..site.rows.end + offset;
        }
        self
    }
}

/// Casts `array` to the Arrow type of `to`, for callers whose input types differ from a
/// signature (a CSV column of integers for a DOUBLE parameter). A value that does not convert
/// is an error, never a silent null.
///
/// # Errors
/// The cast is not possible or a value does not convert.
pub fn coerce(array: &ArrayRef, to: UdfType) -> Result<ArrayRef, String> {
    let target = to.arrow_type();
    if UdfType::from_arrow(array.data_type()) == Some(to) {
        return Ok(array.clone());
    }
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(array, &target, &options)
        .map_err(|e| format!("cannot convert {} to {to}: {e}", array.data_type()))
}
