"""Test-only: a module with a syntax error, refused by the build with its file and line."""
from weir_udf import scalar

@scalar
def to_usd(price: int) -> float
    return price / 100.0
