"""The per-batch loops, end to end over raw columns, without Wasm."""

import datetime
from collections.abc import Iterator
from typing import Optional

import pytest
from weir_udf import Int32, aggregate, scalar, table
from weir_udf._columns import decode, encode
from weir_udf._engine import (
    CallError,
    aggregate_create,
    aggregate_finish,
    aggregate_merge,
    aggregate_update,
    call_scalar,
    call_table,
)
from weir_udf._spec import Primitive, SqlType

BIGINT = SqlType(Primitive.INT64)
DOUBLE = SqlType(Primitive.FLOAT64)
VARCHAR = SqlType(Primitive.UTF8)
VARBINARY = SqlType(Primitive.BINARY)

calls = []


@scalar
def plus_one(x: int) -> int:
    calls.append(x)
    return x + 1


@scalar
def describe_value(x: Optional[int]) -> str:
    return "null" if x is None else str(x)


@scalar
def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


@scalar
def returns_none(x: int) -> int:
    return None  # type: ignore[return-value]


@scalar
def returns_text(x: int) -> int:
    return "text" if x == 2 else x  # type: ignore[return-value]


@scalar
def no_args() -> int:
    return 7


@scalar(batch=True)
def batch_sum(xs: list[int], ys: list[int]) -> list[Optional[int]]:
    return [None if x is None or y is None else x + y for x, y in zip(xs, ys)]


def run_scalar(function, *columns, num_rows=None):
    raw = [encode(t, v) for t, v in columns]
    rows = num_rows if num_rows is not None else raw[0].length
    return decode(call_scalar(function.__weir__, raw, rows))[0]


def test_null_in_null_out_without_a_call():
    calls.clear()
    assert run_scalar(plus_one, (BIGINT, [1, None, 3, None])) == [2, None, 4, None]
    assert calls == [1, 3]


def test_optional_parameters_see_none():
    assert run_scalar(describe_value, (BIGINT, [None, 5])) == ["null", "5"]


def test_exception_carries_the_row_and_the_python_message():
    with pytest.raises(CallError) as caught:
        run_scalar(fails_on_three, (BIGINT, [1, 2, 3, 4]))
    assert caught.value.row == 2
    assert caught.value.message == "ValueError: three is not allowed"


def test_exception_row_counts_skipped_null_rows():
    with pytest.raises(CallError) as caught:
        run_scalar(fails_on_three, (BIGINT, [None, None, 1, None, 3]))
    assert caught.value.row == 4


def test_none_from_a_non_optional_result_is_an_error():
    with pytest.raises(CallError, match="returned None") as caught:
        run_scalar(returns_none, (BIGINT, [None, 1]))
    assert caught.value.row == 1


def test_wrong_result_type_names_the_row():
    with pytest.raises(CallError, match="'text'") as caught:
        run_scalar(returns_text, (BIGINT, [None, 1, 2]))
    assert caught.value.row == 2


def test_no_argument_function_fills_every_row():
    assert run_scalar(no_args, num_rows=3) == [7, 7, 7]


def test_batch_function_gets_whole_columns():
    assert run_scalar(batch_sum, (BIGINT, [1, None, 3]), (BIGINT, [10, 20, None])) == [
        11,
        None,
        None,
    ]


def test_wrong_argument_type_is_an_error():
    with pytest.raises(CallError, match="argument `x` is BIGINT, got a VARCHAR column"):
        run_scalar(plus_one, (VARCHAR, ["a"]))


def test_large_batch():
    values = list(range(100_000))
    assert run_scalar(plus_one, (BIGINT, values)) == [v + 1 for v in values]


@table(columns=["position", "word"])
def words(s: str) -> Iterator[tuple[Int32, str]]:
    for i, w in enumerate(s.split()):
        if w == "boom":
            raise RuntimeError("boom")
        yield (i + 1, w)


@table
def bad_rows(s: str) -> Iterator[tuple[int, str]]:
    yield (1,)  # type: ignore[misc]


def test_table_rows_carry_their_input_row():
    column = encode(VARCHAR, ["a b", None, "", "c"])
    row_index, out = call_table(words.__weir__, [column], 4)
    assert row_index == [0, 0, 3]
    assert decode(out[0])[0] == [1, 2, 1]
    assert decode(out[1])[0] == ["a", "b", "c"]
    assert out[0].sql_type == SqlType(Primitive.INT32)


def test_table_exception_names_the_input_row():
    with pytest.raises(CallError, match="RuntimeError: boom") as caught:
        call_table(words.__weir__, [encode(VARCHAR, ["a", "x boom"])], 2)
    assert caught.value.row == 1


def test_table_row_of_the_wrong_shape():
    with pytest.raises(CallError, match="not a tuple of 2 values") as caught:
        call_table(bad_rows.__weir__, [encode(VARCHAR, ["a"])], 1)
    assert caught.value.row == 0


@aggregate(name="weighted_avg")
class WeightedAvg:
    def create(self):
        return (0.0, 0)

    def accumulate(self, state, value: float, weight: int):
        return (state[0] + value * weight, state[1] + weight)

    def retract(self, state, value: float, weight: int):
        return (state[0] - value * weight, state[1] - weight)

    def merge(self, left, right):
        return (left[0] + right[0], left[1] + right[1])

    def finish(self, state) -> Optional[float]:
        return state[0] / state[1] if state[1] else None


def states(fn, count):
    return encode(VARBINARY, [aggregate_create(fn)] * count)


def test_aggregate_accumulate_retract_merge_finish():
    fn = WeightedAvg.__weir__
    values = encode(DOUBLE, [1.0, 2.0, None, 4.0])
    weights = encode(BIGINT, [1, 1, 5, 2])
    groups = [0, 1, 0, 0]
    acc = aggregate_update(fn, [values, weights], 4, groups, states(fn, 2))
    assert decode(aggregate_finish(fn, acc))[0] == [3.0, 2.0]  # (1 + 8) / 3, 2 / 1
    retracted = aggregate_update(
        fn, [encode(DOUBLE, [4.0]), encode(BIGINT, [2])], 1, [0], acc, retract=True
    )
    assert decode(aggregate_finish(fn, retracted))[0] == [1.0, 2.0]
    merged = aggregate_merge(fn, acc, retracted)
    assert decode(aggregate_finish(fn, merged))[0] == [10.0 / 4, 2.0]
    assert decode(aggregate_finish(fn, states(fn, 1)))[0] == [None]


def test_aggregate_without_retract_refuses_it():
    @aggregate
    class Count:
        def create(self):
            return 0

        def accumulate(self, state, value: int):
            return state + 1

        def finish(self, state) -> int:
            return state

    fn = Count.__weir__
    with pytest.raises(CallError, match="cannot retract"):
        aggregate_update(fn, [encode(BIGINT, [1])], 1, [0], states(fn, 1), retract=True)
    with pytest.raises(CallError, match="cannot merge"):
        aggregate_merge(fn, states(fn, 1), states(fn, 1))


def test_aggregate_group_out_of_range_is_an_error():
    fn = WeightedAvg.__weir__
    args = [encode(DOUBLE, [1.0]), encode(BIGINT, [1])]
    with pytest.raises(CallError, match="outside the 1 states"):
        aggregate_update(fn, args, 1, [1], states(fn, 1))


def test_aggregate_state_that_is_not_a_state():
    fn = WeightedAvg.__weir__
    with pytest.raises(CallError, match="not one this function wrote"):
        aggregate_finish(fn, encode(VARBINARY, [b"garbage"]))


def test_a_timestamp_python_cannot_hold_names_its_row():
    import array

    from weir_udf._columns import Buffers, RawColumn

    @scalar
    def year(ts: datetime.datetime) -> int:
        return ts.year

    micros = array.array("q", [0, 2**62]).tobytes()
    column = RawColumn(SqlType(Primitive.TIMESTAMP_MICROS), 2, Buffers(None, b"", micros))
    with pytest.raises(CallError, match="outside Python's datetime range") as caught:
        call_scalar(year.__weir__, [column], 2)
    assert caught.value.row == 1


@pytest.mark.parametrize(
    "state",
    [
        (0.0, 0),
        (float("nan"), -(2**70), "é", b"\x00", None, True),
        42,
        bytearray(b"\x01\x02"),
        [1, (2, 3)],
        {"a": [1.5]},
        datetime.date(2024, 1, 1),
    ],
)
def test_states_keep_their_exact_value_and_type(state):
    from weir_udf._engine import _decode_state, _encode_state

    back = _decode_state(_encode_state(state))
    assert type(back) is type(state)
    assert repr(back) == repr(state)


def test_a_non_deterministic_function_fails_at_its_row_on_the_first_run():
    seen = []

    @scalar(deterministic=False)
    def flaky(x: int) -> int:
        seen.append(x)
        if x == 5:
            raise ValueError("five")
        return x

    with pytest.raises(CallError) as caught:
        run_scalar(flaky, (BIGINT, list(range(10))))
    assert caught.value.row == 5
    assert seen == [0, 1, 2, 3, 4, 5]  # not run twice


@scalar
def two_args(a: int, b: int) -> int:
    if a == b:
        raise ValueError("equal")
    return a - b


@scalar
def three_args(a: int, b: int, c: int) -> int:
    return a + b + c


def test_multi_argument_fast_paths_and_their_failure_rows():
    assert run_scalar(two_args, (BIGINT, [3, 1]), (BIGINT, [1, 2])) == [2, -1]
    with pytest.raises(CallError) as caught:
        run_scalar(two_args, (BIGINT, [3, 4, 7]), (BIGINT, [1, 2, 7]))
    assert caught.value.row == 2
    assert run_scalar(three_args, (BIGINT, [1]), (BIGINT, [2]), (BIGINT, [3])) == [6]
