//! `weir build <crate-dir | module.py> [-o out.wasm]`: builds a Rust UDF crate or a Python module
//! into a component.
//!
//! It installs nothing: a missing `wasm32-wasip2` target, or a Python without the `weir_udf` SDK
//! and componentize-py, is reported with the command to run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Arguments of `weir build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A Rust crate (a directory with a Cargo.toml whose lib is a `cdylib`) or a Python module
    /// (a `.py` file).
    pub source: PathBuf,
    /// Where to write the component (default: the path cargo wrote it to; for Python, the
    /// module's path with `.wasm`).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The Python that builds a `.py` module (default: `WEIR_PYTHON`, else the active
    /// virtualenv's, else `python3`); it needs the `weir_udf` package and componentize-py.
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

const TARGET: &str = "wasm32-wasip2";

fn target_installed() -> anyhow::Result<bool> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc: is a Rust toolchain installed (rustup)?")?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    Ok(Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists())
}

/// Builds the crate and returns the component's path.
pub fn build_crate(crate_dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("{} has no Cargo.toml", crate_dir.display());
    }
    if !target_installed()? {
        bail!("the {TARGET} target is not installed; run: rustup target add {TARGET}");
    }
    // Run from the crate's directory so that its .cargo/config.toml (rustflags) applies.
    let mut child = Command::new("cargo")
        .current_dir(crate_dir)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run cargo")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let manifest = std::fs::canonicalize(&manifest)?;
    let mut component = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let is_ours = message["reason"] == "compiler-artifact"
            && message["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path());
        if is_ours && let Some(files) = message["filenames"].as_array() {
            component = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from)
                .or(component);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    component.with_context(|| {
        format!(
            "cargo built no .wasm for {}: is its lib `crate-type = [\"cdylib\"]`?",
            crate_dir.display()
        )
    })
}

/// The Python interpreter that builds Python modules.
pub fn python_interpreter(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os("WEIR_PYTHON") {
        return PathBuf::from(path);
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let python = Path::new(&venv).join("bin/python");
        if python.exists() {
            return python;
        }
    }
    PathBuf::from("python3")
}

/// Builds a Python module into a component with `python -m weir_udf build` and returns its path.
pub fn build_python(
    module: &Path,
    output: Option<&Path>,
    python: &Path,
) -> anyhow::Result<PathBuf> {
    let output = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| module.with_extension("wasm"));
    let result = Command::new(python)
        .args(["-m", "weir_udf", "build"])
        .arg(module)
        .arg("-o")
        .arg(&output)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}: is Python 3 installed?", python.display()))?;
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr);
        if stderr.contains("No module named weir_udf") {
            bail!(
                "{} cannot import the weir_udf SDK; run `bash scripts/setup.sh` in the Weir \
                 repository and set WEIR_PYTHON=<repository>/.venv/bin/python (or pass --python), \
                 or `pip install <repository>/sdk-python[build]` into this Python",
                python.display()
            );
        }
        let message = stderr.trim();
        bail!("{}", message.strip_prefix("error: ").unwrap_or(message));
    }
    Ok(output)
}

/// Builds, copies to `--output` if given, and lists the functions.
pub fn run(args: Args, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let is_python = args.source.extension().is_some_and(|e| e == "py");
    let path = if is_python {
        let python = python_interpreter(args.python.as_deref());
        build_python(&args.source, args.output.as_deref(), &python)?
    } else {
        let built = build_crate(&args.source)?;
        match &args.output {
            Some(output) => {
                std::fs::copy(&built, output)
                    .with_context(|| format!("cannot write {}", output.display()))?;
                output.clone()
            }
            None => built,
        }
    };
    // Loading proves it is a weir:udf component and shows what it exports.
    let module = super::load_module(&path, cache_dir)?;
    println!("{}", path.display());
    for f in module.functions() {
        eprintln!("  {:<9} {}", f.kind.name(), f.signature());
    }
    Ok(())
}
