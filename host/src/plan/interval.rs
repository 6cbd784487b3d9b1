//! Interval joins: a join whose condition bounds the difference of the two sides' time
//! attributes, `l.ts BETWEEN r.ts - INTERVAL a AND r.ts + INTERVAL b` or the same as two
//! comparisons, as Flink plans them. Its state is freed as the watermark passes the bounds.

use datafusion_common::ScalarValue;
use datafusion_expr::logical_plan::Join;
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{Between, BinaryExpr, Expr, Operator};

use super::IntervalBounds;
use super::translate::PlanError;
use crate::sql::Catalog;

/// A time expression: a column of the joined row plus a constant (ms).
struct Shifted {
    column: usize,
    plus_millis: i64,
}

fn interval_millis(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds))
        }
        _ => None,
    }
}

fn shifted(expr: &Expr, join: &Join) -> Option<Shifted> {
    match expr {
        Expr::Column(column) => Some(Shifted {
            column: join.schema.index_of_column(column).ok()?,
            plus_millis: 0,
        }),
        Expr::Cast(cast) => shifted(&cast.expr, join),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let Expr::Literal(value, _) = right.as_ref() else {
                return None;
            };
            let millis = interval_millis(value)?;
            let base = shifted(left, join)?;
            let plus_millis = match op {
                Operator::Plus => base.plus_millis.checked_add(millis)?,
                Operator::Minus => base.plus_millis.checked_sub(millis)?,
                _ => return None,
            };
            Some(Shifted {
                column: base.column,
                plus_millis,
            })
        }
        _ => None,
    }
}

/// Bounds on `left time - right time` found in the join's condition, over time attributes of
/// each side, with the columns they are on.
#[derive(Default)]
struct Found {
    columns: Option<(usize, usize)>,
    lower: Option<i64>,
    upper: Option<i64>,
}

impl Found {
    /// Takes in `a op b` (time expressions); ignores comparisons of anything else.
    fn compare(&mut self, a: &Shifted, op: Operator, b: &Shifted, left_width: usize) {
        // As `l + x op r + y`, i.e. `l - r op y - x`.
        let (l, r, op) = match (a.column < left_width, b.column < left_width) {
            (true, false) => (a, b, op),
            (false, true) => match op.swap() {
                Some(swapped) => (b, a, swapped),
                None => return,
            },
            _ => return,
        };
        let columns = (l.column, r.column - left_width);
        if self.columns.is_some_and(|c| c != columns) {
            return;
        }
        let constant = r.plus_millis - l.plus_millis;
        match op {
            Operator::GtEq => self.lower = Some(self.lower.map_or(constant, |v| v.max(constant))),
            Operator::Gt => {
                let c = constant + 1;
                self.lower = Some(self.lower.map_or(c, |v| v.max(c)));
            }
            Operator::LtEq => self.upper = Some(self.upper.map_or(constant, |v| v.min(constant))),
            Operator::Lt => {
                let c = constant - 1;
                self.upper = Some(self.upper.map_or(c, |v| v.min(c)));
            }
            _ => return,
        }
        self.columns = Some(columns);
    }
}

/// The interval bounds of `join`, if its condition relates the two sides' time attributes.
///
/// # Errors
/// Only one bound while an input is unbounded: the state would grow forever.
pub(crate) fn bounds(
    join: &Join,
    catalog: &Catalog,
    unbounded_input: bool,
) -> Result<Option<IntervalBounds>, PlanError> {
    let Some(filter) = &join.filter else {
        return Ok(None);
    };
    let left_width = join.left.schema().fields().len();
    let mut found = Found::default();
    for conjunct in split_conjunction(filter) {
        match conjunct {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if let (Some(a), Some(b)) = (shifted(left, join), shifted(right, join)) {
                    found.compare(&a, *op, &b, left_width);
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                if let (Some(e), Some(lo), Some(hi)) =
                    (shifted(expr, join), shifted(low, join), shifted(high, join))
                {
                    found.compare(&e, Operator::GtEq, &lo, left_width);
                    found.compare(&e, Operator::LtEq, &hi, left_width);
                }
            }
            _ => {}
        }
    }
    let Some((left_time, right_time)) = found.columns else {
        return Ok(None);
    };
    let time_attributes = super::window::is_time_attribute(catalog, &join.left, left_time)
        && super::window::is_time_attribute(catalog, &join.right, right_time);
    if !time_attributes {
        return Ok(None);
    }
    match (found.lower, found.upper) {
        (Some(lower), Some(upper)) => Ok(Some(IntervalBounds {
            left_time,
            right_time,
            lower_millis: lower,
            upper_millis: upper,
        })),
        _ if unbounded_input => Err(PlanError::Unsupported(
            "this join bounds the two sides' event times on one side only, and an input is \
             unbounded: every row would stay in state forever. Bound both sides (l.ts BETWEEN \
             r.ts - INTERVAL ... AND r.ts + INTERVAL ...) to make it an interval join, whose \
             state the watermark frees"
                .into(),
        )),
        _ => Ok(None),
    }
}
