//! The verbs that act on a job: `weir cancel`, `weir stop [--savepoint]`, `weir savepoint`,
//! `weir resume`, `weir upgrade <job> --module name@version`.

use super::remote::{Output, ServerArgs, job_json, print_jobs, print_json};
use weir_host::server::proto;

/// Arguments of `weir cancel`.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    pub id: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `weir stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    pub id: u64,
    /// Take a savepoint first (the job resumes from it); without it the job stops at once and
    /// resumes from its last checkpoint.
    #[arg(long)]
    pub savepoint: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `weir savepoint`.
#[derive(Debug, clap::Args)]
pub struct SavepointArgs {
    pub id: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `weir resume`.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    pub id: u64,
    /// Resume from this savepoint rather than the job's own.
    #[arg(long, value_name = "PATH")]
    pub from_savepoint: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `weir upgrade`.
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    pub id: u64,
    /// The module version to run: `name@version`.
    #[arg(long, value_name = "NAME@VERSION")]
    pub module: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn show(job: &proto::Job, server: &ServerArgs) -> anyhow::Result<()> {
    if server.output == Output::Json {
        return print_json(&job_json(job));
    }
    print_jobs(std::slice::from_ref(job));
    Ok(())
}

pub fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let job = args
        .server
        .call(async |client| client.cancel(args.id).await)?;
    show(&job, &args.server)
}

pub fn stop(args: StopArgs) -> anyhow::Result<()> {
    let job = args
        .server
        .call(async |client| client.stop(args.id, args.savepoint).await)?;
    if args.savepoint && args.server.output == Output::Table {
        eprintln!("stopped with savepoint {}", job.savepoint);
    }
    show(&job, &args.server)
}

pub fn savepoint(args: SavepointArgs) -> anyhow::Result<()> {
    let location = args
        .server
        .call(async |client| client.savepoint(args.id).await)?;
    if args.server.output == Output::Json {
        return print_json(&serde_json::json!({"location": location}));
    }
    println!("{location}");
    Ok(())
}

pub fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let job = args
        .server
        .call(async |client| client.resume(args.id, args.from_savepoint.as_deref()).await)?;
    show(&job, &args.server)
}

pub fn upgrade(args: UpgradeArgs) -> anyhow::Result<()> {
    let Some((module, version)) = args.module.split_once('@') else {
        anyhow::bail!("--module takes name@version, not '{}'", args.module);
    };
    let job = args
        .server
        .call(async |client| client.upgrade(args.id, module, version).await)?;
    if args.server.output == Output::Table {
        eprintln!(
            "job {} now runs {module}@{version}, resumed from its savepoint",
            job.id
        );
    }
    show(&job, &args.server)
}
