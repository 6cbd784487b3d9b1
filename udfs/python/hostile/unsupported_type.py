"""Test-only: a hint the SDK cannot map to SQL, refused by the build naming it."""

from weir_udf import scalar


@scalar
def tag_count(tags: set[str]) -> int:
    return len(tags)
