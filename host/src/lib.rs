//! Weir's engine library.
//!
//! Today it holds the user-function host: [`udf`] says what a function is and how a call fails,
//! with no Wasm in sight; [`wasm`] runs functions as sandboxed WebAssembly components, one call
//! per Arrow batch. The SQL front end, planner and dataflow runtime build on these.

pub mod checkpoint;
pub mod connector;
pub mod functions;
pub mod job;
pub mod plan;
pub mod runtime;
pub mod server;
pub mod sql;
pub mod state;
pub mod udf;
pub mod wasm;
