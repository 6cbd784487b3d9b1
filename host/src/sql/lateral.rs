//! Flink's lateral table functions: `t, LATERAL TABLE(f(x)) AS T(a, b)`, `CROSS JOIN LATERAL
//! TABLE(...)` and `LEFT JOIN LATERAL TABLE(...) ON TRUE`.
//!
//! DataFusion plans a lateral relation as a subquery that refers to the outer row. Weir's
//! relation planner turns `LATERAL f(x)` (the parser's form) into a [`TableFunctionCall`] leaf whose
//! arguments are outer references; [`rewrite`] then folds each join of an input with such a leaf
//! into one [`LateralTable`] node: per input batch, call the function once and join each output
//! row to the input row it came from.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{DFSchema, DFSchemaRef, Result as DfResult, ScalarValue, plan_err};
use datafusion_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion_expr::{
    Expr, ExprSchemable, Extension, JoinType, LogicalPlan, UserDefinedLogicalNodeCore,
};
use datafusion_sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, TableFactor};

use super::Catalog;
use crate::functions::WasmFunction;
use crate::udf::FunctionKind;

/// A registered table function, compared by identity (plan nodes must be `Eq` and `Hash`).
#[derive(Debug, Clone)]
pub struct FunctionRef(pub Arc<WasmFunction>);

impl PartialEq for FunctionRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for FunctionRef {}

impl PartialOrd for FunctionRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.0.sql_name.partial_cmp(&other.0.sql_name)
    }
}

impl Hash for FunctionRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.sql_name.hash(state);
    }
}

/// `f(args)` as a relation, before [`rewrite`] joins it to its input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableFunctionCall {
    pub function: FunctionRef,
    pub args: Vec<Expr>,
    pub schema: DFSchemaRef,
}

impl UserDefinedLogicalNodeCore for TableFunctionCall {
    fn name(&self) -> &str {
        "TableFunctionCall"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.args.clone()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "TableFunctionCall: {}({:?})",
            self.function.0.sql_name, self.args
        )
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        Ok(Self {
            function: self.function.clone(),
            args: exprs,
            schema: self.schema.clone(),
        })
    }
}

/// Each input row joined with the rows `function(args)` produced from it; with `outer`, an input
/// row that produced none is kept once with nulls (`LEFT JOIN ... ON TRUE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LateralTable {
    pub input: LogicalPlan,
    pub function: FunctionRef,
    /// Over the input's schema.
    pub args: Vec<Expr>,
    pub outer: bool,
    /// The input's columns, then the function's.
    pub schema: DFSchemaRef,
}

impl UserDefinedLogicalNodeCore for LateralTable {
    fn name(&self) -> &str {
        "LateralTable"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.args.clone()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let args: Vec<String> = self.args.iter().map(ToString::to_string).collect();
        write!(
            f,
            "LateralTable: {}{}({})",
            if self.outer { "left " } else { "" },
            self.function.0.sql_name,
            args.join(", ")
        )
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let Some(input) = inputs.pop() else {
            return plan_err!("LateralTable needs one input");
        };
        Ok(Self {
            input,
            function: self.function.clone(),
            args: exprs,
            outer: self.outer,
            schema: self.schema.clone(),
        })
    }
}

// Plan nodes must be ordered; schemas are not, so order by the function (enough for a tie-break).
impl PartialOrd for TableFunctionCall {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.function.partial_cmp(&other.function)
    }
}

impl PartialOrd for LateralTable {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.function.partial_cmp(&other.function)
    }
}

/// Plans `LATERAL f(x) [AS T(a, b)]` when `f` is a registered table function.
#[derive(Debug)]
pub(crate) struct LateralPlanner {
    functions: Vec<Arc<WasmFunction>>,
}

impl LateralPlanner {
    pub(crate) fn new(catalog: &Catalog) -> Self {
        Self {
            functions: catalog.functions().cloned().collect(),
        }
    }
}

impl RelationPlanner for LateralPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        let TableFactor::Function {
            lateral: true,
            name,
            args,
            alias,
            ..
        } = relation
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let function_name = context.object_name_to_table_reference(name.clone())?;
        let function_name = function_name.table().to_string();
        let Some(function) = self
            .functions
            .iter()
            .find(|f| f.sql_name == function_name)
            .cloned()
        else {
            return plan_err!(
                "table function '{function_name}' not found: register it with CREATE FUNCTION"
            );
        };
        if function.spec.kind != FunctionKind::Table {
            return plan_err!(
                "'{function_name}' is a {} function, not a table function: LATERAL TABLE needs \
                 a table function",
                function.spec.kind.name()
            );
        }
        let empty = DFSchema::empty();
        let mut exprs = Vec::with_capacity(args.len());
        for arg in args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => {
                    exprs.push(context.sql_to_expr(expr, &empty)?);
                }
                other => return plan_err!("unsupported table function argument {other}"),
            }
        }
        let fields: Vec<_> = function
            .spec
            .results
            .iter()
            .map(|r| {
                (
                    None,
                    Arc::new(arrow::datatypes::Field::new(
                        &r.name,
                        r.data_type.arrow_type(),
                        true,
                    )),
                )
            })
            .collect();
        let schema = Arc::new(DFSchema::new_with_metadata(fields, Default::default())?);
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(TableFunctionCall {
                function: FunctionRef(function),
                args: exprs,
                schema,
            }),
        });
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan, alias,
        ))))
    }
}

/// Replaces every join of an input with a [`TableFunctionCall`] by a [`LateralTable`].
///
/// # Errors
/// A table function joined in a way Flink does not allow (a join condition other than `TRUE`, a
/// right or full join), or arguments whose types the function does not take.
pub fn rewrite(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    plan.transform_up(|node| {
        let LogicalPlan::Join(join) = &node else {
            return Ok(Transformed::no(node));
        };
        let Some(call) = find_call(&join.right) else {
            return Ok(Transformed::no(node));
        };
        let condition_is_true = join.on.is_empty()
            && join
                .filter
                .as_ref()
                .is_none_or(|f| matches!(f, Expr::Literal(ScalarValue::Boolean(Some(true)), _)));
        let outer = match join.join_type {
            JoinType::Inner if condition_is_true => false,
            JoinType::Left if condition_is_true => true,
            _ => {
                return plan_err!(
                    "a lateral table function joins only as `, LATERAL TABLE(...)`, `CROSS JOIN \
                     LATERAL TABLE(...)` or `LEFT JOIN LATERAL TABLE(...) ON TRUE`"
                );
            }
        };
        let input = join.left.as_ref().clone();
        let args: Vec<Expr> = call
            .args
            .iter()
            .map(|arg| {
                arg.clone()
                    .transform_up(|e| match e {
                        Expr::OuterReferenceColumn(_, column) => {
                            Ok(Transformed::yes(Expr::Column(column)))
                        }
                        other => Ok(Transformed::no(other)),
                    })
                    .map(|t| t.data)
            })
            .collect::<DfResult<_>>()?;
        let arg_types = args
            .iter()
            .map(|a| a.get_type(input.schema()))
            .collect::<DfResult<Vec<_>>>()?;
        if let Err(message) = call.function.0.coerce(&arg_types) {
            return plan_err!("{message}");
        }
        let lateral = LateralTable {
            input,
            function: call.function.clone(),
            args,
            outer,
            schema: join.schema.clone(),
        };
        Ok(Transformed::yes(LogicalPlan::Extension(Extension {
            node: Arc::new(lateral),
        })))
    })
    .map(|t| t.data)
}

/// The table function call under the right side of a lateral join (under its alias, the
/// subquery wrapper and a column-renaming projection).
fn find_call(plan: &LogicalPlan) -> Option<TableFunctionCall> {
    match plan {
        LogicalPlan::Extension(extension) => extension
            .node
            .as_any()
            .downcast_ref::<TableFunctionCall>()
            .cloned(),
        LogicalPlan::SubqueryAlias(alias) => find_call(&alias.input),
        LogicalPlan::Subquery(subquery) => find_call(&subquery.subquery),
        LogicalPlan::Projection(projection)
            if projection
                .expr
                .iter()
                .all(|e| matches!(e.clone().unalias(), Expr::Column(_))) =>
        {
            find_call(&projection.input)
        }
        _ => None,
    }
}
