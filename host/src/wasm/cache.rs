//! Compiled components on disk, keyed by the content hash of the component and of the engine's
//! compilation settings (wasmtime version, flags, CPU features), so a second load of the same
//! bytes, in this process or the next, skips compilation.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::udf::UdfError;

/// How often loads compiled a component and how often they found it in the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components compiled by cranelift.
    pub compiled: u64,
    /// Components loaded from the on-disk cache.
    pub cache_hits: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    compiled: AtomicU64,
    cache_hits: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }
}

/// Feeds `Hash` output into SHA-256: a key that is stable from one process to the next, unlike
/// `DefaultHasher`.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        // Never read: the digest is taken with `finalize`.
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a module's bytes, in hex: its identity.
pub(crate) fn content_digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn engine_digest(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize()[..8])
}

#[derive(Debug)]
pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    engine_digest: String,
    pub(crate) counters: Counters,
}

impl ComponentCache {
    pub(crate) fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        ComponentCache {
            dir,
            engine_digest: engine_digest(engine),
            counters: Counters::default(),
        }
    }

    fn path_for(&self, dir: &Path, digest: &str) -> PathBuf {
        dir.join(format!("{digest}-{}.cwasm", self.engine_digest))
    }

    /// The compiled component for `bytes`, from the cache when it is there.
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        module: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Component, UdfError> {
        if let Some(dir) = &self.dir {
            let path = self.path_for(dir, digest);
            if path.exists() {
                // SAFETY: the file was written by `Component::serialize` below under a name that
                // includes the digest of its source and of this engine's settings, and it is only
                // ever replaced by rename, never modified in place, so the mapping stays valid.
                match unsafe { Component::deserialize_file(engine, &path) } {
                    Ok(component) => {
                        self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(component);
                    }
                    Err(e) => tracing::warn!(
                        module,
                        path = %path.display(),
                        "ignoring unusable compiled module in the cache: {e:#}"
                    ),
                }
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| UdfError::NotAComponent {
            module: module.to_string(),
            reason: format!("{e:#}"),
        })?;
        self.counters.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(dir) = &self.dir {
            self.store(dir, digest, module, &component)?;
        }
        Ok(component)
    }

    fn store(
        &self,
        dir: &Path,
        digest: &str,
        module: &str,
        component: &Component,
    ) -> Result<(), UdfError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| UdfError::Cache { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let serialized = component.serialize().map_err(|e| UdfError::Engine {
            module: module.to_string(),
            reason: format!("cannot serialize the compiled component: {e:#}"),
        })?;
        let path = self.path_for(dir, digest);
        // Unique per writer, so that two processes compiling the same module do not interleave;
        // the rename makes the entry appear whole.
        let temp = dir.join(format!(
            ".{digest}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&temp, serialized).map_err(io(&temp))?;
        std::fs::rename(&temp, &path).map_err(io(&path))?;
        Ok(())
    }
}
