//! Integration tests of the Wasm function host: the example functions against native Rust
//! references, hostile modules, the compiled-module cache and guest output capture.

mod common;
mod examples;
mod golden;
mod hostile;
mod loading;
mod nexmark;
mod nexmark_streaming;
mod python;
mod streaming;
