//! `weir deploy <module.wasm | crate-dir | module.py>`: builds a source first, then uploads the
//! component to the server, which checks it, stores it by content hash and lists its functions.

use std::path::{Path, PathBuf};

use anyhow::Context;
use weir_host::server::proto;

use super::remote::{ServerArgs, module_json, print_json, print_table};

/// Arguments of `weir deploy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A component (`.wasm`), a Rust UDF crate (a directory) or a Python module (`.py`).
    pub source: PathBuf,
    /// The module's name (default: the file or crate name).
    #[arg(long)]
    pub name: Option<String>,
    /// The version (default: one more than the highest numbered version).
    #[arg(long)]
    pub version: Option<String>,
    /// Let the module's functions read this directory on the server (at the same path);
    /// repeatable. Functions get no filesystem otherwise.
    #[arg(long, value_name = "DIR")]
    pub allow_read: Vec<String>,
    /// Let the module's functions read the real clock (otherwise it reads zero).
    #[arg(long)]
    pub allow_clock: bool,
    /// The Python that builds a `.py` module.
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let component = component(&args.source, args.python.as_deref())?;
    let bytes = std::fs::read(&component)
        .with_context(|| format!("cannot read {}", component.display()))?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(&args.source),
    };
    let grants = proto::Grants {
        read_dirs: args.allow_read.clone(),
        clock: args.allow_clock,
    };
    let version = args.version.clone().unwrap_or_default();
    let module = args
        .server
        .call(async |client| client.deploy(&name, &version, grants, &bytes).await)?;
    if args.server.output == super::remote::Output::Json {
        return print_json(&module_json(&module));
    }
    let verb = if module.unchanged {
        "already deployed"
    } else {
        "deployed"
    };
    eprintln!(
        "{verb} {}@{} ({} bytes, sha256 {})",
        module.name, module.version, module.size, module.digest
    );
    let grants = module.grants.clone().unwrap_or_default();
    if grants.read_dirs.is_empty() && !grants.clock {
        eprintln!("sandbox: no filesystem, network, clock or environment");
    } else {
        for dir in &grants.read_dirs {
            eprintln!("sandbox grant: reads {dir} (accepted with --allow-read)");
        }
        if grants.clock {
            eprintln!("sandbox grant: reads the clock (accepted with --allow-clock)");
        }
    }
    let rows: Vec<Vec<String>> = module
        .functions
        .iter()
        .map(|f| vec![f.kind.clone(), f.signature.clone()])
        .collect();
    print_table(&["KIND", "SIGNATURE"], &rows);
    Ok(())
}

/// The component to upload: the file itself, or what building the source makes.
fn component(source: &Path, python: Option<&Path>) -> anyhow::Result<PathBuf> {
    if source.is_dir() {
        eprintln!("building {}", source.display());
        return super::build::build_crate(source);
    }
    if source.extension().is_some_and(|e| e == "py") {
        eprintln!("building {}", source.display());
        let python = super::build::python_interpreter(python);
        let output = std::env::temp_dir().join(format!(
            "weir-deploy-{}-{}.wasm",
            std::process::id(),
            default_name(source)
        ));
        let built = super::build::build_python(source, Some(&output), &python)?;
        return Ok(built);
    }
    Ok(source.to_path_buf())
}

fn default_name(source: &Path) -> String {
    source
        .file_stem()
        .map(|s| {
            s.to_string_lossy().replace(
                |c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'),
                "_",
            )
        })
        .unwrap_or_else(|| "module".into())
}
