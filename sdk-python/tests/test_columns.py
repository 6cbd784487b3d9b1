"""Arrow buffers <-> Python values."""

import array
import datetime

import pytest
from weir_udf._columns import (
    Buffers,
    ColumnError,
    RawColumn,
    bitmap_from_mask,
    decode,
    encode,
    validity_mask,
)
from weir_udf._spec import Primitive, SqlType

T = SqlType


def round_trip(sql_type, values):
    column = encode(sql_type, values)
    assert column.length == len(values)
    decoded, _ = decode(column)
    return decoded


@pytest.mark.parametrize(
    ("sql_type", "values"),
    [
        (T(Primitive.INT64), [1, None, -(2**63), 2**63 - 1, 0]),
        (T(Primitive.INT32), [7, None, -(2**31)]),
        (T(Primitive.FLOAT64), [1.5, None, float("inf"), -0.0]),
        (T(Primitive.FLOAT32), [0.5, None, 2.0]),
        (T(Primitive.BOOLEAN), [True, False, None, True] * 5),
        (T(Primitive.UTF8), ["a", None, "", "héllo wörld", "日本", "🦀"]),
        (T(Primitive.UTF8), ["ascii", "only"]),
        (T(Primitive.BINARY), [b"\x00\xff", None, b""]),
        (T(Primitive.DATE32), [datetime.date(1970, 1, 1), datetime.date(2024, 2, 29), None]),
        (
            T(Primitive.TIMESTAMP_MICROS),
            [datetime.datetime(2024, 1, 2, 3, 4, 5, 6), None, datetime.datetime(1969, 12, 31)],
        ),
        (T(Primitive.INT64, is_list=True), [[1, 2], None, [], [3]]),
        (T(Primitive.UTF8, is_list=True), [["a", "bc"], [], None]),
    ],
)
def test_round_trip(sql_type, values):
    assert round_trip(sql_type, values) == values


def test_empty_column():
    assert round_trip(T(Primitive.UTF8), []) == []
    assert round_trip(T(Primitive.INT64), []) == []


def test_layout_is_arrow():
    column = encode(T(Primitive.INT64), [1, None, 3])
    assert column.data.values == array.array("q", [1, 0, 3]).tobytes()
    assert column.data.validity == bytes([0b101])
    strings = encode(T(Primitive.UTF8), ["ab", "", "c"])
    assert strings.data.offsets == array.array("i", [0, 2, 2, 3]).tobytes()
    assert strings.data.values == b"abc"
    assert strings.data.validity is None


def test_validity_mask():
    assert validity_mask(None, 3) is None
    assert validity_mask(bytes([0b111]), 3) is None  # all valid
    assert validity_mask(bytes([0b01, 0b1]), 9) == "100000001"
    assert bitmap_from_mask("100000001") == bytes([0b01, 0b1])
    with pytest.raises(ColumnError, match="bits for 9 rows"):
        validity_mask(bytes([0xFF]), 9)


def test_aware_timestamps_become_utc():
    tz = datetime.timezone(datetime.timedelta(hours=2))
    column = encode(T(Primitive.TIMESTAMP_MICROS), [datetime.datetime(2024, 1, 1, 2, tzinfo=tz)])
    assert decode(column)[0] == [datetime.datetime(2024, 1, 1)]


@pytest.mark.parametrize(
    ("sql_type", "values", "row"),
    [
        (T(Primitive.INT64), [1, 2, "three"], 2),
        (T(Primitive.INT64), [1, 2.5], 1),
        (T(Primitive.INT64), [2**64], 0),
        (T(Primitive.UTF8), ["a", 5], 1),
        (T(Primitive.BOOLEAN), [True, 1], 1),
        (T(Primitive.DATE32), [datetime.date.today(), "2024-01-01"], 1),
        (T(Primitive.INT64, is_list=True), [[1], [2, "x"]], 1),
    ],
)
def test_a_value_of_the_wrong_type_names_its_row(sql_type, values, row):
    with pytest.raises(ColumnError) as caught:
        encode(sql_type, values)
    assert caught.value.row == row


def test_none_in_a_non_nullable_result_names_its_row():
    with pytest.raises(ColumnError, match="not Optional") as caught:
        encode(T(Primitive.INT64), [1, None], nullable=False)
    assert caught.value.row == 1


def test_malformed_buffers_are_errors_not_crashes():
    bad_offsets = RawColumn(T(Primitive.UTF8), 2, Buffers(None, b"\0\0\0\0", b"ab"))
    with pytest.raises(ColumnError, match="offsets"):
        decode(bad_offsets)
    short = RawColumn(T(Primitive.INT64), 2, Buffers(None, b"", b"\0" * 8))
    with pytest.raises(ColumnError, match="values buffer"):
        decode(short)
    invalid_utf8 = RawColumn(
        T(Primitive.UTF8), 1, Buffers(None, array.array("i", [0, 1]).tobytes(), b"\xff")
    )
    with pytest.raises(ColumnError, match="UTF-8"):
        decode(invalid_utf8)
