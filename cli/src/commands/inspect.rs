//! `weir inspect <module.wasm>`: each function with its kind and SQL-style signature.

use std::io::Write;
use std::path::PathBuf;

use weir_host::udf::FunctionKind;

use crate::output::OutputFormat;

/// Arguments of `weir inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component to inspect.
    pub module: PathBuf,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Prints the module's functions.
pub fn run(args: Args, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let module = super::load_module(&args.module, cache_dir)?;
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            let functions: Vec<serde_json::Value> = module
                .functions()
                .iter()
                .map(|f| {
                    let fields = |fields: &[weir_host::udf::UdfField]| {
                        fields
                            .iter()
                            .map(|p| serde_json::json!({"name": p.name, "type": p.data_type.to_string()}))
                            .collect::<Vec<_>>()
                    };
                    let (retract, merge) = match f.kind {
                        FunctionKind::Aggregate { retract, merge } => (Some(retract), Some(merge)),
                        _ => (None, None),
                    };
                    serde_json::json!({
                        "name": f.name,
                        "kind": f.kind.name(),
                        "signature": f.signature(),
                        "params": fields(&f.params),
                        "results": fields(&f.results),
                        "deterministic": f.deterministic,
                        "retract": retract,
                        "merge": merge,
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "module": module.name(),
                "sha256": module.digest(),
                "functions": functions,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        OutputFormat::Table | OutputFormat::Csv => {
            writeln!(
                out,
                "module {} (sha256 {})",
                module.name(),
                &module.digest()[..16]
            )?;
            for f in module.functions() {
                let mut notes = Vec::new();
                if let FunctionKind::Aggregate { retract, merge } = f.kind {
                    if retract {
                        notes.push("retract");
                    }
                    if merge {
                        notes.push("merge");
                    }
                }
                if !f.deterministic {
                    notes.push("non-deterministic");
                }
                let notes = if notes.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", notes.join(", "))
                };
                writeln!(out, "  {:<9} {}{notes}", f.kind.name(), f.signature())?;
            }
        }
    }
    Ok(())
}
