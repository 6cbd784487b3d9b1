//! The `weir` command: build, inspect and call Wasm user functions, and run SQL scripts.
//!
//! Results go to stdout, progress and logs to stderr; the exit code is 0 on success, 1 on an
//! error, 2 on a usage error (clap's), 3 to 7 when a server refuses a call (see
//! `commands::remote`), and a closed stdout pipe ends the command quietly.

mod commands;
mod input;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Weir: stream processing with WebAssembly user functions.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    /// Where compiled modules are cached (default: $WEIR_CACHE_DIR, else ~/.cache/weir/modules).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a Rust UDF crate or a Python module into a Wasm component.
    Build(commands::build::Args),
    /// List the functions a component exports, with their SQL signatures.
    Inspect(commands::inspect::Args),
    /// Run one function over a CSV, JSON-lines or Parquet file, batch by batch.
    Call(commands::call::Args),
    /// Run a SQL script in this process: tables, Wasm functions, queries.
    Run(commands::run::Args),
    /// Benchmarks: Nexmark queries over generated events, events per second.
    Bench(commands::bench::Args),
    /// Run the server: deployed modules, tables and jobs, over gRPC.
    Serve(commands::serve::Args),
    /// Upload a module (building a crate or `.py` first) to the server.
    Deploy(commands::deploy::Args),
    /// List the functions jobs on the server can call.
    Functions(commands::functions::FunctionsArgs),
    /// List the server's modules and their versions, or drop one.
    Modules(commands::functions::ModulesArgs),
    /// List the server's tables, or create or drop one.
    Tables(commands::tables::Args),
    /// Submit a SQL script to the server: one job per INSERT.
    Submit(commands::submit::Args),
    /// List the server's jobs.
    Jobs(commands::jobs::JobsArgs),
    /// Describe a job: status, graph, counters, watermarks, checkpoints, errors.
    Job(commands::jobs::JobArgs),
    /// Cancel a job for good.
    Cancel(commands::control::CancelArgs),
    /// Stop a job (with a savepoint if asked); `weir resume` starts it again.
    Stop(commands::control::StopArgs),
    /// Take a savepoint of a running job; it goes on.
    Savepoint(commands::control::SavepointArgs),
    /// Start a stopped or failed job again, from its savepoint or last checkpoint.
    Resume(commands::control::ResumeArgs),
    /// Run a job on another version of a module, keeping its state.
    Upgrade(commands::control::UpgradeArgs),
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,weir::guest=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();

    let cli = Cli::parse();
    let cache_dir = commands::cache_dir(cli.cache_dir);
    let result = match cli.command {
        Command::Build(args) => commands::build::run(args, cache_dir),
        Command::Inspect(args) => commands::inspect::run(args, cache_dir),
        Command::Call(args) => commands::call::run(args, cache_dir),
        Command::Run(args) => commands::run::run(args, cache_dir),
        Command::Bench(args) => commands::bench::run(args, cache_dir),
        Command::Serve(args) => commands::serve::run(args, cache_dir),
        Command::Deploy(args) => commands::deploy::run(args),
        Command::Functions(args) => commands::functions::functions(args),
        Command::Modules(args) => commands::functions::modules(args),
        Command::Tables(args) => commands::tables::run(args),
        Command::Submit(args) => commands::submit::run(args),
        Command::Jobs(args) => commands::jobs::list(args),
        Command::Job(args) => commands::jobs::describe(args),
        Command::Cancel(args) => commands::control::cancel(args),
        Command::Stop(args) => commands::control::stop(args),
        Command::Savepoint(args) => commands::control::savepoint(args),
        Command::Resume(args) => commands::control::resume(args),
        Command::Upgrade(args) => commands::control::upgrade(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<commands::remote::Failure>() {
                Some(failure) => ExitCode::from(failure.code),
                None => ExitCode::FAILURE,
            }
        }
    }
}
