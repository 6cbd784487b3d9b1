//! The Wasm function host: the only module that names wasmtime.
//!
//! One [`WasmRuntime`] per process holds the engine (cranelift, component model, pooling
//! allocator, epoch interruption), the WASI linker and the compiled-module cache. Loading a
//! component checks it implements `weir:udf`, type-checks every export against the contract,
//! and reads its `describe` list into a [`WasmModule`]. Each calling task makes its own
//! [`ModuleInstance`] (one `Store`, never shared across threads) and calls it once per batch.
//!
//! **Invariant:** every call runs under a deadline and a memory cap; an instance that trapped is
//! dropped, and the next call gets a fresh one.

mod abi;
mod cache;
mod convert;
mod instance;
mod sandbox;

// Arrow buffers cross the boundary as they are, and the contract's byte order is little-endian.
#[cfg(target_endian = "big")]
compile_error!(
    "weir-host passes native buffers to little-endian Wasm; big-endian hosts are not supported"
);

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Store,
};

pub use cache::CacheStats;
pub use instance::ModuleInstance;
pub use sandbox::SandboxGrants;

use crate::udf::{FunctionKind, FunctionSpec, UdfError, UdfField};
use sandbox::InstanceState;

/// How often the epoch advances: the granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Settings of a [`WasmRuntime`]. `Default` gives the production defaults.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// How long one call may run before it is interrupted (default 10 s).
    pub call_deadline: Duration,
    /// How much linear memory one instance may use (default 256 MiB).
    pub memory_cap: u64,
    /// How many instances may exist at once in this process (the pool size, default 256).
    pub max_instances: u32,
    /// How many bytes of stdout and of stderr one call may print before the rest is dropped.
    pub guest_output_cap: usize,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            cache_dir: None,
            call_deadline: Duration::from_secs(10),
            memory_cap: 256 << 20,
            max_instances: 256,
            guest_output_cap: 1 << 20,
        }
    }
}

/// Per-module settings, each at most the runtime's.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// A shorter deadline than the runtime's.
    pub call_deadline: Option<Duration>,
    /// A smaller memory cap than the runtime's.
    pub memory_cap: Option<u64>,
    /// Capabilities the user granted this module.
    pub grants: SandboxGrants,
}

/// Advances the engine's epoch until the runtime is dropped.
#[derive(Debug)]
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // A plain thread: it must tick even when every async worker is busy.
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the epoch thread: {e}"));
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) struct RuntimeInner {
    engine: Engine,
    linker: Linker<InstanceState>,
    config: WasmConfig,
    cache: cache::ComponentCache,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for RuntimeInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeInner")
            .field("config", &self.config)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// The process's Wasm engine, linker and compiled-module cache. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WasmRuntime {
    inner: Arc<RuntimeInner>,
}

fn engine_error(module: &str, e: wasmtime::Error) -> UdfError {
    UdfError::Engine {
        module: module.to_string(),
        reason: format!("{e:#}"),
    }
}

impl WasmRuntime {
    /// A runtime with its own engine and instance pool.
    ///
    /// # Errors
    /// The engine cannot be configured (for example, the pool cannot reserve its memory).
    pub fn new(config: WasmConfig) -> Result<Self, UdfError> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = config.max_instances.max(1);
        // Rust guests have one memory and a few core instances; componentize-py guests have
        // more of each. These are slot counts: virtual reservations, not resident memory.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .table_elements(100_000)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(8 << 20)
            .max_memory_size(config.memory_cap as usize);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| engine_error("(none)", e))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| engine_error("(none)", e))?;
        let cache = cache::ComponentCache::new(config.cache_dir.clone(), &engine);
        let ticker = EpochTicker::start(engine.clone());
        Ok(WasmRuntime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                config,
                cache,
                _ticker: ticker,
            }),
        })
    }

    /// A runtime shared by everything in this process that wants the defaults, with the cache
    /// directory `cache_dir`. The first call decides its settings.
    ///
    /// # Errors
    /// As [`WasmRuntime::new`].
    pub fn shared(cache_dir: Option<PathBuf>) -> Result<Self, UdfError> {
        static SHARED: OnceLock<WasmRuntime> = OnceLock::new();
        if let Some(runtime) = SHARED.get() {
            return Ok(runtime.clone());
        }
        let runtime = WasmRuntime::new(WasmConfig {
            cache_dir,
            ..WasmConfig::default()
        })?;
        Ok(SHARED.get_or_init(|| runtime).clone())
    }

    /// The runtime's settings.
    pub fn config(&self) -> &WasmConfig {
        &self.inner.config
    }

    /// How many loads compiled and how many hit the cache, since this runtime started.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.counters.snapshot()
    }

    /// Loads a component file; the module is named after the file's stem.
    ///
    /// # Errors
    /// The file cannot be read, or as [`WasmRuntime::load`].
    pub fn load_file(
        &self,
        path: &Path,
        options: LoadOptions,
    ) -> Result<Arc<WasmModule>, UdfError> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let bytes = std::fs::read(path).map_err(|e| UdfError::NotAComponent {
            module: name.clone(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        self.load(&name, &bytes, options)
    }

    /// Loads a component: checks it is a `weir:udf` component whose imports the sandbox
    /// provides, compiles it (or takes it from the cache) and reads its functions.
    ///
    /// # Errors
    /// [`UdfError::NotAComponent`], [`UdfError::ForbiddenImport`], [`UdfError::WrongWorld`],
    /// [`UdfError::BadDescribe`], or a trap while describing.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        options: LoadOptions,
    ) -> Result<Arc<WasmModule>, UdfError> {
        check_header(name, bytes)?;
        let inner = &self.inner;
        let digest = cache::content_digest(bytes);
        let component = inner.cache.compile(&inner.engine, name, &digest, bytes)?;
        let pre =
            inner
                .linker
                .instantiate_pre(&component)
                .map_err(|e| UdfError::ForbiddenImport {
                    module: name.to_string(),
                    reason: format!("{e:#}"),
                })?;
        let exports = ExportIndices::find(&component).map_err(|reason| UdfError::WrongWorld {
            module: name.to_string(),
            reason,
        })?;
        let limits = Limits {
            call_deadline: options
                .call_deadline
                .map_or(inner.config.call_deadline, |d| {
                    d.min(inner.config.call_deadline)
                }),
            memory_cap: options
                .memory_cap
                .map_or(inner.config.memory_cap, |m| m.min(inner.config.memory_cap)),
        };
        let mut module = WasmModule {
            name: name.to_string(),
            digest,
            functions: Vec::new(),
            pre,
            exports,
            grants: options.grants,
            limits,
            runtime: inner.clone(),
        };
        // Instantiating once type-checks every export and reads the functions.
        let functions = ModuleInstance::describe(&module)?;
        validate_specs(name, &functions)?;
        module.functions = functions;
        Ok(Arc::new(module))
    }
}

fn check_header(module: &str, bytes: &[u8]) -> Result<(), UdfError> {
    let refuse = |reason: &str| UdfError::NotAComponent {
        module: module.to_string(),
        reason: reason.to_string(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(refuse("it does not start with the WebAssembly magic bytes"));
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(refuse(
            "it is a core WebAssembly module; build a component \
             (`cargo build --target wasm32-wasip2`, or `weir build`)",
        )),
        other => Err(refuse(&format!(
            "unknown WebAssembly version/layer bytes {other:02x?}"
        ))),
    }
}

fn validate_specs(module: &str, functions: &[FunctionSpec]) -> Result<(), UdfError> {
    let bad = |reason: String| UdfError::BadDescribe {
        module: module.to_string(),
        reason,
    };
    let mut seen = std::collections::HashSet::new();
    for f in functions {
        let valid_name = f
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && f.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(bad(format!("`{}` is not a valid function name", f.name)));
        }
        if !seen.insert(f.name.to_ascii_lowercase()) {
            return Err(bad(format!("function `{}` is listed twice", f.name)));
        }
        let results_ok = match f.kind {
            FunctionKind::Scalar | FunctionKind::Aggregate { .. } => f.results.len() == 1,
            FunctionKind::Table => !f.results.is_empty(),
        };
        if !results_ok {
            return Err(bad(format!(
                "{} function `{}` declares {} results",
                f.kind.name(),
                f.name,
                f.results.len()
            )));
        }
    }
    Ok(())
}

/// Where each export lives in the component, found once per module.
#[derive(Debug)]
struct ExportIndices {
    describe: ComponentExportIndex,
    call_scalar: ComponentExportIndex,
    call_table: ComponentExportIndex,
    aggregate_create: ComponentExportIndex,
    aggregate_accumulate: ComponentExportIndex,
    aggregate_retract: ComponentExportIndex,
    aggregate_merge: ComponentExportIndex,
    aggregate_finish: ComponentExportIndex,
}

impl ExportIndices {
    fn find(component: &Component) -> Result<Self, String> {
        let interface = component
            .get_export_index(None, abi::INTERFACE)
            .ok_or_else(|| format!("it does not export `{}`", abi::INTERFACE))?;
        let get = |name: &str| {
            component
                .get_export_index(Some(&interface), name)
                .ok_or_else(|| format!("`{}` has no function `{name}`", abi::INTERFACE))
        };
        Ok(ExportIndices {
            describe: get("describe")?,
            call_scalar: get("call-scalar")?,
            call_table: get("call-table")?,
            aggregate_create: get("aggregate-create")?,
            aggregate_accumulate: get("aggregate-accumulate")?,
            aggregate_retract: get("aggregate-retract")?,
            aggregate_merge: get("aggregate-merge")?,
            aggregate_finish: get("aggregate-finish")?,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    call_deadline: Duration,
    memory_cap: u64,
}

/// A loaded component: its functions and what it takes to instantiate it.
pub struct WasmModule {
    name: String,
    digest: String,
    functions: Vec<FunctionSpec>,
    pre: InstancePre<InstanceState>,
    exports: ExportIndices,
    grants: SandboxGrants,
    limits: Limits,
    runtime: Arc<RuntimeInner>,
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("functions", &self.functions)
            .finish_non_exhaustive()
    }
}

impl WasmModule {
    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the component's bytes, in hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Every function, in `describe` order.
    pub fn functions(&self) -> &[FunctionSpec] {
        &self.functions
    }

    /// The function named `name` (SQL names are case-insensitive).
    ///
    /// # Errors
    /// [`UdfError::UnknownFunction`].
    pub fn function(&self, name: &str) -> Result<(u32, &FunctionSpec), UdfError> {
        self.functions
            .iter()
            .enumerate()
            .find(|(_, f)| f.name.eq_ignore_ascii_case(name))
            .map(|(i, f)| (i as u32, f))
            .ok_or_else(|| UdfError::UnknownFunction {
                module: self.name.clone(),
                function: name.to_string(),
            })
    }

    /// A new instance for one calling task. It is instantiated on first call.
    pub fn instance(self: &Arc<Self>) -> ModuleInstance {
        ModuleInstance::new(self.clone())
    }

    fn new_store(&self) -> Result<Store<InstanceState>, UdfError> {
        let state = InstanceState::new(
            &self.grants,
            self.limits.memory_cap as usize,
            self.runtime.config.guest_output_cap,
        )
        .map_err(|reason| UdfError::Instantiate {
            module: self.name.clone(),
            reason,
        })?;
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        Ok(store)
    }

    fn deadline_ticks(&self) -> u64 {
        (self.limits.call_deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
    }
}

impl UdfField {
    fn from_abi(field: abi::Field) -> Self {
        UdfField {
            name: field.name,
            data_type: field.data_type.into(),
        }
    }
}

impl FunctionSpec {
    fn from_abi(spec: abi::FunctionSpec) -> Self {
        FunctionSpec {
            name: spec.name,
            kind: match spec.kind {
                abi::FunctionKind::Scalar => FunctionKind::Scalar,
                abi::FunctionKind::Table => FunctionKind::Table,
                abi::FunctionKind::Aggregate(caps) => FunctionKind::Aggregate {
                    retract: caps.retract,
                    merge: caps.merge,
                },
            },
            params: spec.params.into_iter().map(UdfField::from_abi).collect(),
            results: spec.results.into_iter().map(UdfField::from_abi).collect(),
            deterministic: spec.deterministic,
        }
    }
}
