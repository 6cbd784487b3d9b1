//! Rust mirrors of the `weir:udf` WIT types, written by hand rather than with `bindgen!` so that
//! parameters borrow Arrow's buffers (`&[u8]`: lowered with one memcpy, no intermediate `Vec`)
//! while results own theirs (`Vec<u8>`: copied out before the guest's post-return frees them, then
//! handed to Arrow without another copy).
//!
//! The names must match `wit/weir-udf.wit` exactly; the loader type-checks every export against
//! these types, so a drift shows up as a load error, never as corrupt data.

use wasmtime::component::{ComponentType, Lift, Lower};

#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub(crate) enum PrimitiveType {
    #[component(name = "null")]
    Null,
    #[component(name = "boolean")]
    Boolean,
    #[component(name = "int32")]
    Int32,
    #[component(name = "int64")]
    Int64,
    #[component(name = "float32")]
    Float32,
    #[component(name = "float64")]
    Float64,
    #[component(name = "utf8")]
    Utf8,
    #[component(name = "binary")]
    Binary,
    #[component(name = "date32")]
    Date32,
    #[component(name = "timestamp-micros")]
    TimestampMicros,
}

#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(variant)]
pub(crate) enum DataType {
    #[component(name = "primitive")]
    Primitive(PrimitiveType),
    #[component(name = "list")]
    List(PrimitiveType),
}

/// Buffers going into the guest, borrowed from Arrow arrays.
#[derive(ComponentType, Lower, Clone, Copy, Debug)]
#[component(record)]
pub(crate) struct BuffersParam<'a> {
    pub validity: Option<&'a [u8]>,
    pub offsets: &'a [u8],
    pub values: &'a [u8],
}

#[derive(ComponentType, Lower, Clone, Copy, Debug)]
#[component(record)]
pub(crate) struct ColumnParam<'a> {
    #[component(name = "data-type")]
    pub data_type: DataType,
    pub len: u32,
    pub data: BuffersParam<'a>,
    pub elements: Option<BuffersParam<'a>>,
}

#[derive(ComponentType, Lower, Clone, Copy, Debug)]
#[component(record)]
pub(crate) struct BatchParam<'a> {
    pub columns: &'a [ColumnParam<'a>],
    #[component(name = "num-rows")]
    pub num_rows: u32,
}

/// Buffers coming out of the guest, owned.
#[derive(ComponentType, Lift, Debug)]
#[component(record)]
pub(crate) struct Buffers {
    pub validity: Option<Vec<u8>>,
    pub offsets: Vec<u8>,
    pub values: Vec<u8>,
}

#[derive(ComponentType, Lift, Debug)]
#[component(record)]
pub(crate) struct Column {
    #[component(name = "data-type")]
    pub data_type: DataType,
    pub len: u32,
    pub data: Buffers,
    pub elements: Option<Buffers>,
}

#[derive(ComponentType, Lift, Debug)]
#[component(record)]
pub(crate) struct Batch {
    pub columns: Vec<Column>,
    #[component(name = "num-rows")]
    pub num_rows: u32,
}

#[derive(ComponentType, Lift, Debug)]
#[component(record)]
pub(crate) struct Field {
    pub name: String,
    #[component(name = "data-type")]
    pub data_type: DataType,
}

#[derive(ComponentType, Lift, Debug, Clone, Copy)]
#[component(record)]
pub(crate) struct AggregateCapabilities {
    pub retract: bool,
    pub merge: bool,
}

#[derive(ComponentType, Lift, Debug)]
#[component(variant)]
pub(crate) enum FunctionKind {
    #[component(name = "scalar")]
    Scalar,
    #[component(name = "table")]
    Table,
    #[component(name = "aggregate")]
    Aggregate(AggregateCapabilities),
}

#[derive(ComponentType, Lift, Debug)]
#[component(record)]
pub(crate) struct FunctionSpec {
    pub name: String,
    pub kind: FunctionKind,
    pub params: Vec<Field>,
    pub results: Vec<Field>,
    pub deterministic: bool,
}

#[derive(ComponentType, Lift, Debug)]
#[component(record)]
pub(crate) struct UdfError {
    pub message: String,
    pub row: Option<u32>,
}

#[derive(ComponentType, Lift, Debug)]
#[component(record)]
pub(crate) struct TableOutput {
    #[component(name = "row-index")]
    pub row_index: Vec<u8>,
    pub rows: Batch,
}

/// The fully qualified name of the exported interface.
pub(crate) const INTERFACE: &str = "weir:udf/functions@0.2.0";

pub(crate) type CallResult<T> = (Result<T, UdfError>,);
