//! Every example function through the host, on batches with nulls, an empty batch, one row and
//! 100,000 rows, compared with answers computed natively in Rust.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use weir_host::udf::{FunctionKind, UdfError};
use weir_host::wasm::WasmModule;

use crate::common::{Lcg, load};

const SIZES: [usize; 4] = [0, 1, 37, 100_000];

fn prices(n: usize, seed: u64) -> Int64Array {
    let mut rng = Lcg(seed);
    (0..n)
        .map(|i| (i % 7 != 3).then(|| rng.below(2_000_000) as i64 - 1_000_000))
        .collect()
}

#[test]
fn to_usd_matches_native() {
    let module = load("currency");
    let mut instance = module.instance();
    for n in SIZES {
        let input = prices(n, n as u64);
        let out = instance
            .call_scalar("to_usd", &[Arc::new(input.clone()) as ArrayRef], n)
            .expect("to_usd");
        let expected: Float64Array = input.iter().map(|p| p.map(|p| p as f64 / 100.0)).collect();
        assert_eq!(out.as_primitive::<Float64Type>(), &expected, "{n} rows");
    }
}

#[test]
fn batches_without_nulls_take_the_dense_path_and_agree() {
    let module = load("currency");
    let mut instance = module.instance();
    let n = 100_000;
    let input: Int64Array = prices(n, 1).iter().map(|p| Some(p.unwrap_or(7))).collect();
    assert_eq!(input.null_count(), 0);
    let out = instance
        .call_scalar("to_usd", &[Arc::new(input.clone()) as ArrayRef], n)
        .expect("to_usd");
    let expected: Float64Array = input.iter().map(|p| p.map(|p| p as f64 / 100.0)).collect();
    assert_eq!(out.as_primitive::<Float64Type>(), &expected);
    assert_eq!(out.null_count(), 0);
}

fn words(n: usize, seed: u64) -> StringArray {
    let mut rng = Lcg(seed);
    let alphabet = ['a', 'b', 'é', ' ', 'ß', 'a'];
    (0..n)
        .map(|i| {
            (i % 11 != 5).then(|| {
                let len = rng.below(30) as usize;
                (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                    .collect::<String>()
            })
        })
        .collect()
}

#[test]
fn count_char_matches_native_and_names_the_bad_row() {
    let module = load("currency");
    let mut instance = module.instance();
    for n in SIZES {
        let text = words(n, 7 + n as u64);
        let needles: StringArray = (0..n)
            .map(|i| Some(if i % 2 == 0 { "a" } else { "é" }))
            .collect();
        let out = instance
            .call_scalar(
                "count_char",
                &[
                    Arc::new(text.clone()) as ArrayRef,
                    Arc::new(needles.clone()),
                ],
                n,
            )
            .expect("count_char");
        let expected: Int64Array = text
            .iter()
            .zip(needles.iter())
            .map(|(t, c)| {
                let c = c?.chars().next()?;
                Some(t?.chars().filter(|&x| x == c).count() as i64)
            })
            .collect();
        assert_eq!(out.as_primitive::<Int64Type>(), &expected, "{n} rows");
    }

    let text: StringArray = vec![Some("aa"), Some("bb"), Some("cc")]
        .into_iter()
        .collect();
    let needles: StringArray = vec![Some("a"), Some("b"), Some("too long")]
        .into_iter()
        .collect();
    let err = instance
        .call_scalar(
            "count_char",
            &[Arc::new(text) as ArrayRef, Arc::new(needles)],
            3,
        )
        .expect_err("a two-character needle is an error");
    match &err {
        UdfError::Failed { site, row, message } => {
            assert_eq!(*row, Some(2));
            assert_eq!(site.function, "count_char");
            assert_eq!(site.module, "currency");
            assert!(message.contains("single character"), "{message}");
        }
        other => panic!("expected a per-row failure, got {other}"),
    }
    assert!(err.to_string().contains("at row 2"), "{err}");
}

/// URLs made from known parts, so the expected domain and segments are known without parsing.
struct Urls {
    urls: StringArray,
    domains: Vec<Option<String>>,
    segments: Vec<Vec<String>>,
}

fn urls(n: usize, seed: u64) -> Urls {
    let mut rng = Lcg(seed);
    let hosts = [
        "example.com",
        "weir.dev",
        "a.b.c.org",
        "localhost",
        "xn--bcher-kva.ch",
    ];
    let words = ["api", "v1", "users", "42", "ünïcode", "x"];
    let (mut urls, mut domains, mut segments) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        if i % 13 == 4 {
            urls.push(None);
            domains.push(None);
            segments.push(Vec::new());
            continue;
        }
        let host = hosts[rng.below(hosts.len() as u64) as usize];
        let path: Vec<String> = (0..rng.below(4))
            .map(|_| words[rng.below(words.len() as u64) as usize].to_string())
            .collect();
        let with_scheme = i % 9 != 2;
        let mut url = String::new();
        if with_scheme {
            url.push_str(if rng.below(2) == 0 {
                "http://"
            } else {
                "https://"
            });
            if rng.below(4) == 0 {
                url.push_str("user:pw@");
            }
        }
        url.push_str(host);
        if rng.below(3) == 0 {
            url.push_str(":8080");
        }
        for p in &path {
            url.push('/');
            url.push_str(p);
        }
        if rng.below(3) == 0 {
            url.push_str("?q=1/2");
        }
        urls.push(Some(url));
        domains.push(with_scheme.then(|| host.to_string()));
        // Without a scheme the whole text is taken as a path.
        segments.push(if with_scheme {
            path
        } else {
            let text = urls.last().cloned().flatten().unwrap_or_default();
            let text = text.split('?').next().unwrap_or("").to_string();
            text.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        });
    }
    Urls {
        urls: urls.into_iter().collect(),
        domains,
        segments,
    }
}

#[test]
fn url_domain_matches_the_generated_hosts() {
    let module = load("urls");
    let mut instance = module.instance();
    for n in SIZES {
        let data = urls(n, 99 + n as u64);
        let out = instance
            .call_scalar("url_domain", &[Arc::new(data.urls.clone()) as ArrayRef], n)
            .expect("url_domain");
        let got: Vec<Option<String>> = out
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect();
        assert_eq!(got, data.domains, "{n} rows");
    }
}

#[test]
fn url_segments_rows_point_at_their_input_rows() {
    let module = load("urls");
    let spec = module.function("url_segments").expect("spec").1.clone();
    assert_eq!(spec.kind, FunctionKind::Table);
    assert_eq!(
        spec.signature(),
        "url_segments(url VARCHAR) -> TABLE(position INT, segment VARCHAR)"
    );
    let mut instance = module.instance();
    for n in SIZES {
        let data = urls(n, 5 + n as u64);
        let rows = instance
            .call_table(
                "url_segments",
                &[Arc::new(data.urls.clone()) as ArrayRef],
                n,
            )
            .expect("url_segments");
        let mut expected = Vec::new();
        for (row, segments) in data.segments.iter().enumerate() {
            for (i, s) in segments.iter().enumerate() {
                expected.push((row as u32, i as i32 + 1, s.clone()));
            }
        }
        let positions = rows.columns[0].as_primitive::<Int32Type>();
        let names = rows.columns[1].as_string::<i32>();
        let got: Vec<(u32, i32, String)> = (0..rows.row_index.len())
            .map(|i| {
                (
                    rows.row_index.value(i),
                    positions.value(i),
                    names.value(i).to_string(),
                )
            })
            .collect();
        assert_eq!(got, expected, "{n} rows");
    }
}

fn one_state(module: &Arc<WasmModule>, function: &str, count: usize) -> BinaryArray {
    let state = module
        .instance()
        .aggregate_create(function)
        .expect("create");
    BinaryArray::from_iter_values(std::iter::repeat_n(state, count))
}

/// Integer-valued doubles and weights keep every sum exact, so results compare with `==`.
fn weighted_rows(n: usize, seed: u64) -> (Float64Array, Int64Array) {
    let mut rng = Lcg(seed);
    let values = (0..n)
        .map(|i| (i % 17 != 9).then(|| rng.below(1000) as f64))
        .collect();
    let weights = (0..n).map(|_| Some(rng.below(10) as i64 + 1)).collect();
    (values, weights)
}

fn native_weighted_avg(
    values: &Float64Array,
    weights: &Int64Array,
    rows: impl Iterator<Item = usize>,
) -> Option<f64> {
    let (mut sum, mut weight) = (0.0, 0i64);
    for i in rows {
        if values.is_valid(i) && weights.is_valid(i) {
            sum += values.value(i) * weights.value(i) as f64;
            weight += weights.value(i);
        }
    }
    (weight != 0).then(|| sum / weight as f64)
}

#[test]
fn weighted_avg_accumulates_retracts_and_merges() {
    let module = load("stats");
    let (_, spec) = module.function("weighted_avg").expect("spec");
    assert_eq!(
        spec.kind,
        FunctionKind::Aggregate {
            retract: true,
            merge: true
        }
    );
    let mut instance = module.instance();
    let f = "weighted_avg";
    for n in SIZES {
        let (values, weights) = weighted_rows(n, 3 + n as u64);
        let args: Vec<ArrayRef> = vec![Arc::new(values.clone()), Arc::new(weights.clone())];
        let all_in_group_0 = vec![0u32; n];

        let whole = instance
            .aggregate_accumulate(f, &args, &all_in_group_0, &one_state(&module, f, 1))
            .expect("accumulate");
        let result = instance.aggregate_finish(f, &whole).expect("finish");
        let expected = native_weighted_avg(&values, &weights, 0..n);
        assert_eq!(
            result.as_primitive::<Float64Type>().iter().next().flatten(),
            expected,
            "{n} rows"
        );

        // Accumulate everything, retract the first third: the same as accumulating the rest.
        let third = n / 3;
        let first: Vec<ArrayRef> = args.iter().map(|a| a.slice(0, third)).collect();
        let rest: Vec<ArrayRef> = args.iter().map(|a| a.slice(third, n - third)).collect();
        let retracted = instance
            .aggregate_retract(f, &first, &vec![0; third], &whole)
            .expect("retract");
        let of_rest = instance
            .aggregate_accumulate(f, &rest, &vec![0; n - third], &one_state(&module, f, 1))
            .expect("accumulate rest");
        let a = instance.aggregate_finish(f, &retracted).expect("finish");
        let b = instance.aggregate_finish(f, &of_rest).expect("finish");
        assert_eq!(
            a.as_primitive::<Float64Type>(),
            b.as_primitive::<Float64Type>(),
            "{n} rows"
        );

        // Merge of two halves equals the whole.
        let half = n / 2;
        let left = instance
            .aggregate_accumulate(
                f,
                &args.iter().map(|a| a.slice(0, half)).collect::<Vec<_>>(),
                &vec![0; half],
                &one_state(&module, f, 1),
            )
            .expect("left");
        let right = instance
            .aggregate_accumulate(
                f,
                &args
                    .iter()
                    .map(|a| a.slice(half, n - half))
                    .collect::<Vec<_>>(),
                &vec![0; n - half],
                &one_state(&module, f, 1),
            )
            .expect("right");
        let merged = instance.aggregate_merge(f, &left, &right).expect("merge");
        let merged = instance.aggregate_finish(f, &merged).expect("finish");
        assert_eq!(
            merged.as_primitive::<Float64Type>().iter().next().flatten(),
            expected,
            "{n} rows"
        );
    }
}

#[test]
fn weighted_avg_keeps_groups_apart() {
    let module = load("stats");
    let mut instance = module.instance();
    let f = "weighted_avg";
    let n = 10_000;
    let (values, weights) = weighted_rows(n, 11);
    let groups: Vec<u32> = (0..n as u32).map(|i| i % 5).collect();
    let args: Vec<ArrayRef> = vec![Arc::new(values.clone()), Arc::new(weights.clone())];
    let states = instance
        .aggregate_accumulate(f, &args, &groups, &one_state(&module, f, 5))
        .expect("accumulate");
    let results = instance.aggregate_finish(f, &states).expect("finish");
    let results = results.as_primitive::<Float64Type>();
    for g in 0..5 {
        let expected = native_weighted_avg(&values, &weights, (0..n).filter(|i| i % 5 == g));
        assert_eq!(results.iter().nth(g).flatten(), expected, "group {g}");
    }

    let err = instance
        .aggregate_accumulate(f, &args, &vec![7; n], &one_state(&module, f, 5))
        .expect_err("group 7 of 5");
    assert!(matches!(err, UdfError::Arguments { .. }), "{err}");
}

#[test]
fn approx_distinct_estimates_and_merges_exactly() {
    let module = load("stats");
    let (_, spec) = module.function("approx_distinct").expect("spec");
    assert_eq!(
        spec.kind,
        FunctionKind::Aggregate {
            retract: false,
            merge: true
        }
    );
    let mut instance = module.instance();
    let f = "approx_distinct";
    let n = 100_000;
    let distinct = 5_000;
    let values: StringArray = (0..n)
        .map(|i| Some(format!("user-{}", (i * 7919) % distinct)))
        .collect();
    let args: Vec<ArrayRef> = vec![Arc::new(values)];
    let whole = instance
        .aggregate_accumulate(f, &args, &vec![0; n], &one_state(&module, f, 1))
        .expect("accumulate");
    let estimate = instance
        .aggregate_finish(f, &whole)
        .expect("finish")
        .as_primitive::<Int64Type>()
        .value(0);
    let error = (estimate - distinct as i64).abs() as f64 / distinct as f64;
    assert!(
        error < 0.1,
        "estimate {estimate} for {distinct} distinct values"
    );

    let half = n / 2;
    let left = instance
        .aggregate_accumulate(
            f,
            &[args[0].slice(0, half)],
            &vec![0; half],
            &one_state(&module, f, 1),
        )
        .expect("left");
    let right = instance
        .aggregate_accumulate(
            f,
            &[args[0].slice(half, n - half)],
            &vec![0; n - half],
            &one_state(&module, f, 1),
        )
        .expect("right");
    let merged = instance.aggregate_merge(f, &left, &right).expect("merge");
    assert_eq!(
        merged.value(0),
        whole.value(0),
        "merged registers equal the whole's"
    );

    let err = instance
        .aggregate_retract(f, &args, &vec![0; n], &whole)
        .expect_err("no retract");
    assert!(
        matches!(
            err,
            UdfError::Unsupported {
                operation: "retract",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn calls_check_arguments_against_the_signature() {
    let module = load("currency");
    let mut instance = module.instance();
    let strings: ArrayRef = Arc::new(StringArray::from(vec!["1"]));
    let err = instance
        .call_scalar("to_usd", std::slice::from_ref(&strings), 1)
        .expect_err("wrong type");
    assert!(err.to_string().contains("expected BIGINT"), "{err}");
    let err = instance
        .call_scalar("to_usd", &[], 1)
        .expect_err("wrong arity");
    assert!(
        err.to_string().contains("takes 1 arguments, got 0"),
        "{err}"
    );
    let err = instance
        .call_scalar("nope", std::slice::from_ref(&strings), 1)
        .expect_err("unknown");
    assert!(matches!(err, UdfError::UnknownFunction { .. }), "{err}");
    let err = instance
        .call_table("to_usd", &[strings], 1)
        .expect_err("wrong kind");
    assert!(matches!(err, UdfError::WrongKind { .. }), "{err}");
}

#[test]
fn dense_blocks_agree_at_every_edge() {
    let module = load("bench");
    let mut instance = module.instance();
    // The dense path works in blocks of 64 rows and then row by row: sizes around the edges.
    for n in [0, 1, 63, 64, 65, 129, 1000] {
        let ints: Int64Array = (0..n as i64).map(|i| Some(i * 3 - 100)).collect();
        let out = instance
            .call_scalar("add_one", &[Arc::new(ints.clone()) as ArrayRef], n)
            .expect("add_one");
        let expected: Int64Array = ints.iter().map(|v| v.map(|v| v + 1)).collect();
        assert_eq!(out.as_primitive::<Int64Type>(), &expected, "{n} rows");

        // With nulls and non-ASCII text, then dense and ASCII only.
        let mixed = words(n, n as u64);
        let ascii: StringArray = (0..n).map(|i| Some(format!("user-{i}@weir"))).collect();
        for text in [mixed, ascii] {
            let out = instance
                .call_scalar("trim_prefix", &[Arc::new(text.clone()) as ArrayRef], n)
                .expect("trim_prefix");
            let expected: StringArray = text
                .iter()
                .map(|s| s.map(|s| s.get(1..).unwrap_or("")))
                .collect();
            assert_eq!(out.as_string::<i32>(), &expected, "{n} rows");
        }
    }
}

#[test]
fn a_failure_inside_a_dense_block_names_its_row() {
    let module = load("currency");
    let mut instance = module.instance();
    let n = 200;
    let text: StringArray = (0..n).map(|_| Some("abcé")).collect();
    let needles: StringArray = (0..n)
        .map(|i| Some(if i == 130 { "too long" } else { "é" }))
        .collect();
    let err = instance
        .call_scalar(
            "count_char",
            &[Arc::new(text) as ArrayRef, Arc::new(needles)],
            n,
        )
        .expect_err("row 130 fails");
    match err {
        UdfError::Failed { row, .. } => assert_eq!(row, Some(130)),
        other => panic!("expected a per-row failure, got {other}"),
    }
}
