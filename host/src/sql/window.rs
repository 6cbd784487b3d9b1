//! Flink's window table functions: `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL ...))`, and
//! `HOP` and `CUMULATE` likewise.
//!
//! The parser turns Flink's form into a table function in FROM (`TUMBLE(t, DESCRIPTOR(ts), ...)`);
//! [`WindowPlanner`] plans that as a [`WindowTvf`] node: the data argument's rows, each with the
//! `window_start`, `window_end` and `window_time` of a window it falls in. A GROUP BY over those
//! columns becomes a window aggregation (`plan::translate`), which shares slices between
//! overlapping windows rather than copying rows into each.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion_common::{Column, DFSchema, DFSchemaRef, Result as DfResult, plan_err};
use datafusion_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion_sql::sqlparser::ast::{self, FunctionArg, FunctionArgExpr, TableFactor};

/// The columns a window table function adds, in order.
pub const WINDOW_COLUMNS: [&str; 3] = ["window_start", "window_end", "window_time"];

/// A window assigner, all lengths in milliseconds. Windows are `[start, end)`; `window_time`
/// is `end - 1 ms`, as in Flink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum WindowKind {
    /// Windows of `size` starting at `offset + k * size`.
    Tumble { size: i64, offset: i64 },
    /// Windows of `size` starting every `slide`, at `offset + k * slide`.
    Hop { size: i64, slide: i64, offset: i64 },
    /// Windows starting every `size` (at `offset + k * size`) whose end grows by `step` up to
    /// `size`: one window per step.
    Cumulate { size: i64, step: i64, offset: i64 },
    /// Per key, rows closer than `gap` to each other (windows that touch merge, as in Flink);
    /// a session ends `gap` after its last row. Only as a window aggregation's input: a row's
    /// session is known only once its neighbours are.
    Session { gap: i64 },
}

impl WindowKind {
    pub fn function_name(&self) -> &'static str {
        match self {
            WindowKind::Tumble { .. } => "TUMBLE",
            WindowKind::Hop { .. } => "HOP",
            WindowKind::Cumulate { .. } => "CUMULATE",
            WindowKind::Session { .. } => "SESSION",
        }
    }
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offset = |offset: i64| {
            if offset == 0 {
                String::new()
            } else {
                format!(", offset {offset} ms")
            }
        };
        match *self {
            WindowKind::Tumble { size, offset: o } => {
                write!(f, "TUMBLE(size {size} ms{})", offset(o))
            }
            WindowKind::Hop {
                size,
                slide,
                offset: o,
            } => write!(f, "HOP(slide {slide} ms, size {size} ms{})", offset(o)),
            WindowKind::Cumulate {
                size,
                step,
                offset: o,
            } => write!(f, "CUMULATE(step {step} ms, size {size} ms{})", offset(o)),
            WindowKind::Session { gap } => write!(f, "SESSION(gap {gap} ms)"),
        }
    }
}

/// The rows of `input`, each with the window columns of a window containing its `time_column`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowTvf {
    pub input: LogicalPlan,
    pub kind: WindowKind,
    /// The time attribute, a column of `input`.
    pub time_column: Column,
    /// The input's columns, then [`WINDOW_COLUMNS`].
    pub schema: DFSchemaRef,
}

impl WindowTvf {
    /// The node over `input` (checking that the time column is a timestamp).
    ///
    /// # Errors
    /// A time column that does not exist or is not a TIMESTAMP.
    pub fn new(input: LogicalPlan, kind: WindowKind, time_column: Column) -> DfResult<Self> {
        let input_schema = input.schema();
        let Ok(index) = input_schema.index_of_column(&time_column) else {
            return plan_err!(
                "window {}: column '{}' not found in the data argument (columns: {})",
                kind.function_name(),
                time_column.name,
                input_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let (qualifier, field) = input_schema.qualified_field(index);
        let time_column = Column::from((qualifier, field));
        let DataType::Timestamp(_, zone) = field.data_type() else {
            return plan_err!(
                "window {}: column '{}' is {}, but DESCRIPTOR must name a TIMESTAMP column (a time \
                 attribute)",
                kind.function_name(),
                time_column.name,
                super::types::sql_name(field.data_type())
            );
        };
        let window_type = DataType::Timestamp(TimeUnit::Millisecond, zone.clone());
        let mut fields: Vec<_> = input_schema
            .iter()
            .map(|(qualifier, field)| (qualifier.cloned(), field.clone()))
            .collect();
        for name in WINDOW_COLUMNS {
            fields.push((None, Arc::new(Field::new(name, window_type.clone(), false))));
        }
        let schema = Arc::new(DFSchema::new_with_metadata(
            fields,
            input_schema.metadata().clone(),
        )?);
        Ok(Self {
            input,
            kind,
            time_column,
            schema,
        })
    }

    /// The index of the time column in the input's schema.
    pub fn time_index(&self) -> Option<usize> {
        self.input.schema().index_of_column(&self.time_column).ok()
    }
}

impl UserDefinedLogicalNodeCore for WindowTvf {
    fn name(&self) -> &str {
        "WindowTvf"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![Expr::Column(self.time_column.clone())]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowTvf: {} on {}", self.kind, self.time_column)
    }

    fn with_exprs_and_inputs(
        &self,
        mut exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let (Some(input), Some(Expr::Column(time_column))) = (inputs.pop(), exprs.pop()) else {
            return plan_err!("WindowTvf needs one input and its time column");
        };
        Self::new(input, self.kind, time_column)
    }
}

// Plan nodes must be ordered; schemas are not, so order by the window (enough for a tie-break).
impl PartialOrd for WindowTvf {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.kind.partial_cmp(&other.kind)
    }
}

/// Plans `TUMBLE(t, DESCRIPTOR(ts), size [, offset])`, `HOP(t, DESCRIPTOR(ts), slide, size [,
/// offset])`, `CUMULATE(t, DESCRIPTOR(ts), step, size [, offset])` and `SESSION(t,
/// DESCRIPTOR(ts), gap)` (what `GROUP BY SESSION(ts, gap)` becomes; sessions are per GROUP BY
/// key) in FROM.
#[derive(Debug)]
pub(crate) struct WindowPlanner;

impl RelationPlanner for WindowPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = &relation
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let function = name.to_string().to_uppercase();
        if !["TUMBLE", "HOP", "CUMULATE", "SESSION"].contains(&function.as_str()) {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        }
        let usage = match function.as_str() {
            "TUMBLE" => "TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset])",
            "HOP" => "HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset])",
            "SESSION" => "SESSION(TABLE t, DESCRIPTOR(ts), gap)",
            _ => "CUMULATE(TABLE t, DESCRIPTOR(ts), step, size [, offset])",
        };
        let mut exprs = Vec::with_capacity(args.args.len());
        for arg in &args.args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => exprs.push(expr.clone()),
                other => {
                    return plan_err!(
                        "window {function}: unsupported argument {other}; use {usage}"
                    );
                }
            }
        }
        let arity = match function.as_str() {
            "TUMBLE" => 3..=4,
            "SESSION" => 3..=3,
            _ => 4..=5,
        };
        if !arity.contains(&exprs.len()) {
            return plan_err!("window {function} takes {usage}");
        }
        let input = match &exprs[0] {
            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => {
                let mut table = relation.clone();
                if let TableFactor::Table {
                    name, args, alias, ..
                } = &mut table
                {
                    *name = ast::ObjectName::from(match &exprs[0] {
                        ast::Expr::Identifier(id) => vec![id.clone()],
                        ast::Expr::CompoundIdentifier(ids) => ids.clone(),
                        _ => Vec::new(),
                    });
                    *args = None;
                    *alias = None;
                }
                context.plan(table)?
            }
            ast::Expr::Subquery(query) => context.plan(TableFactor::Derived {
                lateral: false,
                subquery: query.clone(),
                alias: None,
                sample: None,
            })?,
            other => {
                return plan_err!(
                    "window {function}: the first argument must be TABLE <name> or TABLE (<query>), \
                     not {other}"
                );
            }
        };
        let time_column = descriptor(&exprs[1], &function, usage)?;
        let mut lengths = Vec::with_capacity(3);
        for (position, expr) in exprs.iter().enumerate().skip(2) {
            let ast::Expr::Interval(interval) = expr else {
                return plan_err!(
                    "window {function}: argument {} must be an INTERVAL, not {expr}",
                    position + 1
                );
            };
            match super::parser::interval_millis(interval) {
                Some(millis) => lengths.push(millis),
                None => {
                    return plan_err!(
                        "window {function}: {expr} is not a length in days, hours, minutes, seconds \
                         or milliseconds"
                    );
                }
            }
        }
        let kind = window_kind(&function, &lengths)?;
        let tvf = WindowTvf::new(input, kind, Column::from_name(time_column))?;
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(tvf),
        });
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan,
            alias.clone(),
        ))))
    }
}

/// The column `DESCRIPTOR(col)` names.
fn descriptor(expr: &ast::Expr, function: &str, usage: &str) -> DfResult<String> {
    if let ast::Expr::Function(call) = expr
        && call.name.to_string().eq_ignore_ascii_case("DESCRIPTOR")
        && let ast::FunctionArguments::List(list) = &call.args
        && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Identifier(column)))] =
            list.args.as_slice()
    {
        return Ok(column.value.clone());
    }
    plan_err!(
        "window {function}: the second argument must be DESCRIPTOR(<time column>), as in {usage}"
    )
}

fn window_kind(function: &str, lengths: &[i64]) -> DfResult<WindowKind> {
    let positive = |name: &str, value: i64| {
        if value > 0 {
            Ok(value)
        } else {
            plan_err!("window {function}: the {name} must be longer than zero")
        }
    };
    let offset = |index: usize| lengths.get(index).copied().unwrap_or(0);
    Ok(match function {
        "TUMBLE" => WindowKind::Tumble {
            size: positive("size", lengths[0])?,
            offset: offset(1),
        },
        "SESSION" => WindowKind::Session {
            gap: positive("gap", lengths[0])?,
        },
        "HOP" => WindowKind::Hop {
            slide: positive("slide", lengths[0])?,
            size: positive("size", lengths[1])?,
            offset: offset(2),
        },
        _ => {
            let (step, size) = (positive("step", lengths[0])?, positive("size", lengths[1])?);
            if size % step != 0 {
                return plan_err!(
                    "window CUMULATE: the size ({size} ms) must be a whole multiple of the step \
                     ({step} ms)"
                );
            }
            WindowKind::Cumulate {
                size,
                step,
                offset: offset(2),
            }
        }
    })
}
