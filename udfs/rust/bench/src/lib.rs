//! Minimal functions whose cost is almost all boundary crossing, for the call-overhead benchmark.

use weir_udf::scalar;

/// `bigint -> bigint`.
#[scalar]
fn add_one(x: i64) -> i64 {
    x.wrapping_add(1)
}

/// `varchar -> varchar`, borrowing its result from the input.
#[scalar]
fn trim_prefix(s: &str) -> &str {
    s.get(1..).unwrap_or("")
}

/// `bigint -> bigint` that hands its input column back untouched: the cost of the boundary alone
/// (lowering, lifting, checks), with no per-row work in the guest. Written against the SDK's
/// hidden driver API on purpose; authors never need this.
#[allow(non_camel_case_types)]
struct echo {}

impl weir_udf::__private::Function for echo {
    const NAME: &'static str = "echo";
    fn spec() -> weir_udf::__private::FunctionSpec {
        let bigint = <i64 as weir_udf::ResultValue>::DATA_TYPE;
        weir_udf::__private::FunctionSpec {
            name: Self::NAME.to_string(),
            kind: weir_udf::__private::FunctionKind::Scalar,
            params: vec![weir_udf::__private::field("x", bigint)],
            results: vec![weir_udf::__private::field("result", bigint)],
            deterministic: true,
        }
    }
    fn call_scalar(
        args: weir_udf::__private::Batch,
    ) -> Result<weir_udf::__private::Column, weir_udf::__private::UdfError> {
        args.columns
            .into_iter()
            .next()
            .ok_or_else(|| weir_udf::__private::UdfError {
                message: "echo takes one argument".into(),
                row: None,
            })
    }
}

/// Pure guest compute, no data: a mixing loop of `n` steps.
#[scalar]
fn mix(n: i64) -> i64 {
    let mut h: i64 = 0;
    for i in 0..n {
        h = (h ^ i)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64)
            .rotate_left(7);
    }
    h
}

weir_udf::export!(add_one, trim_prefix, echo, mix);
