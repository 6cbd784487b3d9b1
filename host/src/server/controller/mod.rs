//! What each call does, without the wire: the catalog (modules, tables), submitting scripts and
//! controlling jobs, persisted in the data directory after every change.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

mod catalog;

use catalog::current_modules;
pub(crate) use catalog::too_large;

use super::ServerError;
use super::jobs::{self, Ended, Halt, JobSetup, LiveJob};
use super::proto;
use super::store::{
    Catalog, DataDir, GrantsRecord, JobRecord, JobStatus, ModuleRecord, PinnedModule, TableRecord,
};
use crate::job::{NoProgress, RuntimeMode, Session};
use crate::sql::{Located, Statement};
use crate::wasm::WasmRuntime;

/// How long a call waits for a job to take a savepoint or to end.
const JOB_WAIT: Duration = Duration::from_secs(180);

/// The server's state: its catalog and its running jobs.
#[derive(Debug)]
pub(crate) struct Controller {
    data: DataDir,
    runtime: WasmRuntime,
    handle: tokio::runtime::Handle,
    catalog: Mutex<Catalog>,
    live: Mutex<HashMap<u64, Arc<LiveJob>>>,
    max_module_bytes: usize,
    base_dir: PathBuf,
    job_history: usize,
}

/// A module as a deployer describes it.
#[derive(Debug, Default)]
pub(crate) struct DeployRequest {
    pub name: String,
    pub version: String,
    pub grants: GrantsRecord,
}

impl Controller {
    /// Opens the data directory and resumes every job that was running when the server last
    /// stopped (from its last completed checkpoint).
    pub fn start(config: &super::ServerConfig) -> Result<Arc<Self>, ServerError> {
        let data = DataDir::open(&config.data_dir)?;
        let catalog = data.load_catalog()?;
        let runtime = WasmRuntime::shared(config.cache_dir.clone())
            .map_err(|e| ServerError::Config(format!("cannot start the Wasm runtime: {e}")))?;
        let controller = Arc::new(Self {
            data,
            runtime,
            handle: tokio::runtime::Handle::current(),
            catalog: Mutex::new(catalog),
            live: Mutex::default(),
            max_module_bytes: config.max_module_bytes,
            base_dir: config.base_dir.clone(),
            job_history: config.job_history,
        });
        if let Ok(mut catalog) = controller.catalog() {
            controller.forget_old_jobs(&mut catalog);
        }
        let running: Vec<JobRecord> = controller
            .catalog()?
            .jobs
            .iter()
            .filter(|j| j.status == JobStatus::Running)
            .cloned()
            .collect();
        for record in running {
            tracing::info!("resuming job {} ({})", record.id, record.name);
            if let Err(e) = controller.launch(record.clone()) {
                controller.record_end(record.id, Ended::Failed(e.to_string()));
            }
        }
        Ok(controller)
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }

    pub fn max_module_bytes(&self) -> usize {
        self.max_module_bytes
    }

    fn catalog(&self) -> Result<MutexGuard<'_, Catalog>, ServerError> {
        self.catalog
            .lock()
            .map_err(|_| ServerError::Internal("the catalog lock is poisoned".into()))
    }

    fn live_jobs(&self) -> Vec<Arc<LiveJob>> {
        self.live
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default()
    }

    fn live_job(&self, id: u64) -> Option<Arc<LiveJob>> {
        self.live.lock().ok().and_then(|l| l.get(&id).cloned())
    }

    // ---- jobs ----

    /// Plans every query of `script` with the current catalog (errors come back with their
    /// place), then starts one job per `INSERT`.
    pub async fn submit(
        self: &Arc<Self>,
        script: String,
        name: String,
        from_savepoint: Option<String>,
    ) -> Result<Vec<proto::Job>, ServerError> {
        let statements = crate::sql::parse_script(&script).map_err(|e| sql_error(&e.into()))?;
        let mut queries = Vec::new();
        for (index, located) in statements.iter().enumerate() {
            match &located.statement {
                Statement::Query {
                    statement,
                    explain: false,
                } => match statement.as_ref() {
                    datafusion_sql::sqlparser::ast::Statement::Insert(insert) => {
                        queries.push((index, insert.table.to_string(), statement.to_string()));
                    }
                    _ => {
                        return Err(located_error(
                            located,
                            "a job on the server writes its result to a table: use INSERT \
                             INTO ... SELECT (`weir run` prints a SELECT's rows)",
                        ));
                    }
                },
                Statement::CreateFunction(create) => {
                    return Err(located_error(
                        located,
                        &format!(
                            "functions come from deployed modules on the server: `weir deploy` \
                             the module, then call '{}' (CREATE FUNCTION ... USING JAR is for \
                             `weir run`)",
                            create.name
                        ),
                    ));
                }
                Statement::Query { explain: true, .. }
                | Statement::ShowTables
                | Statement::ShowFunctions => {
                    return Err(located_error(
                        located,
                        "EXPLAIN and SHOW are not run on the server: list with `weir \
                         functions` and `weir tables`, explain with `weir run`",
                    ));
                }
                Statement::CreateTable(_) | Statement::Set { .. } => {}
            }
        }
        if queries.is_empty() {
            return Err(ServerError::Invalid(
                "the script has no INSERT INTO: nothing to run".into(),
            ));
        }
        let (modules, tables) = {
            let catalog = self.catalog()?;
            let used = identifiers(&script);
            let modules: Vec<ModuleRecord> = current_modules(&catalog)
                .into_iter()
                .filter(|m| {
                    m.functions
                        .iter()
                        .any(|f| used.contains(&f.name.to_ascii_lowercase()))
                })
                .cloned()
                .collect();
            (modules, catalog.tables.clone())
        };
        let with_paths: Vec<(ModuleRecord, PathBuf)> = modules
            .iter()
            .map(|m| (m.clone(), self.data.module_path(&m.digest)))
            .collect();
        // Plan each query as EXPLAIN would, in a session set up as the job's will be.
        let modes = {
            let runtime = self.runtime.clone();
            let base_dir = self.base_dir.clone();
            let (statements, script, queries_at, tables, with_paths) = (
                statements.clone(),
                script.clone(),
                queries.iter().map(|q| q.0).collect::<Vec<_>>(),
                tables.clone(),
                with_paths.clone(),
            );
            let handle = self.handle.clone();
            tokio::task::spawn_blocking(move || {
                handle.block_on(plan_queries(
                    runtime,
                    base_dir,
                    &with_paths,
                    &tables,
                    &statements,
                    &script,
                    &queries_at,
                ))
            })
            .await
            .map_err(|e| ServerError::Internal(format!("planning failed: {e}")))??
        };
        let mut records = Vec::new();
        {
            let mut catalog = self.catalog()?;
            for ((index, table, query), mode) in queries.iter().zip(modes) {
                let id = catalog.next_job;
                catalog.next_job += 1;
                let job_name = match (name.is_empty(), queries.len()) {
                    (true, _) => format!("insert into {table}"),
                    (false, 1) => name.clone(),
                    (false, _) => format!("{name}-{}", records.len() + 1),
                };
                let record = JobRecord {
                    id,
                    name: job_name,
                    mode: match mode {
                        RuntimeMode::Batch => "batch".into(),
                        RuntimeMode::Streaming => "streaming".into(),
                    },
                    script: script.clone(),
                    statement: *index,
                    query: query.clone(),
                    tables: tables.clone(),
                    modules: modules
                        .iter()
                        .map(|m| PinnedModule {
                            name: m.name.clone(),
                            version: m.version.clone(),
                        })
                        .collect(),
                    status: JobStatus::Running,
                    // Only the first query starts from it, as in `weir run`.
                    from_savepoint: if records.is_empty() {
                        from_savepoint.clone().filter(|s| !s.is_empty())
                    } else {
                        None
                    },
                    savepoint: None,
                    error: None,
                    submitted_millis: crate::runtime::now_millis(),
                    ended_millis: None,
                };
                self.data.save_job(&record)?;
                catalog.jobs.push(record.clone());
                records.push(record);
            }
            self.data.save_catalog(&catalog)?;
        }
        let mut replies = Vec::new();
        for record in records {
            if let Err(e) = self.launch(record.clone()) {
                self.record_end(record.id, Ended::Failed(e.to_string()));
            }
            replies.push(self.describe(record.id)?);
        }
        Ok(replies)
    }

    /// Starts a job's thread for `record` (status running, already saved).
    fn launch(self: &Arc<Self>, record: JobRecord) -> Result<(), ServerError> {
        let modules = {
            let catalog = self.catalog()?;
            let mut modules = Vec::new();
            for pin in &record.modules {
                let module = catalog
                    .modules
                    .iter()
                    .find(|m| m.name == pin.name && m.version == pin.version)
                    .ok_or_else(|| {
                        ServerError::Refused(format!(
                            "module {}@{} is no longer deployed",
                            pin.name, pin.version
                        ))
                    })?;
                modules.push((module.clone(), self.data.module_path(&module.digest)));
            }
            modules
        };
        let id = record.id;
        let setup = JobSetup {
            record,
            modules,
            runtime: self.runtime.clone(),
            base_dir: self.base_dir.clone(),
            state_dir: self.data.job_dir(id),
        };
        let controller = Arc::downgrade(self);
        // Holding the lock while starting, so that the end (on the job's thread) cannot be
        // recorded before the job is in the map.
        let mut live = self
            .live
            .lock()
            .map_err(|_| ServerError::Internal("the job table lock is poisoned".into()))?;
        let job = jobs::start(setup, self.handle.clone(), move |id, ended| {
            if let Some(controller) = controller.upgrade() {
                controller.record_end(id, ended);
            }
        })
        .map_err(|e| ServerError::Internal(format!("cannot start job {id}'s thread: {e}")))?;
        live.insert(id, job);
        Ok(())
    }

    /// Records how a job ended and forgets its live handle.
    fn record_end(&self, id: u64, ended: Ended) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(&id);
        }
        let Ok(mut catalog) = self.catalog() else {
            return;
        };
        let Some(record) = catalog.jobs.iter_mut().find(|j| j.id == id) else {
            return;
        };
        record.ended_millis = Some(crate::runtime::now_millis());
        match ended {
            Ended::Finished => {
                record.status = JobStatus::Finished;
                record.error = None;
            }
            Ended::Failed(error) => {
                tracing::warn!("job {id} failed: {error}");
                record.status = JobStatus::Failed;
                record.error = Some(error);
            }
            Ended::Halted(Halt::Cancel) => record.status = JobStatus::Cancelled,
            Ended::Halted(Halt::Stop) => record.status = JobStatus::Stopped,
            Ended::StoppedWithSavepoint(savepoint) => {
                record.status = JobStatus::Stopped;
                record.savepoint = Some(savepoint);
            }
        }
        if let Err(e) = self.data.save_job(record) {
            tracing::error!("cannot save job {id}'s record after it ended: {e}");
        }
        self.forget_old_jobs(&mut catalog);
        drop(catalog);
        super::memory::release_freed();
    }

    /// Keeps the newest `job_history` ended jobs (as Flink's job store does); running and
    /// stopped jobs stay whatever their age, since they may run again.
    fn forget_old_jobs(&self, catalog: &mut Catalog) {
        let ended = catalog
            .jobs
            .iter()
            .filter(|j| !j.status.holds_modules())
            .count();
        let mut excess = ended.saturating_sub(self.job_history);
        if excess == 0 {
            return;
        }
        // Ids grow with submission, and the records are kept in id order.
        let mut forgotten = Vec::new();
        catalog.jobs.retain(|job| {
            if excess > 0 && !job.status.holds_modules() {
                excess -= 1;
                forgotten.push(job.id);
                false
            } else {
                true
            }
        });
        for id in forgotten {
            if let Err(e) = self.data.forget_job(id) {
                tracing::warn!("cannot remove ended job {id}'s files: {e}");
            }
        }
    }

    pub fn jobs(&self) -> Result<Vec<proto::Job>, ServerError> {
        let ids: Vec<u64> = self.catalog()?.jobs.iter().map(|j| j.id).collect();
        ids.into_iter().map(|id| self.describe(id)).collect()
    }

    /// A job with its live metrics when it runs.
    pub fn describe(&self, id: u64) -> Result<proto::Job, ServerError> {
        let (record, modules) = {
            let catalog = self.catalog()?;
            let record = catalog
                .jobs
                .iter()
                .find(|j| j.id == id)
                .cloned()
                .ok_or_else(|| ServerError::NotFound(format!("no job {id}")))?;
            let modules = record
                .modules
                .iter()
                .map(|pin| proto::ModuleVersion {
                    name: pin.name.clone(),
                    version: pin.version.clone(),
                    digest: catalog
                        .modules
                        .iter()
                        .find(|m| m.name == pin.name && m.version == pin.version)
                        .map(|m| m.digest.clone())
                        .unwrap_or_default(),
                })
                .collect();
            (record, modules)
        };
        let mut job = proto::Job {
            id: record.id,
            name: record.name.clone(),
            status: record.status.name().to_string(),
            mode: record.mode.clone(),
            script: record.script.clone(),
            query: record.query.clone(),
            submitted_millis: record.submitted_millis,
            ended_millis: record.ended_millis.unwrap_or(0),
            error: record.error.clone().unwrap_or_default(),
            savepoint: record
                .savepoint
                .clone()
                .or(record.from_savepoint.clone())
                .unwrap_or_default(),
            modules,
            ..proto::Job::default()
        };
        if let Some(live) = self.live_job(id) {
            super::metrics::fill_job(&mut job, &live);
        }
        Ok(job)
    }

    fn running(&self, id: u64) -> Result<Arc<LiveJob>, ServerError> {
        self.describe(id)?;
        self.live_job(id)
            .ok_or_else(|| ServerError::Refused(format!("job {id} is not running")))
    }

    pub async fn cancel(&self, id: u64) -> Result<proto::Job, ServerError> {
        let live = self.running(id)?;
        live.halt(Halt::Cancel);
        wait_for_end(&live).await?;
        self.describe(id)
    }

    pub async fn stop(&self, id: u64, savepoint: bool) -> Result<proto::Job, ServerError> {
        let live = self.running(id)?;
        if savepoint {
            self.check_checkpointed(id)?;
            live.stop_with_savepoint();
        } else {
            live.halt(Halt::Stop);
        }
        wait_for_end(&live).await?;
        let job = self.describe(id)?;
        if savepoint && job.status != "stopped" {
            return Err(ServerError::Refused(format!(
                "job {id} ended as {} before its savepoint: {}",
                job.status, job.error
            )));
        }
        Ok(job)
    }

    fn check_checkpointed(&self, id: u64) -> Result<(), ServerError> {
        let mode = self
            .catalog()?
            .jobs
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.mode.clone());
        if mode.as_deref() == Some("batch") {
            return Err(ServerError::Refused(format!(
                "job {id} is a batch job: it takes no checkpoints, so no savepoint either"
            )));
        }
        Ok(())
    }

    /// Takes a savepoint while the job goes on; its location.
    pub async fn savepoint(&self, id: u64) -> Result<String, ServerError> {
        let live = self.running(id)?;
        self.check_checkpointed(id)?;
        let before = live.savepoints().len();
        live.request_savepoint();
        let deadline = tokio::time::Instant::now() + JOB_WAIT;
        loop {
            if let Some(location) = live.savepoints().get(before) {
                return Ok(location.clone());
            }
            if live.has_ended() {
                let job = self.describe(id)?;
                return Err(ServerError::Refused(format!(
                    "job {id} ended ({}) before its savepoint was complete {}",
                    job.status, job.error
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ServerError::Refused(format!(
                    "job {id}'s savepoint did not complete within {JOB_WAIT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a stopped (or failed) job again: from `from_savepoint`, else from the savepoint
    /// it stopped with, else from its last checkpoint.
    pub fn resume(
        self: &Arc<Self>,
        id: u64,
        from_savepoint: Option<String>,
    ) -> Result<proto::Job, ServerError> {
        let record = {
            let mut catalog = self.catalog()?;
            let record = catalog
                .jobs
                .iter_mut()
                .find(|j| j.id == id)
                .ok_or_else(|| ServerError::NotFound(format!("no job {id}")))?;
            if !matches!(record.status, JobStatus::Stopped | JobStatus::Failed) {
                return Err(ServerError::Refused(format!(
                    "job {id} is {}: only a stopped or failed job can be resumed",
                    record.status.name()
                )));
            }
            if let Some(savepoint) = from_savepoint
                .filter(|s| !s.is_empty())
                .or(record.savepoint.take())
            {
                record.from_savepoint = Some(savepoint);
            }
            record.status = JobStatus::Running;
            record.error = None;
            record.ended_millis = None;
            let record = record.clone();
            self.data.save_job(&record)?;
            record
        };
        if let Err(e) = self.launch(record) {
            self.record_end(id, Ended::Failed(e.to_string()));
            return Err(e);
        }
        self.describe(id)
    }

    /// Stops the job with a savepoint, pins `module@version`, and resumes from the savepoint:
    /// the job keeps its state across the new version.
    pub async fn upgrade(
        self: &Arc<Self>,
        id: u64,
        module: &str,
        version: &str,
    ) -> Result<proto::Job, ServerError> {
        {
            let catalog = self.catalog()?;
            let record = catalog
                .jobs
                .iter()
                .find(|j| j.id == id)
                .ok_or_else(|| ServerError::NotFound(format!("no job {id}")))?;
            let Some(pin) = record.modules.iter().find(|p| p.name == module) else {
                return Err(ServerError::Refused(format!(
                    "job {id} does not use module '{module}' (it uses: {})",
                    record
                        .modules
                        .iter()
                        .map(|p| format!("{}@{}", p.name, p.version))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if pin.version == version {
                return Err(ServerError::Refused(format!(
                    "job {id} already runs {module}@{version}"
                )));
            }
            let new = catalog
                .modules
                .iter()
                .find(|m| m.name == module && m.version == version)
                .ok_or_else(|| ServerError::NotFound(format!("no module {module}@{version}")))?;
            let old = catalog
                .modules
                .iter()
                .find(|m| m.name == pin.name && m.version == pin.version);
            // The query must still plan: every function it may call must still be there.
            if let Some(old) = old {
                let missing: Vec<&str> = old
                    .functions
                    .iter()
                    .filter(|f| !new.functions.iter().any(|g| g.signature == f.signature))
                    .map(|f| f.signature.as_str())
                    .collect();
                if !missing.is_empty() {
                    return Err(ServerError::Refused(format!(
                        "{module}@{version} lacks what {module}@{} has: {}",
                        pin.version,
                        missing.join(", ")
                    )));
                }
            }
            if record.status == JobStatus::Running && record.mode == "batch" {
                return Err(ServerError::Refused(format!(
                    "job {id} is a batch job: it cannot be upgraded while it runs"
                )));
            }
        }
        if self.live_job(id).is_some() {
            self.stop(id, true).await?;
        }
        {
            let mut catalog = self.catalog()?;
            let record = catalog
                .jobs
                .iter_mut()
                .find(|j| j.id == id)
                .ok_or_else(|| ServerError::NotFound(format!("no job {id}")))?;
            if let Some(pin) = record.modules.iter_mut().find(|p| p.name == module) {
                pin.version = version.to_string();
            }
            self.data.save_job(record)?;
        }
        self.resume(id, None)
    }

    /// Every job's live handle, for `/metrics`.
    pub fn live_snapshot(&self) -> Vec<(proto::Job, Arc<LiveJob>)> {
        self.live_jobs()
            .into_iter()
            .filter_map(|live| self.describe(live.id).ok().map(|job| (job, live)))
            .collect()
    }

    /// Jobs by status, for `/metrics`.
    pub fn job_counts(&self) -> Vec<(&'static str, usize)> {
        let Ok(catalog) = self.catalog() else {
            return Vec::new();
        };
        [
            JobStatus::Running,
            JobStatus::Finished,
            JobStatus::Failed,
            JobStatus::Cancelled,
            JobStatus::Stopped,
        ]
        .into_iter()
        .map(|status| {
            (
                status.name(),
                catalog.jobs.iter().filter(|j| j.status == status).count(),
            )
        })
        .collect()
    }
}

async fn wait_for_end(live: &LiveJob) -> Result<(), ServerError> {
    tokio::time::timeout(JOB_WAIT, live.ended())
        .await
        .map_err(|_| ServerError::Internal(format!("job {} did not end in {JOB_WAIT:?}", live.id)))
}

/// Plans each query at `queries` (statement indexes) in a session set up as a job's; the
/// runtime mode each runs in.
async fn plan_queries(
    runtime: WasmRuntime,
    base_dir: PathBuf,
    modules: &[(ModuleRecord, PathBuf)],
    tables: &[TableRecord],
    statements: &[Located],
    script: &str,
    queries: &[usize],
) -> Result<Vec<RuntimeMode>, ServerError> {
    let mut session = Session::new(runtime, base_dir);
    let last = queries.last().copied().unwrap_or(0);
    jobs::prepare(
        &mut session,
        modules,
        tables,
        statements,
        script,
        0,
        &mut NoProgress,
    )
    .await?;
    let mut modes = Vec::new();
    for (index, located) in statements.iter().enumerate().take(last + 1) {
        match &located.statement {
            Statement::Query { statement, .. } => {
                let explain = Located {
                    statement: Statement::Query {
                        statement: statement.clone(),
                        explain: true,
                    },
                    location: located.location,
                };
                session
                    .execute(&explain, script, &mut NoProgress)
                    .await
                    .map_err(|e| ServerError::sql(&e))?;
                if queries.contains(&index) {
                    modes.push(session.mode());
                }
            }
            _ => {
                session
                    .execute(located, script, &mut NoProgress)
                    .await
                    .map_err(|e| ServerError::sql(&e))?;
            }
        }
    }
    Ok(modes)
}

/// The lowercased words of a script that may name a function.
fn identifiers(script: &str) -> HashSet<String> {
    script
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn sql_error(error: &crate::job::JobError) -> ServerError {
    ServerError::sql(error)
}

fn located_error(located: &Located, message: &str) -> ServerError {
    ServerError::Sql {
        message: message.to_string(),
        line: located.location.line,
        column: located.location.column,
    }
}
