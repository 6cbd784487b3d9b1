"""Money helpers, the Python twin of udfs/rust/currency: `to_usd`, `count_char`."""

from weir_udf import scalar


@scalar
def to_usd(price: int) -> float:
    """Cents to US dollars."""
    # A float divisor converts `price` first, as Rust's `price as f64 / 100.0` does; `price / 100`
    # would divide exactly and round once, a different answer beyond 2**53.
    return price / 100.0


@scalar
def count_char(s: str, c: str) -> int:
    """How many times the single character `c` occurs in `s`."""
    if len(c) != 1:
        raise ValueError(f"count_char expects a single character, got {c!r}")
    return s.count(c)
