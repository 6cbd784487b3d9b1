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
