//! Money helpers: `to_usd(cents bigint) -> double`, `count_char(s varchar, c varchar) -> bigint`.

use weir_udf::{Error, scalar};

/// Cents to US dollars.
#[scalar]
fn to_usd(price: i64) -> f64 {
    price as f64 / 100.0
}

/// How many times the single character `c` occurs in `s`.
#[scalar]
fn count_char(s: &str, c: &str) -> Result<i64, Error> {
    let mut chars = c.chars();
    match (chars.next(), chars.next()) {
        (Some(needle), None) => Ok(s.chars().filter(|&ch| ch == needle).count() as i64),
        _ => Err(Error::new(format!(
            "count_char expects a single character, got {c:?}"
        ))),
    }
}

weir_udf::export!(to_usd, count_char);
