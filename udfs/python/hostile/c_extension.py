"""Test-only: imports a C extension, which cannot exist inside the sandbox. Natively this import
works; the build fails where the module runs inside Wasm."""

import _ctypes  # noqa: F401

from weir_udf import scalar


@scalar
def identity(x: int) -> int:
    return x
