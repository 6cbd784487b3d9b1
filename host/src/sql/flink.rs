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
