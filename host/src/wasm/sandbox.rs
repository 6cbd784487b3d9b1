//! What a guest may touch: a WASI context with no filesystem, network, environment or clock unless
//! granted, a memory cap, and stdout/stderr captured for the host's log.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{
    FsPerms, HostMonotonicClock, HostWallClock, ResourceTable, WasiCtx, WasiCtxBuilder,
    WasiCtxView, WasiView,
};

/// Capabilities beyond pure computation. Nothing is granted by default; a module's manifest may
/// ask and the user must agree (the deploy path decides; this type only carries the answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxGrants {
    /// Let the guest read the real wall and monotonic clocks. Without it both read zero, so
    /// that a function cannot depend on when it runs.
    pub clock: bool,
    /// Environment variables the guest sees.
    pub env: Vec<(String, String)>,
    /// Host directories the guest may read, with the path it sees them at.
    pub read_only_dirs: Vec<(PathBuf, String)>,
}

/// A clock stopped at the epoch, for guests without the clock grant.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A guest output stream kept in memory and drained after every call, so that what a function
/// prints ends up in the host's log tagged with its name (and in the error, for a panic).
#[derive(Clone, Debug)]
pub(crate) struct CapturedOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
    capacity: usize,
}

impl CapturedOutput {
    pub(crate) fn new(capacity: usize) -> Self {
        CapturedOutput {
            buffer: Arc::new(Mutex::new(Vec::new())),
            capacity,
        }
    }

    /// Everything written since the last drain.
    pub(crate) fn drain(&self) -> String {
        let bytes =
            std::mem::take(&mut *self.buffer.lock().unwrap_or_else(PoisonError::into_inner));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI preview 2 (synchronous) is linked; nothing asks for this.
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        // Past the cap, output is dropped rather than trapping the guest: printing is not a
        // reason to fail a user's job. The log line says it was cut.
        let room = self.capacity.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

/// Caps an instance's linear memory and remembers whether the cap was hit, so that the trap
/// that follows (an allocation failure aborts a Rust guest) is reported as what it is.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub(crate) cap: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far past any real guest.
        Ok(desired <= 1_000_000)
    }
}

/// Everything a `Store` of a user-function instance carries.
pub(crate) struct InstanceState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
}

impl std::fmt::Debug for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceState")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl InstanceState {
    /// A fresh sandbox: only what `grants` allows.
    pub(crate) fn new(
        grants: &SandboxGrants,
        memory_cap: usize,
        output_capacity: usize,
    ) -> Result<Self, String> {
        let stdout = CapturedOutput::new(output_capacity);
        let stderr = CapturedOutput::new(output_capacity);
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            // Off by default in wasmtime-wasi too; said here so that it stays off.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !grants.clock {
            builder.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        for (key, value) in &grants.env {
            builder.env(key, value);
        }
        for (host, guest) in &grants.read_only_dirs {
            builder
                .preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(|e| format!("cannot grant directory {}: {e:#}", host.display()))?;
        }
        Ok(InstanceState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: memory_cap,
                hit: false,
            },
            stdout,
            stderr,
        })
    }
}
