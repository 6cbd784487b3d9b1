"""The per-batch loops behind `describe`, `call-scalar`, `call-table` and the aggregate calls.

Pure Python over `RawColumn`s, so pytest exercises it without Wasm; `_guest` only translates the
generated WIT classes to and from these. Each call decodes every column once, calls the user's
function once per row (or once per batch), and encodes the result once.

Rules shared with the Rust SDK: a row with a null in a parameter that is not `Optional` is
skipped (scalar: null result; table: no rows; aggregate: not accumulated); an exception in a row
becomes an error carrying that row's index and the Python message.
"""

from __future__ import annotations

import itertools
import marshal
import pickle
from typing import Any

from ._columns import ColumnError, RawColumn, decode, encode
from ._spec import FunctionDef, Param, Primitive, SqlType

_STATE_TYPE = SqlType(Primitive.BINARY)

# A state is one tag byte and a body. Flat states (a scalar, or a tuple of scalars: the common
# shapes) use marshal at format version 4, stable since Python 3.4 and about twice as fast as
# pickle here; anything else (lists, dicts, bytearrays, named tuples, classes) uses pickle, which
# keeps exact types. Both formats load in later Pythons, so states in a checkpoint outlive an
# upgrade of the SDK or of componentize-py's interpreter.
_MARSHAL, _PICKLE = b"M", b"P"
_MARSHAL_VERSION = 4
_PICKLE_PROTOCOL = 5
_FLAT = frozenset({int, float, str, bytes, bool, type(None)})


def _encode_state(state: Any) -> bytes:
    kind = type(state)
    if kind in _FLAT or (kind is tuple and set(map(type, state)) <= _FLAT):
        return _MARSHAL + marshal.dumps(state, _MARSHAL_VERSION)
    return _PICKLE + pickle.dumps(state, _PICKLE_PROTOCOL)


def _decode_state(data: bytes) -> Any:
    tag, body = data[:1], memoryview(data)[1:]
    if tag == _MARSHAL:
        return marshal.loads(body)
    if tag == _PICKLE:
        return pickle.loads(body)
    raise ValueError(f"unknown state tag {tag!r}")


class CallError(Exception):
    """A failed call: the message for the host, and the input row at fault when one is."""

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.message = message
        self.row = row


def _python_message(e: BaseException) -> str:
    text = str(e)
    message = f"{type(e).__name__}: {text}" if text else type(e).__name__
    if isinstance(e, ConnectionError) or type(e).__name__ in ("gaierror", "herror"):
        message += " (the sandbox grants no network access)"
    elif isinstance(e, (PermissionError, FileNotFoundError, IsADirectoryError)):
        message += " (the sandbox grants no filesystem access)"
    elif isinstance(e, MemoryError):
        message += " (the instance reached its memory cap)"
    elif isinstance(e, ImportError):
        message += (
            " (a component holds only the modules imported when it was built: import this one "
            "at the top of the module; C extensions and packages outside the standard library "
            "that are not pure Python cannot be bundled)"
        )
    return message


def _check_args(fn: FunctionDef, columns: list[RawColumn], num_rows: int) -> None:
    if len(columns) != len(fn.params):
        raise CallError(f"{fn.name} takes {len(fn.params)} arguments, got {len(columns)}")
    for param, column in zip(fn.params, columns):
        if column.sql_type != param.sql_type:
            raise CallError(
                f"argument `{param.name}` is {param.sql_type}, got a {column.sql_type} column"
            )
        if column.length != num_rows:
            raise CallError(
                f"argument `{param.name}` has {column.length} rows, the batch {num_rows}"
            )


def _decode_args(
    fn: FunctionDef, columns: list[RawColumn], num_rows: int
) -> tuple[list[list[Any]], list[bool] | None]:
    """Each argument's values, and which rows to call (None: every row)."""
    _check_args(fn, columns, num_rows)
    values = []
    keep = None  # an int whose bit i (from the left, as in the masks) says row i is called
    for param, column in zip(fn.params, columns):
        try:
            decoded, mask = decode(column)
        except ColumnError as e:
            raise CallError(f"argument `{param.name}`: {e.message}", e.row) from None
        values.append(decoded)
        if mask is not None and not param.optional:
            bits = int(mask, 2)
            keep = bits if keep is None else keep & bits
    if keep is None:
        return values, None
    selected = format(keep, f"0{num_rows}b")
    return values, list(map("1".__eq__, selected))


def _result_error(fn: FunctionDef, e: ColumnError, rows: list[int] | None) -> CallError:
    """A result that does not fit its column, named by the input row that produced it."""
    row = e.row if rows is None or e.row is None else rows[e.row]
    return CallError(f"{e.message}", row)


class _RowFailure(Exception):
    def __init__(self, error: Exception, row: int | None):
        self.error = error
        self.row = row


def _call_each(fn: FunctionDef, target: Any, args: list[list[Any]], count: int) -> list[Any]:
    """`target` on each row of `args`; a failure carries the row it happened at."""
    if not args:
        args = [[()] * count]
        target = _no_arguments(target)
    if fn.deterministic:
        # A comprehension calls a Python function without leaving the interpreter loop, a third
        # cheaper per row than map() here, but loses the row of a failure: a deterministic
        # function fails again at the same row when run once more the slow way.
        try:
            if len(args) == 1:
                return [target(a) for a in args[0]]
            if len(args) == 2:
                return [target(a, b) for a, b in zip(args[0], args[1])]
            return [target(*row) for row in zip(*args)]
        except Exception as e:
            first = e
    else:
        first = None
    out: list[Any] = []
    try:
        # extend keeps what map produced before an exception: its length is the failed row.
        out.extend(map(target, *args))
    except Exception as e:
        raise _RowFailure(e, len(out)) from None
    if first is not None:  # it did not fail again: report it without a row
        raise _RowFailure(first, None)
    return out


def _no_arguments(target: Any) -> Any:
    return lambda _unit: target()


def call_scalar(fn: FunctionDef, columns: list[RawColumn], num_rows: int) -> RawColumn:
    """One result per row."""
    values, selected = _decode_args(fn, columns, num_rows)
    result = fn.results[0]
    target = fn.target
    if fn.batch:
        return _call_vectorized(fn, values, num_rows)
    if selected is None:
        rows = None
        args = values
    else:
        rows = [i for i, s in enumerate(selected) if s]
        args = [list(itertools.compress(v, selected)) for v in values]
    count = num_rows if rows is None else len(rows)
    try:
        out = _call_each(fn, target, args, count)
    except _RowFailure as failure:
        failed = failure.row if rows is None or failure.row is None else rows[failure.row]
        raise CallError(_python_message(failure.error), failed) from None
    if rows is not None:
        if not result.optional and None in out:
            at = out.index(None)
            raise CallError(
                f"returned None, but its return type {result.sql_type} is not Optional", rows[at]
            )
        produced = iter(out)
        out = [next(produced) if s else None for s in selected]
        try:
            return encode(result.sql_type, out)
        except ColumnError as e:
            raise _result_error(fn, e, None) from None
    try:
        return encode(result.sql_type, out, nullable=result.optional)
    except ColumnError as e:
        raise _result_error(fn, e, None) from None


def _call_vectorized(fn: FunctionDef, values: list[list[Any]], num_rows: int) -> RawColumn:
    result = fn.results[0]
    try:
        out = fn.target(*values)
    except Exception as e:
        raise CallError(_python_message(e)) from None
    try:
        out = list(out)
    except TypeError:
        raise CallError(
            f"{fn.name} (batch=True) returned {type(out).__name__}, not a list of {num_rows}"
        ) from None
    if len(out) != num_rows:
        raise CallError(f"{fn.name} (batch=True) returned {len(out)} values for {num_rows} rows")
    try:
        return encode(result.sql_type, out, nullable=result.optional)
    except ColumnError as e:
        raise _result_error(fn, e, None) from None


def _row_tuples(fn: FunctionDef, rows: list[Any], row_index: list[int]) -> list[list[Any]]:
    """Output rows to columns, checking each row's shape."""
    width = len(fn.results)
    if not fn.tuple_rows:
        return [rows]
    if set(map(type, rows)) <= {tuple, list} and set(map(len, rows)) <= {width}:
        return [list(c) for c in zip(*rows)] if rows else [[] for _ in range(width)]
    for k, row in enumerate(rows):
        if not isinstance(row, (tuple, list)) or len(row) != width:
            raise CallError(
                f"{fn.name} produced {row!r}, not a tuple of {width} values", row_index[k]
            )
    raise CallError(f"{fn.name} produced rows of the wrong shape")


def call_table(
    fn: FunctionDef, columns: list[RawColumn], num_rows: int
) -> tuple[list[int], list[RawColumn]]:
    """Zero or more rows per input row, each with the index of the row it came from."""
    values, selected = _decode_args(fn, columns, num_rows)
    target = fn.target
    args_of = zip(*values) if values else itertools.repeat((), num_rows)
    calls = zip(range(num_rows), args_of)
    if selected is not None:
        calls = itertools.compress(calls, selected)
    rows: list[Any] = []
    row_index: list[int] = []
    row = 0
    try:
        for row, args in calls:
            before = len(rows)
            rows.extend(target(*args))
            row_index.extend(itertools.repeat(row, len(rows) - before))
    except Exception as e:
        raise CallError(_python_message(e), row) from None
    out = []
    for param, column_values in zip(fn.results, _row_tuples(fn, rows, row_index)):
        try:
            out.append(encode(param.sql_type, column_values, nullable=param.optional))
        except ColumnError as e:
            message = f"column `{param.name}`: {e.message}"
            raise _result_error(fn, ColumnError(message, e.row), row_index) from None
    return row_index, out


# ---------------------------------------------------------------------------------------------
# Aggregates: states are serialized plain values (see _encode_state) in a binary column the host
# owns.

_instances: dict[int, Any] = {}


def _instance(fn: FunctionDef) -> Any:
    """One instance of the aggregate's class per component instance."""
    key = id(fn)
    if key not in _instances:
        try:
            _instances[key] = fn.target()
        except Exception as e:
            raise CallError(f"cannot create {fn.target.__name__}(): {e}") from None
    return _instances[key]


def _load_states(fn: FunctionDef, states: RawColumn) -> list[Any]:
    if states.sql_type != _STATE_TYPE:
        raise CallError(f"states must be a VARBINARY column, got {states.sql_type}")
    try:
        encoded, mask = decode(states)
    except ColumnError as e:
        raise CallError(f"states: {e.message}") from None
    if mask is not None:
        raise CallError(f"state {mask.index('0')} is null; states are never null")
    try:
        return [_decode_state(b) for b in encoded]
    except Exception as e:
        raise CallError(f"a state is not one this function wrote: {e}") from None


def _store_states(fn: FunctionDef, states: list[Any]) -> RawColumn:
    try:
        return encode(_STATE_TYPE, [_encode_state(s) for s in states])
    except Exception as e:
        raise CallError(
            f"cannot serialize a state ({_python_message(e)}); states are plain "
            "values: numbers, strings, bytes, tuples, lists, dicts, None"
        ) from None


def aggregate_create(fn: FunctionDef) -> bytes:
    """A fresh state, serialized."""
    instance = _instance(fn)
    try:
        state = instance.create()
    except Exception as e:
        raise CallError(f"create: {_python_message(e)}") from None
    return _store_states(fn, [state]).data.values


def aggregate_update(
    fn: FunctionDef,
    columns: list[RawColumn],
    num_rows: int,
    groups: list[int],
    states: RawColumn,
    retract: bool = False,
) -> RawColumn:
    """Accumulates (or retracts) each row into the state of its group."""
    if retract and not fn.retract:
        raise CallError(f"{fn.name} cannot retract: its class has no `retract` method")
    values, selected = _decode_args(fn, columns, num_rows)
    live = _load_states(fn, states)
    if len(groups) != num_rows:
        raise CallError(f"{len(groups)} group indexes for {num_rows} rows")
    if groups and (min(groups) < 0 or max(groups) >= len(live)):
        raise CallError(f"a group index is outside the {len(live)} states")
    instance = _instance(fn)
    update = instance.retract if retract else instance.accumulate
    rows: Any = range(num_rows)
    if selected is not None:
        rows = list(itertools.compress(rows, selected))
        groups = list(itertools.compress(groups, selected))
        values = [list(itertools.compress(v, selected)) for v in values]
    row = -1
    try:
        # One loop per arity: unpacking into names is much cheaper per row than `*args`.
        if len(values) == 1:
            for row, group, a in zip(rows, groups, values[0]):
                live[group] = update(live[group], a)
        elif len(values) == 2:
            for row, group, a, b in zip(rows, groups, values[0], values[1]):
                live[group] = update(live[group], a, b)
        elif len(values) == 3:
            for row, group, a, b, c in zip(rows, groups, *values):
                live[group] = update(live[group], a, b, c)
        else:
            for row, group, *args in zip(rows, groups, *values):
                live[group] = update(live[group], *args)
    except Exception as e:
        step = "retract" if retract else "accumulate"
        raise CallError(f"{step}: {_python_message(e)}", row) from None
    return _store_states(fn, live)


def aggregate_merge(fn: FunctionDef, left: RawColumn, right: RawColumn) -> RawColumn:
    """`merge(left[i], right[i])` for every i."""
    if not fn.merge:
        raise CallError(f"{fn.name} cannot merge: its class has no `merge` method")
    lefts, rights = _load_states(fn, left), _load_states(fn, right)
    if len(lefts) != len(rights):
        raise CallError(f"merge of {len(lefts)} states with {len(rights)}")
    merge = _instance(fn).merge
    merged: list[Any] = []
    try:
        merged.extend(map(merge, lefts, rights))
    except Exception as e:
        raise CallError(f"merge: {_python_message(e)}", len(merged)) from None
    return _store_states(fn, merged)


def aggregate_finish(fn: FunctionDef, states: RawColumn) -> RawColumn:
    """The result of each state."""
    finish = _instance(fn).finish
    live = _load_states(fn, states)
    out: list[Any] = []
    try:
        out.extend(map(finish, live))
    except Exception as e:
        raise CallError(f"finish: {_python_message(e)}", len(out)) from None
    result: Param = fn.results[0]
    try:
        return encode(result.sql_type, out, nullable=result.optional)
    except ColumnError as e:
        raise _result_error(fn, e, None) from None
