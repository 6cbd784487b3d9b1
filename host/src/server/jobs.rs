//! A server job at run time: one thread per job drives its [`Session`] (the same code as
//! `weir run`), while its subtasks run on the server's tokio runtime; the job's controls (stop,
//! savepoint, cancel) are watch channels, and what `describe` and `/metrics` read is the live
//! view its observer keeps.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::store::{JobRecord, ModuleRecord, TableRecord};
use crate::functions::WasmFunction;
use crate::job::{Observer, Outcome, Session};
use crate::plan::Graph;
use crate::runtime::JobStats;
use crate::sql::{Located, Statement};
use crate::wasm::WasmRuntime;

/// Notices kept per job (restarts, damaged checkpoints): the newest.
const NOTICES_KEPT: usize = 20;

/// How a job was asked to end without a savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Halt {
    /// For good.
    Cancel,
    /// Resumable from its last checkpoint.
    Stop,
}

/// How a job's run ended.
#[derive(Debug)]
pub(crate) enum Ended {
    Finished,
    Failed(String),
    Halted(Halt),
    StoppedWithSavepoint(String),
}

/// What a running job shows: its graph and counters (of the current attempt), its functions'
/// counters, and its notices.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub graph: Option<Arc<Graph>>,
    pub stats: Option<Arc<JobStats>>,
    pub functions: Vec<Arc<WasmFunction>>,
    pub notices: VecDeque<String>,
}

/// A job that runs in this process.
#[derive(Debug)]
pub(crate) struct LiveJob {
    pub id: u64,
    stop: watch::Sender<bool>,
    savepoints: watch::Sender<u64>,
    halt: watch::Sender<Option<Halt>>,
    ended: watch::Receiver<bool>,
    pub view: Arc<Mutex<View>>,
}

impl LiveJob {
    /// Asks for a savepoint and then the end.
    pub fn stop_with_savepoint(&self) {
        self.stop.send_replace(true);
    }

    pub fn halt(&self, how: Halt) {
        self.halt.send_replace(Some(how));
    }

    /// Asks for a savepoint while the job goes on.
    pub fn request_savepoint(&self) {
        self.savepoints.send_modify(|n| *n += 1);
    }

    /// Waits until the job's thread has recorded its end.
    pub async fn ended(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|&done| done).await;
    }

    pub fn has_ended(&self) -> bool {
        *self.ended.borrow()
    }

    /// Seconds since the current attempt started (0 before it has).
    pub fn uptime_seconds(&self) -> f64 {
        self.view
            .lock()
            .ok()
            .and_then(|v| v.stats.as_ref().map(|s| s.started.elapsed().as_secs_f64()))
            .unwrap_or(0.0)
    }

    /// Savepoints the current attempt completed, oldest first.
    pub fn savepoints(&self) -> Vec<String> {
        let view = self.view.lock().map(|v| v.stats.clone()).ok().flatten();
        view.and_then(|stats| {
            stats.checkpoints.lock().ok().map(|c| {
                c.iter()
                    .filter(|c| c.savepoint)
                    .map(|c| c.location.clone())
                    .collect()
            })
        })
        .unwrap_or_default()
    }
}

/// Everything a job needs to run, resolved by the controller.
#[derive(Debug)]
pub(crate) struct JobSetup {
    pub record: JobRecord,
    /// The pinned modules' records and where their bytes are.
    pub modules: Vec<(ModuleRecord, PathBuf)>,
    pub runtime: WasmRuntime,
    pub base_dir: PathBuf,
    pub state_dir: PathBuf,
}

/// Starts the job's thread; `on_end` runs on it once the job has ended, before `ended` turns.
pub(crate) fn start(
    setup: JobSetup,
    handle: tokio::runtime::Handle,
    on_end: impl FnOnce(u64, Ended) + Send + 'static,
) -> Result<Arc<LiveJob>, std::io::Error> {
    let (stop, stop_rx) = watch::channel(false);
    let (savepoints, savepoints_rx) = watch::channel(0u64);
    let (halt, mut halt_rx) = watch::channel(None);
    let (ended_tx, ended) = watch::channel(false);
    let live = Arc::new(LiveJob {
        id: setup.record.id,
        stop,
        savepoints,
        halt,
        ended,
        view: Arc::default(),
    });
    let view = live.view.clone();
    let id = setup.record.id;
    std::thread::Builder::new()
        .name(format!("weir-job-{id}"))
        .spawn(move || {
            // The job's future is not `Send` (a session borrows its observer); this thread
            // drives it while its subtasks run on the runtime's workers.
            let driven = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handle.block_on(async move {
                    tokio::select! {
                        ended = run(setup, stop_rx, savepoints_rx, view) => ended,
                        Some(how) = async { halt_rx.wait_for(Option::is_some).await.ok().and_then(|h| *h) } => {
                            // Dropping the run above cancelled every subtask.
                            Ended::Halted(how)
                        }
                    }
                })
            }));
            // A bug must not leave the job "running" for ever.
            let ended = driven.unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                Ended::Failed(format!("internal error: the job's thread panicked: {message}"))
            });
            on_end(id, ended);
            ended_tx.send_replace(true);
        })?;
    Ok(live)
}

/// Builds the session a job runs in: the pinned modules' functions, the server's tables, and
/// the script's statements before the query (its `SET`s and tables). DDL does no I/O.
///
/// # Errors
/// A module that no longer loads, a table that no longer parses, or a statement of the script
/// that fails (with its position).
pub(crate) async fn prepare(
    session: &mut Session,
    modules: &[(ModuleRecord, PathBuf)],
    tables: &[TableRecord],
    statements: &[Located],
    script: &str,
    query: usize,
    observer: &mut dyn Observer,
) -> Result<(), super::ServerError> {
    for (module, path) in modules {
        for function in &module.functions {
            session
                .register_function(
                    &function.name,
                    &function.name,
                    path,
                    module.grants.sandbox(),
                )
                .map_err(|e| {
                    super::ServerError::Refused(format!(
                        "module {}@{}: {e}",
                        module.name, module.version
                    ))
                })?;
        }
    }
    for table in tables {
        let parsed = crate::sql::parse_script(&table.ddl)
            .map_err(|e| super::ServerError::Internal(format!("table '{}': {e}", table.name)))?;
        for statement in &parsed {
            session
                .execute(statement, &table.ddl, observer)
                .await
                .map_err(|e| {
                    super::ServerError::Internal(format!("table '{}': {e}", table.name))
                })?;
        }
    }
    for located in statements.iter().take(query) {
        if matches!(located.statement, Statement::Query { .. }) {
            continue;
        }
        session
            .execute(located, script, observer)
            .await
            .map_err(|e| super::ServerError::sql(&e))?;
    }
    Ok(())
}

async fn run(
    setup: JobSetup,
    stop: watch::Receiver<bool>,
    savepoints: watch::Receiver<u64>,
    view: Arc<Mutex<View>>,
) -> Ended {
    let JobSetup {
        record,
        modules,
        runtime,
        base_dir,
        state_dir,
    } = setup;
    let mut session = Session::new(runtime, base_dir);
    session.set_state_dir(state_dir);
    session.set_stop_signal(stop);
    session.set_savepoint_requests(savepoints);
    if let Some(savepoint) = &record.from_savepoint {
        session.set_from_savepoint(savepoint.clone());
        session.prefer_newer_checkpoints();
    }
    // A server's streaming job survives a restart only through checkpoints: on unless the
    // script says otherwise.
    if let Err(e) = session.set("execution.checkpointing.interval", "10 s") {
        return Ended::Failed(e.to_string());
    }
    let statements = match crate::sql::parse_script(&record.script) {
        Ok(statements) => statements,
        Err(e) => return Ended::Failed(e.to_string()),
    };
    let Some(query) = statements.get(record.statement) else {
        return Ended::Failed(format!(
            "internal error: the script has no statement {}",
            record.statement
        ));
    };
    let mut observer = JobObserver { view: view.clone() };
    if let Err(e) = prepare(
        &mut session,
        &modules,
        &record.tables,
        &statements,
        &record.script,
        record.statement,
        &mut observer,
    )
    .await
    {
        return Ended::Failed(e.to_string());
    }
    if let Ok(mut view) = view.lock() {
        view.functions = session.catalog().functions().cloned().collect();
    }
    match session.execute(query, &record.script, &mut observer).await {
        Ok(Outcome::Stopped { savepoint }) => Ended::StoppedWithSavepoint(savepoint),
        Ok(_) => Ended::Finished,
        Err(e) => Ended::Failed(e.to_string()),
    }
}

/// Keeps a job's live view current.
struct JobObserver {
    view: Arc<Mutex<View>>,
}

impl Observer for JobObserver {
    fn started(&mut self, graph: &Arc<Graph>, stats: &Arc<JobStats>) {
        if let Ok(mut view) = self.view.lock() {
            view.graph = Some(graph.clone());
            view.stats = Some(stats.clone());
        }
    }

    fn progress(&mut self, _graph: &Graph, _stats: &JobStats) {}

    fn notice(&mut self, message: &str) {
        tracing::info!("{message}");
        if let Ok(mut view) = self.view.lock() {
            if view.notices.len() == NOTICES_KEPT {
                view.notices.pop_front();
            }
            view.notices.push_back(message.to_string());
        }
    }
}
