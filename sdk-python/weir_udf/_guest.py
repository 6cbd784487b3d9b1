"""The component's export of `weir:udf/functions`, over the bindings componentize-py generates.

Imported only inside a component build: `wit_world` exists there and nowhere else. Everything
with logic lives in `_engine`; this module converts the generated WIT classes to `RawColumn`s and
`CallError`s to the WIT `udf-error`.
"""

from __future__ import annotations

import array
from typing import Any

from componentize_py_types import Err
from wit_world.imports import types as wit

from . import _engine
from ._columns import Buffers, RawColumn
from ._spec import FunctionDef, Primitive, SqlType

_PRIMITIVES = {p: wit.PrimitiveType(p.value) for p in Primitive}
# Group and row indexes cross as 4-byte little-endian integers; 'I' is 4 bytes on wasm32.
_U32 = "I"


def _data_type(sql_type: SqlType) -> Any:
    primitive = _PRIMITIVES[sql_type.primitive]
    return wit.DataType_List(primitive) if sql_type.is_list else wit.DataType_Primitive(primitive)


def _from_wit(column: Any) -> RawColumn:
    data_type = column.data_type
    sql_type = SqlType(Primitive(data_type.value.value), isinstance(data_type, wit.DataType_List))
    data = column.data
    elements = column.elements
    return RawColumn(
        sql_type,
        column.len,
        Buffers(data.validity, data.offsets, data.values),
        None if elements is None else Buffers(elements.validity, elements.offsets, elements.values),
    )


def _buffers(buffers: Buffers) -> Any:
    return wit.Buffers(buffers.validity, buffers.offsets, buffers.values)


def _to_wit(column: RawColumn) -> Any:
    elements = None if column.elements is None else _buffers(column.elements)
    return wit.Column(_data_type(column.sql_type), column.length, _buffers(column.data), elements)


def _spec(fn: FunctionDef) -> Any:
    if fn.kind == "scalar":
        kind = wit.FunctionKind_Scalar()
    elif fn.kind == "table":
        kind = wit.FunctionKind_Table()
    else:
        kind = wit.FunctionKind_Aggregate(wit.AggregateCapabilities(fn.retract, fn.merge))
    return wit.FunctionSpec(
        fn.name,
        kind,
        [wit.Field(p.name, _data_type(p.sql_type)) for p in fn.params],
        [wit.Field(r.name, _data_type(r.sql_type)) for r in fn.results],
        fn.deterministic,
    )


def exports(functions: list[FunctionDef]) -> type:
    """The class componentize-py instantiates for the `functions` export."""

    def lookup(index: int, kind: str) -> FunctionDef:
        if index >= len(functions):
            raise Err(wit.UdfError(f"no function at index {index}", None))
        fn = functions[index]
        if fn.kind != kind:
            raise Err(wit.UdfError(f"{fn.name} is a {fn.kind} function, not {kind}", None))
        return fn

    def guarded(call):
        """Every failure leaves as a `udf-error`: an escaping exception would trap the
        instance and lose the message."""

        def run(self, index, *args):
            try:
                return call(index, *args)
            except Err:
                raise
            except _engine.CallError as e:
                raise Err(wit.UdfError(e.message, e.row)) from None
            except Exception as e:
                message = f"internal error in weir_udf: {type(e).__name__}: {e}"
                raise Err(wit.UdfError(message, None)) from None

        return run

    def _call_scalar(index, args):
        fn = lookup(index, "scalar")
        columns = [_from_wit(c) for c in args.columns]
        return _to_wit(_engine.call_scalar(fn, columns, args.num_rows))

    def _call_table(index, args):
        fn = lookup(index, "table")
        columns = [_from_wit(c) for c in args.columns]
        row_index, out = _engine.call_table(fn, columns, args.num_rows)
        rows = wit.Batch([_to_wit(c) for c in out], len(row_index))
        return wit.TableOutput(array.array(_U32, row_index).tobytes(), rows)

    def _aggregate_create(index):
        return _engine.aggregate_create(lookup(index, "aggregate"))

    def _update(index, args, groups, states, retract):
        fn = lookup(index, "aggregate")
        columns = [_from_wit(c) for c in args.columns]
        if len(groups) % 4:
            raise _engine.CallError(f"{len(groups)} bytes of group indexes: not 4 per row")
        indexes = memoryview(groups).cast("B").cast(_U32).tolist()
        out = _engine.aggregate_update(
            fn, columns, args.num_rows, indexes, _from_wit(states), retract
        )
        return _to_wit(out)

    def _aggregate_merge(index, left, right):
        fn = lookup(index, "aggregate")
        return _to_wit(_engine.aggregate_merge(fn, _from_wit(left), _from_wit(right)))

    def _aggregate_finish(index, states):
        fn = lookup(index, "aggregate")
        return _to_wit(_engine.aggregate_finish(fn, _from_wit(states)))

    specs = [_spec(fn) for fn in functions]

    class Functions:
        def describe(self):
            return specs

        call_scalar = guarded(_call_scalar)
        call_table = guarded(_call_table)
        aggregate_create = guarded(_aggregate_create)
        aggregate_accumulate = guarded(
            lambda index, args, groups, states: _update(index, args, groups, states, False)
        )
        aggregate_retract = guarded(
            lambda index, args, groups, states: _update(index, args, groups, states, True)
        )
        aggregate_merge = guarded(_aggregate_merge)
        aggregate_finish = guarded(_aggregate_finish)

    return Functions
