//! `weir run <file.sql>`: runs a script in this process (no server): each statement in order,
//! each query as a job on the dataflow runtime, to completion over bounded input.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, bail};
use weir_host::job::{JobError, Observer, Outcome, Session};
use weir_host::plan::{Graph, OperatorSpec};
use weir_host::runtime::JobStats;
use weir_host::wasm::WasmRuntime;

use crate::output::{OutputFormat, print_batches};

/// Arguments of `weir run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SQL script: statements separated by `;`.
    pub script: PathBuf,
    /// Batch (bounded input, final results) or streaming.
    #[arg(long, value_parser = ["batch", "streaming"])]
    pub mode: Option<String>,
    /// Subtasks per operator (`parallelism.default`).
    #[arg(long, short)]
    pub parallelism: Option<usize>,
    /// A setting, as `SET 'key' = 'value'` would give it; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Print per-operator rows in/out and time, and per-function calls, at the end of each job.
    #[arg(long)]
    pub stats: bool,
    /// How to print the rows of a SELECT.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Where a streaming job with checkpoints ('execution.checkpointing.interval') keeps them;
    /// running the same command again resumes from the last one. Default: `.weir/<script name>`
    /// beside the script.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Let the script's Wasm functions read this directory (at the same path); repeatable.
    /// Functions get no filesystem otherwise.
    #[arg(long, value_name = "DIR")]
    pub allow_read: Vec<PathBuf>,
    /// Start the first query with checkpoints from this savepoint (a directory that `weir run`
    /// printed when it stopped), at this run's parallelism.
    #[arg(long, value_name = "PATH")]
    pub from_savepoint: Option<String>,
    /// On SIGTERM or Ctrl-C, stop at once instead of taking a savepoint first.
    #[arg(long)]
    pub no_savepoint: bool,
}

/// Runs the script.
pub fn run(args: Args, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.script)
        .with_context(|| format!("cannot read {}", args.script.display()))?;
    let statements = match weir_host::sql::parse_script(&text) {
        Ok(statements) => statements,
        Err(e) => bail!(
            "{}",
            with_excerpt(&e.to_string(), e.location(), &text, &args.script)
        ),
    };
    let base_dir = args.script.parent().map(PathBuf::from).unwrap_or_default();
    let runtime = WasmRuntime::shared(cache_dir)?;
    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        let name = args
            .script
            .file_stem()
            .map_or_else(|| "script".into(), |s| s.to_string_lossy().into_owned());
        base_dir.join(".weir").join(name)
    });
    let mut session = Session::new(runtime, base_dir);
    session.set_state_dir(state_dir);
    if !args.allow_read.is_empty() {
        let mut grants = weir_host::wasm::SandboxGrants::default();
        for dir in &args.allow_read {
            let absolute = std::fs::canonicalize(dir)
                .with_context(|| format!("--allow-read {}", dir.display()))?;
            let seen_as = absolute.display().to_string();
            grants.read_only_dirs.push((absolute, seen_as));
        }
        session.set_grants(grants);
    }
    for setting in &args.settings {
        let Some((key, value)) = setting.split_once('=') else {
            bail!("--set takes KEY=VALUE, not '{setting}'");
        };
        session.set(key.trim(), value.trim())?;
    }
    if let Some(mode) = &args.mode {
        session.set("execution.runtime-mode", mode)?;
    }
    if let Some(parallelism) = args.parallelism {
        session.set("parallelism.default", &parallelism.to_string())?;
    }
    if let Some(savepoint) = &args.from_savepoint {
        session.set_from_savepoint(savepoint.clone());
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-worker")
        .build()
        .context("cannot start the runtime")?;
    if !args.no_savepoint {
        let (stop, stop_signal) = tokio::sync::watch::channel(false);
        session.set_stop_signal(stop_signal);
        let can_savepoint = session.can_savepoint();
        tokio.spawn(async move {
            let Ok(mut terminate) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                // Nothing to save, or asked twice: stop now.
                if !can_savepoint.load(Ordering::SeqCst) || *stop.borrow() {
                    eprintln!("stopped");
                    std::process::exit(130);
                }
                eprintln!("stopping with a savepoint (send the signal again to stop at once)");
                stop.send_replace(true);
            }
        });
    }
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    for statement in &statements {
        let outcome = tokio.block_on(session.execute(statement, &text, &mut progress));
        progress.clear();
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                let location = match &error {
                    JobError::Sql(e) => e.location(),
                    _ => None,
                };
                bail!(
                    "{}",
                    with_excerpt(&error.to_string(), location, &text, &args.script)
                );
            }
        };
        match outcome {
            Outcome::Done(message) => eprintln!("{message}"),
            Outcome::Stopped { savepoint } => {
                eprintln!("stopped with a savepoint; resume with --from-savepoint {savepoint}");
                println!("{savepoint}");
                return Ok(());
            }
            Outcome::Text(text) => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            Outcome::Rows {
                schema,
                batches,
                stats,
                graph,
            } => {
                if batches.is_empty() {
                    print_batches(
                        &[arrow::record_batch::RecordBatch::new_empty(schema)],
                        args.format,
                    )?;
                } else {
                    print_batches(&batches, args.format)?;
                }
                report(&graph, &stats, args.stats, &session);
            }
            Outcome::Inserted {
                table,
                stats,
                graph,
            } => {
                let (_, written) = stats.rows_in_out(&graph);
                eprintln!(
                    "inserted {written} row(s) into '{table}' in {:.2?}",
                    stats.started.elapsed()
                );
                report(&graph, &stats, args.stats, &session);
            }
        }
    }
    Ok(())
}

/// The message, then the script's line with a caret under the column, when the place is known.
fn with_excerpt(
    message: &str,
    location: Option<weir_host::sql::parser::Location>,
    text: &str,
    script: &std::path::Path,
) -> String {
    let Some(location) = location else {
        return format!("{}: {message}", script.display());
    };
    let Some(line) = text.lines().nth(location.line.saturating_sub(1) as usize) else {
        return format!("{}: {message}", script.display());
    };
    let caret = " ".repeat(location.column.saturating_sub(1) as usize);
    format!(
        "{}:{}:{}: {message}\n  {line}\n  {caret}^",
        script.display(),
        location.line,
        location.column
    )
}

fn report(graph: &Graph, stats: &JobStats, enabled: bool, session: &Session) {
    let skipped: u64 = stats
        .operators
        .iter()
        .map(|(_, s)| s.skipped_rows.load(Ordering::Relaxed))
        .sum();
    if skipped > 0 {
        eprintln!("skipped {skipped} unparsable row(s) (ignore-parse-errors)");
    }
    let late: u64 = stats
        .operators
        .iter()
        .map(|(_, s)| s.late_rows.load(Ordering::Relaxed))
        .sum();
    if late > 0 {
        eprintln!(
            "dropped {late} late row(s): they came after the watermark had passed their window"
        );
    }
    let checkpoints = stats
        .checkpoints
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    if let Some(last) = checkpoints.last() {
        eprintln!(
            "{} checkpoint(s) completed; the last, {}{}, took {:.1?} and wrote {} byte(s) of state",
            checkpoints.len(),
            last.id,
            if last.finished { " (final)" } else { "" },
            last.duration,
            last.bytes_written
        );
    }
    if !enabled {
        return;
    }
    let mut err = std::io::stderr().lock();
    if !checkpoints.is_empty() {
        let _ = writeln!(
            err,
            "{:<12} {:>10} {:>10} {:>14} {:>14} {:>14}",
            "checkpoint", "duration", "alignment", "bytes written", "bytes reused", "state size"
        );
        for c in &checkpoints {
            let _ = writeln!(
                err,
                "{:<12} {:>9.1?} {:>9.1?} {:>14} {:>14} {:>14}",
                format!("{}{}", c.id, if c.finished { " final" } else { "" }),
                c.duration,
                c.alignment,
                c.bytes_written,
                c.bytes_reused,
                c.state_size
            );
        }
    }
    let _ = writeln!(
        err,
        "{:<28} {:>12} {:>12} {:>10} {:>10} {:>10}",
        "operator", "rows in", "rows out", "busy", "skipped", "late"
    );
    for (node, (name, s)) in graph.nodes.iter().zip(&stats.operators) {
        let label = match &node.operator {
            OperatorSpec::Source { table, .. } | OperatorSpec::Sink { table } => {
                format!("{name} {}", table.name)
            }
            _ => name.clone(),
        };
        let _ = writeln!(
            err,
            "{:<28} {:>12} {:>12} {:>9.1?} {:>10} {:>10}",
            label,
            s.rows_in.load(Ordering::Relaxed),
            s.rows_out.load(Ordering::Relaxed),
            std::time::Duration::from_nanos(s.busy_nanos.load(Ordering::Relaxed)),
            s.skipped_rows.load(Ordering::Relaxed),
            s.late_rows.load(Ordering::Relaxed),
        );
    }
    for function in session.catalog().functions() {
        let m = &function.metrics;
        let calls = m.calls.load(Ordering::Relaxed);
        if calls == 0 {
            continue;
        }
        let _ = writeln!(
            err,
            "function {}: {} call(s), {} row(s), {:.1?}, {} error(s)",
            function.sql_name,
            calls,
            m.rows.load(Ordering::Relaxed),
            std::time::Duration::from_nanos(m.nanos.load(Ordering::Relaxed)),
            m.errors.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(err, "elapsed {:.2?}", stats.started.elapsed());
}

/// A progress line on stderr when it is a terminal: rows in, rows out, rate, elapsed.
struct Progress {
    enabled: bool,
    shown: bool,
    last: Instant,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            shown: false,
            last: Instant::now(),
        }
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

impl Observer for Progress {
    fn progress(&mut self, graph: &Graph, stats: &JobStats) {
        if !self.enabled || self.last.elapsed().as_millis() < 200 {
            return;
        }
        self.last = Instant::now();
        let (read, written) = stats.rows_in_out(graph);
        let elapsed = stats.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            read as f64 / elapsed
        } else {
            0.0
        };
        eprint!(
            "\r\x1b[2Krows in {read}  rows out {written}  {:.0} rows/s  {:.1}s",
            rate, elapsed
        );
        self.shown = true;
    }

    fn notice(&mut self, message: &str) {
        self.clear();
        eprintln!("{message}");
    }
}
