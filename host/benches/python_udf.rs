//! Python components (componentize-py) through the same host path as Rust ones: ns/row at 1, 1024
//! and 8192 rows for `to_usd` and two string functions, the `weighted_avg` aggregate over many
//! groups in rows/s, a new instance, and a cached start (a fresh runtime loading a component
//! whose compiled form is on disk).
//!
//! Run: `cargo bench -p weir-host --bench python_udf`. Targets: `to_usd` at most 400 ns/row,
//! `weighted_avg` at least 500,000 rows/s, cached start under 100 ms.

#[path = "../tests/it/common.rs"]
#[allow(dead_code)]
mod common;
mod harness;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, BinaryArray, Float64Array, Int64Array, StringArray};
use weir_host::wasm::{LoadOptions, WasmConfig, WasmRuntime};

use harness::{case, header, selected, time};

const BATCH_SIZES: [usize; 3] = [1, 1024, 8192];
const GROUPS: usize = 1000;

fn main() {
    let currency = common::load_python("currency");
    let urls = common::load_python("urls");
    let stats = common::load_python("stats");
    let mut currency_instance = currency.instance();
    let mut url_instance = urls.instance();
    let mut stats_instance = stats.instance();

    header();
    for &rows in &BATCH_SIZES {
        let prices: ArrayRef = Arc::new((0..rows as i64).collect::<Int64Array>());
        let words: ArrayRef = Arc::new(
            (0..rows)
                .map(|i| Some(format!("user-{i:08}@weir.dev")))
                .collect::<StringArray>(),
        );
        let needles: ArrayRef = Arc::new(StringArray::from(vec!["e"; rows]));
        let links: ArrayRef = Arc::new(
            (0..rows)
                .map(|i| Some(format!("https://host{}.example.com/a/b/{i}", i % 97)))
                .collect::<StringArray>(),
        );
        case("python to_usd bigint->double", rows, || {
            black_box(
                currency_instance
                    .call_scalar("to_usd", std::slice::from_ref(&prices), rows)
                    .expect("to_usd"),
            );
        });
        case("python count_char varchar->bigint", rows, || {
            black_box(
                currency_instance
                    .call_scalar("count_char", &[words.clone(), needles.clone()], rows)
                    .expect("count_char"),
            );
        });
        case("python url_domain varchar->varchar", rows, || {
            black_box(
                url_instance
                    .call_scalar("url_domain", std::slice::from_ref(&links), rows)
                    .expect("url_domain"),
            );
        });
        let values: ArrayRef = Arc::new(
            (0..rows)
                .map(|i| (i % 100) as f64 / 3.0)
                .collect::<Float64Array>(),
        );
        let weights: ArrayRef = Arc::new((0..rows as i64).map(|i| i % 7).collect::<Int64Array>());
        // As the host will call it: the states of the groups this batch touches, no more.
        let group_count = GROUPS.min(rows);
        let groups: Vec<u32> = (0..rows)
            .map(|i| ((i * 7919) % group_count) as u32)
            .collect();
        let fresh = stats_instance
            .aggregate_create("weighted_avg")
            .expect("create");
        let states = BinaryArray::from_iter_values(std::iter::repeat_n(&fresh, group_count));
        let per_call = case("python weighted_avg (<=1000 groups)", rows, || {
            black_box(
                stats_instance
                    .aggregate_accumulate(
                        "weighted_avg",
                        &[values.clone(), weights.clone()],
                        &groups,
                        &states,
                    )
                    .expect("accumulate"),
            );
        });
        if let Some(per_call) = per_call {
            println!(
                "{:<34} {rows:>6} {:>12.0} rows/s",
                "  = weighted_avg throughput",
                rows as f64 / per_call.as_secs_f64()
            );
        }
    }

    // Profiling aid: WEIR_BENCH_PROBE=module.wasm times each of its functions at 8192 rows:
    // scalars on a bigint column, aggregates on (double, bigint) over 8 groups. Variants of one
    // operation in one probe module compare reliably on this noisy machine. The clock is granted,
    // so a probe may time its own phases with time.perf_counter_ns.
    if let Some(probe) = std::env::var_os("WEIR_BENCH_PROBE") {
        let module = common::python_runtime()
            .load_file(
                std::path::Path::new(&probe),
                LoadOptions {
                    grants: weir_host::wasm::SandboxGrants {
                        clock: true,
                        ..Default::default()
                    },
                    ..LoadOptions::default()
                },
            )
            .expect("probe module");
        let mut instance = module.instance();
        let rows = 8192;
        let ints: ArrayRef = Arc::new((0..rows as i64).collect::<Int64Array>());
        for function in module.functions() {
            if function.kind.name() == "aggregate" {
                // (double, bigint) aggregates, over 8 groups: per-row costs without per-state ones.
                let values: ArrayRef =
                    Arc::new((0..rows).map(|i| i as f64).collect::<Float64Array>());
                let groups: Vec<u32> = (0..rows as u32).map(|i| i % 8).collect();
                let fresh = instance.aggregate_create(&function.name).expect("create");
                let states = BinaryArray::from_iter_values(std::iter::repeat_n(&fresh, 8));
                case(&format!("probe {}", function.name), rows, || {
                    black_box(
                        instance
                            .aggregate_accumulate(
                                &function.name,
                                &[values.clone(), ints.clone()],
                                &groups,
                                &states,
                            )
                            .expect("probe"),
                    );
                });
                continue;
            }
            case(&format!("probe {}", function.name), rows, || {
                black_box(
                    instance
                        .call_scalar(&function.name, std::slice::from_ref(&ints), rows)
                        .expect("probe"),
                );
            });
        }
    }

    if selected("instance") {
        let fresh = time(|| {
            let mut fresh = currency.instance();
            fresh.warm_up().expect("instantiate");
            black_box(fresh);
        });
        println!(
            "python new instance (pooled): {:.1} us",
            fresh.as_nanos() as f64 / 1000.0
        );
    }

    if selected("start") {
        // What a second process pays: a new engine, then the component from the disk cache.
        let path = common::python_component("currency");
        let cache_dir = common::python_runtime().config().cache_dir.clone();
        let mut best = f64::MAX;
        for _ in 0..harness::ROUNDS {
            let runtime = WasmRuntime::new(WasmConfig {
                cache_dir: cache_dir.clone(),
                ..WasmConfig::default()
            })
            .expect("runtime");
            let started = Instant::now();
            let module = runtime
                .load_file(&path, LoadOptions::default())
                .expect("load");
            let out = module
                .instance()
                .call_scalar(
                    "to_usd",
                    &[Arc::new(Int64Array::from(vec![1])) as ArrayRef],
                    1,
                )
                .expect("first call");
            best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(runtime.cache_stats().compiled, 0, "a cache hit");
            black_box(out);
        }
        println!("python cached start (load + first call): {best:.1} ms");
    }
}
