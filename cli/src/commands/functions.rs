//! `weir functions` lists the functions new jobs can call (each module's newest version);
//! `weir modules` lists every deployed version, and `weir modules --drop name[@version]`
//! drops one (refused while a job that may run uses it).

use weir_host::server::proto;

use super::remote::{Output, ServerArgs, module_json, print_json, print_table};

/// Arguments of `weir functions`.
#[derive(Debug, clap::Args)]
pub struct FunctionsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `weir modules`.
#[derive(Debug, clap::Args)]
pub struct ModulesArgs {
    /// Drop this module (`name` for every version, `name@version` for one).
    #[arg(long, value_name = "NAME[@VERSION]")]
    pub drop: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn functions(args: FunctionsArgs) -> anyhow::Result<()> {
    let modules = args.server.call(async |client| client.modules().await)?;
    let mut newest: Vec<&proto::Module> = Vec::new();
    for module in &modules {
        match newest.iter_mut().find(|m| m.name == module.name) {
            Some(slot) => *slot = module,
            None => newest.push(module),
        }
    }
    let functions: Vec<&proto::Function> = newest.iter().flat_map(|m| &m.functions).collect();
    if args.server.output == Output::Json {
        return print_json(&serde_json::Value::Array(
            functions
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "name": f.name, "kind": f.kind, "signature": f.signature,
                        "module": f.module, "version": f.version,
                    })
                })
                .collect(),
        ));
    }
    let rows: Vec<Vec<String>> = functions
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.kind.clone(),
                format!("{}@{}", f.module, f.version),
                f.signature.clone(),
            ]
        })
        .collect();
    print_table(&["NAME", "KIND", "MODULE", "SIGNATURE"], &rows);
    Ok(())
}

pub fn modules(args: ModulesArgs) -> anyhow::Result<()> {
    if let Some(target) = &args.drop {
        let (name, version) = target.split_once('@').unwrap_or((target.as_str(), ""));
        let dropped = args
            .server
            .call(async |client| client.drop_module(name, version).await)?;
        for module in dropped {
            eprintln!("dropped {module}");
        }
        return Ok(());
    }
    let modules = args.server.call(async |client| client.modules().await)?;
    if args.server.output == Output::Json {
        return print_json(&serde_json::Value::Array(
            modules.iter().map(module_json).collect(),
        ));
    }
    let rows: Vec<Vec<String>> = modules
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.version.clone(),
                m.functions.len().to_string(),
                m.size.to_string(),
                m.digest.chars().take(12).collect(),
                m.used_by
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    print_table(
        &["NAME", "VERSION", "FUNCTIONS", "BYTES", "SHA256", "USED BY"],
        &rows,
    );
    Ok(())
}
