//! Flink's SQL types as Arrow types, for `CREATE TABLE` columns.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion_sql::sqlparser::ast::{DataType as SqlDataType, ExactNumberInfo, TimezoneInfo};

/// The Arrow type of a declared column type, or a message saying what is supported.
pub fn arrow_type(sql: &SqlDataType) -> Result<DataType, String> {
    use SqlDataType as S;
    Ok(match sql {
        S::Boolean | S::Bool => DataType::Boolean,
        S::TinyInt(_) => DataType::Int8,
        S::SmallInt(_) => DataType::Int16,
        S::Int(_) | S::Integer(_) => DataType::Int32,
        S::BigInt(_) | S::Int64 => DataType::Int64,
        S::Real => DataType::Float32,
        S::Float(ExactNumberInfo::Precision(p)) if *p <= 24 => DataType::Float32,
        S::Float(_) | S::Double(_) | S::DoublePrecision | S::Float64 => DataType::Float64,
        S::Decimal(info) => {
            let (precision, scale) = match info {
                ExactNumberInfo::None => (10, 0),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            let precision = u8::try_from(precision)
                .ok()
                .filter(|p| (1..=38).contains(p))
                .ok_or_else(|| format!("DECIMAL precision {precision} is outside 1..38"))?;
            let scale = i8::try_from(scale)
                .ok()
                .filter(|s| *s >= 0 && (*s as u8) <= precision)
                .ok_or_else(|| format!("DECIMAL scale {scale} is outside 0..{precision}"))?;
            DataType::Decimal128(precision, scale)
        }
        S::Char(_) | S::Varchar(_) | S::String(_) | S::Text => DataType::Utf8,
        S::Binary(_) | S::Varbinary(_) | S::Bytes(_) | S::Bytea | S::Blob(_) => DataType::Binary,
        S::Date => DataType::Date32,
        S::Time(_, _) => DataType::Time64(TimeUnit::Microsecond),
        S::Timestamp(precision, zone) => timestamp(
            *precision,
            matches!(zone, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz),
        )?,
        S::TimestampNtz(precision) | S::Datetime(precision) => timestamp(*precision, false)?,
        S::Custom(name, args) => {
            let name = name.to_string().to_ascii_uppercase();
            let precision = match args.as_slice() {
                [] => None,
                [p] => Some(
                    p.parse::<u64>()
                        .map_err(|_| format!("{name}({p}): precision must be a number"))?,
                ),
                _ => return Err(format!("{name} takes at most one argument")),
            };
            match name.as_str() {
                "TIMESTAMP_LTZ" => timestamp(precision, true)?,
                "STRING" => DataType::Utf8,
                "BYTES" => DataType::Binary,
                _ => return Err(unsupported(sql)),
            }
        }
        _ => return Err(unsupported(sql)),
    })
}

fn unsupported(sql: &SqlDataType) -> String {
    format!(
        "unsupported column type {sql} (supported: BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, \
         DOUBLE, DECIMAL(p, s), STRING/VARCHAR/CHAR, BYTES/VARBINARY, DATE, TIME, TIMESTAMP(p), \
         TIMESTAMP_LTZ(p))"
    )
}

/// Flink's TIMESTAMP defaults to precision 6; the precision picks the Arrow unit.
fn timestamp(precision: Option<u64>, local_zone: bool) -> Result<DataType, String> {
    let unit = match precision.unwrap_or(6) {
        0 => TimeUnit::Second,
        1..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        7..=9 => TimeUnit::Nanosecond,
        p => return Err(format!("TIMESTAMP precision {p} is outside 0..9")),
    };
    Ok(DataType::Timestamp(unit, local_zone.then(|| "UTC".into())))
}

/// The Flink SQL name of an Arrow type, for messages (Arrow's own name where Flink has none).
pub fn sql_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Decimal128(precision, scale) => format!("DECIMAL({precision}, {scale})"),
        DataType::Timestamp(unit, zone) => {
            let precision = match unit {
                arrow::datatypes::TimeUnit::Second => 0,
                arrow::datatypes::TimeUnit::Millisecond => 3,
                arrow::datatypes::TimeUnit::Microsecond => 6,
                arrow::datatypes::TimeUnit::Nanosecond => 9,
            };
            if zone.is_some() {
                format!("TIMESTAMP_LTZ({precision})")
            } else {
                format!("TIMESTAMP({precision})")
            }
        }
        other => other.to_string(),
    }
}
