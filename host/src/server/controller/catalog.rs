//! The catalog calls: deploying (checked by loading, stored by content hash, versioned),
//! listing and dropping modules, and the server's tables.

use super::{Controller, DeployRequest, sql_error};
use crate::server::ServerError;
use crate::server::proto;
use crate::server::store::{Catalog, FunctionRecord, ModuleRecord, TableRecord};
use crate::sql::Statement;
use crate::wasm::LoadOptions;

impl Controller {
    // ---- modules ----

    /// Checks that `bytes` are a `weir:udf` component, stores them by content hash and adds
    /// them as the next version of `request.name`.
    pub async fn deploy(
        &self,
        request: DeployRequest,
        bytes: Vec<u8>,
    ) -> Result<proto::Module, ServerError> {
        check_name("module name", &request.name)?;
        if !request.version.is_empty() {
            check_name("version", &request.version)?;
        }
        if bytes.len() > self.max_module_bytes {
            return Err(too_large(bytes.len(), self.max_module_bytes));
        }
        for dir in &request.grants.read_dirs {
            if !std::path::Path::new(dir).is_absolute() {
                return Err(ServerError::Invalid(format!(
                    "a directory a module may read must be an absolute path on the server, not \
                     '{dir}'"
                )));
            }
        }
        // Loading compiles (seconds for a Python module): off the async workers.
        let runtime = self.runtime.clone();
        let name = request.name.clone();
        let grants = request.grants.sandbox();
        let (module, bytes) = tokio::task::spawn_blocking(move || {
            let loaded = runtime.load(
                &name,
                &bytes,
                LoadOptions {
                    grants,
                    ..LoadOptions::default()
                },
            );
            (loaded, bytes)
        })
        .await
        .map_err(|e| ServerError::Internal(format!("loading the module failed: {e}")))?;
        let module = module.map_err(|e| {
            ServerError::Invalid(format!(
                "'{}' is not a usable weir:udf component: {e}",
                request.name
            ))
        })?;
        let digest = module.digest().to_string();
        let functions: Vec<FunctionRecord> = module
            .functions()
            .iter()
            .map(|f| FunctionRecord {
                name: f.name.clone(),
                kind: f.kind.name().to_string(),
                signature: f.signature(),
            })
            .collect();
        let mut catalog = self.catalog()?;
        let versions: Vec<&ModuleRecord> = catalog
            .modules
            .iter()
            .filter(|m| m.name == request.name)
            .collect();
        if let Some(same) = versions
            .iter()
            .find(|m| m.digest == digest && m.grants == request.grants)
            && (request.version.is_empty() || request.version == same.version)
        {
            let mut reply = module_reply(same, &catalog);
            reply.unchanged = true;
            return Ok(reply);
        }
        let version = if request.version.is_empty() {
            let highest = versions
                .iter()
                .filter_map(|m| m.version.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            (highest + 1).to_string()
        } else if versions.iter().any(|m| m.version == request.version) {
            return Err(ServerError::Refused(format!(
                "module {}@{} exists with other contents; deploy under a new version",
                request.name, request.version
            )));
        } else {
            request.version.clone()
        };
        // A function name means one module: another module's current functions keep theirs.
        for other in current_modules(&catalog) {
            if other.name == request.name {
                continue;
            }
            if let Some(clash) = other
                .functions
                .iter()
                .find(|f| functions.iter().any(|g| g.name == f.name))
            {
                return Err(ServerError::Refused(format!(
                    "function '{}' is already deployed by module {}@{}; drop that module or \
                     deploy this one under the name '{}'",
                    clash.name, other.name, other.version, other.name
                )));
            }
        }
        self.data.store_module(&digest, &bytes)?;
        let record = ModuleRecord {
            name: request.name.clone(),
            version,
            digest,
            size: bytes.len() as u64,
            functions,
            grants: request.grants,
            deployed_millis: crate::runtime::now_millis(),
        };
        catalog.modules.push(record.clone());
        self.data.save_catalog(&catalog)?;
        Ok(module_reply(&record, &catalog))
    }

    pub fn modules(&self) -> Result<Vec<proto::Module>, ServerError> {
        let catalog = self.catalog()?;
        Ok(catalog
            .modules
            .iter()
            .map(|m| module_reply(m, &catalog))
            .collect())
    }

    /// Drops a module's version (or all of them), unless a job that may run uses it.
    pub fn drop_module(&self, name: &str, version: &str) -> Result<Vec<String>, ServerError> {
        let mut catalog = self.catalog()?;
        let matching: Vec<ModuleRecord> = catalog
            .modules
            .iter()
            .filter(|m| m.name == name && (version.is_empty() || m.version == version))
            .cloned()
            .collect();
        if matching.is_empty() {
            return Err(ServerError::NotFound(if version.is_empty() {
                format!("no module '{name}'")
            } else {
                format!("no module {name}@{version}")
            }));
        }
        let users: Vec<String> = catalog
            .jobs
            .iter()
            .filter(|j| j.status.holds_modules())
            .filter(|j| {
                j.modules.iter().any(|p| {
                    matching
                        .iter()
                        .any(|m| m.name == p.name && m.version == p.version)
                })
            })
            .map(|j| format!("{} ({}, {})", j.id, j.name, j.status.name()))
            .collect();
        if !users.is_empty() {
            return Err(ServerError::Refused(format!(
                "module '{name}' is used by job(s) {}: cancel them first",
                users.join(", ")
            )));
        }
        catalog
            .modules
            .retain(|m| !(m.name == name && (version.is_empty() || m.version == version)));
        self.data.save_catalog(&catalog)?;
        for module in &matching {
            if !catalog.modules.iter().any(|m| m.digest == module.digest) {
                let _ = std::fs::remove_file(self.data.module_path(&module.digest));
            }
        }
        Ok(matching
            .iter()
            .map(|m| format!("{}@{}", m.name, m.version))
            .collect())
    }

    // ---- tables ----

    pub fn create_table(&self, ddl: &str) -> Result<proto::Table, ServerError> {
        let statements = crate::sql::parse_script(ddl).map_err(|e| sql_error(&e.into()))?;
        let [located] = statements.as_slice() else {
            return Err(ServerError::Invalid(
                "give one CREATE TABLE statement".to_string(),
            ));
        };
        let Statement::CreateTable(create) = &located.statement else {
            return Err(ServerError::Invalid(
                "give one CREATE TABLE statement".to_string(),
            ));
        };
        let mut scratch = crate::sql::Catalog::default();
        scratch
            .create_table(create)
            .map_err(|e| sql_error(&e.into()))?;
        let mut catalog = self.catalog()?;
        if catalog.tables.iter().any(|t| t.name == create.name) {
            if create.if_not_exists {
                return Ok(proto::Table {
                    name: create.name.clone(),
                    ddl: ddl.to_string(),
                });
            }
            return Err(ServerError::Refused(format!(
                "table '{}' exists; drop it first",
                create.name
            )));
        }
        let record = TableRecord {
            name: create.name.clone(),
            ddl: ddl.trim().trim_end_matches(';').to_string(),
        };
        catalog.tables.push(record.clone());
        self.data.save_catalog(&catalog)?;
        Ok(proto::Table {
            name: record.name,
            ddl: record.ddl,
        })
    }

    pub fn tables(&self) -> Result<Vec<proto::Table>, ServerError> {
        Ok(self
            .catalog()?
            .tables
            .iter()
            .map(|t| proto::Table {
                name: t.name.clone(),
                ddl: t.ddl.clone(),
            })
            .collect())
    }

    /// Jobs keep the tables they were submitted with: dropping one does not touch them.
    pub fn drop_table(&self, name: &str) -> Result<(), ServerError> {
        let mut catalog = self.catalog()?;
        let before = catalog.tables.len();
        catalog.tables.retain(|t| t.name != name);
        if catalog.tables.len() == before {
            return Err(ServerError::NotFound(format!("no table '{name}'")));
        }
        self.data.save_catalog(&catalog)
    }
}

/// Each module name's newest version: what `weir functions` lists and new jobs call.
pub(super) fn current_modules(catalog: &Catalog) -> Vec<&ModuleRecord> {
    let mut newest: Vec<&ModuleRecord> = Vec::new();
    for module in &catalog.modules {
        match newest.iter_mut().find(|m| m.name == module.name) {
            Some(slot) => *slot = module,
            None => newest.push(module),
        }
    }
    newest
}

fn module_reply(module: &ModuleRecord, catalog: &Catalog) -> proto::Module {
    proto::Module {
        name: module.name.clone(),
        version: module.version.clone(),
        digest: module.digest.clone(),
        size: module.size,
        functions: module
            .functions
            .iter()
            .map(|f| proto::Function {
                name: f.name.clone(),
                kind: f.kind.clone(),
                signature: f.signature.clone(),
                module: module.name.clone(),
                version: module.version.clone(),
            })
            .collect(),
        grants: Some(proto::Grants {
            read_dirs: module.grants.read_dirs.clone(),
            clock: module.grants.clock,
        }),
        deployed_millis: module.deployed_millis,
        unchanged: false,
        used_by: catalog
            .jobs
            .iter()
            .filter(|j| j.status.holds_modules())
            .filter(|j| {
                j.modules
                    .iter()
                    .any(|p| p.name == module.name && p.version == module.version)
            })
            .map(|j| j.id)
            .collect(),
    }
}

fn check_name(what: &str, name: &str) -> Result<(), ServerError> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if fine {
        Ok(())
    } else {
        Err(ServerError::Invalid(format!(
            "{what} '{name}' must be 1 to 64 letters, digits, '_', '-' or '.'"
        )))
    }
}

pub(crate) fn too_large(size: usize, limit: usize) -> ServerError {
    ServerError::TooLarge(format!(
        "the module is larger than this server accepts ({} bytes; the limit is {limit} bytes, \
         set by `weir serve --max-module-mib`)",
        size
    ))
}
