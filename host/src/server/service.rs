//! The gRPC service over the controller: bearer-token checks, streamed uploads with a size
//! limit, errors as statuses (a script's error carries its line and column in the metadata
//! `weir-line` and `weir-column`), TLS when a certificate is configured.

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::controller::{Controller, DeployRequest, too_large};
use super::proto::control_server::{Control, ControlServer};
use super::proto::{self, deploy_chunk::Part};
use super::store::GrantsRecord;
use super::{ServerConfig, ServerError};

/// Each gRPC message at most this (uploads come in chunks well below it).
const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Where a started server listens.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub grpc: SocketAddr,
    pub metrics: Option<SocketAddr>,
    /// True when calls are encrypted.
    pub tls: bool,
}

/// Runs `weir serve` until `shutdown` resolves: resumes the jobs that were running, then
/// serves. `ready` is told where it listens once it does.
///
/// # Errors
/// The data directory cannot be used, an address cannot be bound, or TLS is misconfigured.
pub async fn serve(
    config: ServerConfig,
    ready: impl FnOnce(Listening),
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    super::memory::limit_arenas();
    let controller = Controller::start(&config)?;
    let token = controller.data_dir().token(config.token.clone())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
    let grpc = listener
        .local_addr()
        .map_err(|e| ServerError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
    let metrics = match config.metrics_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
                ServerError::Config(format!("cannot serve metrics on {address}: {e}"))
            })?;
            let bound = listener.local_addr().map_err(|e| {
                ServerError::Config(format!("cannot serve metrics on {address}: {e}"))
            })?;
            tokio::spawn(super::metrics::serve(listener, controller.clone()));
            Some(bound)
        }
        None => None,
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = &config.tls {
        let read =
            |path: &std::path::PathBuf| std::fs::read(path).map_err(|e| ServerError::io(path, e));
        let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| ServerError::Config(format!("TLS: {e}")))?;
    }
    let expected = format!("Bearer {token}");
    let service = tonic::service::interceptor::InterceptedService::new(
        ControlServer::new(Service {
            controller: controller.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES),
        move |request: Request<()>| authorize(&request, &expected).map(|()| request),
    );
    ready(Listening {
        grpc,
        metrics,
        tls: config.tls.is_some(),
    });
    builder
        .add_service(service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
        .map_err(|e| ServerError::Config(format!("the gRPC server failed: {e}")))
}

fn authorize(request: &Request<()>, expected: &str) -> Result<(), Status> {
    let Some(given) = request.metadata().get("authorization") else {
        return Err(Status::unauthenticated(
            "no token: give it with WEIR_TOKEN or --token (the server wrote it to <data \
             dir>/token on its first start)",
        ));
    };
    // Compared in constant time, so that its timing tells nothing about the token.
    let given = given.as_bytes();
    let expected = expected.as_bytes();
    let differs = given.len() != expected.len()
        || given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0;
    if differs {
        return Err(Status::unauthenticated("wrong token"));
    }
    Ok(())
}

fn status(error: ServerError) -> Status {
    match error {
        ServerError::Invalid(message) => Status::invalid_argument(message),
        ServerError::Sql {
            message,
            line,
            column,
        } => {
            let mut status = Status::invalid_argument(message);
            if let (Ok(line), Ok(column)) = (line.to_string().parse(), column.to_string().parse()) {
                status.metadata_mut().insert("weir-line", line);
                status.metadata_mut().insert("weir-column", column);
            }
            status
        }
        ServerError::NotFound(message) => Status::not_found(message),
        ServerError::Refused(message) => Status::failed_precondition(message),
        ServerError::TooLarge(message) => Status::resource_exhausted(message),
        other @ (ServerError::Io { .. } | ServerError::Config(_) | ServerError::Internal(_)) => {
            tracing::error!("{other}");
            Status::internal(other.to_string())
        }
    }
}

struct Service {
    controller: Arc<Controller>,
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Control for Service {
    async fn deploy_module(
        &self,
        request: Request<Streaming<proto::DeployChunk>>,
    ) -> Reply<proto::Module> {
        let mut stream = request.into_inner();
        let limit = self.controller.max_module_bytes();
        let header = match stream.message().await? {
            Some(proto::DeployChunk {
                part: Some(Part::Header(header)),
            }) => header,
            _ => {
                return Err(Status::invalid_argument(
                    "a deploy starts with the module's header (name, version, grants)",
                ));
            }
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await? {
            match chunk.part {
                Some(Part::Data(data)) => {
                    if bytes.len() + data.len() > limit {
                        // Refused before the rest is read: nothing is kept.
                        return Err(status(too_large(bytes.len() + data.len(), limit)));
                    }
                    bytes.extend_from_slice(&data);
                }
                _ => return Err(Status::invalid_argument("a deploy has one header")),
            }
        }
        let grants = header.grants.unwrap_or_default();
        let request = DeployRequest {
            name: header.name,
            version: header.version,
            grants: GrantsRecord {
                read_dirs: grants.read_dirs,
                clock: grants.clock,
            },
        };
        Ok(Response::new(
            self.controller
                .deploy(request, bytes)
                .await
                .map_err(status)?,
        ))
    }

    async fn list_modules(
        &self,
        _: Request<proto::ListModulesRequest>,
    ) -> Reply<proto::ListModulesReply> {
        Ok(Response::new(proto::ListModulesReply {
            modules: self.controller.modules().map_err(status)?,
        }))
    }

    async fn drop_module(
        &self,
        request: Request<proto::DropModuleRequest>,
    ) -> Reply<proto::DropModuleReply> {
        let request = request.into_inner();
        Ok(Response::new(proto::DropModuleReply {
            dropped: self
                .controller
                .drop_module(&request.name, &request.version)
                .map_err(status)?,
        }))
    }

    async fn create_table(
        &self,
        request: Request<proto::CreateTableRequest>,
    ) -> Reply<proto::Table> {
        Ok(Response::new(
            self.controller
                .create_table(&request.into_inner().ddl)
                .map_err(status)?,
        ))
    }

    async fn list_tables(
        &self,
        _: Request<proto::ListTablesRequest>,
    ) -> Reply<proto::ListTablesReply> {
        Ok(Response::new(proto::ListTablesReply {
            tables: self.controller.tables().map_err(status)?,
        }))
    }

    async fn drop_table(
        &self,
        request: Request<proto::DropTableRequest>,
    ) -> Reply<proto::DropTableReply> {
        self.controller
            .drop_table(&request.into_inner().name)
            .map_err(status)?;
        Ok(Response::new(proto::DropTableReply {}))
    }

    async fn submit(&self, request: Request<proto::SubmitRequest>) -> Reply<proto::SubmitReply> {
        let request = request.into_inner();
        let from_savepoint = Some(request.from_savepoint).filter(|s| !s.is_empty());
        Ok(Response::new(proto::SubmitReply {
            jobs: self
                .controller
                .submit(request.script, request.name, from_savepoint)
                .await
                .map_err(status)?,
        }))
    }

    async fn list_jobs(&self, _: Request<proto::ListJobsRequest>) -> Reply<proto::ListJobsReply> {
        Ok(Response::new(proto::ListJobsReply {
            jobs: self.controller.jobs().map_err(status)?,
        }))
    }

    async fn describe_job(&self, request: Request<proto::JobRequest>) -> Reply<proto::Job> {
        Ok(Response::new(
            self.controller
                .describe(request.into_inner().id)
                .map_err(status)?,
        ))
    }

    async fn cancel_job(&self, request: Request<proto::JobRequest>) -> Reply<proto::Job> {
        Ok(Response::new(
            self.controller
                .cancel(request.into_inner().id)
                .await
                .map_err(status)?,
        ))
    }

    async fn stop_job(&self, request: Request<proto::StopJobRequest>) -> Reply<proto::Job> {
        let request = request.into_inner();
        Ok(Response::new(
            self.controller
                .stop(request.id, request.savepoint)
                .await
                .map_err(status)?,
        ))
    }

    async fn trigger_savepoint(
        &self,
        request: Request<proto::JobRequest>,
    ) -> Reply<proto::SavepointReply> {
        Ok(Response::new(proto::SavepointReply {
            location: self
                .controller
                .savepoint(request.into_inner().id)
                .await
                .map_err(status)?,
        }))
    }

    async fn resume_job(&self, request: Request<proto::ResumeJobRequest>) -> Reply<proto::Job> {
        let request = request.into_inner();
        let from = Some(request.from_savepoint).filter(|s| !s.is_empty());
        Ok(Response::new(
            self.controller.resume(request.id, from).map_err(status)?,
        ))
    }

    async fn upgrade_job(&self, request: Request<proto::UpgradeJobRequest>) -> Reply<proto::Job> {
        let request = request.into_inner();
        Ok(Response::new(
            self.controller
                .upgrade(request.id, &request.module, &request.version)
                .await
                .map_err(status)?,
        ))
    }
}
