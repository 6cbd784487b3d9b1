"""Arrow buffers <-> Python lists, once per column per batch.

A column arrives as three byte strings (validity bitmap, 32-bit offsets, values), exactly as the
host lays them out. Decoding leans on C loops (`memoryview.cast`, `array`, `bytes.decode`, `int`
bit tricks) so that Python-level work per row is as small as it can be: Python bytecode costs
tens of nanoseconds per step inside the Wasm interpreter, C code a few.

Wasm is little-endian, so `array`/`memoryview` native order is Arrow's order.
"""

from __future__ import annotations

import array
import datetime
import itertools
import struct
from typing import Any, NamedTuple

from ._spec import Primitive, SqlType

_EPOCH_DATE_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_EPOCH = datetime.datetime(1970, 1, 1)
_MICROSECOND = datetime.timedelta(microseconds=1)
_UTC = datetime.UTC

# Fixed-width primitives and their `array` typecodes.
_TYPECODES = {
    Primitive.INT32: "i",
    Primitive.INT64: "q",
    Primitive.FLOAT32: "f",
    Primitive.FLOAT64: "d",
    Primitive.DATE32: "i",
    Primitive.TIMESTAMP_MICROS: "q",
}

_PYTHON_TYPES = {
    Primitive.BOOLEAN: "bool",
    Primitive.INT32: "int",
    Primitive.INT64: "int",
    Primitive.FLOAT32: "float",
    Primitive.FLOAT64: "float",
    Primitive.UTF8: "str",
    Primitive.BINARY: "bytes",
    Primitive.DATE32: "datetime.date",
    Primitive.TIMESTAMP_MICROS: "datetime.datetime",
}

_MAX_OFFSET = 2**31 - 1


class Buffers(NamedTuple):
    """One level of Arrow buffers, as in the WIT record `buffers`."""

    validity: bytes | None
    offsets: bytes
    values: bytes


class RawColumn(NamedTuple):
    """A column as it crosses the boundary, free of the generated WIT classes."""

    sql_type: SqlType
    length: int
    data: Buffers
    elements: Buffers | None = None


class ColumnError(ValueError):
    """A column is not what its type says, or a value does not fit its column.

    `row` is the row at fault, when one is.
    """

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.message = message
        self.row = row


# ---------------------------------------------------------------------------------------------
# Validity bitmaps


def validity_mask(bitmap: bytes | None, length: int) -> str | None:
    """The bitmap as a string of '1' (valid) and '0' (null), one character per row; None when
    no row is null. A string, because building it is one C call and testing `mask[i] == "1"`
    is cheap."""
    if bitmap is None or length == 0:
        return None
    if len(bitmap) * 8 < length:
        raise ColumnError(f"validity bitmap holds {len(bitmap) * 8} bits for {length} rows")
    # Bit i of the little-endian integer is row i; reversed binary text puts row 0 first.
    bits = format(int.from_bytes(bitmap, "little"), "b")[::-1]
    mask = bits[:length].ljust(length, "0")
    return None if "0" not in mask else mask


def bitmap_from_mask(mask: str) -> bytes:
    """A validity (or boolean) bitmap from a '1'/'0' string, row 0 first."""
    if not mask:
        return b""
    return int(mask[::-1], 2).to_bytes((len(mask) + 7) // 8, "little")


def _null_positions(values: list) -> str | None:
    if None not in values:
        return None
    return "".join(["0" if v is None else "1" for v in values])


# ---------------------------------------------------------------------------------------------
# Decoding


def _offsets(raw: bytes, length: int, limit: int | None) -> list[int]:
    """The offsets of `length` rows; with `limit`, checked against the size of what they index."""
    if len(raw) % 4:
        raise ColumnError(f"offsets buffer of {len(raw)} bytes is not 32-bit offsets")
    offsets = memoryview(raw).cast("B").cast("i").tolist() if raw else [0]
    if len(offsets) != length + 1:
        raise ColumnError(f"{len(offsets)} offsets for {length} rows (expected {length + 1})")
    if offsets[0] < 0 or (limit is not None and offsets[-1] > limit):
        raise ColumnError("offsets point outside the values buffer")
    return offsets


def _date_of(days: int) -> datetime.date:
    return datetime.date.fromordinal(_EPOCH_DATE_ORDINAL + days)


def _timestamp_of(micros: int) -> datetime.datetime:
    return _EPOCH + micros * _MICROSECOND


def _temporal(values: list[int], convert, what: str) -> list[Any]:
    """Dates or timestamps; a value beyond Python's years 1 to 9999 is an error naming its row."""
    try:
        return [convert(v) for v in values]
    except (OverflowError, ValueError):
        for row, value in enumerate(values):
            try:
                convert(value)
            except (OverflowError, ValueError):
                raise ColumnError(
                    f"{what} {value} is outside Python's datetime range (years 1 to 9999)", row
                ) from None
        raise


def _decode_values(primitive: Primitive, length: int, buffers: Buffers) -> list[Any]:
    """The values of a column, nulls not yet applied."""
    if length == 0:
        return []
    if primitive in _TYPECODES:
        raw = memoryview(buffers.values).cast("B")
        width = array.array(_TYPECODES[primitive]).itemsize
        if len(raw) < length * width:
            raise ColumnError(f"values buffer holds {len(raw)} bytes for {length} rows")
        values = raw[: length * width].cast(_TYPECODES[primitive]).tolist()
        if primitive is Primitive.DATE32:
            return _temporal(values, _date_of, "date")
        if primitive is Primitive.TIMESTAMP_MICROS:
            return _temporal(values, _timestamp_of, "timestamp")
        return values
    if primitive is Primitive.BOOLEAN:
        if len(buffers.values) * 8 < length:
            raise ColumnError(f"boolean bitmap holds {len(buffers.values) * 8} bits for {length}")
        bits = format(int.from_bytes(buffers.values, "little"), "b")[::-1].ljust(length, "0")
        return [b == "1" for b in bits[:length]]
    if primitive is Primitive.UTF8:
        data = buffers.values
        offsets = _offsets(buffers.offsets, length, len(data))
        try:
            if data.isascii():
                # One decode for the whole buffer; byte offsets are character offsets.
                text = data.decode("ascii")
                return [text[a:b] for a, b in itertools.pairwise(offsets)]
            return [data[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]
        except UnicodeDecodeError as e:
            raise ColumnError(f"a string is not valid UTF-8: {e}") from e
    if primitive is Primitive.BINARY:
        data = buffers.values
        offsets = _offsets(buffers.offsets, length, len(data))
        return [data[a:b] for a, b in itertools.pairwise(offsets)]
    if primitive is Primitive.NULL:
        return [None] * length
    raise ColumnError(f"unsupported column type {primitive!r}")


def decode(column: RawColumn) -> tuple[list[Any], str | None]:
    """A column's values as a list (None where null), and its validity mask (None if no nulls)."""
    sql_type, length = column.sql_type, column.length
    mask = validity_mask(column.data.validity, length)
    if sql_type.is_list:
        if column.elements is None:
            raise ColumnError("a list column without element buffers")
        offsets = _offsets(column.data.offsets, length, None)
        count = offsets[-1]
        elements, _ = decode(RawColumn(SqlType(sql_type.primitive), count, column.elements))
        values: list[Any] = [elements[a:b] for a, b in itertools.pairwise(offsets)]
    else:
        values = _decode_values(sql_type.primitive, length, column.data)
    if mask is not None:
        values = [v if m == "1" else None for v, m in zip(values, mask)]
    return values, mask


# ---------------------------------------------------------------------------------------------
# Encoding


def _wrong_value(values: list, check, primitive: Primitive) -> ColumnError:
    """Finds the first value that `check` refuses, for a message naming its row."""
    expected = _PYTHON_TYPES.get(primitive, primitive.name)
    for row, value in enumerate(values):
        try:
            check(value)
        except (TypeError, ValueError, OverflowError, AttributeError, struct.error) as e:
            return ColumnError(
                f"value {value!r} ({type(value).__name__}) does not fit {SqlType(primitive)} "
                f"(a Python {expected}): {e}",
                row,
            )
    return ColumnError(f"values do not fit {SqlType(primitive)}")


def _to_date32(value: Any) -> int:
    if isinstance(value, datetime.datetime) or not isinstance(value, datetime.date):
        raise TypeError("expected a datetime.date")
    return value.toordinal() - _EPOCH_DATE_ORDINAL


def _to_micros(value: Any) -> int:
    if not isinstance(value, datetime.datetime):
        raise TypeError("expected a datetime.datetime")
    if value.tzinfo is not None:
        value = value.astimezone(_UTC).replace(tzinfo=None)
    return (value - _EPOCH) // _MICROSECOND


def _encode_values(primitive: Primitive, values: list[Any]) -> Buffers:
    """Buffers for non-null `values` (nulls already replaced by a placeholder)."""
    if primitive in _TYPECODES:
        code = _TYPECODES[primitive]
        if primitive is Primitive.DATE32:
            try:
                values = [_to_date32(v) for v in values]
            except (TypeError, AttributeError):
                raise _wrong_value(values, _to_date32, primitive) from None
        elif primitive is Primitive.TIMESTAMP_MICROS:
            try:
                values = [_to_micros(v) for v in values]
            except (TypeError, AttributeError, OverflowError):
                raise _wrong_value(values, _to_micros, primitive) from None
        # struct.pack converts about twice as fast as array() inside the component.
        try:
            data = struct.pack(f"<{len(values)}{code}", *values)
        except (struct.error, TypeError, OverflowError):
            check = struct.Struct(f"<{code}").pack
            raise _wrong_value(values, check, primitive) from None
        return Buffers(None, b"", data)
    if primitive is Primitive.BOOLEAN:
        if not set(map(type, values)) <= {bool}:
            raise _wrong_value(values, _is_bool, primitive)
        return Buffers(None, b"", bitmap_from_mask("".join(["1" if v else "0" for v in values])))
    if primitive is Primitive.UTF8:
        try:
            encoded = [v.encode("utf-8") for v in values]
        except (AttributeError, UnicodeEncodeError):
            raise _wrong_value(values, _utf8, primitive) from None
        return _variable(encoded)
    if primitive is Primitive.BINARY:
        if not set(map(type, values)) <= {bytes}:
            if not all(isinstance(v, (bytes, bytearray, memoryview)) for v in values):
                raise _wrong_value(values, _is_bytes, primitive)
            values = [bytes(v) for v in values]
        return _variable(values)
    if primitive is Primitive.NULL:
        return Buffers(None, b"", b"")
    raise ColumnError(f"unsupported column type {primitive!r}")


def _is_bool(value: Any) -> None:
    if type(value) is not bool:
        raise TypeError("expected a bool")


def _is_bytes(value: Any) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("expected bytes")


def _utf8(value: Any) -> None:
    if type(value) is not str:
        raise TypeError("expected a str")
    value.encode("utf-8")


def _variable(encoded: list[bytes]) -> Buffers:
    offsets = array.array("i")
    total = sum(map(len, encoded))
    if total > _MAX_OFFSET:
        raise ColumnError(f"a column of {total} bytes exceeds Arrow's 2 GiB offsets")
    offsets.extend(itertools.accumulate(map(len, encoded), initial=0))
    return Buffers(None, offsets.tobytes(), b"".join(encoded))


_PLACEHOLDERS = {
    Primitive.BOOLEAN: False,
    Primitive.INT32: 0,
    Primitive.INT64: 0,
    Primitive.FLOAT32: 0.0,
    Primitive.FLOAT64: 0.0,
    Primitive.UTF8: "",
    Primitive.BINARY: b"",
    Primitive.DATE32: datetime.date(1970, 1, 1),
    Primitive.TIMESTAMP_MICROS: _EPOCH,
    Primitive.NULL: None,
}


def encode(sql_type: SqlType, values: list[Any], nullable: bool = True) -> RawColumn:
    """A column from Python values (None for null). With `nullable=False`, a None is an error
    naming its row."""
    if not sql_type.is_list:
        try:
            # Without a null: one conversion, no scan for None. A None fails it like any misfit
            # would, and is dealt with below.
            return RawColumn(sql_type, len(values), _encode_values(sql_type.primitive, values))
        except ColumnError:
            if None not in values:
                raise
    mask = _null_positions(values)
    if mask is not None:
        if not nullable:
            row = mask.index("0")
            raise ColumnError(f"returned None, but the result type {sql_type} is not Optional", row)
        placeholder = [] if sql_type.is_list else _PLACEHOLDERS[sql_type.primitive]
        values = [placeholder if v is None else v for v in values]
    length = len(values)
    if sql_type.is_list:
        for row, value in enumerate(values):
            if not isinstance(value, (list, tuple)):
                raise ColumnError(
                    f"value {value!r} ({type(value).__name__}) does not fit {sql_type} "
                    "(a Python list)",
                    row,
                )
        flat = [e for v in values for e in v]
        try:
            elements = encode(SqlType(sql_type.primitive), flat).data
        except ColumnError as e:
            # Name the row holding the bad element, not the element's position.
            ends = itertools.accumulate(map(len, values))
            row = next((i for i, end in enumerate(ends) if e.row is not None and e.row < end), None)
            raise ColumnError(e.message, row) from None
        lengths = array.array("i", itertools.accumulate(map(len, values), initial=0))
        if lengths[-1] > _MAX_OFFSET:
            raise ColumnError("a list column exceeds Arrow's 2 GiB offsets")
        data = Buffers(None, lengths.tobytes(), b"")
        column = RawColumn(sql_type, length, data, elements)
    else:
        column = RawColumn(sql_type, length, _encode_values(sql_type.primitive, values))
    if mask is not None:
        data = column.data._replace(validity=bitmap_from_mask(mask))
        column = column._replace(data=data)
    return column
