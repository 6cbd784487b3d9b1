"""Type hints to `weir:udf` signatures, and the objects the decorators produce.

Nothing here touches Wasm: a decorated function stays a plain Python function (or class), so its
author tests it with pytest. The build reads the `__weir__` attribute the decorators attach.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import inspect
import types
import typing
from enum import IntEnum

__all__ = [
    "DefinitionError",
    "Float32",
    "FunctionDef",
    "Int32",
    "Primitive",
    "SqlType",
    "aggregate",
    "functions_of",
    "scalar",
    "table",
]


class Primitive(IntEnum):
    """The element types of a column; values are those of the WIT enum `primitive-type`."""

    NULL = 0
    BOOLEAN = 1
    INT32 = 2
    INT64 = 3
    FLOAT32 = 4
    FLOAT64 = 5
    UTF8 = 6
    BINARY = 7
    DATE32 = 8
    TIMESTAMP_MICROS = 9


_SQL_NAMES = {
    Primitive.NULL: "NULL",
    Primitive.BOOLEAN: "BOOLEAN",
    Primitive.INT32: "INT",
    Primitive.INT64: "BIGINT",
    Primitive.FLOAT32: "FLOAT",
    Primitive.FLOAT64: "DOUBLE",
    Primitive.UTF8: "VARCHAR",
    Primitive.BINARY: "VARBINARY",
    Primitive.DATE32: "DATE",
    Primitive.TIMESTAMP_MICROS: "TIMESTAMP(6)",
}


@dataclasses.dataclass(frozen=True)
class SqlType:
    """A column type: a primitive, or a list of one primitive."""

    primitive: Primitive
    is_list: bool = False

    def __str__(self) -> str:
        name = _SQL_NAMES[self.primitive]
        return f"ARRAY<{name}>" if self.is_list else name


@dataclasses.dataclass(frozen=True)
class _Wire:
    """Marks an `Annotated` hint with the primitive it crosses the boundary as."""

    primitive: Primitive


Int32 = typing.Annotated[int, _Wire(Primitive.INT32)]
"""A 32-bit SQL `INT` (a plain `int` hint is a `BIGINT`)."""

Float32 = typing.Annotated[float, _Wire(Primitive.FLOAT32)]
"""A 32-bit SQL `FLOAT` (a plain `float` hint is a `DOUBLE`)."""

# `bool` before `int` does not matter here: lookups are by identity, not isinstance.
_PLAIN = {
    bool: Primitive.BOOLEAN,
    int: Primitive.INT64,
    float: Primitive.FLOAT64,
    str: Primitive.UTF8,
    bytes: Primitive.BINARY,
    datetime.date: Primitive.DATE32,
    datetime.datetime: Primitive.TIMESTAMP_MICROS,
}

_SUPPORTED = (
    "int, float, str, bytes, bool, datetime.datetime, datetime.date, weir_udf.Int32, "
    "weir_udf.Float32, list[...] of those, and Optional[...] of any of them"
)


class DefinitionError(TypeError):
    """A function cannot become a Weir function: a missing or unsupported hint, a bad option.

    The message names the function and, where one is at fault, the parameter.
    """


@dataclasses.dataclass(frozen=True)
class Param:
    """One argument or result: its name, type, and whether it takes (or may give) None."""

    name: str
    sql_type: SqlType
    optional: bool


@dataclasses.dataclass(frozen=True)
class FunctionDef:
    """What `describe` reports for one function, and how to call it."""

    name: str
    kind: str  # "scalar" | "table" | "aggregate"
    params: tuple[Param, ...]
    results: tuple[Param, ...]
    deterministic: bool
    target: typing.Any
    batch: bool = False
    tuple_rows: bool = False
    retract: bool = False
    merge: bool = False

    def signature(self) -> str:
        """The SQL-style signature `weir inspect` prints for the same function."""
        args = ", ".join(f"{p.name} {p.sql_type}" for p in self.params)
        if self.kind == "table":
            cols = ", ".join(f"{r.name} {r.sql_type}" for r in self.results)
            return f"{self.name}({args}) -> TABLE({cols})"
        return f"{self.name}({args}) -> {self.results[0].sql_type}"


def _unwrap_optional(hint: typing.Any) -> tuple[typing.Any, bool]:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) == 1 and len(members) < len(typing.get_args(hint)):
            return members[0], True
    return hint, False


def _primitive(hint: typing.Any) -> Primitive | None:
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, _Wire):
                return extra.primitive
        return _primitive(base)
    if isinstance(hint, type):
        return _PLAIN.get(hint)
    return None


def _sql_type(hint: typing.Any) -> tuple[SqlType, bool] | None:
    """The SQL type of a hint and whether it is Optional; None when unsupported."""
    inner, optional = _unwrap_optional(hint)
    if typing.get_origin(inner) in (list, typing.List):  # noqa: UP006
        (element,) = typing.get_args(inner) or (None,)
        element, _ = _unwrap_optional(element)
        primitive = _primitive(element)
        if primitive is None:
            return None
        return SqlType(primitive, is_list=True), optional
    primitive = _primitive(inner)
    if primitive is None:
        return None
    return SqlType(primitive), optional


def _describe_hint(hint: typing.Any) -> str:
    if isinstance(hint, type):
        return hint.__qualname__
    return repr(hint)


def _hints(target: typing.Any, function: str) -> dict[str, typing.Any]:
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception as e:  # a forward reference that does not resolve, a typo in a hint
        raise DefinitionError(f"function `{function}`: cannot read its type hints: {e}") from e


def _params(target: typing.Any, function: str, skip: int = 0) -> tuple[Param, ...]:
    """The parameters of `target` after the first `skip` (self, state), typed from its hints."""
    hints = _hints(target, function)
    signature = inspect.signature(target)
    params = []
    for parameter in list(signature.parameters.values())[skip:]:
        where = f"function `{function}`, parameter `{parameter.name}`"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise DefinitionError(f"{where}: *args and **kwargs cannot be SQL arguments")
        if parameter.name not in hints:
            raise DefinitionError(f"{where}: missing type hint (one of {_SUPPORTED})")
        typed = _sql_type(hints[parameter.name])
        if typed is None:
            raise DefinitionError(
                f"{where}: unsupported type hint `{_describe_hint(hints[parameter.name])}` "
                f"(supported: {_SUPPORTED})"
            )
        params.append(Param(parameter.name, typed[0], typed[1]))
    return tuple(params)


def _result(hint: typing.Any, function: str, what: str, name: str = "result") -> Param:
    typed = _sql_type(hint)
    if typed is None:
        raise DefinitionError(
            f"function `{function}`, {what}: unsupported type hint `{_describe_hint(hint)}` "
            f"(supported: {_SUPPORTED})"
        )
    return Param(name, typed[0], typed[1])


def _return_hint(target: typing.Any, function: str, what: str = "return value") -> typing.Any:
    hints = _hints(target, function)
    if "return" not in hints:
        raise DefinitionError(f"function `{function}`, {what}: missing return type hint")
    return hints["return"]


def _check_name(name: typing.Any, function: str) -> str:
    if not isinstance(name, str) or not name or not name.isidentifier():
        raise DefinitionError(f"function `{function}`: name {name!r} is not a valid SQL name")
    return name


def _attach(target: typing.Any, definition: FunctionDef) -> typing.Any:
    target.__weir__ = definition
    return target


def _decorator(build: typing.Callable[..., FunctionDef], target: typing.Any, options: dict):
    """Supports both `@scalar` and `@scalar(name=...)`."""
    if target is not None:
        return _attach(target, build(target, **options))
    return lambda t: _attach(t, build(t, **options))


def _function_parts(
    decorator: str, function: typing.Any, name: str | None
) -> tuple[str, tuple[Param, ...], typing.Any]:
    """A decorated function's SQL name, parameters and return hint."""
    if not callable(function) or isinstance(function, type):
        raise DefinitionError(f"@{decorator} goes on a function, not on {function!r}")
    label = _check_name(name or function.__name__, name or function.__name__)
    return label, _params(function, label), _return_hint(function, label)


def _build_scalar(
    function: typing.Any, name: str | None = None, deterministic: bool = True, batch: bool = False
) -> FunctionDef:
    label, params, hint = _function_parts("scalar", function, name)
    if batch:
        # A batch function takes list[T] per argument and returns list[T]: the element types
        # are the SQL types.
        element_params = []
        for p in params:
            if not p.sql_type.is_list:
                raise DefinitionError(
                    f"function `{label}`, parameter `{p.name}`: a batch=True function takes a "
                    f"list[...] per argument (one column), got {p.sql_type}"
                )
            element_params.append(Param(p.name, SqlType(p.sql_type.primitive), True))
        inner, _ = _unwrap_optional(hint)
        if typing.get_origin(inner) not in (list, typing.List):  # noqa: UP006
            raise DefinitionError(
                f"function `{label}`, return value: a batch=True function returns a list[...]"
            )
        (element,) = typing.get_args(inner) or (None,)
        result = _result(element, label, "return value")
        return FunctionDef(
            label, "scalar", tuple(element_params), (result,), deterministic, function, batch=True
        )
    result = _result(hint, label, "return value")
    return FunctionDef(label, "scalar", params, (result,), deterministic, function)


_ITERABLES = (
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.Sequence,
    list,
    tuple,
)


def _build_table(
    function: typing.Any,
    name: str | None = None,
    columns: typing.Sequence[str] | None = None,
    deterministic: bool = True,
) -> FunctionDef:
    label, params, hint = _function_parts("table", function, name)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin not in _ITERABLES or not args or (origin is tuple and args[-1] is not Ellipsis):
        raise DefinitionError(
            f"function `{label}`, return value: a table function returns Iterator[row] "
            f"(or Iterable, Generator, list); got `{_describe_hint(hint)}`"
        )
    row = args[0]
    tuple_rows = typing.get_origin(row) is tuple
    if tuple_rows:
        row_types = typing.get_args(row)
        if not row_types or row_types[-1] is Ellipsis:
            raise DefinitionError(
                f"function `{label}`, return value: a row is tuple[T1, T2, ...] with one type "
                "per column"
            )
    else:
        row_types = (row,)
    if columns is None:
        names = [f"f{i}" for i in range(len(row_types))]
    else:
        names = list(columns)
        if len(names) != len(row_types):
            raise DefinitionError(
                f"function `{label}`: {len(names)} column names for rows of {len(row_types)} values"
            )
    results = tuple(
        _result(t, label, f"column `{n}`", n) for n, t in zip(names, row_types, strict=True)
    )
    return FunctionDef(
        label, "table", params, results, deterministic, function, tuple_rows=tuple_rows
    )


def _build_aggregate(
    cls: typing.Any, name: str | None = None, deterministic: bool = True
) -> FunctionDef:
    if not isinstance(cls, type):
        raise DefinitionError(f"@aggregate goes on a class, not on {cls!r}")
    label = name or cls.__name__
    _check_name(label, label)
    for required in ("create", "accumulate", "finish"):
        if not callable(getattr(cls, required, None)):
            raise DefinitionError(f"aggregate `{label}`: the class has no `{required}` method")
    # accumulate(self, state, *args): the SQL arguments follow the state.
    params = _params(cls.accumulate, label, skip=2)
    finish_hint = _return_hint(cls.finish, label, "finish")
    result = _result(finish_hint, label, "the return value of finish")
    retract = callable(getattr(cls, "retract", None))
    if retract:
        retract_params = _params(cls.retract, label, skip=2)
        if [p.sql_type for p in retract_params] != [p.sql_type for p in params]:
            raise DefinitionError(
                f"aggregate `{label}`: retract must take the same arguments as accumulate"
            )
    merge = callable(getattr(cls, "merge", None))
    return FunctionDef(
        label, "aggregate", params, (result,), deterministic, cls, retract=retract, merge=merge
    )


def scalar(
    function: typing.Any = None,
    *,
    name: str | None = None,
    deterministic: bool = True,
    batch: bool = False,
):
    """A scalar function: one value per row.

    Type hints give the SQL signature. A parameter that is not `Optional` never sees None: a row
    with a null there gets a null result without a call. `batch=True` calls the function once per
    batch with one list per argument (None for nulls) and expects a list of results back.
    """
    return _decorator(
        _build_scalar, function, {"name": name, "deterministic": deterministic, "batch": batch}
    )


def table(
    function: typing.Any = None,
    *,
    name: str | None = None,
    columns: typing.Sequence[str] | None = None,
    deterministic: bool = True,
):
    """A table function: zero or more rows per input row, from a generator or an iterable.

    A row is one value, or a tuple with one value per column; `columns` names the columns
    (default f0, f1, ...).
    """
    return _decorator(
        _build_table, function, {"name": name, "columns": columns, "deterministic": deterministic}
    )


def aggregate(cls: typing.Any = None, *, name: str | None = None, deterministic: bool = True):
    """An aggregate function, on a class with `create`, `accumulate`, `finish`, and optionally
    `retract` and `merge`.

    `create(self)` returns a fresh state; `accumulate(self, state, *args)` and
    `retract(self, state, *args)` return the new state; `merge(self, left, right)` returns one
    state; `finish(self, state)` returns the result. A state is made of plain Python values
    (numbers, strings, bytes, tuples, lists, dicts, None), which the SDK serializes: the host
    stores it.
    """
    return _decorator(_build_aggregate, cls, {"name": name, "deterministic": deterministic})


def functions_of(module: types.ModuleType) -> list[FunctionDef]:
    """The Weir functions defined (or imported) at the top level of `module`, in definition
    order: the order `describe` reports them in."""
    found: list[FunctionDef] = []
    seen: set[int] = set()
    for value in vars(module).values():
        definition = getattr(value, "__weir__", None)
        if isinstance(definition, FunctionDef) and id(value) not in seen:
            seen.add(id(value))
            found.append(definition)
    names = [f.name for f in found]
    for name in names:
        if names.count(name) > 1:
            raise DefinitionError(f"two functions are named `{name}`; give one another name=")
    return found
