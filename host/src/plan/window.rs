//! Windows in the logical plan: which columns of a plan are a window table function's window
//! columns, whether a GROUP BY over them is a window aggregation, and whether a window's time
//! column is a time attribute.

use std::sync::Arc;

use datafusion_common::{Column, DFSchemaRef};
use datafusion_expr::logical_plan::Aggregate;
use datafusion_expr::{Expr, LogicalPlan, UserDefinedLogicalNode};

use super::translate::PlanError;
use super::{OperatorSpec, WindowGroup};
use crate::sql::Catalog;
use crate::sql::window::{WindowKind, WindowTvf};

/// A plan node's identity (its address), to recognise it again while translating.
pub(crate) fn node_id(node: &Arc<dyn UserDefinedLogicalNode>) -> usize {
    Arc::as_ptr(node).cast::<()>() as usize
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowRole {
    Start,
    End,
    Time,
}

/// Where a plan's window columns come from.
#[derive(Debug)]
pub(crate) struct WindowLineage {
    /// The window table function's [`node_id`].
    pub node_id: usize,
    pub kind: WindowKind,
    /// The plan's output columns (by index) that are window columns passed through unchanged.
    pub roles: Vec<(usize, WindowRole)>,
    /// Whether nothing between the table function and here looks at a window column except
    /// to pass it through: then the function may assign slices instead of windows.
    pub passthrough: bool,
    /// Whether the windows are over processing time (`PROCTIME()`): they fire by the clock.
    pub processing_time: bool,
}

impl WindowLineage {
    fn role(&self, schema: &DFSchemaRef, column: &Column) -> Option<(usize, WindowRole)> {
        let index = schema.index_of_column(column).ok()?;
        self.roles.iter().find(|(i, _)| *i == index).copied()
    }

    fn mentions(&self, schema: &DFSchemaRef, expr: &Expr) -> bool {
        expr.column_refs()
            .into_iter()
            .any(|c| self.role(schema, c).is_some())
    }
}

/// The window columns of `plan`'s output, when it is a window table function under filters,
/// projections and aliases.
pub(crate) fn lineage(plan: &LogicalPlan) -> Option<WindowLineage> {
    match plan {
        LogicalPlan::Extension(extension) => {
            let tvf = extension.node.as_any().downcast_ref::<WindowTvf>()?;
            let first = tvf.input.schema().fields().len();
            let processing_time = tvf
                .time_index()
                .is_some_and(|i| matches!(origin(&tvf.input, i), Some(Origin::ProcTime)));
            Some(WindowLineage {
                processing_time,
                node_id: node_id(&extension.node),
                kind: tvf.kind,
                roles: vec![
                    (first, WindowRole::Start),
                    (first + 1, WindowRole::End),
                    (first + 2, WindowRole::Time),
                ],
                passthrough: true,
            })
        }
        LogicalPlan::SubqueryAlias(alias) => lineage(&alias.input),
        // A window aggregation's output has whole windows: a later GROUP BY over them is a
        // window aggregation again (as in Flink), one that cannot share slices.
        LogicalPlan::Aggregate(aggregate) => {
            let below = lineage(&aggregate.input)?;
            let Ok(Some(OperatorSpec::WindowAggregate { groups, .. })) =
                window_aggregate(aggregate, &below)
            else {
                return None;
            };
            let roles = groups
                .iter()
                .enumerate()
                .filter_map(|(index, group)| match group {
                    WindowGroup::Start => Some((index, WindowRole::Start)),
                    WindowGroup::End => Some((index, WindowRole::End)),
                    WindowGroup::Time => Some((index, WindowRole::Time)),
                    WindowGroup::Key(_) => None,
                })
                .collect();
            Some(WindowLineage {
                roles,
                passthrough: false,
                ..below
            })
        }
        LogicalPlan::Filter(filter) => {
            let mut below = lineage(&filter.input)?;
            if below.mentions(filter.input.schema(), &filter.predicate) {
                below.passthrough = false;
            }
            Some(below)
        }
        LogicalPlan::Projection(projection) => {
            let below = lineage(&projection.input)?;
            let schema = projection.input.schema();
            let mut roles = Vec::new();
            let mut passthrough = below.passthrough;
            for (index, expr) in projection.expr.iter().enumerate() {
                let inner = match expr {
                    Expr::Alias(alias) => alias.expr.as_ref(),
                    other => other,
                };
                match inner {
                    Expr::Column(column) => {
                        if let Some((_, role)) = below.role(schema, column) {
                            roles.push((index, role));
                        }
                    }
                    other => passthrough &= !below.mentions(schema, other),
                }
            }
            Some(WindowLineage {
                roles,
                passthrough,
                ..below
            })
        }
        _ => None,
    }
}

/// The window aggregation `aggregate` is, if it groups by `window_start` and `window_end` of
/// `lineage` (its input's).
///
/// # Errors
/// None yet; the signature leaves room for refusals.
pub(crate) fn window_aggregate(
    aggregate: &Aggregate,
    lineage: &WindowLineage,
) -> Result<Option<OperatorSpec>, PlanError> {
    let schema = aggregate.input.schema();
    let mut groups = Vec::with_capacity(aggregate.group_expr.len());
    let mut key_exprs = Vec::new();
    let (mut start, mut end) = (None, None);
    let mut passthrough = lineage.passthrough;
    for expr in &aggregate.group_expr {
        let role = match expr {
            Expr::Column(column) => lineage.role(schema, column),
            _ => None,
        };
        match role {
            Some((index, WindowRole::Start)) => {
                start = Some(index);
                groups.push(WindowGroup::Start);
            }
            Some((index, WindowRole::End)) => {
                end = Some(index);
                groups.push(WindowGroup::End);
            }
            Some((_, WindowRole::Time)) => groups.push(WindowGroup::Time),
            None => {
                passthrough &= !lineage.mentions(schema, expr);
                groups.push(WindowGroup::Key(key_exprs.len()));
                key_exprs.push(expr.clone());
            }
        }
    }
    let (Some(start_column), Some(end_column)) = (start, end) else {
        return Ok(None);
    };
    for expr in &aggregate.aggr_expr {
        passthrough &= !lineage.mentions(schema, expr);
    }
    Ok(Some(OperatorSpec::WindowAggregate {
        window: lineage.kind,
        processing_time: lineage.processing_time,
        sliced: passthrough,
        start_column,
        end_column,
        key_exprs,
        groups,
        aggr_exprs: aggregate.aggr_expr.clone(),
        input_schema: schema.clone(),
    }))
}

/// Where a column of `plan` comes from: a table's column, or a window's `window_time` (itself a
/// time attribute), or `None` if it is computed.
enum Origin {
    Table {
        table: String,
        column: String,
    },
    WindowTime,
    /// `PROCTIME()`.
    ProcTime,
}

fn origin(plan: &LogicalPlan, index: usize) -> Option<Origin> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let in_table = match &scan.projection {
                Some(columns) => *columns.get(index)?,
                None => index,
            };
            let field = scan.source.schema().fields().get(in_table)?.clone();
            Some(Origin::Table {
                table: scan.table_name.table().to_string(),
                column: field.name().clone(),
            })
        }
        LogicalPlan::SubqueryAlias(alias) => origin(&alias.input, index),
        LogicalPlan::Filter(filter) => origin(&filter.input, index),
        LogicalPlan::Projection(projection) => {
            let inner = match projection.expr.get(index)? {
                Expr::Alias(alias) => alias.expr.as_ref(),
                other => other,
            };
            let column = match inner {
                Expr::Column(column) => column,
                Expr::ScalarFunction(f) if f.func.name() == "proctime" => {
                    return Some(Origin::ProcTime);
                }
                _ => return None,
            };
            let below = projection.input.schema().index_of_column(column).ok()?;
            origin(&projection.input, below)
        }
        LogicalPlan::Extension(extension) => {
            let tvf = extension.node.as_any().downcast_ref::<WindowTvf>()?;
            let inputs = tvf.input.schema().fields().len();
            match index.checked_sub(inputs) {
                None => origin(&tvf.input, index),
                Some(2) => Some(Origin::WindowTime),
                Some(_) => None,
            }
        }
        _ => None,
    }
}

/// A join on both sides' `window_end` (a window join): those columns (left, right), as
/// indexes into each side's schema.
pub(crate) fn joined_window_ends(
    join: &datafusion_expr::logical_plan::Join,
) -> Option<(usize, usize)> {
    let left = lineage(&join.left)?;
    let right = lineage(&join.right)?;
    join.on.iter().find_map(|(l, r)| {
        let (Expr::Column(l), Expr::Column(r)) = (l, r) else {
            return None;
        };
        let (li, WindowRole::End) = left.role(join.left.schema(), l)? else {
            return None;
        };
        let (ri, WindowRole::End) = right.role(join.right.schema(), r)? else {
            return None;
        };
        Some((li, ri))
    })
}

/// Whether column `index` of `plan` is a time attribute: a table column its table declares a
/// watermark on, or a window's `window_time`.
pub(crate) fn is_time_attribute(catalog: &Catalog, plan: &LogicalPlan, index: usize) -> bool {
    match origin(plan, index) {
        Some(Origin::WindowTime) => true,
        // Processing time orders nothing across inputs: not an interval join's time.
        Some(Origin::ProcTime) => false,
        Some(Origin::Table { table, column }) => catalog
            .table(&table)
            .and_then(|t| t.watermark.as_ref())
            .is_some_and(|w| w.column == column),
        None => false,
    }
}

/// In streaming mode a window needs event time: its time column must be a column on which its
/// table declares a watermark (or an earlier window's `window_time`).
///
/// # Errors
/// Any other column, with what to change.
pub(crate) fn check_time_attribute(
    catalog: &Catalog,
    tvf: &WindowTvf,
    time_column: usize,
) -> Result<(), PlanError> {
    let function = tvf.kind.function_name();
    let name = &tvf.time_column.name;
    match origin(&tvf.input, time_column) {
        Some(Origin::WindowTime | Origin::ProcTime) => Ok(()),
        Some(Origin::Table { table, column }) => {
            let watermark = catalog.table(&table).and_then(|t| t.watermark.as_ref());
            match watermark {
                Some(w) if w.column == column => Ok(()),
                Some(w) => Err(PlanError::Unsupported(format!(
                    "window {function}: column '{name}' is not a time attribute: table '{table}' \
                     declares its watermark on '{}'; use DESCRIPTOR({}) or move the watermark",
                    w.column, w.column
                ))),
                None => Err(PlanError::Unsupported(format!(
                    "window {function}: column '{name}' is not a time attribute: table '{table}' \
                     declares no watermark; add `WATERMARK FOR {column} AS {column} - INTERVAL \
                     '5' SECOND` to its CREATE TABLE (or run in batch mode)"
                ))),
            }
        }
        None => Err(PlanError::Unsupported(format!(
            "window {function}: column '{name}' is computed, not a time attribute: in streaming mode \
             a window needs a table column with a WATERMARK (or window_time of another window)"
        ))),
    }
}
