//! `weir build <crate-dir> [-o out.wasm]`: builds a Rust UDF crate into a component.
//!
//! It installs nothing: a missing `wasm32-wasip2` target is reported with the command to run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Arguments of `weir build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The crate to build (a directory with a Cargo.toml whose lib is a `cdylib`).
    pub crate_dir: PathBuf,
    /// Where to write the component (default: print the path cargo wrote it to).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
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

/// Builds, copies to `--output` if given, and lists the functions.
pub fn run(args: Args, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let built = build_crate(&args.crate_dir)?;
    let path = match &args.output {
        Some(output) => {
            std::fs::copy(&built, output)
                .with_context(|| format!("cannot write {}", output.display()))?;
            output.clone()
        }
        None => built,
    };
    // Loading proves it is a weir:udf component and shows what it exports.
    let module = super::load_module(&path, cache_dir)?;
    println!("{}", path.display());
    for f in module.functions() {
        eprintln!("  {:<9} {}", f.kind.name(), f.signature());
    }
    Ok(())
}
