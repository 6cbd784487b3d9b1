//! Running a script: the session that holds the catalog and settings, loads Wasm modules for
//! `CREATE FUNCTION`, plans each query and runs it on the dataflow runtime.
//!
//! **Boundary:** the one place that joins SQL, planning, Wasm loading and the runtime; the CLI
//! (and later the server) drive it.

pub mod checkpoints;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::functions::{ModuleHandle, UdfMetrics, WasmFunction};
use crate::plan::translate::Destination;
use crate::plan::{DEFAULT_MAX_PARALLELISM, Graph, PlanError, PlanOptions};
use crate::runtime::{JobStats, RuntimeError};
use crate::sql::parser::CreateFunction;
use crate::sql::{Catalog, Located, PlannedQuery, SqlError, Statement};
use crate::udf::UdfError;
use crate::wasm::{LoadOptions, WasmRuntime};

/// A script or job that failed, by phase.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    #[error("CREATE FUNCTION {function}: {source}")]
    Module {
        function: String,
        #[source]
        source: Box<UdfError>,
    },
    #[error("{0}")]
    Setting(String),
    #[error("{0}")]
    Checkpoint(String),
}

/// `SET` keys Weir knows, with Flink's names.
pub const KNOWN_SETTINGS: &[&str] = &[
    "execution.runtime-mode",
    "parallelism.default",
    "pipeline.max-parallelism",
    "pipeline.batch-size",
    "table.exec.state.ttl",
    "execution.checkpointing.interval",
    "execution.checkpointing.dir",
    "execution.checkpointing.num-retained",
    "restart-strategy.type",
    "restart-strategy.fixed-delay.attempts",
    "restart-strategy.fixed-delay.delay",
    "state.backend.type",
    "s3.endpoint",
    "s3.access-key",
    "s3.secret-key",
    "s3.region",
    "s3.path.style.access",
];

/// Batch or streaming (`execution.runtime-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeMode {
    Batch,
    Streaming,
}

/// What a statement produced.
#[derive(Debug)]
pub enum Outcome {
    /// A DDL statement or `SET`: a line for the user.
    Done(String),
    /// `EXPLAIN`, `SHOW ...`: text for the user.
    Text(String),
    /// A `SELECT`'s rows.
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        stats: Arc<JobStats>,
        graph: Arc<Graph>,
    },
    /// The user stopped the query; it took this savepoint first.
    Stopped { savepoint: String },
    /// An `INSERT` ran to completion.
    Inserted {
        table: String,
        stats: Arc<JobStats>,
        graph: Arc<Graph>,
    },
}

/// Called while a job runs (about 10 times a second) and once at its end.
pub trait Observer {
    /// A job (or a restarted attempt of it) has started: its graph and live counters.
    fn started(&mut self, _graph: &Arc<Graph>, _stats: &Arc<JobStats>) {}
    fn progress(&mut self, graph: &Graph, stats: &JobStats);
    /// Something the user should know while the job runs (a restart, a damaged checkpoint).
    fn notice(&mut self, _message: &str) {}
}

/// Does nothing: for callers without a display.
#[derive(Debug)]
pub struct NoProgress;

impl Observer for NoProgress {
    fn progress(&mut self, _graph: &Graph, _stats: &JobStats) {}
}

/// The state of a script being run.
#[derive(Debug)]
pub struct Session {
    runtime: WasmRuntime,
    /// Relative paths in the script (modules, file tables) are resolved against this directory.
    base_dir: PathBuf,
    catalog: Catalog,
    modules: HashMap<PathBuf, ModuleHandle>,
    mode: RuntimeMode,
    parallelism: usize,
    max_parallelism: usize,
    /// `pipeline.batch-size`: rows per batch that sources produce.
    batch_size: usize,
    /// `table.exec.state.ttl`, if set.
    state_ttl_millis: Option<u64>,
    checkpoints: checkpoints::CheckpointConfig,
    /// Where jobs keep their checkpoints unless `'execution.checkpointing.dir'` says otherwise.
    state_dir: Option<PathBuf>,
    /// Queries run so far: the next one's checkpoints go under `job-<n>`.
    queries_run: usize,
    /// What every module loaded by `CREATE FUNCTION` may touch (the user's `--allow-*`).
    grants: crate::wasm::SandboxGrants,
    /// The savepoint the next query with checkpoints starts from.
    from_savepoint: Option<String>,
    /// Turns true when the user asks running jobs to stop with a savepoint.
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Moves when the user asks a running job for a savepoint (it goes on).
    savepoint_requests: Option<tokio::sync::watch::Receiver<u64>>,
    /// Checkpoints newer than the savepoint given win over it (a server's resumed job).
    prefer_newer_checkpoints: bool,
    /// True while a query with checkpoints runs (it can stop with a savepoint).
    can_savepoint: Arc<std::sync::atomic::AtomicBool>,
    /// `'state.backend.type'`: `Some(true)` rocksdb, `Some(false)` hashmap; unset, RocksDB in
    /// streaming mode and memory in batch mode (a bounded job's state lives only as long as the
    /// job, and, as in Flink's batch mode, it is not checkpointed).
    rocksdb: Option<bool>,
    /// Tells this session's temporary directories from other sessions' in the process.
    id: u64,
}

impl Session {
    pub fn new(runtime: WasmRuntime, base_dir: impl Into<PathBuf>) -> Self {
        static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            id: SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            runtime,
            base_dir: base_dir.into(),
            catalog: Catalog::default(),
            modules: HashMap::new(),
            mode: RuntimeMode::Batch,
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            batch_size: crate::plan::DEFAULT_BATCH_SIZE,
            state_ttl_millis: None,
            checkpoints: checkpoints::CheckpointConfig::default(),
            state_dir: None,
            queries_run: 0,
            grants: crate::wasm::SandboxGrants::default(),
            from_savepoint: None,
            stop: None,
            savepoint_requests: None,
            prefer_newer_checkpoints: false,
            can_savepoint: Arc::default(),
            rocksdb: None,
        }
    }

    /// True while a query that can stop with a savepoint runs (for a signal handler to decide
    /// between asking for one and stopping at once).
    pub fn can_savepoint(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.can_savepoint.clone()
    }

    /// The next query with checkpoints starts from this savepoint (`--from-savepoint`), at
    /// whatever parallelism this session sets.
    pub fn set_from_savepoint(&mut self, path: impl Into<String>) {
        self.from_savepoint = Some(path.into());
    }

    /// When `stop` turns true, a running query with checkpoints takes a savepoint and stops
    /// (the statement then yields [`Outcome::Stopped`]); one without stops at once.
    pub fn set_stop_signal(&mut self, stop: tokio::sync::watch::Receiver<bool>) {
        self.stop = Some(stop);
    }

    /// Each time `requests` moves, a running query with checkpoints takes a savepoint and goes on
    /// (its location appears in the job's checkpoint stats).
    pub fn set_savepoint_requests(&mut self, requests: tokio::sync::watch::Receiver<u64>) {
        self.savepoint_requests = Some(requests);
    }

    /// With [`Session::set_from_savepoint`], a checkpoint taken after the savepoint by a run
    /// that started from it wins: for resuming a job after a crash with the same settings.
    pub fn prefer_newer_checkpoints(&mut self) {
        self.prefer_newer_checkpoints = true;
    }

    /// Grants every module this session loads these capabilities (nothing by default).
    pub fn set_grants(&mut self, grants: crate::wasm::SandboxGrants) {
        self.grants = grants;
    }

    /// Keeps checkpoints under `dir` (a subdirectory per query of the script), so that running
    /// the same script again resumes where it stopped.
    pub fn set_state_dir(&mut self, dir: impl Into<PathBuf>) {
        self.state_dir = Some(dir.into());
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn mode(&self) -> RuntimeMode {
        self.mode
    }

    /// Applies `SET 'key' = 'value'` (also the CLI's `--set` and `--mode`/`--parallelism`).
    ///
    /// # Errors
    /// An unknown key or a value that does not fit it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), JobError> {
        match key {
            "execution.runtime-mode" => {
                self.mode = match value.to_ascii_lowercase().as_str() {
                    "batch" => RuntimeMode::Batch,
                    "streaming" => RuntimeMode::Streaming,
                    _ => {
                        return Err(JobError::Setting(format!(
                            "'execution.runtime-mode' is batch or streaming, not '{value}'"
                        )));
                    }
                };
            }
            "parallelism.default" => {
                self.parallelism = parse_count(key, value, 1..=self.max_parallelism)?;
            }
            "table.exec.state.ttl" => {
                let ttl = crate::connector::duration(value).ok_or_else(|| {
                    JobError::Setting(format!(
                        "'table.exec.state.ttl' is a duration such as '1 h' or '30 s' (0 keeps \
                         state forever), not '{value}'"
                    ))
                })?;
                let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                self.state_ttl_millis = (millis > 0).then_some(millis);
            }
            "execution.checkpointing.interval" => {
                let interval = crate::connector::duration(value).ok_or_else(|| {
                    JobError::Setting(format!(
                        "'execution.checkpointing.interval' is a duration such as '10 s' (0 \
                         turns checkpoints off), not '{value}'"
                    ))
                })?;
                self.checkpoints.interval = (!interval.is_zero()).then_some(interval);
            }
            "execution.checkpointing.dir" => {
                self.checkpoints.dir = Some(if value.contains("://") {
                    value.to_string()
                } else {
                    self.resolve(value).display().to_string()
                });
            }
            "execution.checkpointing.num-retained" => {
                self.checkpoints.num_retained = parse_count(key, value, 1..=1000)?;
            }
            "restart-strategy.type" => {
                self.checkpoints.restart = match value.to_ascii_lowercase().as_str() {
                    "none" | "disable" | "off" => checkpoints::RestartStrategy::None,
                    "fixed-delay" | "fixeddelay" => match self.checkpoints.restart {
                        r @ checkpoints::RestartStrategy::FixedDelay { .. } => r,
                        checkpoints::RestartStrategy::None => {
                            checkpoints::RestartStrategy::FixedDelay {
                                attempts: 3,
                                delay: std::time::Duration::from_secs(1),
                            }
                        }
                    },
                    _ => {
                        return Err(JobError::Setting(format!(
                            "'restart-strategy.type' is fixed-delay or none, not '{value}'"
                        )));
                    }
                };
            }
            "restart-strategy.fixed-delay.attempts" => {
                let attempts = parse_count(key, value, 0..=1_000_000)?;
                let delay = match self.checkpoints.restart {
                    checkpoints::RestartStrategy::FixedDelay { delay, .. } => delay,
                    checkpoints::RestartStrategy::None => std::time::Duration::from_secs(1),
                };
                self.checkpoints.restart = checkpoints::RestartStrategy::FixedDelay {
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    delay,
                };
            }
            "restart-strategy.fixed-delay.delay" => {
                let delay = crate::connector::duration(value).ok_or_else(|| {
                    JobError::Setting(format!(
                        "'restart-strategy.fixed-delay.delay' is a duration such as '1 s', not \
                         '{value}'"
                    ))
                })?;
                let attempts = match self.checkpoints.restart {
                    checkpoints::RestartStrategy::FixedDelay { attempts, .. } => attempts,
                    checkpoints::RestartStrategy::None => 3,
                };
                self.checkpoints.restart =
                    checkpoints::RestartStrategy::FixedDelay { attempts, delay };
            }
            "s3.endpoint" => self.checkpoints.storage.endpoint = Some(value.to_string()),
            "s3.access-key" => self.checkpoints.storage.access_key = Some(value.to_string()),
            "s3.secret-key" => self.checkpoints.storage.secret_key = Some(value.to_string()),
            "s3.region" => self.checkpoints.storage.region = Some(value.to_string()),
            "s3.path.style.access" => {
                self.checkpoints.storage.path_style =
                    Some(match value.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(JobError::Setting(format!(
                                "'s3.path.style.access' is true or false, not '{value}'"
                            )));
                        }
                    });
            }
            "state.backend.type" => match value.to_ascii_lowercase().as_str() {
                "hashmap" => self.rocksdb = Some(false),
                "rocksdb" => self.rocksdb = Some(true),
                _ => {
                    return Err(JobError::Setting(format!(
                        "'state.backend.type' is hashmap or rocksdb, not '{value}'"
                    )));
                }
            },
            "pipeline.batch-size" => {
                self.batch_size = parse_count(key, value, 1..=1 << 20)?;
            }
            "pipeline.max-parallelism" => {
                self.max_parallelism = parse_count(key, value, 1..=32768)?;
                if self.parallelism > self.max_parallelism {
                    return Err(JobError::Setting(format!(
                        "'pipeline.max-parallelism' = {} is below 'parallelism.default' = {}",
                        self.max_parallelism, self.parallelism
                    )));
                }
            }
            _ => {
                return Err(JobError::Setting(format!(
                    "unknown setting '{key}' (known: {})",
                    KNOWN_SETTINGS.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Runs one statement of `text` (the whole script, for error positions).
    ///
    /// # Errors
    /// Any failure of the statement, with its phase.
    pub async fn execute(
        &mut self,
        located: &Located,
        text: &str,
        observer: &mut dyn Observer,
    ) -> Result<Outcome, JobError> {
        match &located.statement {
            Statement::CreateTable(create) => {
                let mut create = create.clone();
                // A relative 'path' is relative to the script, like module paths.
                for (key, value) in &mut create.options {
                    if key == "path" {
                        *value = self.resolve(value).display().to_string();
                    }
                }
                self.catalog.create_table(&create).map_err(|e| match e {
                    SqlError::Plan {
                        message,
                        location: None,
                    } => SqlError::plan(message, Some(located.location)),
                    other => other,
                })?;
                Ok(Outcome::Done(format!("table '{}' created", create.name)))
            }
            Statement::CreateFunction(create) => {
                self.create_function(create).map_err(|e| match e {
                    JobError::Sql(SqlError::Plan {
                        message,
                        location: None,
                    }) => JobError::Sql(SqlError::plan(message, Some(located.location))),
                    other => other,
                })?;
                Ok(Outcome::Done(format!("function '{}' created", create.name)))
            }
            Statement::Set { key, value } => {
                self.set(key, value)?;
                let shown = if key.ends_with("secret-key") {
                    "<hidden>"
                } else {
                    value.as_str()
                };
                Ok(Outcome::Done(format!("'{key}' = '{shown}'")))
            }
            Statement::ShowTables => Ok(Outcome::Text(
                self.catalog
                    .tables()
                    .map(|t| format!("{}\n", t.def.name))
                    .collect(),
            )),
            Statement::ShowFunctions => Ok(Outcome::Text(
                self.catalog
                    .functions()
                    .map(|f| {
                        format!(
                            "{}  ({} from {})\n",
                            f.signature(),
                            f.spec.kind.name(),
                            f.path
                        )
                    })
                    .collect(),
            )),
            Statement::Query { statement, explain } => {
                let planned =
                    crate::sql::plan_query(&self.catalog, statement, text, located.location)?;
                let options = PlanOptions {
                    parallelism: self.parallelism,
                    max_parallelism: self.max_parallelism,
                    streaming: self.mode == RuntimeMode::Streaming,
                    batch_size: self.batch_size,
                    state_ttl_millis: self.state_ttl_millis,
                };
                let (plan, destination, table) = match planned {
                    PlannedQuery::Select(plan) => (plan, Destination::Collect, None),
                    PlannedQuery::Insert { table, input } => {
                        let Some(entry) = self.catalog.table(&table) else {
                            return Err(SqlError::plan(
                                format!("table '{table}' not found"),
                                Some(located.location),
                            )
                            .into());
                        };
                        (input, Destination::Table(entry.def.clone()), Some(table))
                    }
                };
                let graph = crate::plan::translate(&plan, &self.catalog, destination, options)
                    .map_err(|error| match error {
                        // Placed where the statement names what the message quotes.
                        PlanError::Unsupported(message) => {
                            let location =
                                crate::sql::locate_quoted_name(&message, text, located.location)
                                    .or(Some(located.location));
                            JobError::Sql(SqlError::plan(message, location))
                        }
                        other => JobError::Plan(other),
                    })?;
                let graph = Arc::new(graph);
                if *explain {
                    return Ok(Outcome::Text(graph.explain()));
                }
                let job_index = self.queries_run;
                self.queries_run += 1;
                let backend = self.backend_kind(job_index);
                // A temporary RocksDB directory goes however the job ends, errors included.
                let _temporary_state = RemoveOnDrop(match (&backend, &self.state_dir) {
                    (crate::state::BackendKind::RocksDb(dir), None) => Some(dir.clone()),
                    _ => None,
                });
                let (batches, stats) = match self.checkpoint_location(job_index)? {
                    Some((location, interval)) => {
                        self.can_savepoint
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                        let ended = checkpoints::run(
                            graph.clone(),
                            &location,
                            &self.checkpoints,
                            interval,
                            &backend,
                            checkpoints::Control {
                                // Only the first query with checkpoints starts from it.
                                from_savepoint: self.from_savepoint.take(),
                                stop: self.stop.clone(),
                                savepoint_requests: self.savepoint_requests.clone(),
                                prefer_newer_checkpoints: self.prefer_newer_checkpoints,
                            },
                            observer,
                        )
                        .await;
                        self.can_savepoint
                            .store(false, std::sync::atomic::Ordering::SeqCst);
                        match ended? {
                            checkpoints::Ended::Ran(batches, stats) => (batches, stats),
                            checkpoints::Ended::Stopped { savepoint } => {
                                return Ok(Outcome::Stopped { savepoint });
                            }
                            checkpoints::Ended::AlreadyFinished { id, location } => {
                                return Ok(Outcome::Done(format!(
                                    "this query had finished: its output was committed by \
                                     checkpoint {id} in {location} (remove that directory to \
                                     run it again)"
                                )));
                            }
                        }
                    }
                    None => {
                        let job = crate::runtime::start_with(graph.clone(), None, &backend)?;
                        let stats = job.stats.clone();
                        (wait(job, &graph, observer).await?, stats)
                    }
                };
                Ok(match table {
                    Some(table) => Outcome::Inserted {
                        table,
                        stats,
                        graph,
                    },
                    None => Outcome::Rows {
                        schema: {
                            let last = &graph.nodes[graph.nodes.len() - 1];
                            if last.changelog {
                                crate::runtime::changelog::display_schema(&last.schema)
                            } else {
                                last.schema.clone()
                            }
                        },
                        batches,
                        stats,
                        graph,
                    },
                })
            }
        }
    }

    /// Registers the module at `path` (absolute) under `name`, with `grants` for its sandbox:
    /// what `CREATE FUNCTION name AS 'export' LANGUAGE WASM USING JAR 'path'` does, for a
    /// catalog that is not SQL (the server's deployed modules).
    ///
    /// # Errors
    /// The module cannot be loaded, has no such export, or the name is taken.
    pub fn register_function(
        &mut self,
        name: &str,
        export: &str,
        path: &Path,
        grants: crate::wasm::SandboxGrants,
    ) -> Result<(), JobError> {
        let saved = std::mem::replace(&mut self.grants, grants);
        let result = self.create_function(&CreateFunction {
            name: name.to_string(),
            export: export.to_string(),
            path: path.display().to_string(),
            temporary: false,
            if_not_exists: false,
        });
        self.grants = saved;
        result
    }

    fn create_function(&mut self, create: &CreateFunction) -> Result<(), JobError> {
        if create.if_not_exists && self.catalog.function(&create.name).is_some() {
            return Ok(());
        }
        let path = self.resolve(&create.path);
        let handle = match self.modules.get(&path) {
            Some(handle) => handle.clone(),
            None => {
                let module = self
                    .runtime
                    .load_file(
                        &path,
                        LoadOptions {
                            grants: self.grants.clone(),
                            ..LoadOptions::default()
                        },
                    )
                    .map_err(|source| JobError::Module {
                        function: create.name.clone(),
                        source: Box::new(source),
                    })?;
                let handle = ModuleHandle::new(module);
                self.modules.insert(path.clone(), handle.clone());
                handle
            }
        };
        let spec = match handle.module.function(&create.export) {
            Ok((_, spec)) => spec.clone(),
            Err(_) => {
                let exports: Vec<&str> = handle
                    .module
                    .functions()
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect();
                return Err(SqlError::plan(
                    format!(
                        "module {} has no function '{}' (it exports: {})",
                        path.display(),
                        create.export,
                        exports.join(", ")
                    ),
                    None,
                )
                .into());
            }
        };
        let function = Arc::new(WasmFunction {
            sql_name: create.name.clone(),
            spec,
            module: handle,
            path: create.path.clone(),
            metrics: UdfMetrics::default(),
        });
        self.catalog.add_function(function, create.if_not_exists)?;
        Ok(())
    }
}

/// Waits for a job's end, showing progress.
async fn wait(
    job: crate::runtime::RunningJob,
    graph: &Arc<Graph>,
    observer: &mut dyn Observer,
) -> Result<Vec<RecordBatch>, RuntimeError> {
    let stats = job.stats.clone();
    observer.started(graph, &stats);
    let mut finish = Box::pin(job.finish());
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(100));
    let batches = loop {
        tokio::select! {
            result = &mut finish => break result?,
            _ = ticker.tick() => observer.progress(graph, &stats),
        }
    };
    observer.progress(graph, &stats);
    Ok(batches)
}

/// Deletes a directory when dropped.
#[derive(Debug)]
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            // Best effort: a leftover temporary directory is harmless.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Session {
    /// Where query `job_index` keeps its keyed state: in memory, or in RocksDB databases under
    /// the state directory (a temporary one without it).
    fn backend_kind(&self, job_index: usize) -> crate::state::BackendKind {
        if !self.rocksdb.unwrap_or(self.mode == RuntimeMode::Streaming) {
            return crate::state::BackendKind::Memory;
        }
        let job = format!("job-{job_index}");
        crate::state::BackendKind::RocksDb(match &self.state_dir {
            Some(dir) => dir.join(job).join("rocksdb"),
            // Unique per session too: one process may run several (tests, a server).
            None => std::env::temp_dir().join(format!(
                "weir-rocksdb-{}-{}-{job}",
                std::process::id(),
                self.id
            )),
        })
    }

    /// Where query `job_index` keeps its checkpoints, and how often it takes them; `None` when
    /// it takes none (batch mode, or no interval set).
    fn checkpoint_location(
        &self,
        job_index: usize,
    ) -> Result<Option<(String, std::time::Duration)>, JobError> {
        let Some(interval) = self.checkpoints.interval else {
            return Ok(None);
        };
        if self.mode == RuntimeMode::Batch {
            return Ok(None);
        }
        let job = format!("job-{job_index}");
        let location = match (&self.checkpoints.dir, &self.state_dir) {
            (Some(dir), _) => format!("{}/{job}", dir.trim_end_matches('/')),
            (None, Some(state_dir)) => state_dir
                .join(job)
                .join("checkpoints")
                .display()
                .to_string(),
            (None, None) => {
                return Err(JobError::Setting(
                    "'execution.checkpointing.interval' is set but there is nowhere to keep \
                     checkpoints: set 'execution.checkpointing.dir' (or run with --state-dir)"
                        .into(),
                ));
            }
        };
        Ok(Some((location, interval)))
    }
}

fn parse_count(
    key: &str,
    value: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, JobError> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            JobError::Setting(format!(
                "'{key}' must be a whole number from {} to {}, not '{value}'",
                range.start(),
                range.end()
            ))
        })
}
