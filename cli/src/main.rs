//! The `weir` command: build, inspect and call Wasm user functions, and run SQL scripts.
//!
//! Results go to stdout, progress and logs to stderr; the exit code is 0 on success, 1 on an
//! error, 2 on a usage error (clap's), and a closed stdout pipe ends the command quietly.

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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
