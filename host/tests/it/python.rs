//! Python components through the host: the conformance table (every example function, Rust
//! build against Python build, identical outputs), signatures, and bad Python modules.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::Int64Type;
use weir_host::udf::{TrapCause, UdfError};
use weir_host::wasm::{LoadOptions, ModuleInstance, WasmModule};

use crate::common::{
    Lcg, build_python, guest_target_dir, load, load_python, python_runtime, udfs_dir,
};

const SIZES: [usize; 4] = [0, 1, 37, 100_000];

/// Both builds of one example module.
struct Twins {
    rust: Arc<WasmModule>,
    python: Arc<WasmModule>,
}

impl Twins {
    fn load(name: &str) -> Twins {
        Twins {
            rust: load(name),
            python: load_python(name),
        }
    }
}

fn arc(array: impl Array + 'static) -> ArrayRef {
    Arc::new(array)
}

fn bigints(n: usize, seed: u64) -> ArrayRef {
    let mut rng = Lcg(seed);
    let edges = [i64::MIN, i64::MAX, (1 << 53) + 1, -1, 0];
    arc((0..n)
        .map(|i| match i % 13 {
            3 => None,
            7 => Some(edges[i % edges.len()]),
            _ => Some(rng.below(4_000_000) as i64 - 2_000_000),
        })
        .collect::<Int64Array>())
}

/// Strings of ASCII, accented letters, CJK and emoji, with nulls; ASCII-only when `ascii`.
fn unicode_words(n: usize, seed: u64, ascii: bool) -> ArrayRef {
    let mut rng = Lcg(seed);
    let alphabet: &[&str] = if ascii {
        &["a", "b", " ", "c", "/"]
    } else {
        &["a", "b", "é", " ", "ß", "日本", "🦀", "/", ":"]
    };
    arc((0..n)
        .map(|i| {
            (i % 11 != 5).then(|| {
                (0..rng.below(12))
                    .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                    .collect::<String>()
            })
        })
        .collect::<StringArray>())
}

fn urls(n: usize, seed: u64) -> ArrayRef {
    let fixed = [
        Some("https://shop.example.com/books/rust/1"),
        Some("http://user:pw@bücher.de:8080/a//b/?q=/x#frag/y"),
        Some("no scheme/at/all"),
        Some("ftp://"),
        Some("https://日本.jp/パス/🦀"),
        None,
        Some(""),
        Some("s3://bucket/key/with/many/parts"),
    ];
    let mut rng = Lcg(seed);
    arc((0..n)
        .map(|i| {
            if i < fixed.len() {
                return fixed[i].map(str::to_string);
            }
            match rng.below(5) {
                0 => None,
                1 => Some(format!("https://h{}.example.com/p/{i}?x=/y", rng.below(50))),
                2 => Some(format!("/relative/{i}/path")),
                3 => Some(format!("http://ü{}.de:{}/", rng.below(9), rng.below(65535))),
                _ => Some(format!(
                    "https://a@b.c/{}",
                    "seg/".repeat(rng.below(5) as usize)
                )),
            }
        })
        .collect::<StringArray>())
}

/// Calls a scalar function on both builds and asserts identical results (or identical error
/// rows).
fn same_scalar(twins: &Twins, function: &str, args: &[ArrayRef], rows: usize) {
    let rust = twins.rust.instance().call_scalar(function, args, rows);
    let python = twins.python.instance().call_scalar(function, args, rows);
    match (rust, python) {
        (Ok(rust), Ok(python)) => {
            assert_eq!(
                rust.to_data(),
                python.to_data(),
                "{function} on {rows} rows: Rust and Python differ"
            );
        }
        (Err(rust), Err(python)) => {
            assert_eq!(
                rust.row(),
                python.row(),
                "{function}: errors at different rows"
            );
        }
        (rust, python) => panic!("{function} on {rows} rows: Rust {rust:?}, Python {python:?}"),
    }
}

trait ErrorRow {
    fn row(&self) -> Option<u64>;
}

impl ErrorRow for UdfError {
    fn row(&self) -> Option<u64> {
        match self {
            UdfError::Failed { row, .. } => *row,
            _ => None,
        }
    }
}

#[test]
fn signatures_match_the_rust_twins() {
    for name in ["currency", "urls", "stats"] {
        let twins = Twins::load(name);
        let describe = |m: &WasmModule| -> Vec<(String, String, bool)> {
            m.functions()
                .iter()
                .map(|f| (format!("{:?}", f.kind), f.signature(), f.deterministic))
                .collect()
        };
        assert_eq!(describe(&twins.rust), describe(&twins.python), "{name}");
    }
}

#[test]
fn conformance_to_usd() {
    let twins = Twins::load("currency");
    for n in SIZES {
        same_scalar(&twins, "to_usd", &[bigints(n, n as u64)], n);
    }
}

#[test]
fn conformance_count_char() {
    let twins = Twins::load("currency");
    for n in SIZES {
        let needles: StringArray = (0..n)
            .map(|i| match i % 5 {
                0 => Some("a"),
                1 => Some("é"),
                2 => Some("🦀"),
                3 => None,
                _ => Some("日"),
            })
            .collect();
        let args = [unicode_words(n, 3 + n as u64, false), arc(needles)];
        same_scalar(&twins, "count_char", &args, n);
    }
    // A bad needle fails both at the same row.
    let text = arc(StringArray::from(vec!["aaa", "bbb", "ccc"]));
    let needles = arc(StringArray::from(vec!["a", "bb", "c"]));
    same_scalar(&twins, "count_char", &[text, needles], 3);
}

#[test]
fn conformance_url_domain() {
    let twins = Twins::load("urls");
    for n in SIZES {
        same_scalar(&twins, "url_domain", &[urls(n, n as u64)], n);
    }
    same_scalar(
        &twins,
        "url_domain",
        &[unicode_words(5000, 11, false)],
        5000,
    );
}

#[test]
fn conformance_url_segments() {
    let twins = Twins::load("urls");
    for n in SIZES {
        let input = urls(n, 100 + n as u64);
        let rust =
            twins
                .rust
                .instance()
                .call_table("url_segments", std::slice::from_ref(&input), n);
        let python = twins
            .python
            .instance()
            .call_table("url_segments", &[input], n);
        let (rust, python) = (rust.expect("rust"), python.expect("python"));
        assert_eq!(rust.row_index, python.row_index, "{n} rows: row indexes");
        assert_eq!(rust.columns.len(), python.columns.len());
        for (r, p) in rust.columns.iter().zip(&python.columns) {
            assert_eq!(r.to_data(), p.to_data(), "{n} rows: columns");
        }
    }
}

/// Accumulates `args` into `groups` states with one build; returns the states.
fn accumulate(
    instance: &mut ModuleInstance,
    function: &str,
    args: &[ArrayRef],
    groups: &[u32],
    group_count: usize,
) -> BinaryArray {
    let fresh = instance.aggregate_create(function).expect("create");
    let states = BinaryArray::from_iter_values(std::iter::repeat_n(&fresh, group_count));
    instance
        .aggregate_accumulate(function, args, groups, &states)
        .expect("accumulate")
}

fn weighted_args(n: usize, seed: u64) -> (Vec<ArrayRef>, Vec<u32>) {
    let mut rng = Lcg(seed);
    let values: Float64Array = (0..n)
        .map(|i| (i % 9 != 4).then(|| rng.below(100_000) as f64 / 7.0 - 5000.0))
        .collect();
    let weights: Int64Array = (0..n)
        .map(|i| (i % 17 != 8).then(|| rng.below(20) as i64 - 5))
        .collect();
    let groups = (0..n).map(|_| rng.below(100) as u32).collect();
    (vec![arc(values), arc(weights)], groups)
}

#[test]
fn conformance_weighted_avg_accumulate_retract_merge() {
    let twins = Twins::load("stats");
    let function = "weighted_avg";
    for n in SIZES {
        let (args, groups) = weighted_args(n, n as u64);
        let half = n / 2;
        let slice = |from: usize, len: usize| -> Vec<ArrayRef> {
            args.iter().map(|a| a.slice(from, len)).collect()
        };
        let mut results = Vec::new();
        for module in [&twins.rust, &twins.python] {
            let mut instance = module.instance();
            let whole = accumulate(&mut instance, function, &args, &groups, 100);
            let first = accumulate(
                &mut instance,
                function,
                &slice(0, half),
                &groups[..half],
                100,
            );
            let second = accumulate(
                &mut instance,
                function,
                &slice(half, n - half),
                &groups[half..],
                100,
            );
            let merged = instance
                .aggregate_merge(function, &first, &second)
                .expect("merge");
            let retracted = instance
                .aggregate_retract(function, &slice(half, n - half), &groups[half..], &whole)
                .expect("retract");
            let finish = |states: &BinaryArray, instance: &mut ModuleInstance| {
                instance
                    .aggregate_finish(function, states)
                    .expect("finish")
                    .to_data()
            };
            results.push((
                finish(&whole, &mut instance),
                finish(&merged, &mut instance),
                finish(&retracted, &mut instance),
                finish(&first, &mut instance),
            ));
        }
        assert_eq!(results[0], results[1], "{n} rows: Rust and Python differ");
    }
}

#[test]
fn conformance_approx_distinct() {
    let twins = Twins::load("stats");
    for n in SIZES {
        let values = unicode_words(n, 7 * n as u64, false);
        let groups: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        let mut results = Vec::new();
        for module in [&twins.rust, &twins.python] {
            let mut instance = module.instance();
            let states = accumulate(
                &mut instance,
                "approx_distinct",
                std::slice::from_ref(&values),
                &groups,
                3,
            );
            let merged = instance
                .aggregate_merge("approx_distinct", &states, &states)
                .expect("merge");
            let finish = |s: &BinaryArray, i: &mut ModuleInstance| {
                i.aggregate_finish("approx_distinct", s)
                    .expect("finish")
                    .to_data()
            };
            results.push((
                finish(&states, &mut instance),
                finish(&merged, &mut instance),
            ));
        }
        assert_eq!(results[0], results[1], "{n} rows");
    }
}

#[test]
fn an_exception_in_one_row_names_the_row_and_the_python_message() {
    let module = load_python("currency");
    let mut instance = module.instance();
    let text = arc(StringArray::from(vec!["aaa", "bbb", "ccc"]));
    let needles = arc(StringArray::from(vec!["a", "bb", "c"]));
    let err = instance
        .call_scalar("count_char", &[text.clone(), needles], 3)
        .expect_err("a two-character needle");
    let message = err.to_string();
    assert_eq!(err.row(), Some(1), "{message}");
    assert!(message.contains("count_char"), "{message}");
    assert!(
        message.contains("ValueError: count_char expects a single character, got 'bb'"),
        "{message}"
    );
    // The same instance serves the next call.
    let good = arc(StringArray::from(vec!["a", "b", "c"]));
    let out = instance
        .call_scalar("count_char", &[text, good], 3)
        .expect("after the failure");
    assert_eq!(
        out.as_primitive::<Int64Type>(),
        &Int64Array::from(vec![3, 3, 3])
    );
}

#[test]
fn the_standard_library_example_works() {
    let module = load_python("logs");
    let mut instance = module.instance();
    let agents = arc(StringArray::from(vec![
        Some("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
        Some("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
        Some("curl/8.4.0"),
        None,
        Some("something else"),
    ]));
    let out = instance
        .call_scalar("browser", &[agents], 5)
        .expect("browser");
    let expected = StringArray::from(vec![
        Some("Firefox 121"),
        Some("Chrome 120"),
        Some("bot"),
        None,
        None,
    ]);
    assert_eq!(out.as_string::<i32>(), &expected);
    let docs = arc(StringArray::from(vec![
        r#"{"user": {"city": "Oslo"}}"#,
        r#"{"items": [{"sku": "A1"}, {"sku": "B2"}]}"#,
        r#"{"n": 1.5}"#,
    ]));
    let paths = arc(StringArray::from(vec![
        "user.city",
        "items.1.sku",
        "missing",
    ]));
    let out = instance
        .call_scalar("json_field", &[docs.clone(), paths.clone()], 3)
        .expect("json_field");
    assert_eq!(
        out.as_string::<i32>(),
        &StringArray::from(vec![Some("Oslo"), Some("B2"), None])
    );
    let bad_docs = arc(StringArray::from(vec!["{}", "{not json", "{}"]));
    let err = instance
        .call_scalar("json_field", &[bad_docs, paths], 3)
        .expect_err("malformed JSON");
    assert_eq!(err.row(), Some(1), "{err}");
    assert!(err.to_string().contains("JSONDecodeError"), "{err}");
}

/// Builds `udfs/python/hostile/<file>` into the guest target dir; the error is the build's message.
fn hostile_python(file: &str) -> Result<std::path::PathBuf, String> {
    let module = udfs_dir().join("python/hostile").join(file);
    let dir = guest_target_dir().join("python/hostile");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    build_python(&module, &dir.join(file.replace(".py", ".wasm")))
}

#[test]
fn bad_python_modules_are_refused_at_build_with_a_clear_message() {
    let cases = [
        ("syntax_error.py", "syntax_error.py:5:"),
        ("syntax_error.py", "syntax error"),
        (
            "missing_hint.py",
            "function `to_usd`, parameter `price`: missing type hint",
        ),
        (
            "unsupported_type.py",
            "parameter `tags`: unsupported type hint `set[str]`",
        ),
        ("c_extension.py", "No module named '_ctypes'"),
    ];
    for (file, expected) in cases {
        let err = hostile_python(file).expect_err(file);
        assert!(err.contains(expected), "{file}: {err}");
        assert!(!err.contains("Stack backtrace"), "{file}: {err}");
    }
}

#[test]
fn sandbox_denials_and_limits_in_python_are_clear_errors() {
    let path = hostile_python("sandbox.py").expect("sandbox.py builds");
    let options = LoadOptions {
        call_deadline: Some(Duration::from_millis(500)),
        memory_cap: Some(128 << 20),
        ..LoadOptions::default()
    };
    let module = python_runtime().load_file(&path, options).expect("load");
    let mut instance = module.instance();
    let one = || vec![arc(Int64Array::from(vec![1]))];
    let failures = [
        ("connect", "the sandbox grants no network"),
        ("read_file", "the sandbox grants no filesystem"),
        ("lazy_import", "No module named 'tkinter'"),
    ];
    for (function, expected) in failures {
        let err = instance
            .call_scalar(function, &one(), 1)
            .expect_err(function);
        assert!(err.to_string().contains(expected), "{function}: {err}");
        assert_eq!(err.row(), Some(0), "{function}: {err}");
    }
    let err = instance.call_scalar("spin", &one(), 1).expect_err("spin");
    assert!(
        matches!(
            &err,
            UdfError::Trap {
                cause: TrapCause::Deadline(_),
                ..
            }
        ),
        "spin: {err:?}"
    );
    assert!(err.to_string().contains("spin"), "{err}");
    // Python meets the cap as a failed allocation and raises MemoryError; either way the
    // error says the cap was reached.
    let err = instance.call_scalar("hog", &one(), 1).expect_err("hog");
    let capped = matches!(
        &err,
        UdfError::Trap {
            cause: TrapCause::MemoryCap(_),
            ..
        }
    ) || err
        .to_string()
        .contains("MemoryError (the instance reached its memory cap)");
    assert!(capped, "hog: {err:?}");
    let out = instance
        .call_scalar("standard_library", &[arc(Int64Array::from(vec![3]))], 1)
        .expect("the standard library");
    assert_eq!(
        out.as_string::<i32>().value(0),
        "9e1bd4e5 2 x.org aGk= 3.305"
    );
    // After a deadline and a memory cap, the instance (renewed) still answers.
    let out = instance.call_scalar("double", &one(), 1).expect("double");
    assert_eq!(out.as_primitive::<Int64Type>(), &Int64Array::from(vec![2]));
}

#[test]
fn a_second_runtime_loads_a_python_component_from_the_cache() {
    let path = crate::common::python_component("currency");
    // Warm the shared cache directory, then load as a fresh process would.
    load_python("currency");
    let fresh = weir_host::wasm::WasmRuntime::new(weir_host::wasm::WasmConfig {
        cache_dir: Some(
            python_runtime()
                .config()
                .cache_dir
                .clone()
                .expect("cache dir"),
        ),
        ..Default::default()
    })
    .expect("runtime");
    let module = fresh
        .load_file(&path, LoadOptions::default())
        .expect("load");
    assert_eq!(fresh.cache_stats().compiled, 0, "{:?}", fresh.cache_stats());
    assert_eq!(fresh.cache_stats().cache_hits, 1);
    let out = module
        .instance()
        .call_scalar("to_usd", &[arc(Int64Array::from(vec![250]))], 1)
        .expect("to_usd");
    assert_eq!(
        out.as_primitive::<arrow::datatypes::Float64Type>().value(0),
        2.5
    );
}
