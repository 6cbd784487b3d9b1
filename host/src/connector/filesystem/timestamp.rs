//! Text to TIMESTAMP for the line formats, with a fast path for the shapes files hold.
//!
//! Arrow's parser handles every shape (time zones, `Z`, fractions) through chrono and cost a tenth
//! of reading Nexmark bids from json. `YYYY-MM-DD[T ]hh:mm:ss[.fraction]`, what Flink and Weir
//! write, is parsed here directly; any other text goes to Arrow's parser, so every value means
//! what it meant before. A column of integers holds epoch values in the column's unit, as Arrow's
//! json reader reads a number.

use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{Array, ArrayRef, PrimitiveArray, StringArray};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{
    ArrowTimestampType, DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};

/// `strings` as a column of `data_type` (a `Timestamp`); an error names the first bad value.
pub(super) fn parse_column(
    strings: &StringArray,
    data_type: &DataType,
) -> Result<ArrayRef, String> {
    let DataType::Timestamp(unit, zone) = data_type else {
        return Err(format!("{data_type} is not a timestamp type"));
    };
    // A naive time is UTC in a column without a zone or in UTC; elsewhere only Arrow knows.
    let fast = zone
        .as_deref()
        .is_none_or(|z| matches!(z, "UTC" | "+00:00"));
    let zone: Tz = zone
        .as_deref()
        .unwrap_or("+00:00")
        .parse()
        .map_err(|e| format!("time zone of {data_type}: {e}"))?;
    let per_second = units_per_second(*unit);
    let mut values = Vec::with_capacity(strings.len());
    for index in 0..strings.len() {
        if strings.is_null(index) {
            values.push(0);
            continue;
        }
        let text = strings.value(index);
        let value = match fast.then(|| naive_utc(text.as_bytes())).flatten() {
            Some((seconds, nanos)) => in_unit(seconds, nanos, per_second),
            None => slow(text, *unit, &zone)?,
        };
        values.push(value.ok_or_else(|| format!("\"{text}\" is out of range for {data_type}"))?);
    }
    timestamp_array(data_type, values, strings.nulls().cloned())
}

/// A timestamp column of `data_type` (unit and zone) from values in its unit.
pub(super) fn timestamp_array(
    data_type: &DataType,
    values: Vec<i64>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, String> {
    fn typed<T: ArrowTimestampType>(
        data_type: &DataType,
        values: Vec<i64>,
        nulls: Option<NullBuffer>,
    ) -> ArrayRef {
        Arc::new(PrimitiveArray::<T>::new(values.into(), nulls).with_data_type(data_type.clone()))
    }
    Ok(match data_type {
        DataType::Timestamp(TimeUnit::Second, _) => {
            typed::<TimestampSecondType>(data_type, values, nulls)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            typed::<TimestampMillisecondType>(data_type, values, nulls)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            typed::<TimestampMicrosecondType>(data_type, values, nulls)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            typed::<TimestampNanosecondType>(data_type, values, nulls)
        }
        other => return Err(format!("{other} is not a timestamp type")),
    })
}

/// Seconds and nanoseconds since the epoch in units of which a second holds `per_second`
/// (rounded down), or `None` on overflow.
pub(super) fn in_unit(seconds: i64, nanos: u32, per_second: i64) -> Option<i64> {
    seconds
        .checked_mul(per_second)
        .and_then(|v| v.checked_add(i64::from(nanos) / (1_000_000_000 / per_second)))
}

pub(super) fn units_per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// Arrow's reading of `text`: an integer is an epoch value, anything else a date and time.
fn slow(text: &str, unit: TimeUnit, zone: &Tz) -> Result<Option<i64>, String> {
    if let Ok(epoch) = text.parse::<i64>() {
        return Ok(Some(epoch));
    }
    let time = string_to_datetime(zone, text)
        .map_err(|e| format!("failed to parse \"{text}\" as a timestamp: {}", message(e)))?;
    Ok(match unit {
        TimeUnit::Second => Some(time.timestamp()),
        TimeUnit::Millisecond => Some(time.timestamp_millis()),
        TimeUnit::Microsecond => Some(time.timestamp_micros()),
        TimeUnit::Nanosecond => time.timestamp_nanos_opt(),
    })
}

fn message(error: arrow::error::ArrowError) -> String {
    match error {
        arrow::error::ArrowError::ParseError(m) | arrow::error::ArrowError::CastError(m) => m,
        other => other.to_string(),
    }
}

/// Seconds since the epoch and nanoseconds of `YYYY-MM-DD[T ]hh:mm:ss[.d{1,9}]` read as UTC, or
/// `None` for any other shape or an invalid date or time (left to Arrow's parser to explain).
pub(super) fn naive_utc(text: &[u8]) -> Option<(i64, u32)> {
    let (date_time, fraction) = match text.get(19) {
        None if text.len() == 19 => (text, &[][..]),
        Some(b'.') if (21..=29).contains(&text.len()) => (&text[..19], &text[20..]),
        _ => return None,
    };
    let [
        y0,
        y1,
        y2,
        y3,
        b'-',
        mo0,
        mo1,
        b'-',
        d0,
        d1,
        b'T' | b' ',
        h0,
        h1,
        b':',
        mi0,
        mi1,
        b':',
        s0,
        s1,
    ] = *date_time
    else {
        return None;
    };
    let year = i64::from(digits(&[y0, y1, y2, y3])?);
    let month = digits(&[mo0, mo1])?;
    let day = digits(&[d0, d1])?;
    let (hour, minute, second) = (digits(&[h0, h1])?, digits(&[mi0, mi1])?, digits(&[s0, s1])?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let nanos = digits(fraction)? * 10u32.pow(9 - fraction.len() as u32);
    let seconds =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some((seconds, nanos))
}

/// The value of ASCII decimal digits (at most nine), or `None` if any byte is not one.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |value, &b| {
        b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
    })
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;

    fn millis(texts: &[Option<&str>]) -> Result<Vec<Option<i64>>, String> {
        let strings = StringArray::from(texts.to_vec());
        let column = parse_column(&strings, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let column = column
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("milliseconds");
        Ok(column.iter().collect())
    }

    #[test]
    fn the_fast_path_agrees_with_arrow_on_every_shape_it_takes() {
        let zone: Tz = "+00:00".parse().expect("utc");
        for text in [
            "1970-01-01 00:00:00",
            "2026-01-01T10:00:00.250",
            "2024-02-29 23:59:59.999999999",
            "1969-12-31 23:59:59.5",
            "0001-01-01T00:00:00",
            "9999-12-31 23:59:59.1",
            "2000-03-01 12:34:56.000001",
            "1900-02-28 00:00:00",
        ] {
            let (seconds, nanos) = naive_utc(text.as_bytes()).expect(text);
            let arrow = string_to_datetime(&zone, text).expect(text);
            assert_eq!(seconds, arrow.timestamp(), "{text}");
            assert_eq!(nanos, arrow.timestamp_subsec_nanos(), "{text}");
        }
    }

    #[test]
    fn other_shapes_and_invalid_dates_go_to_arrow() {
        for text in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.5+02:00",
            "2026-01-01",
            "2025-02-29 00:00:00",
            "2026-13-01 00:00:00",
            "2026-01-01 24:00:00",
            "2026-01-01 00:00:00.",
            "2026-01-01 00:00:00.1234567890",
            "2026-01-01x00:00:00",
            "２026-01-01 00:00:00",
        ] {
            assert_eq!(naive_utc(text.as_bytes()), None, "{text}");
        }
        assert_eq!(
            millis(&[
                Some("2026-01-01T00:00:00.5+02:00"),
                Some("2026-01-01"),
                Some("1700000000000")
            ]),
            Ok(vec![
                Some(1_767_218_400_500),
                Some(1_767_225_600_000),
                Some(1_700_000_000_000)
            ])
        );
    }

    #[test]
    fn nulls_stay_null_and_a_bad_value_is_named() {
        assert_eq!(
            millis(&[None, Some("2026-01-01 00:00:01.5")]),
            Ok(vec![None, Some(1_767_225_601_500)])
        );
        let error = millis(&[Some("2026-01-01 00:00:00"), Some("soon")]).expect_err("bad value");
        assert!(
            error.starts_with("failed to parse \"soon\" as a timestamp"),
            "{error}"
        );
        let error = millis(&[Some("2025-02-29 00:00:00")]).expect_err("no such day");
        assert!(error.contains("2025-02-29"), "{error}");
    }
}
