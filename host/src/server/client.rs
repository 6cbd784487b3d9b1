//! The client the CLI talks to `weir serve` with: every call carries the bearer token, modules
//! are uploaded in chunks, and a refused call comes back as a [`ClientError`] that says why
//! (and, for a script, where).

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use super::proto::{self, control_client::ControlClient, deploy_chunk::Part};

/// Uploads go in chunks of this size.
const CHUNK_BYTES: usize = 1 << 20;

/// Why a call failed, by what the caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No token, or the wrong one.
    Unauthenticated,
    /// The input is wrong (a bad module, bad SQL).
    Invalid,
    NotFound,
    /// Cannot be done now (a module in use, a job not running).
    Refused,
    TooLarge,
    /// The server cannot be reached.
    Unavailable,
    /// The server failed.
    Internal,
}

/// A failed call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub kind: ErrorKind,
    pub message: String,
    /// Line and column in the submitted script, for an error in it.
    pub location: Option<(u64, u64)>,
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        let kind = match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Unauthenticated,
            Code::InvalidArgument => ErrorKind::Invalid,
            Code::NotFound => ErrorKind::NotFound,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => ErrorKind::Refused,
            Code::ResourceExhausted | Code::OutOfRange => ErrorKind::TooLarge,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        let number =
            |key: &str| -> Option<u64> { status.metadata().get(key)?.to_str().ok()?.parse().ok() };
        let location = number("weir-line").zip(number("weir-column"));
        let message = match kind {
            ErrorKind::Unavailable => format!("the server cannot be reached: {}", status.message()),
            _ => status.message().to_string(),
        };
        ClientError {
            kind,
            message,
            location,
        }
    }
}

fn unavailable(message: String) -> ClientError {
    ClientError {
        kind: ErrorKind::Unavailable,
        message,
        location: None,
    }
}

/// A connection to `weir serve`.
#[derive(Debug, Clone)]
pub struct Client {
    inner: ControlClient<Channel>,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Client {
    /// Connects to `url` (`http://host:port`, or `https://` with the server's CA certificate
    /// in PEM).
    ///
    /// # Errors
    /// A bad URL or token, or a server that cannot be reached.
    pub async fn connect(
        url: &str,
        token: &str,
        ca_certificate: Option<Vec<u8>>,
    ) -> Result<Self, ClientError> {
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| unavailable(format!("'{url}' is not a server URL: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(5));
        if let Some(pem) = ca_certificate {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
                .map_err(|e| unavailable(format!("TLS: {e}")))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            let mut message = format!("cannot connect to {url}: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            unavailable(message)
        })?;
        let authorization =
            format!("Bearer {}", token.trim())
                .parse()
                .map_err(|_| ClientError {
                    kind: ErrorKind::Unauthenticated,
                    message: "the token has characters a header cannot carry".into(),
                    location: None,
                })?;
        Ok(Self {
            inner: ControlClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            authorization,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// Uploads a component as `name` (version: the next number when empty).
    pub async fn deploy(
        &mut self,
        name: &str,
        version: &str,
        grants: proto::Grants,
        bytes: &[u8],
    ) -> Result<proto::Module, ClientError> {
        let mut chunks = vec![proto::DeployChunk {
            part: Some(Part::Header(proto::DeployHeader {
                name: name.to_string(),
                version: version.to_string(),
                grants: Some(grants),
            })),
        }];
        chunks.extend(bytes.chunks(CHUNK_BYTES).map(|chunk| proto::DeployChunk {
            part: Some(Part::Data(chunk.to_vec())),
        }));
        let request = self.request(tokio_stream::iter(chunks));
        Ok(self.inner.deploy_module(request).await?.into_inner())
    }

    pub async fn modules(&mut self) -> Result<Vec<proto::Module>, ClientError> {
        let request = self.request(proto::ListModulesRequest {});
        Ok(self.inner.list_modules(request).await?.into_inner().modules)
    }

    pub async fn drop_module(
        &mut self,
        name: &str,
        version: &str,
    ) -> Result<Vec<String>, ClientError> {
        let request = self.request(proto::DropModuleRequest {
            name: name.to_string(),
            version: version.to_string(),
        });
        Ok(self.inner.drop_module(request).await?.into_inner().dropped)
    }

    pub async fn create_table(&mut self, ddl: &str) -> Result<proto::Table, ClientError> {
        let request = self.request(proto::CreateTableRequest {
            ddl: ddl.to_string(),
        });
        Ok(self.inner.create_table(request).await?.into_inner())
    }

    pub async fn tables(&mut self) -> Result<Vec<proto::Table>, ClientError> {
        let request = self.request(proto::ListTablesRequest {});
        Ok(self.inner.list_tables(request).await?.into_inner().tables)
    }

    pub async fn drop_table(&mut self, name: &str) -> Result<(), ClientError> {
        let request = self.request(proto::DropTableRequest {
            name: name.to_string(),
        });
        self.inner.drop_table(request).await?;
        Ok(())
    }

    pub async fn submit(
        &mut self,
        script: &str,
        name: &str,
        from_savepoint: Option<&str>,
    ) -> Result<Vec<proto::Job>, ClientError> {
        let request = self.request(proto::SubmitRequest {
            script: script.to_string(),
            name: name.to_string(),
            from_savepoint: from_savepoint.unwrap_or_default().to_string(),
        });
        Ok(self.inner.submit(request).await?.into_inner().jobs)
    }

    pub async fn jobs(&mut self) -> Result<Vec<proto::Job>, ClientError> {
        let request = self.request(proto::ListJobsRequest {});
        Ok(self.inner.list_jobs(request).await?.into_inner().jobs)
    }

    pub async fn job(&mut self, id: u64) -> Result<proto::Job, ClientError> {
        let request = self.request(proto::JobRequest { id });
        Ok(self.inner.describe_job(request).await?.into_inner())
    }

    pub async fn cancel(&mut self, id: u64) -> Result<proto::Job, ClientError> {
        let request = self.request(proto::JobRequest { id });
        Ok(self.inner.cancel_job(request).await?.into_inner())
    }

    pub async fn stop(&mut self, id: u64, savepoint: bool) -> Result<proto::Job, ClientError> {
        let request = self.request(proto::StopJobRequest { id, savepoint });
        Ok(self.inner.stop_job(request).await?.into_inner())
    }

    pub async fn savepoint(&mut self, id: u64) -> Result<String, ClientError> {
        let request = self.request(proto::JobRequest { id });
        Ok(self
            .inner
            .trigger_savepoint(request)
            .await?
            .into_inner()
            .location)
    }

    pub async fn resume(
        &mut self,
        id: u64,
        from_savepoint: Option<&str>,
    ) -> Result<proto::Job, ClientError> {
        let request = self.request(proto::ResumeJobRequest {
            id,
            from_savepoint: from_savepoint.unwrap_or_default().to_string(),
        });
        Ok(self.inner.resume_job(request).await?.into_inner())
    }

    pub async fn upgrade(
        &mut self,
        id: u64,
        module: &str,
        version: &str,
    ) -> Result<proto::Job, ClientError> {
        let request = self.request(proto::UpgradeJobRequest {
            id,
            module: module.to_string(),
            version: version.to_string(),
        });
        Ok(self.inner.upgrade_job(request).await?.into_inner())
    }
}
