//! Flink's group window functions, the form older queries (Nexmark q11) use:
//! `GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), k` with `TUMBLE_START(ts, ...)` in the select
//! list, and `HOP(ts, slide, size)`, `SESSION(ts, gap)` likewise.
//!
//! Each such SELECT is rewritten, before planning, into the window table function form: its
//! FROM relation becomes `TUMBLE(relation, DESCRIPTOR(ts), ...)` under the relation's own name,
//! the window call in GROUP BY becomes `window_start, window_end, window_time`, and `TUMBLE_START`,
//! `TUMBLE_END` and `TUMBLE_ROWTIME` become `window_start`, `window_end` and `window_time`.

use std::ops::ControlFlow;

use datafusion_sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Select,
    TableFactor, VisitMut, VisitorMut,
};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::parser::Parser;

const WINDOWS: [&str; 3] = ["TUMBLE", "HOP", "SESSION"];

/// Rewrites every SELECT of `statement` that groups by a window function.
///
/// # Errors
/// A group window Weir cannot rewrite (two windows, a join in FROM, a time argument that is
/// not a column), saying what to write instead.
pub fn rewrite(statement: &mut ast::Statement) -> Result<(), String> {
    match statement.visit(&mut Rewriter) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(message) => Err(message),
    }
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = String;

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<String> {
        match rewrite_select(select) {
            Ok(()) => ControlFlow::Continue(()),
            Err(message) => ControlFlow::Break(message),
        }
    }
}

/// The window function `expr` calls (upper-cased), and its arguments.
fn window_call(expr: &Expr) -> Option<(String, Vec<Expr>)> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let name = function.name.to_string().to_uppercase();
    if !WINDOWS.contains(&name.as_str()) {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let args = list
        .args
        .iter()
        .filter_map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect();
    Some((name, args))
}

fn rewrite_select(select: &mut Select) -> Result<(), String> {
    let GroupByExpr::Expressions(items, _) = &mut select.group_by else {
        return Ok(());
    };
    let windows: Vec<usize> = (0..items.len())
        .filter(|&i| window_call(&items[i]).is_some())
        .collect();
    let Some(&position) = windows.first() else {
        return Ok(());
    };
    if windows.len() > 1 {
        return Err("a query may group by one window function only".into());
    }
    let Some((function, args)) = window_call(&items[position]) else {
        return Ok(());
    };
    let usage = match function.as_str() {
        "TUMBLE" => "TUMBLE(time_attr, size)",
        "HOP" => "HOP(time_attr, slide, size)",
        _ => "SESSION(time_attr, gap)",
    };
    let arity = if function == "HOP" { 3 } else { 2 };
    if args.len() != arity {
        return Err(format!("group window {function} takes {usage}"));
    }
    let column = match &args[0] {
        Expr::Identifier(id) => id.clone(),
        Expr::CompoundIdentifier(ids) => ids.last().cloned().unwrap_or_else(|| Ident::new("")),
        other => {
            return Err(format!(
                "group window {function}: the time argument must be a column, not {other}"
            ));
        }
    };
    // window_time too, so that `_ROWTIME` may be selected.
    items.splice(
        position..=position,
        crate::sql::window::WINDOW_COLUMNS.map(|c| Expr::Identifier(Ident::new(c))),
    );
    let [from] = select.from.as_mut_slice() else {
        return Err(format!(
            "group window {function}: the FROM clause must be one table or subquery (join \
             first in a subquery)"
        ));
    };
    if !from.joins.is_empty() {
        return Err(format!(
            "group window {function}: the FROM clause must be one table or subquery (join \
             first in a subquery)"
        ));
    }
    let (data, alias) = match &from.relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let alias = alias.clone().or_else(|| {
                name.0
                    .last()
                    .and_then(|part| part.as_ident())
                    .map(|id| ast::TableAlias {
                        explicit: true,
                        name: id.clone(),
                        columns: Vec::new(),
                        at: None,
                    })
            });
            (name.to_string(), alias)
        }
        TableFactor::Derived {
            subquery, alias, ..
        } => (format!("({subquery})"), alias.clone()),
        other => {
            return Err(format!(
                "group window {function}: cannot window {other}; use a table or a subquery"
            ));
        }
    };
    let intervals: Vec<String> = args[1..].iter().map(ToString::to_string).collect();
    let text = format!(
        "{function}({data}, DESCRIPTOR({column}), {})",
        intervals.join(", ")
    );
    let mut relation = Parser::new(&GenericDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_table_factor())
        .map_err(|e| format!("group window {function}: {e}"))?;
    if let TableFactor::Table { alias: slot, .. } = &mut relation {
        *slot = alias;
    }
    from.relation = relation;
    // The auxiliary functions become the window columns.
    let mut auxiliary = Auxiliary { function };
    for item in &mut select.projection {
        let _ = item.visit(&mut auxiliary);
    }
    if let Some(having) = &mut select.having {
        let _ = having.visit(&mut auxiliary);
    }
    Ok(())
}

/// Replaces `<WINDOW>_START(...)`, `_END(...)` and `_ROWTIME(...)` of the query's window.
struct Auxiliary {
    function: String,
}

impl VisitorMut for Auxiliary {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(call) = expr else {
            return ControlFlow::Continue(());
        };
        let name = call.name.to_string().to_uppercase();
        let column = match name.strip_prefix(self.function.as_str()) {
            Some("_START") => "window_start",
            Some("_END") => "window_end",
            Some("_ROWTIME") => "window_time",
            _ => return ControlFlow::Continue(()),
        };
        *expr = Expr::Identifier(Ident::new(column));
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parser::{Statement, parse_script};

    fn rewritten(sql: &str) -> Result<String, String> {
        let mut statements = parse_script(sql).map_err(|e| e.to_string())?;
        let Statement::Query { statement, .. } = &mut statements[0].statement else {
            return Err("not a query".into());
        };
        rewrite(statement)?;
        Ok(statement.to_string())
    }

    #[test]
    fn group_windows_become_window_table_functions() {
        assert_eq!(
            rewritten(
                "SELECT B.bidder, COUNT(*), SESSION_START(B.dateTime, INTERVAL '10' SECOND) AS s \
                 FROM bid B GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND)"
            )
            .expect("rewrites"),
            "SELECT B.bidder, COUNT(*), window_start AS s FROM SESSION(bid, \
             DESCRIPTOR(dateTime), INTERVAL '10' SECOND) B GROUP BY B.bidder, window_start, \
             window_end, window_time"
        );
        assert_eq!(
            rewritten(
                "SELECT HOP_END(ts, INTERVAL '1' SECOND, INTERVAL '5' SECOND), SUM(x) FROM t \
                 GROUP BY HOP(ts, INTERVAL '1' SECOND, INTERVAL '5' SECOND)"
            )
            .expect("rewrites"),
            "SELECT window_end, SUM(x) FROM HOP(t, DESCRIPTOR(ts), INTERVAL '1' SECOND, \
             INTERVAL '5' SECOND) AS t GROUP BY window_start, window_end, window_time"
        );
        // A subquery keeps its alias; other queries are left alone.
        assert!(
            rewritten(
                "SELECT TUMBLE_ROWTIME(ts, INTERVAL '1' MINUTE) FROM (SELECT * FROM t) AS s \
                 GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE)"
            )
            .expect("rewrites")
            .contains("FROM TUMBLE((SELECT * FROM t), DESCRIPTOR(ts), INTERVAL '1' MINUTE) AS s")
        );
        assert_eq!(
            rewritten("SELECT k, COUNT(*) FROM t GROUP BY k").expect("untouched"),
            "SELECT k, COUNT(*) FROM t GROUP BY k"
        );
    }

    #[test]
    fn unsupported_group_windows_say_why() {
        let error = rewritten(
            "SELECT COUNT(*) FROM a JOIN b ON a.k = b.k GROUP BY TUMBLE(a.ts, INTERVAL '1' SECOND)",
        )
        .expect_err("a join");
        assert!(error.contains("join first in a subquery"), "{error}");
        let error = rewritten("SELECT COUNT(*) FROM t GROUP BY HOP(ts, INTERVAL '1' SECOND)")
            .expect_err("too few arguments");
        assert!(error.contains("HOP(time_attr, slide, size)"), "{error}");
    }
}
