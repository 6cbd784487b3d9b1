//! `weir submit <file.sql>`: sends a script to the server, which plans every query before
//! anything runs (an error comes back with its line and column) and starts one job per
//! `INSERT`. Batch jobs run to completion, streaming jobs keep running; `--wait` waits for
//! every job to end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::remote::{Failure, Output, ServerArgs, job_json, print_jobs, print_json};

/// Arguments of `weir submit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SQL script: `SET`s and `CREATE TABLE`s, then `INSERT INTO ... SELECT`s.
    pub script: PathBuf,
    /// A name for the job(s), shown in `weir jobs`.
    #[arg(long)]
    pub name: Option<String>,
    /// Start the first job from this savepoint.
    #[arg(long, value_name = "PATH")]
    pub from_savepoint: Option<String>,
    /// Wait until every job has ended; exit 1 if one failed.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.script)
        .with_context(|| format!("cannot read {}", args.script.display()))?;
    let name = args.name.clone().unwrap_or_default();
    let mut jobs = args
        .server
        .call(async |client| {
            client
                .submit(&text, &name, args.from_savepoint.as_deref())
                .await
        })
        .map_err(|e| placed(e, &text, &args.script))?;
    if args.wait {
        let ids: Vec<u64> = jobs.iter().map(|j| j.id).collect();
        jobs = args.server.call(async |client| {
            let mut ended = Vec::new();
            for id in ids {
                loop {
                    let job = client.job(id).await?;
                    if job.status != "running" {
                        ended.push(job);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Ok(ended)
        })?;
    }
    if args.server.output == Output::Json {
        print_json(&serde_json::Value::Array(
            jobs.iter().map(job_json).collect(),
        ))?;
    } else {
        print_jobs(&jobs);
    }
    if let Some(failed) = jobs.iter().find(|j| j.status == "failed") {
        anyhow::bail!("job {} failed: {}", failed.id, failed.error);
    }
    Ok(())
}

/// An error about the script shown at its place: `file:line:column: message`, the line, a
/// caret under the column.
pub fn placed(error: anyhow::Error, text: &str, file: &Path) -> anyhow::Error {
    let Some(failure) = error.downcast_ref::<Failure>() else {
        return error;
    };
    let Some((line, column)) = failure.location else {
        return error;
    };
    let Some(source) = text.lines().nth(line.saturating_sub(1) as usize) else {
        return error;
    };
    let caret = " ".repeat(column.saturating_sub(1) as usize);
    Failure {
        code: failure.code,
        message: format!(
            "{}:{line}:{column}: {}\n  {source}\n  {caret}^",
            file.display(),
            failure.message
        ),
        location: failure.location,
    }
    .into()
}
