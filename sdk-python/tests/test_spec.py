"""Decorators and the mapping from type hints to SQL signatures."""

import datetime
from collections.abc import Iterator
from typing import Optional

import pytest
from weir_udf import DefinitionError, Float32, Int32, aggregate, scalar, table
from weir_udf._spec import Primitive, SqlType


def test_scalar_stays_a_plain_function():
    @scalar
    def to_usd(price: int) -> float:
        return price / 100.0

    assert to_usd(250) == 2.5
    spec = to_usd.__weir__
    assert spec.kind == "scalar"
    assert spec.signature() == "to_usd(price BIGINT) -> DOUBLE"
    assert spec.deterministic


def test_every_supported_hint_maps_to_its_sql_type():
    @scalar(name="all_types", deterministic=False)
    def f(
        a: bool,
        b: int,
        c: float,
        d: str,
        e: bytes,
        g: datetime.date,
        h: datetime.datetime,
        i: Int32,
        j: Float32,
        k: list[int],
        m: Optional[str],
        n: str | None,
    ) -> Optional[list[float]]:
        return None

    spec = f.__weir__
    assert spec.name == "all_types"
    assert not spec.deterministic
    types = [str(p.sql_type) for p in spec.params]
    assert types == [
        "BOOLEAN",
        "BIGINT",
        "DOUBLE",
        "VARCHAR",
        "VARBINARY",
        "DATE",
        "TIMESTAMP(6)",
        "INT",
        "FLOAT",
        "ARRAY<BIGINT>",
        "VARCHAR",
        "VARCHAR",
    ]
    assert [p.optional for p in spec.params][-3:] == [False, True, True]
    assert spec.results[0].sql_type == SqlType(Primitive.FLOAT64, is_list=True)
    assert spec.results[0].optional


def test_missing_parameter_hint_names_function_and_parameter():
    with pytest.raises(DefinitionError, match=r"function `f`, parameter `y`: missing type hint"):

        @scalar
        def f(x: int, y) -> int:
            return x


def test_unsupported_hint_names_function_parameter_and_type():
    with pytest.raises(
        DefinitionError, match=r"function `f`, parameter `x`: unsupported type hint `dict`"
    ):

        @scalar
        def f(x: dict) -> int:
            return 0


def test_missing_return_hint_is_an_error():
    with pytest.raises(DefinitionError, match=r"function `f`, return value: missing return"):

        @scalar
        def f(x: int):
            return x


def test_unsupported_return_hint_is_an_error():
    with pytest.raises(DefinitionError, match=r"function `f`, return value: unsupported"):

        @scalar
        def f(x: int) -> complex:
            return x


def test_star_args_are_refused():
    with pytest.raises(DefinitionError, match=r"parameter `rest`: \*args"):

        @scalar
        def f(*rest: int) -> int:
            return 0


def test_table_rows_and_column_names():
    @table(columns=["position", "segment"])
    def segments(url: str) -> Iterator[tuple[Int32, str]]:
        yield (1, url)

    spec = segments.__weir__
    assert spec.signature() == "segments(url VARCHAR) -> TABLE(position INT, segment VARCHAR)"
    assert spec.tuple_rows
    assert list(segments("a")) == [(1, "a")]


def test_table_single_column_defaults_to_f0():
    @table
    def words(s: str) -> list[str]:
        return s.split()

    assert words.__weir__.signature() == "words(s VARCHAR) -> TABLE(f0 VARCHAR)"
    assert not words.__weir__.tuple_rows


def test_table_column_count_must_match():
    with pytest.raises(DefinitionError, match="1 column names for rows of 2 values"):

        @table(columns=["a"])
        def f(s: str) -> Iterator[tuple[int, str]]:
            yield (1, s)


def test_table_needs_an_iterable_return():
    with pytest.raises(DefinitionError, match="returns Iterator"):

        @table
        def f(s: str) -> int:
            return 1


def test_aggregate_signature_and_capabilities():
    @aggregate(name="my_sum")
    class MySum:
        def create(self):
            return 0

        def accumulate(self, state, value: int):
            return state + value

        def finish(self, state) -> int:
            return state

    spec = MySum.__weir__
    assert spec.signature() == "my_sum(value BIGINT) -> BIGINT"
    assert (spec.retract, spec.merge) == (False, False)
    agg = MySum()
    assert agg.finish(agg.accumulate(agg.accumulate(agg.create(), 2), 3)) == 5


def test_aggregate_needs_its_methods():
    with pytest.raises(DefinitionError, match="has no `finish` method"):

        @aggregate
        class Broken:
            def create(self):
                return 0

            def accumulate(self, state, value: int):
                return state


def test_aggregate_retract_must_match_accumulate():
    with pytest.raises(DefinitionError, match="retract must take the same arguments"):

        @aggregate
        class Broken:
            def create(self):
                return 0

            def accumulate(self, state, value: int):
                return state

            def retract(self, state, value: str):
                return state

            def finish(self, state) -> int:
                return state


def test_batch_scalar_takes_lists():
    @scalar(batch=True)
    def plus(xs: list[int], ys: list[int]) -> list[Optional[int]]:
        return [None if x is None or y is None else x + y for x, y in zip(xs, ys)]

    spec = plus.__weir__
    assert spec.batch
    assert spec.signature() == "plus(xs BIGINT, ys BIGINT) -> BIGINT"


def test_batch_scalar_refuses_scalar_parameters():
    with pytest.raises(DefinitionError, match="parameter `x`: a batch=True function takes"):

        @scalar(batch=True)
        def f(x: int) -> list[int]:
            return [x]


def test_bad_name_is_refused():
    with pytest.raises(DefinitionError, match="is not a valid SQL name"):

        @scalar(name="no spaces")
        def f(x: int) -> int:
            return x
