//! Flink functions that DataFusion lacks under Flink's name.

use arrow::datatypes::DataType;
use datafusion_common::{Result as DfResult, plan_err};
use datafusion_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

/// `MOD(a, b)`: the remainder of `a / b`, as `a % b` (Nexmark q2 writes it so).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Mod {
    signature: Signature,
}

impl Default for Mod {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Mod {
    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let [a, b] = arg_types else {
            return plan_err!("MOD takes two arguments");
        };
        let common = if a.is_integer() && b.is_integer() {
            DataType::Int64
        } else if (a.is_numeric() || a.is_null()) && (b.is_numeric() || b.is_null()) {
            DataType::Float64
        } else {
            return plan_err!("MOD takes numbers, not {a} and {b}");
        };
        Ok(vec![common.clone(), common])
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Int64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let [a, b] = args.args.as_slice() else {
            return plan_err!("MOD takes two arguments");
        };
        let a = a.to_array(rows)?;
        let b = b.to_array(rows)?;
        Ok(ColumnarValue::Array(arrow::compute::kernels::numeric::rem(
            &a, &b,
        )?))
    }
}

/// `ROW_NUMBER()` for planning only: Weir runs `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY
/// ...)` under `WHERE rn <= N` as a Top-N operator (`plan::translate`), never through
/// DataFusion's window evaluation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RowNumber {
    signature: datafusion_expr::Signature,
}

impl Default for RowNumber {
    fn default() -> Self {
        Self {
            signature: datafusion_expr::Signature::nullary(datafusion_expr::Volatility::Immutable),
        }
    }
}

impl datafusion_expr::WindowUDFImpl for RowNumber {
    fn name(&self) -> &str {
        "row_number"
    }

    fn signature(&self) -> &datafusion_expr::Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: datafusion_expr::function::PartitionEvaluatorArgs,
    ) -> DfResult<Box<dyn datafusion_expr::PartitionEvaluator>> {
        datafusion_common::not_impl_err!(
            "ROW_NUMBER() runs only as Top-N: filter on it (WHERE rn <= N)"
        )
    }

    fn field(
        &self,
        args: datafusion_expr::function::WindowUDFFieldArgs,
    ) -> DfResult<arrow::datatypes::FieldRef> {
        Ok(std::sync::Arc::new(arrow::datatypes::Field::new(
            args.name(),
            arrow::datatypes::DataType::Int64,
            false,
        )))
    }
}

/// `PROCTIME()`: the processing time, Flink's `TIMESTAMP_LTZ(3)`, the same for every row of a
/// batch. A window over it fires by the wall clock (`plan::window`, `runtime::window_aggregate`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ProcTime {
    signature: Signature,
}

/// What `PROCTIME()` returns.
pub fn proctime_type() -> DataType {
    DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into()))
}

impl Default for ProcTime {
    fn default() -> Self {
        Self {
            signature: Signature::nullary(Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for ProcTime {
    fn name(&self) -> &str {
        "proctime"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(proctime_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Ok(ColumnarValue::Scalar(
            datafusion_common::ScalarValue::TimestampMillisecond(Some(now), Some("UTC".into())),
        ))
    }
}

/// `DATE_FORMAT(timestamp, 'yyyy-MM-dd HH:mm:ss')`: Flink's (Java's) date pattern letters
/// `yyyy`, `yy`, `MM`, `dd`, `HH`, `mm`, `ss`, `SSS`; other letters are refused, anything in
/// quotes or not a letter is copied.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DateFormat {
    signature: Signature,
}

impl Default for DateFormat {
    fn default() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// A Java date pattern as a chrono format string.
fn chrono_pattern(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted text, '' being a quote.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                out.push(chars[i]);
                i += 1;
            }
            if i + 1 < chars.len() && chars[i + 1] == '\'' {
                out.push('\'');
            }
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        let spec = match (c, run) {
            ('y', 4) => "%Y",
            ('y', 2) => "%y",
            ('M', 2) => "%m",
            ('d', 2) => "%d",
            ('H', 2) => "%H",
            ('m', 2) => "%M",
            ('s', 2) => "%S",
            ('S', 3) => "%3f",
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "pattern letters '{}' are not supported by DATE_FORMAT (yyyy, yy, MM, dd, \
                     HH, mm, ss, SSS are)",
                    c.to_string().repeat(run)
                ));
            }
            ('%', _) => "%%",
            _ => {
                out.extend(std::iter::repeat_n(c, run));
                i += run;
                continue;
            }
        };
        out.push_str(spec);
        i += run;
    }
    Ok(out)
}

impl ScalarUDFImpl for DateFormat {
    fn name(&self) -> &str {
        "date_format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [
                DataType::Timestamp(..) | DataType::Date32,
                DataType::Utf8 | DataType::Utf8View,
            ] => Ok(DataType::Utf8),
            _ => plan_err!("DATE_FORMAT takes a TIMESTAMP and a pattern STRING"),
        }
    }

    fn return_field_from_args(
        &self,
        args: datafusion_expr::ReturnFieldArgs,
    ) -> DfResult<arrow::datatypes::FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let data_type = self.return_type(&types)?;
        // A bad pattern is a planning error, not a failure halfway through the data.
        if let Some(Some(pattern)) = args.scalar_arguments.get(1)
            && let Some(Some(pattern)) = pattern.try_as_str()
            && let Err(message) = chrono_pattern(pattern)
        {
            return plan_err!("{message}");
        }
        Ok(std::sync::Arc::new(arrow::datatypes::Field::new(
            self.name(),
            data_type,
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [value, pattern] = args.args.as_slice() else {
            return plan_err!("DATE_FORMAT takes two arguments");
        };
        let ColumnarValue::Scalar(pattern) = pattern else {
            return plan_err!("DATE_FORMAT's pattern must be a constant");
        };
        let Some(pattern) = pattern.try_as_str().flatten() else {
            return plan_err!("DATE_FORMAT's pattern must be a STRING");
        };
        let format = chrono_pattern(pattern).map_err(datafusion_common::DataFusionError::Plan)?;
        let values = value.to_array(args.number_rows)?;
        let options = arrow::util::display::FormatOptions::default()
            .with_timestamp_format(Some(&format))
            .with_timestamp_tz_format(Some(&format))
            .with_date_format(Some(&format));
        let formatter = arrow::util::display::ArrayFormatter::try_new(values.as_ref(), &options)?;
        let strings: arrow::array::StringArray = (0..values.len())
            .map(|i| {
                (!arrow::array::Array::is_null(values.as_ref(), i))
                    .then(|| formatter.value(i).to_string())
            })
            .collect();
        Ok(ColumnarValue::Array(std::sync::Arc::new(strings)))
    }
}

#[cfg(test)]
mod tests {
    use super::chrono_pattern;

    #[test]
    fn java_date_patterns_become_chrono_formats() {
        assert_eq!(chrono_pattern("yyyy-MM-dd").as_deref(), Ok("%Y-%m-%d"));
        assert_eq!(chrono_pattern("HH:mm").as_deref(), Ok("%H:%M"));
        assert_eq!(
            chrono_pattern("yyyy-MM-dd'T'HH:mm:ss.SSS").as_deref(),
            Ok("%Y-%m-%dT%H:%M:%S.%3f")
        );
        assert!(chrono_pattern("EEE").is_err());
    }
}
