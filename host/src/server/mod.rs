//! The control plane: `weir serve`'s gRPC service, what it keeps in its data directory, its
//! jobs, its Prometheus endpoint, and the client the CLI talks to it with.
//!
//! **Boundary:** the only module that names tonic or prost (`service.rs` and `client.rs`; the
//! wire format is `proto/weir.proto`). Below it everything is shared with `weir run`: a job
//! is a [`crate::job::Session`] running one `INSERT` of a submitted script.

pub mod client;
mod controller;
mod jobs;
mod memory;
mod metrics;
mod service;
mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use client::{Client, ClientError, ErrorKind};
pub use service::serve;

/// The generated messages and service (`proto/weir.proto`).
#[allow(clippy::all, clippy::unwrap_used, missing_debug_implementations)]
pub mod proto {
    tonic::include_proto!("weir.v1");
}

/// Modules larger than this are refused unless the server is told otherwise.
pub const DEFAULT_MAX_MODULE_BYTES: usize = 64 << 20;

/// How many ended jobs (finished, failed, cancelled) the server remembers unless told
/// otherwise; older ones are forgotten with their state (savepoints stay).
pub const DEFAULT_JOB_HISTORY: usize = 1000;

/// How `weir serve` runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// Where the gRPC service listens (loopback unless told otherwise).
    pub listen: SocketAddr,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The bearer token; `None`: the one in the data directory (made on first start).
    pub token: Option<String>,
    /// A PEM certificate chain and key: TLS instead of plain HTTP/2.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_module_bytes: usize,
    /// Compiled-module cache.
    pub cache_dir: Option<PathBuf>,
    /// Relative paths in scripts (file tables) are resolved against it.
    pub base_dir: PathBuf,
    /// How many ended jobs are remembered (see [`DEFAULT_JOB_HISTORY`]).
    pub job_history: usize,
}

/// A server failure or a refused call, by cause; each maps to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The caller's input is wrong (a bad module, an unknown setting).
    #[error("{0}")]
    Invalid(String),
    /// The script is wrong at this place.
    #[error("{message}")]
    Sql {
        message: String,
        line: u64,
        column: u64,
    },
    #[error("{0}")]
    NotFound(String),
    /// The call is well formed but cannot be done now (a module in use, a job not running).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The data directory or the server's settings.
    #[error("{0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ServerError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A job error: placed in the script when it has a place.
    fn sql(error: &crate::job::JobError) -> Self {
        let location = match error {
            crate::job::JobError::Sql(e) => e.location(),
            _ => None,
        };
        match location {
            Some(location) => ServerError::Sql {
                message: error.to_string(),
                line: location.line,
                column: location.column,
            },
            None => ServerError::Invalid(error.to_string()),
        }
    }
}
