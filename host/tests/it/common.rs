//! Guest components are built once per test run, and one runtime is shared by the tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use weir_host::wasm::{LoadOptions, WasmModule, WasmRuntime};

/// The guest workspace.
pub fn udfs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../udfs")
}

fn guest_target_dir() -> PathBuf {
    std::env::var_os("WEIR_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| udfs_dir().join("target"))
}

/// Builds every example component (cargo makes this a no-op when they are fresh) and returns
/// the path of `name`.
pub fn component(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(udfs_dir())
            .arg("build")
            .arg("--release")
            .arg("--target-dir")
            .arg(guest_target_dir())
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("building the guest components failed: {status}"))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    guest_target_dir().join(format!("wasm32-wasip2/release/{name}.wasm"))
}

/// One runtime for the whole test binary, as in a real process.
pub fn runtime() -> WasmRuntime {
    static RUNTIME: OnceLock<WasmRuntime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| WasmRuntime::new(Default::default()).expect("runtime"))
        .clone()
}

pub fn load(name: &str) -> Arc<WasmModule> {
    runtime()
        .load_file(&component(name), LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// A small deterministic generator, so that failures reproduce.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
