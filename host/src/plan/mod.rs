//! The dataflow graph: operators with a parallelism, joined by edges that say how rows are
//! partitioned. Plain data, built from a DataFusion logical plan by `translate`, printed by
//! `EXPLAIN` and run by `runtime`.
//!
//! **Boundary:** pure: no I/O, no Wasm calls. Expressions stay DataFusion logical expressions
//! over the input's schema; the runtime makes them physical.

mod interval;
mod top_n;
pub mod translate;
pub(crate) mod window;

use std::fmt::{self, Write as _};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion_common::DFSchemaRef;
use datafusion_expr::{Expr, SortExpr};

use crate::connector::TableDef;
use crate::sql::lateral::FunctionRef;
use crate::sql::window::WindowKind;

pub use translate::{PlanError, translate};

/// Key groups: the unit in which keyed state is partitioned among subtasks (and, later,
/// rescaled). Flink's default maximum parallelism is 128.
pub const DEFAULT_MAX_PARALLELISM: usize = 128;

/// How a job is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    pub parallelism: usize,
    pub max_parallelism: usize,
    pub streaming: bool,
    /// Rows per batch that sources produce (`pipeline.batch-size`).
    pub batch_size: usize,
    /// `'table.exec.state.ttl'` (streaming mode): how long a regular join's rows and a GROUP
    /// BY's groups stay in state without being touched (processing time).
    pub state_ttl_millis: Option<u64>,
}

/// Rows per batch that sources produce unless `pipeline.batch-size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            streaming: false,
            batch_size: DEFAULT_BATCH_SIZE,
            state_ttl_millis: None,
        }
    }
}

/// A job's dataflow graph. Node ids are indexes into `nodes`, in topological order.
#[derive(Debug, Clone)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub max_parallelism: usize,
    /// Rows per batch that sources produce.
    pub batch_size: usize,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: usize,
    pub operator: OperatorSpec,
    pub parallelism: usize,
    /// The schema of the batches this node emits.
    pub schema: SchemaRef,
    /// Whether it emits a changelog (rows that insert, update and delete: an updating
    /// result) rather than rows that only append.
    pub changelog: bool,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub partitioning: Partitioning,
}

/// How an edge spreads rows over the downstream subtasks.
#[derive(Debug, Clone)]
pub enum Partitioning {
    /// Subtask i to subtask i (same parallelism).
    Forward,
    /// By the hash of key expressions (over the upstream's output), into key groups owned in
    /// contiguous ranges by the downstream subtasks.
    Hash(Vec<Expr>),
    /// Whole batches, round-robin.
    Rebalance,
    /// Every batch to every downstream subtask.
    Broadcast,
}

/// How a source derives watermarks from its rows (streaming mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceWatermark {
    /// The event-time column, as an index into the source's batches.
    pub column: usize,
    /// Bounded out-of-orderness: the watermark trails the largest event time seen by this much
    /// (and 1 ms more, as in Flink: a row at the watermark itself is still on time).
    pub delay_millis: i64,
    /// `'scan.watermark.idle-timeout'`: a subtask that reads nothing this long is idle, and
    /// holds no operator's watermark back until it reads again.
    pub idle_timeout_millis: Option<u64>,
}

/// An interval join's bounds: `left time - right time` lies in `[lower, upper]` (ms); the
/// times are columns of each side's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalBounds {
    pub left_time: usize,
    pub right_time: usize,
    pub lower_millis: i64,
    pub upper_millis: i64,
}

/// What a window aggregation's GROUP BY item becomes in its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowGroup {
    /// The i-th key expression's value.
    Key(usize),
    Start,
    End,
    /// `window_end - 1 ms`.
    Time,
}

/// What a node does. Expressions are over the input's schema (`input_schema`).
#[derive(Debug, Clone)]
pub enum OperatorSpec {
    Source {
        table: TableDef,
        /// Columns read, as indexes into the table's schema.
        projection: Option<Vec<usize>>,
        /// Streaming mode, a table with a watermark whose column is read: how to make them.
        watermark: Option<SourceWatermark>,
    },
    /// Literal rows (`VALUES`, or `SELECT` without `FROM`).
    Values {
        rows: Vec<Vec<Expr>>,
    },
    Filter {
        predicate: Expr,
        input_schema: DFSchemaRef,
    },
    Project {
        exprs: Vec<Expr>,
        input_schema: DFSchemaRef,
    },
    Lateral {
        function: FunctionRef,
        args: Vec<Expr>,
        outer: bool,
        input_schema: DFSchemaRef,
    },
    Aggregate {
        group_exprs: Vec<Expr>,
        aggr_exprs: Vec<Expr>,
        input_schema: DFSchemaRef,
        output_schema: DFSchemaRef,
        /// The input is a changelog: rows are taken back (`-U`, `-D`) as well as added.
        updating_input: bool,
        /// `'table.exec.state.ttl'`: a group untouched this long leaves state.
        state_ttl_millis: Option<u64>,
    },
    /// A window table function: every row with `window_start`, `window_end` and `window_time`
    /// appended. With `slices`, feeding a window aggregation, each row comes once, with its slice
    /// (the piece of time windows share) in those columns; otherwise once per window it is in.
    WindowAssign {
        window: WindowKind,
        /// The time attribute, an index into the input's columns.
        time_column: usize,
        slices: bool,
    },
    /// GROUP BY window_start, window_end [, keys]: each (key, slice) accumulates in state, and
    /// a window's result is emitted once the watermark passes its end (at the end of input in
    /// batch mode). Rows for windows already emitted are late: dropped and counted.
    WindowAggregate {
        window: WindowKind,
        /// Windows over `PROCTIME()`: they fire when the wall clock passes their end.
        processing_time: bool,
        /// Whether the input's window columns hold slices of `window` (else whole windows).
        sliced: bool,
        /// The input's window_start and window_end columns.
        start_column: usize,
        end_column: usize,
        key_exprs: Vec<Expr>,
        /// The GROUP BY items, in the output's order.
        groups: Vec<WindowGroup>,
        aggr_exprs: Vec<Expr>,
        input_schema: DFSchemaRef,
    },
    /// A regular equi-join of two inputs (left is input 0, right input 1), each hashed by its
    /// keys. Both sides' rows stay in state (it grows with the inputs). A left join's row without
    /// a match comes out padded with nulls: at the end in batch mode; in streaming mode at once,
    /// taken back (`-D`) when its first match arrives.
    Join {
        left_join: bool,
        /// A left semi join (`EXISTS`, or an inner join of which only the left side is read):
        /// each left row once, at its first match; only the left columns.
        semi: bool,
        left_keys: Vec<Expr>,
        right_keys: Vec<Expr>,
        /// Null keys match each other (`IS NOT DISTINCT FROM`) rather than nothing.
        nulls_equal: bool,
        /// A further condition over the joined row.
        filter: Option<Expr>,
        /// Streaming mode, a condition bounding the two sides' event times: an interval join,
        /// whose rows leave state once the watermark passes the bounds (and a left join's
        /// unmatched rows come out then, padded, so that its output only appends).
        interval: Option<IntervalBounds>,
        /// Streaming mode, a join on both sides' `window_end` (Flink's window join): the
        /// columns (left, right); rows leave state once the watermark passes their window.
        window_ends: Option<(usize, usize)>,
        /// `'table.exec.state.ttl'` (a regular join): a row leaves state this long after it
        /// came.
        state_ttl_millis: Option<u64>,
        left_schema: DFSchemaRef,
        right_schema: DFSchemaRef,
        output_schema: DFSchemaRef,
    },
    /// `ROW_NUMBER() OVER (PARTITION BY keys ORDER BY ...)` kept where it is at most `limit`:
    /// per key, the first `limit` rows in that order, each with its row number (appended). In
    /// streaming mode the changes to each key's top rows go out as a changelog; in batch mode
    /// the top rows at the end. Ties in the order fall back to the whole row's bytes, so that
    /// the same rows win however they arrive.
    TopN {
        partition_by: Vec<Expr>,
        order_by: Vec<SortExpr>,
        limit: usize,
        input_schema: DFSchemaRef,
    },
    /// An `upsert-kafka` source's upserts and tombstones, keyed by the primary key, made a
    /// changelog (streaming) or each key's last value at the end (batch), as Flink's
    /// ChangelogNormalize.
    UpsertNormalize {
        key: Vec<Expr>,
        input_schema: DFSchemaRef,
    },
    /// Batch only: everything, sorted, at end of input.
    Sort {
        exprs: Vec<SortExpr>,
        fetch: Option<usize>,
        input_schema: DFSchemaRef,
    },
    Limit {
        skip: usize,
        fetch: Option<usize>,
    },
    Sink {
        table: TableDef,
    },
    /// A bare `SELECT`: rows handed back to the caller.
    Collect,
}

impl OperatorSpec {
    pub fn name(&self) -> &'static str {
        match self {
            OperatorSpec::Source { .. } => "Source",
            OperatorSpec::Values { .. } => "Values",
            OperatorSpec::Filter { .. } => "Filter",
            OperatorSpec::Project { .. } => "Project",
            OperatorSpec::Lateral { .. } => "LateralTable",
            OperatorSpec::Aggregate { .. } => "Aggregate",
            OperatorSpec::WindowAssign { .. } => "WindowAssign",
            OperatorSpec::WindowAggregate { .. } => "WindowAggregate",
            OperatorSpec::TopN { .. } => "TopN",
            OperatorSpec::UpsertNormalize { .. } => "UpsertNormalize",
            OperatorSpec::Join { .. } => "Join",
            OperatorSpec::Sort { .. } => "Sort",
            OperatorSpec::Limit { .. } => "Limit",
            OperatorSpec::Sink { .. } => "Sink",
            OperatorSpec::Collect => "Collect",
        }
    }

    /// One line saying what the node does.
    pub fn describe(&self) -> String {
        let list = |exprs: &[Expr]| {
            exprs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            OperatorSpec::Source {
                table,
                watermark,
                projection,
            } => {
                let mut text = format!(
                    "{} [{}]",
                    table.name,
                    table.options.get("connector").map_or("?", String::as_str)
                );
                if let Some(w) = watermark {
                    let in_table = projection
                        .as_ref()
                        .and_then(|p| p.get(w.column).copied())
                        .unwrap_or(w.column);
                    let column = table
                        .schema
                        .fields()
                        .get(in_table)
                        .map_or("?", |f| f.name());
                    let _ = write!(text, " watermark {column} - {} ms", w.delay_millis);
                }
                text
            }
            OperatorSpec::Values { rows } => format!("{} row(s)", rows.len()),
            OperatorSpec::Filter { predicate, .. } => predicate.to_string(),
            OperatorSpec::Project { exprs, .. } => list(exprs),
            OperatorSpec::Lateral {
                function,
                args,
                outer,
                ..
            } => format!(
                "{}{}({})",
                if *outer { "left join " } else { "" },
                function.0.sql_name,
                list(args)
            ),
            OperatorSpec::Aggregate {
                group_exprs,
                aggr_exprs,
                ..
            } => format!(
                "group by [{}] compute [{}]",
                list(group_exprs),
                list(aggr_exprs)
            ),
            OperatorSpec::WindowAssign { window, slices, .. } => {
                format!("{window}{}", if *slices { " as slices" } else { "" })
            }
            OperatorSpec::WindowAggregate {
                window,
                sliced,
                key_exprs,
                aggr_exprs,
                ..
            } => format!(
                "{window}{} group by [{}] compute [{}]",
                if *sliced { " from slices" } else { "" },
                list(key_exprs),
                list(aggr_exprs)
            ),
            OperatorSpec::Join {
                left_join,
                semi,
                left_keys,
                right_keys,
                filter,
                interval,
                window_ends,
                state_ttl_millis,
                ..
            } => format!(
                "{} join on [{}]{}; {}",
                if *semi {
                    "left semi"
                } else if *left_join {
                    "left"
                } else {
                    "inner"
                },
                left_keys
                    .iter()
                    .zip(right_keys)
                    .map(|(l, r)| format!("{l} = {r}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                filter
                    .as_ref()
                    .map(|f| format!(" filter {f}"))
                    .unwrap_or_default(),
                match (interval, window_ends) {
                    (Some(b), _) => format!(
                        "interval join: left time - right time in [{} ms, {} ms], state freed \
                         by the watermark",
                        b.lower_millis, b.upper_millis
                    ),
                    (None, Some(_)) => {
                        "window join: state freed as the watermark passes window_end".to_string()
                    }
                    (None, None) => match state_ttl_millis {
                        Some(ttl) => format!(
                            "keeps each row of both inputs in state for {ttl} ms \
                             ('table.exec.state.ttl')"
                        ),
                        None => "keeps every row of both inputs in state (set \
                                 'table.exec.state.ttl' to bound it)"
                            .to_string(),
                    },
                }
            ),
            OperatorSpec::TopN {
                partition_by,
                order_by,
                limit,
                ..
            } => format!(
                "top {limit} by [{}] per [{}]",
                order_by
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                list(partition_by)
            ),
            OperatorSpec::UpsertNormalize { key, .. } => {
                format!("the last row per [{}], as changes", list(key))
            }
            OperatorSpec::Sort { exprs, fetch, .. } => format!(
                "{}{}",
                exprs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                fetch.map(|f| format!(" fetch {f}")).unwrap_or_default()
            ),
            OperatorSpec::Limit { skip, fetch } => format!(
                "skip {skip}{}",
                fetch.map(|f| format!(" fetch {f}")).unwrap_or_default()
            ),
            OperatorSpec::Sink { table } => format!(
                "{} [{}]",
                table.name,
                table.options.get("connector").map_or("?", String::as_str)
            ),
            OperatorSpec::Collect => "rows to the client".to_string(),
        }
    }
}

impl fmt::Display for Partitioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partitioning::Forward => f.write_str("forward"),
            Partitioning::Rebalance => f.write_str("rebalance"),
            Partitioning::Broadcast => f.write_str("broadcast"),
            Partitioning::Hash(keys) => {
                let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
                write!(f, "hash({})", keys.join(", "))
            }
        }
    }
}

impl Graph {
    pub fn inputs_of(&self, node: usize) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.to == node)
    }

    pub fn outputs_of(&self, node: usize) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.from == node)
    }

    /// The text `EXPLAIN` prints: one line per operator, then one per edge.
    pub fn explain(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "dataflow: {} operators, max parallelism {}",
            self.nodes.len(),
            self.max_parallelism
        );
        for node in &self.nodes {
            let _ = writeln!(
                text,
                "  [{}] {} (parallelism {}{}): {}",
                node.id,
                node.operator.name(),
                node.parallelism,
                if node.changelog { ", updates" } else { "" },
                node.operator.describe()
            );
        }
        for edge in &self.edges {
            let _ = writeln!(
                text,
                "  [{}] -> [{}] {}",
                edge.from, edge.to, edge.partitioning
            );
        }
        text
    }
}

/// Shorthand used by the translator and tests.
pub(crate) fn arrow_schema(schema: &DFSchemaRef) -> SchemaRef {
    Arc::new(schema.as_arrow().clone())
}
