//! One module per verb, each with its `Args` and a `run` function.

pub mod bench;
pub mod bench_checkpoint;
pub mod bench_kafka;
pub mod build;
pub mod call;
pub mod control;
pub mod deploy;
pub mod functions;
pub mod inspect;
pub mod jobs;
pub mod remote;
pub mod run;
pub mod serve;
pub mod submit;
pub mod tables;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use weir_host::wasm::{LoadOptions, WasmModule, WasmRuntime};

/// The compiled-module cache directory: the flag, else `$WEIR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/weir/modules` or `~/.cache/weir/modules`.
pub fn cache_dir(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("WEIR_CACHE_DIR").map(PathBuf::from))
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|base| base.join("weir").join("modules"))
        })
}

/// Loads a component with the default sandbox (no grants).
pub fn load_module(path: &Path, cache_dir: Option<PathBuf>) -> anyhow::Result<Arc<WasmModule>> {
    let runtime = WasmRuntime::shared(cache_dir)?;
    let module = runtime
        .load_file(path, LoadOptions::default())
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(module)
}
