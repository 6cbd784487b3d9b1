//! Golden SQL tests: each `host/tests/sql/<case>.sql` runs through a `Session` (as `weir run`
//! does) and its printed output must equal `<case>.out`. `WEIR_BLESS=1` rewrites the `.out`
//! files. Placeholders: `${MODULES}` (the example components: `currency.wasm`, `urls.wasm`,
//! `stats.wasm` from Rust, `currency_py.wasm`, `urls_py.wasm`, `stats_py.wasm` from Python),
//! `${DATA}` (`udfs/data`) and `${OUT}` (an empty directory per run).
//!
//! Every case also runs at parallelism 2 and 4 (unless it sets its own), and must print the
//! same lines as a multiset: the same rows, whatever the order of arrival.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use weir_host::job::{NoProgress, Outcome, Session};
use weir_host::wasm::WasmRuntime;

use crate::common::{component, python_component, python_runtime, repo_dir};

pub(crate) fn modules_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["currency", "urls", "stats"] {
            std::fs::copy(component(name), dir.path().join(format!("{name}.wasm")))
                .expect("copy rust component");
            std::fs::copy(
                python_component(name),
                dir.path().join(format!("{name}_py.wasm")),
            )
            .expect("copy python component");
        }
        std::fs::copy(component("hostile"), dir.path().join("hostile.wasm"))
            .expect("copy hostile component");
        std::fs::write(dir.path().join("not_a_component.wasm"), b"hello").expect("write");
        dir
    })
    .path()
}

pub(crate) fn cases_dir() -> PathBuf {
    repo_dir().join("host/tests/sql")
}

/// Runs a script and renders what `weir run` prints: rows as tables, text as is, `inserted N
/// row(s) into 't'` for inserts, and `error: ...` (ending the script) for a failure.
fn run_script(script: &str, parallelism: Option<usize>, runtime: &WasmRuntime) -> String {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let script = script
        .replace("${MODULES}", &modules_dir().display().to_string())
        .replace(
            "${DATA}",
            &repo_dir().join("udfs/data").display().to_string(),
        )
        .replace("${OUT}", &out_dir.path().display().to_string());
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let mut session = Session::new(runtime.clone(), out_dir.path());
    if let Some(p) = parallelism {
        session
            .set("parallelism.default", &p.to_string())
            .expect("parallelism");
    }
    let mut printed = String::new();
    let statements = match weir_host::sql::parse_script(&script) {
        Ok(s) => s,
        Err(e) => return format!("error: {e}\n"),
    };
    for statement in &statements {
        match tokio.block_on(session.execute(statement, &script, &mut NoProgress)) {
            Ok(Outcome::Done(_)) => {}
            Ok(Outcome::Stopped { savepoint }) => {
                let _ = writeln!(printed, "stopped with savepoint {savepoint}");
            }
            Ok(Outcome::Text(text)) => printed.push_str(&text),
            Ok(Outcome::Rows {
                schema, batches, ..
            }) => {
                let batches = if batches.is_empty() {
                    vec![arrow::record_batch::RecordBatch::new_empty(schema)]
                } else {
                    batches
                };
                let table = arrow::util::pretty::pretty_format_batches(&batches).expect("format");
                let _ = writeln!(printed, "{table}");
            }
            Ok(Outcome::Inserted {
                table,
                stats,
                graph,
            }) => {
                let (_, written) = stats.rows_in_out(&graph);
                let _ = writeln!(printed, "inserted {written} row(s) into '{table}'");
            }
            Err(e) => {
                let _ = writeln!(printed, "error: {e}");
                break;
            }
        }
    }
    // Paths differ from run to run: print the placeholders instead.
    printed
        .replace(&modules_dir().display().to_string(), "${MODULES}")
        .replace(&out_dir.path().display().to_string(), "${OUT}")
        .replace(
            &repo_dir().join("udfs/data").display().to_string(),
            "${DATA}",
        )
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

#[test]
fn golden_sql_cases() {
    let runtime = python_runtime();
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("cases dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "golden cases missing");
    let mut failures = Vec::new();
    for case in &cases {
        let script = std::fs::read_to_string(case).expect("read case");
        let printed = run_script(&script, None, &runtime);
        let expected_path = case.with_extension("out");
        if bless {
            std::fs::write(&expected_path, &printed).expect("bless");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if printed != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- printed\n{printed}",
                case.display()
            ));
            continue;
        }
        if script.contains("parallelism.default") {
            continue;
        }
        for parallelism in [2, 4] {
            let parallel = run_script(&script, Some(parallelism), &runtime);
            if sorted_lines(&parallel) != sorted_lines(&printed) {
                failures.push(format!(
                    "{} at parallelism {parallelism}:\n--- at 1\n{printed}\n--- at {parallelism}\n{parallel}",
                    case.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
