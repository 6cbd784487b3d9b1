//! Top-N in the logical plan: `SELECT ... FROM (SELECT ..., ROW_NUMBER() OVER (PARTITION BY k
//! ORDER BY o) AS rn FROM t) WHERE rn <= N`, Flink's form (and with `rn = 1`, its dedup).

use datafusion_common::ScalarValue;
use datafusion_expr::logical_plan::{Filter, Window};
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{
    BinaryExpr, Expr, LogicalPlan, Operator, SortExpr, WindowFunctionDefinition,
};

use super::translate::PlanError;

/// The `ROW_NUMBER()` window node (by address) whose number `filter` bounds, and the bound: the
/// most rows per key that pass.
pub(crate) fn limit_below(filter: &Filter) -> Option<(usize, usize)> {
    split_conjunction(&filter.predicate)
        .into_iter()
        .find_map(|conjunct| {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else {
                return None;
            };
            // `rn <op> n`, or `n <op> rn` turned around.
            let (column, op, bound) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) => (c, *op, v),
                (Expr::Literal(v, _), Expr::Column(c)) => (c, op.swap()?, v),
                _ => return None,
            };
            let bound = match bound {
                ScalarValue::Int64(Some(v)) => *v,
                ScalarValue::Int32(Some(v)) => i64::from(*v),
                ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok()?,
                _ => return None,
            };
            let limit = match op {
                Operator::LtEq => bound,
                Operator::Lt => bound - 1,
                Operator::Eq if bound == 1 => 1,
                _ => return None,
            };
            let limit = usize::try_from(limit).ok().filter(|&l| l > 0)?;
            let index = filter.input.schema().index_of_column(column).ok()?;
            let window = row_number_window(&filter.input, index)?;
            Some((std::ptr::from_ref(window) as usize, limit))
        })
}

/// The window node whose only function, `ROW_NUMBER()`, is column `index` of `plan`.
fn row_number_window(plan: &LogicalPlan, index: usize) -> Option<&Window> {
    match plan {
        LogicalPlan::Window(window) => (window.window_expr.len() == 1
            && index == window.input.schema().fields().len())
        .then_some(window),
        LogicalPlan::SubqueryAlias(alias) => row_number_window(&alias.input, index),
        LogicalPlan::Filter(filter) => row_number_window(&filter.input, index),
        LogicalPlan::Projection(projection) => {
            let inner = match projection.expr.get(index)? {
                Expr::Alias(alias) => alias.expr.as_ref(),
                other => other,
            };
            let Expr::Column(column) = inner else {
                return None;
            };
            let below = projection.input.schema().index_of_column(column).ok()?;
            row_number_window(&projection.input, below)
        }
        _ => None,
    }
}

/// The partition keys and order of a `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)`.
///
/// # Errors
/// Another window function, or no ORDER BY.
pub(crate) fn row_number(window: &Window) -> Result<(Vec<Expr>, Vec<SortExpr>), PlanError> {
    let unsupported = |what: &str| {
        PlanError::Unsupported(format!(
            "{what}: Weir runs OVER windows only as Top-N, ROW_NUMBER() OVER (PARTITION BY ... \
             ORDER BY ...) kept at most N by an outer WHERE"
        ))
    };
    let expr = match window.window_expr.first() {
        Some(Expr::Alias(alias)) => alias.expr.as_ref(),
        Some(other) => other,
        None => return Err(unsupported("an empty window")),
    };
    let Expr::WindowFunction(function) = expr else {
        return Err(unsupported(&expr.to_string()));
    };
    let is_row_number = matches!(&function.fun, WindowFunctionDefinition::WindowUDF(udf)
        if udf.name() == "row_number");
    if !is_row_number {
        return Err(unsupported(&function.fun.to_string()));
    }
    if function.params.order_by.is_empty() {
        return Err(PlanError::Unsupported(
            "ROW_NUMBER() needs an ORDER BY in its OVER clause: it says which rows come first"
                .into(),
        ));
    }
    Ok((
        function.params.partition_by.clone(),
        function.params.order_by.clone(),
    ))
}
