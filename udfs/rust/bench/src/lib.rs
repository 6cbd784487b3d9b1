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

weir_udf::export!(add_one, trim_prefix);
