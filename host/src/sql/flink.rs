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
