//! `weir tables` lists the server's tables; `--create FILE` adds the `CREATE TABLE` in a file,
//! `--drop NAME` removes one (jobs keep the tables they were submitted with).

use std::path::PathBuf;

use anyhow::Context;

use super::remote::{Output, ServerArgs, print_json, print_table};

/// Arguments of `weir tables`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Create the table a `CREATE TABLE` statement in this file describes.
    #[arg(long, value_name = "FILE", conflicts_with = "drop")]
    pub create: Option<PathBuf>,
    /// Drop this table.
    #[arg(long, value_name = "NAME")]
    pub drop: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(file) = &args.create {
        let ddl = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let table = args
            .server
            .call(async |client| client.create_table(&ddl).await)
            .map_err(|e| super::submit::placed(e, &ddl, file))?;
        eprintln!("table '{}' created", table.name);
        return Ok(());
    }
    if let Some(name) = &args.drop {
        args.server
            .call(async |client| client.drop_table(name).await)?;
        eprintln!("table '{name}' dropped");
        return Ok(());
    }
    let tables = args.server.call(async |client| client.tables().await)?;
    if args.server.output == Output::Json {
        return print_json(&serde_json::Value::Array(
            tables
                .iter()
                .map(|t| serde_json::json!({"name": t.name, "ddl": t.ddl}))
                .collect(),
        ));
    }
    let rows: Vec<Vec<String>> = tables
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.ddl.split_whitespace().collect::<Vec<_>>().join(" "),
            ]
        })
        .collect();
    print_table(&["NAME", "DDL"], &rows);
    Ok(())
}
