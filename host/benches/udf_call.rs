//! Cost of calling a Wasm function once per batch, end to end (Arrow array in, Arrow array out),
//! against a native Rust loop, at batch sizes 1, 1024 and 8192; and the cost of a fresh instance.
//!
//! Run: `cargo bench -p weir-host --bench udf_call`. Prints ns/row; targets at 8192 rows:
//! bigint -> bigint <= 1.5 ns/row, string -> string <= 20 ns/row, new instance < 50 us.

#[path = "../tests/it/common.rs"]
#[allow(dead_code)]
mod common;
mod harness;

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray, StringBuilder};
use arrow::datatypes::Int64Type;
use weir_host::wasm::ModuleInstance;

use harness::{case, header, selected, time};

const BATCH_SIZES: [usize; 3] = [1, 1024, 8192];
/// A case that calls a one-argument scalar Wasm function on `arg`.
fn wasm_case(name: &str, instance: &mut ModuleInstance, function: &str, arg: &ArrayRef) {
    let rows = arg.len();
    case(name, rows, || {
        black_box(
            instance
                .call_scalar(function, std::slice::from_ref(arg), rows)
                .expect(function),
        );
    });
}

fn main() {
    let runtime = common::runtime();
    let bench = runtime
        .load_file(&common::component("bench"), Default::default())
        .expect("bench component");
    let urls = common::load("urls");
    let mut instance = bench.instance();
    let mut url_instance = urls.instance();

    header();
    for &rows in &BATCH_SIZES {
        let ints: Int64Array = (0..rows as i64).collect();
        let ints: ArrayRef = Arc::new(ints);
        let words: StringArray = (0..rows)
            .map(|i| Some(format!("user-{i:08}@weir.dev")))
            .collect();
        let words: ArrayRef = Arc::new(words);
        let links: StringArray = (0..rows)
            .map(|i| Some(format!("https://host{}.example.com/a/b/{i}", i % 97)))
            .collect();
        let links: ArrayRef = Arc::new(links);

        case("native bigint+1 (arrow unary)", rows, || {
            let out: Int64Array = arrow::compute::kernels::arity::unary(
                ints.as_primitive::<Int64Type>(),
                |v: i64| v.wrapping_add(1),
            );
            black_box(out);
        });
        wasm_case(
            "wasm add_one bigint->bigint",
            &mut instance,
            "add_one",
            &ints,
        );
        wasm_case("wasm echo (boundary only)", &mut instance, "echo", &ints);
        case("native trim_prefix (builder)", rows, || {
            let input = words.as_string::<i32>();
            let mut b = StringBuilder::with_capacity(rows, input.value_data().len());
            for v in input.iter() {
                b.append_option(v.map(|s| s.get(1..).unwrap_or("")));
            }
            black_box(b.finish());
        });
        wasm_case(
            "wasm trim_prefix varchar->varchar",
            &mut instance,
            "trim_prefix",
            &words,
        );
        wasm_case(
            "wasm url_domain varchar->varchar",
            &mut url_instance,
            "url_domain",
            &links,
        );
    }

    if selected("mix") {
        let steps = 10_000_000i64;
        let wasm_mix = time(|| {
            black_box(
                instance
                    .call_scalar(
                        "mix",
                        &[Arc::new(Int64Array::from(vec![steps])) as ArrayRef],
                        1,
                    )
                    .expect("mix"),
            );
        });
        let native_mix = time(|| {
            let mut h: i64 = 0;
            for i in 0..black_box(steps) {
                h = (h ^ i)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64)
                    .rotate_left(7);
            }
            black_box(h);
        });
        println!(
            "mix loop: wasm {:.2} ns/step, native {:.2} ns/step",
            wasm_mix.as_nanos() as f64 / steps as f64,
            native_mix.as_nanos() as f64 / steps as f64
        );
    }
    let fresh = time(|| {
        let mut fresh = bench.instance();
        fresh.warm_up().expect("instantiate");
        black_box(fresh);
    });
    println!(
        "{:<34} {:>6} {:>12} {:>12.2}",
        "new instance (pooled)",
        "-",
        "-",
        fresh.as_nanos() as f64 / 1000.0
    );
    let check = instance
        .call_scalar(
            "add_one",
            &[Arc::new(Int64Array::from(vec![41])) as ArrayRef],
            1,
        )
        .expect("add_one");
    assert_eq!(check.as_primitive::<Int64Type>().value(0), 42);
    assert_eq!(check.len(), 1);
}
