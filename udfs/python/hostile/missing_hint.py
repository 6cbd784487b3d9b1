"""Test-only: a parameter without a type hint, refused by the build naming it."""

from weir_udf import scalar


@scalar
def to_usd(price) -> float:
    return price / 100.0
