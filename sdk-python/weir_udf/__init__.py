"""Weir user functions in plain Python.

    from weir_udf import scalar

    @scalar
    def to_usd(price: int) -> float:
        return price / 100.0

Type hints give the SQL signature; the decorated function stays an ordinary function, so it is
tested with pytest like any other. `python -m weir_udf build module.py` (or `weir build
module.py`) turns the module into a `weir:udf` component with componentize-py.
"""

from ._spec import (
    DefinitionError,
    Float32,
    FunctionDef,
    Int32,
    SqlType,
    aggregate,
    functions_of,
    scalar,
    table,
)

__all__ = [
    "DefinitionError",
    "Float32",
    "FunctionDef",
    "Int32",
    "SqlType",
    "aggregate",
    "functions_of",
    "scalar",
    "table",
]
