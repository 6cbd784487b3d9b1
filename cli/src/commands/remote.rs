//! What every verb that talks to `weir serve` shares: where the server is and the token
//! (`--server`/`WEIR_SERVER`, `--token`/`WEIR_TOKEN`, else the token file in the data
//! directory), `--output table|json`, and exit codes that say what went wrong.

use std::path::PathBuf;

use weir_host::server::{Client, ClientError, ErrorKind, proto};

/// The server the CLI talks to unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// Exit codes (documented in the README): 0 done, 1 failed, 2 usage (clap's), then one per
/// reason a server refuses.
pub const EXIT_INVALID: u8 = 3;
pub const EXIT_NOT_FOUND: u8 = 4;
pub const EXIT_REFUSED: u8 = 5;
pub const EXIT_UNAUTHENTICATED: u8 = 6;
pub const EXIT_UNAVAILABLE: u8 = 7;

/// How to reach the server; flattened into each remote verb.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server's URL (`https://` for TLS).
    #[arg(long, env = "WEIR_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// The bearer token (default: the token file in --data-dir).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The server's data directory, to read its token from (a server on this machine).
    #[arg(long, env = "WEIR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PEM CA certificate that signed the server's (with an `https://` URL).
    #[arg(long, env = "WEIR_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Tables for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// A refused or failed call, with the exit code it means.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// Line and column in the script the call sent, for an error in it.
    pub location: Option<(u64, u64)>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A client error as a failure with its exit code.
pub fn failure(error: ClientError) -> anyhow::Error {
    let code = match error.kind {
        ErrorKind::Invalid | ErrorKind::TooLarge => EXIT_INVALID,
        ErrorKind::NotFound => EXIT_NOT_FOUND,
        ErrorKind::Refused => EXIT_REFUSED,
        ErrorKind::Unauthenticated => EXIT_UNAUTHENTICATED,
        ErrorKind::Unavailable => EXIT_UNAVAILABLE,
        ErrorKind::Internal => 1,
    };
    Failure {
        code,
        message: error.message,
        location: error.location,
    }
    .into()
}

/// The default data directory of `weir serve`: `$XDG_DATA_HOME/weir`, else
/// `~/.local/share/weir`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("weir")
}

impl ServerArgs {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let file = self
            .data_dir
            .clone()
            .unwrap_or_else(default_data_dir)
            .join("token");
        match std::fs::read_to_string(&file) {
            Ok(token) => Ok(token.trim().to_string()),
            Err(_) => Err(Failure {
                code: EXIT_UNAUTHENTICATED,
                message: format!(
                    "no token: set WEIR_TOKEN (or --token), or --data-dir to the server's data \
                     directory (no {} here)",
                    file.display()
                ),
                location: None,
            }
            .into()),
        }
    }

    /// Runs `call` against the server on a small runtime of its own.
    pub fn call<T>(
        &self,
        call: impl AsyncFnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> anyhow::Result<T> {
        let token = self.token()?;
        let ca = match &self.ca_cert {
            Some(path) => Some(std::fs::read(path).map_err(|e| Failure {
                code: EXIT_INVALID,
                message: format!("cannot read {}: {e}", path.display()),
                location: None,
            })?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut client = Client::connect(&self.server, &token, ca)
                .await
                .map_err(failure)?;
            call(&mut client).await.map_err(failure)
        })
    }
}

/// Prints rows as an aligned table with a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn module_json(module: &proto::Module) -> serde_json::Value {
    let grants = module.grants.clone().unwrap_or_default();
    serde_json::json!({
        "name": module.name,
        "version": module.version,
        "digest": module.digest,
        "size": module.size,
        "unchanged": module.unchanged,
        "deployed_millis": module.deployed_millis,
        "grants": {"read_dirs": grants.read_dirs, "clock": grants.clock},
        "used_by": module.used_by,
        "functions": module.functions.iter().map(|f| serde_json::json!({
            "name": f.name, "kind": f.kind, "signature": f.signature,
        })).collect::<Vec<_>>(),
    })
}

pub fn job_json(job: &proto::Job) -> serde_json::Value {
    serde_json::json!({
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "mode": job.mode,
        "query": job.query,
        "submitted_millis": job.submitted_millis,
        "ended_millis": job.ended_millis,
        "error": job.error,
        "savepoint": job.savepoint,
        "rows_in": job.rows_in,
        "rows_out": job.rows_out,
        "graph": job.graph,
        "notices": job.notices,
        "modules": job.modules.iter().map(|m| serde_json::json!({
            "name": m.name, "version": m.version, "digest": m.digest,
        })).collect::<Vec<_>>(),
        "operators": job.operators.iter().map(|o| serde_json::json!({
            "name": o.name,
            "parallelism": o.parallelism,
            "rows_in": o.rows_in,
            "rows_out": o.rows_out,
            "busy_nanos": o.busy_nanos,
            "late_rows": o.late_rows,
            "skipped_rows": o.skipped_rows,
            "watermark_millis": o.watermark_millis,
            "backpressure_nanos": o.backpressure_nanos,
        })).collect::<Vec<_>>(),
        "checkpoints": job.checkpoints.iter().map(|c| serde_json::json!({
            "id": c.id,
            "savepoint": c.savepoint,
            "duration_millis": c.duration_millis,
            "bytes_written": c.bytes_written,
            "state_size": c.state_size,
            "location": c.location,
        })).collect::<Vec<_>>(),
        "functions": job.functions.iter().map(|f| serde_json::json!({
            "name": f.name, "calls": f.calls, "rows": f.rows, "nanos": f.nanos,
            "errors": f.errors,
        })).collect::<Vec<_>>(),
    })
}

/// One line per job: id, status, mode, name, rows.
pub fn print_jobs(jobs: &[proto::Job]) {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.status.clone(),
                j.mode.clone(),
                j.rows_in.to_string(),
                j.rows_out.to_string(),
                j.name.clone(),
            ]
        })
        .collect();
    print_table(
        &["ID", "STATUS", "MODE", "ROWS IN", "ROWS OUT", "NAME"],
        &rows,
    );
}
