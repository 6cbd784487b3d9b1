//! Loading: signatures from `describe`, and the compiled-module cache.

use weir_host::udf::FunctionKind;
use weir_host::wasm::{CacheStats, LoadOptions, WasmConfig, WasmRuntime};

use crate::common::{component, load};

#[test]
fn describe_gives_every_signature() {
    let currency = load("currency");
    let signatures: Vec<String> = currency.functions().iter().map(|f| f.signature()).collect();
    assert_eq!(
        signatures,
        [
            "to_usd(price BIGINT) -> DOUBLE",
            "count_char(s VARCHAR, c VARCHAR) -> BIGINT"
        ]
    );
    assert!(
        currency
            .functions()
            .iter()
            .all(|f| f.kind == FunctionKind::Scalar && f.deterministic)
    );

    let stats = load("stats");
    let signatures: Vec<String> = stats.functions().iter().map(|f| f.signature()).collect();
    assert_eq!(
        signatures,
        [
            "weighted_avg(value DOUBLE, weight BIGINT) -> DOUBLE",
            "approx_distinct(value VARCHAR) -> BIGINT"
        ]
    );
    assert_eq!(currency.digest().len(), 64);
}

fn small_runtime(cache: &std::path::Path) -> WasmRuntime {
    WasmRuntime::new(WasmConfig {
        cache_dir: Some(cache.to_path_buf()),
        max_instances: 4,
        ..WasmConfig::default()
    })
    .expect("runtime")
}

#[test]
fn a_second_load_of_the_same_bytes_does_not_recompile() {
    let cache = tempfile::tempdir().expect("tempdir");
    let path = component("urls");

    let first = small_runtime(cache.path());
    first
        .load_file(&path, LoadOptions::default())
        .expect("first load");
    assert_eq!(
        first.cache_stats(),
        CacheStats {
            compiled: 1,
            cache_hits: 0
        }
    );
    first
        .load_file(&path, LoadOptions::default())
        .expect("second load");
    assert_eq!(
        first.cache_stats(),
        CacheStats {
            compiled: 1,
            cache_hits: 1
        }
    );

    // A new runtime stands for the next process: it finds the compiled module on disk.
    let next = small_runtime(cache.path());
    let module = next
        .load_file(&path, LoadOptions::default())
        .expect("load from cache");
    assert_eq!(
        next.cache_stats(),
        CacheStats {
            compiled: 0,
            cache_hits: 1
        }
    );
    let mut instance = module.instance();
    let urls: arrow::array::ArrayRef =
        std::sync::Arc::new(arrow::array::StringArray::from(vec!["https://weir.dev/x"]));
    let out = instance
        .call_scalar("url_domain", &[urls], 1)
        .expect("a cached module runs");
    assert_eq!(
        arrow::array::AsArray::as_string::<i32>(&out).value(0),
        "weir.dev"
    );

    // Other bytes are another entry.
    next.load_file(&component("currency"), LoadOptions::default())
        .expect("other module");
    assert_eq!(
        next.cache_stats(),
        CacheStats {
            compiled: 1,
            cache_hits: 1
        }
    );
}

#[test]
fn a_corrupt_cache_entry_is_recompiled_not_trusted() {
    let cache = tempfile::tempdir().expect("tempdir");
    let path = component("currency");
    small_runtime(cache.path())
        .load_file(&path, LoadOptions::default())
        .expect("first load");
    for entry in std::fs::read_dir(cache.path()).expect("cache dir") {
        let entry = entry.expect("entry").path();
        std::fs::write(&entry, b"garbage").expect("corrupt");
    }
    let runtime = small_runtime(cache.path());
    runtime
        .load_file(&path, LoadOptions::default())
        .expect("recompiles");
    assert_eq!(
        runtime.cache_stats(),
        CacheStats {
            compiled: 1,
            cache_hits: 0
        }
    );
}
