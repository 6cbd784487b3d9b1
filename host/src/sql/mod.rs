//! The SQL front end: scripts to statements, statements to DataFusion logical plans.
//!
//! DataFusion parses (through `parser`), resolves names, checks and coerces types and optimises;
//! Weir supplies the catalog (tables from `CREATE TABLE`, Wasm functions from `CREATE FUNCTION`)
//! and plans Flink's `LATERAL TABLE(f(x))` (`lateral`). The result is a `LogicalPlan` that
//! `plan` turns into a dataflow graph.
//!
//! **Boundary:** pure: no I/O, no Wasm calls, no runtime. Modules are loaded by the caller
//! (`job`), which registers what `describe` said.

pub mod catalog;
pub mod flink;
pub mod group_window;
pub mod lateral;
pub mod parser;
pub mod types;
pub mod window;

use std::sync::Arc;

use datafusion_common::config::ConfigOptions;
use datafusion_common::{DataFusionError, Diagnostic};
use datafusion_expr::LogicalPlan;
use datafusion_expr::planner::ContextProvider;
use datafusion_optimizer::{Analyzer, Optimizer, OptimizerContext};
use datafusion_sql::planner::SqlToRel;
use datafusion_sql::sqlparser::ast;
use datafusion_sql::sqlparser::tokenizer::Location;

pub use catalog::{Catalog, TableEntry};
pub use parser::{Located, Statement, parse_script};

/// An error in a script, with where it is when that is known.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SqlError {
    #[error("syntax error: {message} at line {}, column {}", location.line, location.column)]
    Syntax { message: String, location: Location },
    #[error("{message}{}", at(location))]
    Plan {
        message: String,
        location: Option<Location>,
    },
}

fn at(location: &Option<Location>) -> String {
    match location {
        Some(l) => format!(" at line {}, column {}", l.line, l.column),
        None => String::new(),
    }
}

impl SqlError {
    pub fn plan(message: impl Into<String>, location: Option<Location>) -> Self {
        SqlError::Plan {
            message: message.into(),
            location,
        }
    }

    pub fn location(&self) -> Option<Location> {
        match self {
            SqlError::Syntax { location, .. } => Some(*location),
            SqlError::Plan { location, .. } => *location,
        }
    }
}

/// What a query statement plans to.
#[derive(Debug, Clone)]
pub enum PlannedQuery {
    /// `SELECT ...`: rows for the caller.
    Select(LogicalPlan),
    /// `INSERT INTO <table> SELECT ...`.
    Insert { table: String, input: LogicalPlan },
}

/// Plans a `SELECT` or `INSERT` against the catalog: resolve, coerce types, optimise.
///
/// `text` is the script the statement came from and `start` where the statement starts, so that
/// an error without a position of its own can be placed at the name it concerns.
///
/// # Errors
/// Unknown tables, columns or functions, type errors, unsupported constructs.
pub fn plan_query(
    catalog: &Catalog,
    statement: &ast::Statement,
    text: &str,
    start: Location,
) -> Result<PlannedQuery, SqlError> {
    let context = catalog::PlanningContext::new(catalog);
    let planner = SqlToRel::new(&context);
    let mut statement = statement.clone();
    leave_out_virtual_columns(catalog, &mut statement);
    group_window::rewrite(&mut statement)
        .map_err(|message| SqlError::plan(message, Some(start)))?;
    let plan = planner
        .sql_statement_to_plan(statement)
        .map_err(|e| plan_error(e, text, start))?;
    let plan = lateral::rewrite(plan).map_err(|e| plan_error(e, text, start))?;
    let (table, plan) = match plan {
        LogicalPlan::Dml(dml) => (
            Some(dml.table_name.table().to_string()),
            (*dml.input).clone(),
        ),
        other => (None, other),
    };
    let config = context.options();
    let plan = Analyzer::new()
        .execute_and_check(plan, config, |_, _| {})
        .map_err(|e| plan_error(e, text, start))?;
    let plan = Optimizer::new()
        .optimize(plan, &OptimizerContext::new(), |_, _| {})
        .map_err(|e| plan_error(e, text, start))?;
    Ok(match table {
        Some(table) => PlannedQuery::Insert { table, input: plan },
        None => PlannedQuery::Select(plan),
    })
}

/// An `INSERT` without a column list leaves the table's `VIRTUAL` metadata columns out, as in
/// Flink: the other columns are named, so the query supplies those only (DataFusion fills the
/// virtual ones with NULL, and sinks never write them).
fn leave_out_virtual_columns(catalog: &Catalog, statement: &mut ast::Statement) {
    let ast::Statement::Insert(insert) = statement else {
        return;
    };
    let ast::TableObject::TableName(name) = &insert.table else {
        return;
    };
    if !insert.columns.is_empty() {
        return;
    }
    let Some(entry) = catalog.table(&parser::object_name(name)) else {
        return;
    };
    let def = &entry.def;
    let is_virtual = |column: &str| {
        def.metadata
            .iter()
            .any(|m| m.is_virtual && m.column == column)
    };
    if !def.metadata.iter().any(|m| m.is_virtual) {
        return;
    }
    insert.columns = def
        .schema
        .fields()
        .iter()
        .filter(|f| !is_virtual(f.name()))
        .map(|f| ast::ObjectName::from(vec![ast::Ident::with_quote('"', f.name())]))
        .collect();
}

/// DataFusion's message without its prefixes, placed by its diagnostic or, failing that, at the
/// first mention in the statement of the name the message quotes.
fn plan_error(error: DataFusionError, text: &str, start: Location) -> SqlError {
    let location = diagnostic_location(&error);
    let message = clean_message(&error);
    let location = location.or_else(|| locate_quoted_name(&message, text, start));
    SqlError::plan(message, location)
}

fn diagnostic_location(error: &DataFusionError) -> Option<Location> {
    let diagnostic: &Diagnostic = error.diagnostic()?;
    let span = diagnostic.span?;
    (span.start.line > 0).then_some(Location::new(span.start.line, span.start.column))
}

pub(crate) fn clean_message(error: &DataFusionError) -> String {
    let mut message = error.find_root().to_string();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "Internal error: ",
        "SQL error: ",
        "External error: ",
        "Optimizer rule 'type_coercion' failed\ncaused by\n",
        "type_coercion\ncaused by\n",
    ] {
        while let Some(rest) = message.strip_prefix(prefix) {
            message = rest.to_string();
        }
    }
    if let Some((first, _)) = message.split_once(".\nThis issue was likely caused by a bug") {
        message = first.to_string();
    }
    // A Wasm function's own argument check, wrapped by DataFusion's coercion error.
    if let Some((_, inner)) = message.split_once("coercion failed with: ") {
        let inner = inner
            .strip_prefix("Error during planning: ")
            .unwrap_or(inner);
        let inner = inner.split(" No function matches").next().unwrap_or(inner);
        message = inner.trim_end_matches('.').to_string();
    }
    // DataFusion's hint names its own quoting and settings; Weir quotes names as Flink does.
    if let Some(start) = message.find("Column names are case sensitive.") {
        let end = message[start..]
            .find('\n')
            .map_or(message.len(), |i| start + i);
        message.replace_range(start..end, "Column names are case sensitive.");
        message = message.replace('"', "`");
    }
    let mut chars = message.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => message,
    }
}

/// Finds, in the statement starting at `start`, the first whole-word occurrence of a name that
/// the message quotes ('name' or "name" or `name`).
pub(crate) fn locate_quoted_name(message: &str, text: &str, start: Location) -> Option<Location> {
    let names = quoted_names(message);
    let offset = offset_of(text, start)?;
    let statement = &text[offset..];
    let lower = statement.to_lowercase();
    for name in names {
        let name = name.rsplit('.').next().unwrap_or(&name).to_lowercase();
        if name.is_empty() {
            continue;
        }
        let mut from = 0;
        while let Some(found) = lower[from..].find(&name) {
            let at = from + found;
            let before = lower[..at].chars().next_back();
            let after = lower[at + name.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !word(before) && (name.ends_with('(') || !word(after)) {
                return Some(location_at(text, offset + at));
            }
            from = at + name.len();
        }
    }
    None
}

fn quoted_names(message: &str) -> Vec<String> {
    let mut names = Vec::new();
    // A message about a function starts with its signature: `f(a BIGINT) -> ...`.
    if let Some((name, _)) = message.split_once('(')
        && !name.is_empty()
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        names.push(format!("{name}("));
    }
    // DataFusion's unknown-column message does not quote the name.
    if let Some((_, rest)) = message.split_once("no field named ") {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        names.push(name.trim_end_matches('.').to_string());
    }
    for quote in ['\'', '"', '`'] {
        let parts: Vec<&str> = message.split(quote).collect();
        for name in parts.iter().skip(1).step_by(2) {
            names.push((*name).to_string());
        }
    }
    names
}

fn offset_of(text: &str, location: Location) -> Option<usize> {
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == location.line {
            let column = line
                .char_indices()
                .nth(location.column.saturating_sub(1) as usize)
                .map_or(line.len(), |(at, _)| at);
            return Some(offset + column);
        }
        offset += line.len();
    }
    None
}

fn location_at(text: &str, offset: usize) -> Location {
    let before = &text[..offset];
    let line = before.matches('\n').count() as u64 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() as u64 + 1;
    Location::new(line, column)
}

/// DataFusion's configuration as Weir sets it.
pub(crate) fn config() -> Arc<ConfigOptions> {
    let mut options = ConfigOptions::default();
    // Weir's strings are Utf8 end to end (the Wasm ABI and the connectors).
    options.sql_parser.map_string_types_to_utf8view = false;
    // Flink reads `0.908` as DECIMAL(3, 3), not DOUBLE: exact money arithmetic (Nexmark q1).
    options.sql_parser.parse_float_as_decimal = true;
    // Flink matches table and column names with their case: `dateTime` is not `datetime`.
    options.sql_parser.enable_ident_normalization = false;
    options.execution.target_partitions = 1;
    Arc::new(options)
}
