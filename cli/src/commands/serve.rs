//! `weir serve`: the control plane. Deployed modules, tables and jobs live in the data
//! directory; streaming jobs that were running when the server stopped resume from their last
//! checkpoint when it starts again.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use weir_host::server::{DEFAULT_JOB_HISTORY, DEFAULT_MAX_MODULE_BYTES, ServerConfig};

use super::remote::default_data_dir;

/// Arguments of `weir serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where modules, tables, jobs and their state are kept (default: ~/.local/share/weir).
    #[arg(long, env = "WEIR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The address the gRPC service listens on. Loopback by default: give another address
    /// only with --tls-cert, or behind something that encrypts.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Serve Prometheus metrics at http://ADDRESS/metrics.
    #[arg(long, value_name = "ADDRESS")]
    pub metrics_listen: Option<SocketAddr>,
    /// The bearer token clients must give (default: the one in <data dir>/token, made with
    /// mode 0600 on the first start).
    #[arg(long, env = "WEIR_SERVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM certificate chain: serve over TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The largest module a deploy may upload, in MiB.
    #[arg(long, default_value_t = DEFAULT_MAX_MODULE_BYTES >> 20)]
    pub max_module_mib: usize,
    /// How many ended jobs (finished, failed, cancelled) to remember; older ones are
    /// forgotten with their checkpoints. Savepoints are never deleted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_JOB_HISTORY)]
    pub job_history: usize,
}

/// Serves until SIGTERM or Ctrl-C. Jobs are not stopped: like a crash, the next start resumes
/// them from their checkpoints.
pub fn run(args: Args, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    if !args.listen.ip().is_loopback() && args.tls_cert.is_none() {
        eprintln!(
            "warning: listening on {} without TLS: the token and everything else cross the \
             network in the clear",
            args.listen
        );
    }
    let config = ServerConfig {
        data_dir: data_dir.clone(),
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        token: args.token,
        tls: args.tls_cert.zip(args.tls_key),
        max_module_bytes: args.max_module_mib.saturating_mul(1 << 20),
        cache_dir,
        job_history: args.job_history,
        base_dir: std::env::current_dir().context("cannot read the current directory")?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-worker")
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let shutdown = async {
            let terminate = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate => {}
            }
            eprintln!("shutting down (running jobs resume at the next start)");
        };
        weir_host::server::serve(
            config,
            |listening| {
                let scheme = if listening.tls { "https" } else { "http" };
                // On stdout, first, so that a script can read where it listens.
                println!("listening on {scheme}://{}", listening.grpc);
                if let Some(metrics) = listening.metrics {
                    println!("metrics on http://{metrics}/metrics");
                }
                eprintln!("data directory {}", data_dir.display());
            },
            shutdown,
        )
        .await
    })?;
    Ok(())
}
