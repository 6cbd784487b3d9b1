//! Misbehaving and malformed modules: each is stopped or refused with a clear error, and the same
//! host then serves a correct call.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::datatypes::Int64Type;
use weir_host::udf::{TrapCause, UdfError};
use weir_host::wasm::{LoadOptions, ModuleInstance, WasmModule};

use crate::common::{component, load, runtime};

const DEADLINE: Duration = Duration::from_millis(300);
const MEMORY_CAP: u64 = 64 << 20;

fn hostile() -> Arc<WasmModule> {
    let options = LoadOptions {
        call_deadline: Some(DEADLINE),
        memory_cap: Some(MEMORY_CAP),
        ..LoadOptions::default()
    };
    runtime()
        .load_file(&component("hostile"), options)
        .expect("load hostile")
}

fn ints(values: &[i64]) -> Vec<ArrayRef> {
    vec![Arc::new(Int64Array::from(values.to_vec()))]
}

/// The instance that just failed, and the host as a whole, still serve correct calls.
fn still_serves(instance: &mut ModuleInstance) {
    let out = instance
        .call_scalar("double", &ints(&[1, 2, 3]), 3)
        .expect("double after a failure");
    assert_eq!(
        out.as_primitive::<Int64Type>(),
        &Int64Array::from(vec![2, 4, 6])
    );
    let mut other = load("currency").instance();
    let out = other
        .call_scalar("to_usd", &ints(&[250]), 1)
        .expect("another module");
    assert_eq!(
        out.as_primitive::<arrow::datatypes::Float64Type>().value(0),
        2.5
    );
}

#[test]
fn an_infinite_loop_stops_at_the_deadline() {
    let module = hostile();
    let mut instance = module.instance();
    let started = Instant::now();
    let err = instance
        .call_scalar("spin", &ints(&[1, 2]), 2)
        .expect_err("spin never returns");
    let elapsed = started.elapsed();
    match &err {
        UdfError::Trap { site, cause, .. } => {
            assert_eq!(site.function, "spin");
            assert_eq!(site.module, "hostile");
            assert_eq!(site.rows, 0..2);
            assert_eq!(*cause, TrapCause::Deadline(DEADLINE));
        }
        other => panic!("expected a deadline trap, got {other}"),
    }
    assert!(err.to_string().contains("function `spin`"), "{err}");
    assert!(
        elapsed >= DEADLINE,
        "stopped after {elapsed:?}, before the deadline"
    );
    let instantiations = instance.instantiations();
    still_serves(&mut instance);
    assert_eq!(
        instance.instantiations(),
        instantiations + 1,
        "the trapped instance is replaced"
    );
}

#[test]
fn memory_growth_stops_at_the_cap() {
    let module = hostile();
    let mut instance = module.instance();
    let err = instance
        .call_scalar("hog", &ints(&[16]), 1)
        .expect_err("hog never returns");
    match &err {
        UdfError::Trap { site, cause, .. } => {
            assert_eq!(site.function, "hog");
            assert_eq!(*cause, TrapCause::MemoryCap(MEMORY_CAP));
        }
        other => panic!("expected a memory-cap trap, got {other}"),
    }
    assert!(err.to_string().contains("memory cap of 64 MiB"), "{err}");
    still_serves(&mut instance);
}

#[test]
fn a_panic_names_the_function_and_carries_its_message() {
    let module = hostile();
    let mut instance = module.instance();
    let err = instance
        .call_scalar("explode", &ints(&[41, 42]), 2)
        .expect_err("explode panics");
    match &err {
        UdfError::Trap {
            site,
            cause: TrapCause::Trap(_),
            guest_stderr,
        } => {
            assert_eq!(site.function, "explode");
            assert!(
                guest_stderr.contains("explode was asked to explode on 41"),
                "{guest_stderr}"
            );
        }
        other => panic!("expected a trap, got {other}"),
    }
    assert!(err.to_string().contains("function `explode`"), "{err}");
    still_serves(&mut instance);
}

#[test]
fn the_sandbox_has_no_files_environment_or_clock() {
    let module = hostile();
    let mut instance = module.instance();
    let path: ArrayRef = Arc::new(StringArray::from(vec![concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/Cargo.toml"
    )]));
    let err = instance
        .call_scalar("read_file", &[path], 1)
        .expect_err("no filesystem");
    match &err {
        UdfError::Failed { site, row, message } => {
            assert_eq!(site.function, "read_file");
            assert_eq!(*row, Some(0));
            assert!(message.starts_with("cannot read"), "{message}");
        }
        other => panic!("expected the read to be refused, got {other}"),
    }

    let name: ArrayRef = Arc::new(StringArray::from(vec!["PATH"]));
    assert!(std::env::var("PATH").is_ok());
    let out = instance
        .call_scalar("env_var", &[name], 1)
        .expect("env_var");
    assert!(
        out.as_string::<i32>().is_null(0),
        "the guest saw the host's PATH"
    );

    let out = instance
        .call_scalar("clock", &ints(&[0]), 1)
        .expect("clock");
    assert_eq!(
        out.as_primitive::<Int64Type>().value(0),
        0,
        "the guest read the real clock"
    );
    still_serves(&mut instance);
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn guest_output_goes_to_the_host_log_tagged_with_the_function() {
    let module = hostile();
    let mut instance = module.instance();
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, || {
        instance
            .call_scalar("chatty", &ints(&[5]), 1)
            .expect("chatty")
    });
    assert_eq!(out.as_primitive::<Int64Type>().value(0), 5);
    let text = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf-8 logs");
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?} in:\n{text}"))
            .to_string()
    };
    let stdout = line("saw 5");
    assert!(
        stdout.contains("chatty") && stdout.contains("stdout") && stdout.contains("INFO"),
        "{stdout}"
    );
    let stderr = line("warning about 5");
    assert!(
        stderr.contains("chatty") && stderr.contains("stderr") && stderr.contains("WARN"),
        "{stderr}"
    );
}

fn load_bytes(name: &str, bytes: &[u8]) -> Result<Arc<WasmModule>, UdfError> {
    runtime().load(name, bytes, LoadOptions::default())
}

#[test]
fn files_that_are_not_weir_components_are_refused_clearly() {
    let err = load_bytes("text", b"hello, this is not wasm").expect_err("not wasm");
    assert!(matches!(err, UdfError::NotAComponent { .. }), "{err}");
    assert!(err.to_string().contains("magic bytes"), "{err}");

    let core = wat::parse_str("(module (func (export \"f\")))").expect("wat");
    let err = load_bytes("core", &core).expect_err("a core module");
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let mut truncated = std::fs::read(component("currency")).expect("currency.wasm");
    truncated.truncate(truncated.len() / 2);
    let err = load_bytes("truncated", &truncated).expect_err("truncated");
    assert!(matches!(err, UdfError::NotAComponent { .. }), "{err}");

    let empty = wat::parse_str("(component)").expect("wat");
    let err = load_bytes("empty", &empty).expect_err("another world");
    assert!(matches!(err, UdfError::WrongWorld { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("does not export `weir:udf/functions@0.2.0`"),
        "{err}"
    );

    let importer = wat::parse_str(
        r#"(component (import "evil:net/raw-socket" (instance (export "connect" (func)))))"#,
    )
    .expect("wat");
    let err = load_bytes("importer", &importer).expect_err("forbidden import");
    assert!(matches!(err, UdfError::ForbiddenImport { .. }), "{err}");
    assert!(err.to_string().contains("evil:net/raw-socket"), "{err}");

    let mut instance = hostile().instance();
    still_serves(&mut instance);
}
