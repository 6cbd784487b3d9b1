//! Guest components are built once per test run, and one runtime is shared by the tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};
use weir_host::wasm::{LoadOptions, WasmConfig, WasmModule, WasmRuntime};

/// The guest workspace.
pub fn udfs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../udfs")
}

/// Where the guest components are built (`WEIR_GUEST_TARGET_DIR`, else `udfs/target`).
pub fn guest_target_dir() -> PathBuf {
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

/// The repository's root.
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python with the `weir_udf` SDK and componentize-py: `WEIR_PYTHON`, else the virtualenv
/// that `scripts/setup.sh` creates.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("WEIR_PYTHON") {
        return PathBuf::from(python);
    }
    let python = repo_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "no Python at {}: run `bash scripts/setup.sh` (it creates .venv with componentize-py) \
         or set WEIR_PYTHON",
        python.display()
    );
    python
}

/// Builds a Python module into a component with `python -m weir_udf build`; the error is the
/// build's message.
pub fn build_python(module: &Path, output: &Path) -> Result<PathBuf, String> {
    let result = Command::new(python())
        .args(["-m", "weir_udf", "build"])
        .arg(module)
        .arg("-o")
        .arg(output)
        .output()
        .map_err(|e| format!("cannot run Python: {e}"))?;
    if result.status.success() {
        Ok(output.to_path_buf())
    } else {
        Err(String::from_utf8_lossy(&result.stderr).into_owned())
    }
}

/// Hash of everything a Python component is made from: a rebuild is skipped when none changed.
fn python_inputs_digest(module: &Path) -> String {
    let mut hasher = Sha256::new();
    let sdk = repo_dir().join("sdk-python/weir_udf");
    let mut inputs = vec![module.to_path_buf(), repo_dir().join("wit/weir-udf.wit")];
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&sdk)
        .expect("sdk-python/weir_udf")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    sources.sort();
    inputs.extend(sources);
    for input in inputs {
        hasher.update(
            input
                .file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update(std::fs::read(&input).expect("a build input"));
    }
    hasher.update(std::fs::read(repo_dir().join("sdk-python/pyproject.toml")).expect("pyproject"));
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Values computed once per key, each by the first caller that asks, while callers for other
/// keys proceed in parallel.
type Memo<T> = OnceLock<Mutex<HashMap<String, Arc<OnceLock<T>>>>>;

fn memo<T: Clone>(memo: &'static Memo<T>, key: &str, init: impl FnOnce() -> T) -> T {
    let slot = memo
        .get_or_init(Default::default)
        .lock()
        .expect("memo")
        .entry(key.to_string())
        .or_default()
        .clone();
    slot.get_or_init(init).clone()
}

/// The component built from `udfs/python/<name>.py`, built once per content.
pub fn python_component(name: &str) -> PathBuf {
    static BUILDS: Memo<Result<PathBuf, String>> = OnceLock::new();
    let built = memo(&BUILDS, name, || {
        let module = udfs_dir().join(format!("python/{name}.py"));
        // The file keeps the module's name (the host names modules by file stem).
        let dir = guest_target_dir().join(format!("python/{}", python_inputs_digest(&module)));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let output = dir.join(format!("{name}.wasm"));
        if output.exists() {
            return Ok(output);
        }
        build_python(&module, &output)
    });
    match built {
        Ok(path) => path,
        Err(e) => panic!("building udfs/python/{name}.py: {e}"),
    }
}

/// A runtime whose compiled components persist on disk: a Python component takes seconds to
/// compile, once.
pub fn python_runtime() -> WasmRuntime {
    static RUNTIME: OnceLock<WasmRuntime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            WasmRuntime::new(WasmConfig {
                cache_dir: Some(guest_target_dir().join("python/compiled")),
                ..WasmConfig::default()
            })
            .expect("python runtime")
        })
        .clone()
}

/// The Python example `name`, loaded once per test binary.
pub fn load_python(name: &str) -> Arc<WasmModule> {
    static LOADED: Memo<Arc<WasmModule>> = OnceLock::new();
    memo(&LOADED, name, || {
        python_runtime()
            .load_file(&python_component(name), LoadOptions::default())
            .unwrap_or_else(|e| panic!("loading python {name}: {e}"))
    })
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
