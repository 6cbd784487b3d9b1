//! DataFusion logical plan → Weir dataflow graph.

use datafusion_common::DFSchemaRef;
use datafusion_common::NullEquality;
use datafusion_common::tree_node::TreeNode;
use datafusion_expr::logical_plan::{FetchType, SkipType};
use datafusion_expr::{Expr, JoinType, LogicalPlan};

use super::interval;
use super::top_n;
use super::window::{self as window_plan, WindowLineage};
use super::{
    Edge, Graph, Node, OperatorSpec, Partitioning, PlanOptions, SourceWatermark, arrow_schema,
};
use crate::connector::{self, ConnectorError, TableDef};
use crate::sql::Catalog;
use crate::sql::lateral::LateralTable;
use crate::sql::window::WindowTvf;

/// Why a query cannot become a dataflow graph. Always the user's to fix.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

/// Where the query's rows go.
#[derive(Debug, Clone)]
pub enum Destination {
    Table(TableDef),
    Collect,
}

/// Builds the graph of `plan` writing to `destination`.
///
/// # Errors
/// Constructs Weir does not run (yet), and tables whose connector cannot be read or written.
pub fn translate(
    plan: &LogicalPlan,
    catalog: &Catalog,
    destination: Destination,
    options: PlanOptions,
) -> Result<Graph, PlanError> {
    let mut builder = Builder {
        catalog,
        options,
        sliced_windows: Vec::new(),
        top_n_limits: Vec::new(),
        graph: Graph {
            nodes: Vec::new(),
            edges: Vec::new(),
            max_parallelism: options.max_parallelism,
            batch_size: options.batch_size.max(1),
        },
    };
    let root = builder.add(plan)?;
    let root_parallelism = builder.graph.nodes[root].parallelism;
    let schema = builder.graph.nodes[root].schema.clone();
    let changelog = builder.changelog(root);
    let end = match destination {
        Destination::Table(table) => {
            connector::validate(&table, false)?;
            if changelog {
                connector::check_accepts_changelog(&table)?;
            }
            builder.node(OperatorSpec::Sink { table }, root_parallelism, schema)
        }
        Destination::Collect => builder.node(OperatorSpec::Collect, 1, schema),
    };
    builder.graph.nodes[end].changelog = changelog;
    builder.connect(root, end);
    Ok(builder.graph)
}

struct Builder<'a> {
    catalog: &'a Catalog,
    options: PlanOptions,
    /// Window table functions (by node address) that feed a window aggregation, which assign
    /// slices rather than windows.
    sliced_windows: Vec<usize>,
    /// `ROW_NUMBER()` window nodes (by address) and the most rows a filter above keeps.
    top_n_limits: Vec<(usize, usize)>,
    graph: Graph,
}

impl Builder<'_> {
    fn node(
        &mut self,
        operator: OperatorSpec,
        parallelism: usize,
        schema: arrow::datatypes::SchemaRef,
    ) -> usize {
        let id = self.graph.nodes.len();
        self.graph.nodes.push(Node {
            id,
            operator,
            parallelism,
            schema,
            changelog: false,
        });
        id
    }

    fn changelog(&self, node: usize) -> bool {
        self.graph.nodes[node].changelog
    }

    fn edge(&mut self, from: usize, to: usize, partitioning: Partitioning) {
        self.graph.edges.push(Edge {
            from,
            to,
            partitioning,
        });
    }

    /// Forward when parallelism matches, else rebalance.
    fn connect(&mut self, from: usize, to: usize) {
        let partitioning = if self.graph.nodes[from].parallelism == self.graph.nodes[to].parallelism
        {
            Partitioning::Forward
        } else {
            Partitioning::Rebalance
        };
        self.edge(from, to, partitioning);
    }

    /// A one-input, row-by-row node after `input`, at the input's parallelism, joined forward
    /// (it passes a changelog on as one).
    fn then(&mut self, input: usize, operator: OperatorSpec, schema: &DFSchemaRef) -> usize {
        let parallelism = self.graph.nodes[input].parallelism;
        let id = self.node(operator, parallelism, arrow_schema(schema));
        self.graph.nodes[id].changelog = self.changelog(input);
        self.connect(input, id);
        id
    }

    /// `'table.exec.state.ttl'`, in streaming mode only (a batch job's state lives as long as
    /// the job).
    fn state_ttl(&self) -> Option<u64> {
        self.options
            .state_ttl_millis
            .filter(|_| self.options.streaming)
    }

    /// Whether `plan` reads a source that never ends.
    fn unbounded(&self, plan: &LogicalPlan) -> bool {
        let mut unbounded = false;
        let _ = plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Some(entry) = self.catalog.table(scan.table_name.table())
            {
                unbounded |= !connector::is_bounded(&entry.def);
            }
            Ok(datafusion_common::tree_node::TreeNodeRecursion::Continue)
        });
        unbounded
    }

    /// Refuses an updating input where `what` needs one that only appends.
    fn append_only(&self, input: usize, what: &str) -> Result<(), PlanError> {
        if self.changelog(input) {
            return Err(PlanError::Unsupported(format!(
                "{what} over an updating input (the result of a GROUP BY without a window) is \
                 not supported yet; aggregate in one GROUP BY, or use a window"
            )));
        }
        Ok(())
    }

    /// An `upsert-kafka` table: every column read (the key must reach the normalizing step),
    /// the rows keyed by the primary key into [`OperatorSpec::UpsertNormalize`], then the
    /// scan's columns, filters and limit.
    fn upsert_scan(
        &mut self,
        scan: &datafusion_expr::logical_plan::TableScan,
        entry: &crate::sql::catalog::TableEntry,
    ) -> Result<usize, PlanError> {
        let parallelism = self.options.parallelism.max(1);
        let def = &entry.def;
        let full: DFSchemaRef = std::sync::Arc::new(
            datafusion_common::DFSchema::try_from_qualified_schema(
                scan.table_name.clone(),
                &def.schema,
            )
            .map_err(|e| PlanError::Unsupported(e.to_string()))?,
        );
        let column = |name: &str| {
            Expr::Column(datafusion_common::Column::new(
                Some(scan.table_name.clone()),
                name,
            ))
        };
        let source = self.node(
            OperatorSpec::Source {
                table: def.clone(),
                projection: None,
                watermark: self.source_watermark(entry, None),
            },
            parallelism,
            def.schema.clone(),
        );
        // The reader's rows carry row kinds (+U, and -D for tombstones).
        self.graph.nodes[source].changelog = true;
        let key: Vec<Expr> = def.primary_key.iter().map(|k| column(k)).collect();
        let mut id = self.node(
            OperatorSpec::UpsertNormalize {
                key: key.clone(),
                input_schema: full.clone(),
            },
            parallelism,
            def.schema.clone(),
        );
        self.graph.nodes[id].changelog = self.options.streaming;
        self.edge(source, id, Partitioning::Hash(key));
        if let Some(projection) = &scan.projection {
            let exprs = projection
                .iter()
                .map(|&i| column(def.schema.field(i).name()))
                .collect();
            id = self.then(
                id,
                OperatorSpec::Project {
                    exprs,
                    input_schema: full,
                },
                &scan.projected_schema,
            );
        }
        Ok(self.scan_filters_and_limit(id, scan))
    }

    /// The filters and limit DataFusion pushed into a scan, after the node `id` reading it.
    fn scan_filters_and_limit(
        &mut self,
        mut id: usize,
        scan: &datafusion_expr::logical_plan::TableScan,
    ) -> usize {
        if let Some(predicate) = scan.filters.iter().cloned().reduce(Expr::and) {
            id = self.then(
                id,
                OperatorSpec::Filter {
                    predicate,
                    input_schema: scan.projected_schema.clone(),
                },
                &scan.projected_schema,
            );
        }
        if let Some(fetch) = scan.fetch {
            id = self.limit(id, 0, Some(fetch), &scan.projected_schema);
        }
        id
    }

    /// In streaming mode, the watermark of a table whose watermark column the scan reads.
    fn source_watermark(
        &self,
        entry: &crate::sql::catalog::TableEntry,
        projection: Option<&[usize]>,
    ) -> Option<SourceWatermark> {
        if !self.options.streaming {
            return None;
        }
        let (watermark, delay_millis) = (entry.watermark.as_ref()?, entry.watermark_delay_millis?);
        let in_table = entry.def.schema.index_of(&watermark.column).ok()?;
        let column = match projection {
            Some(columns) => columns.iter().position(|&c| c == in_table)?,
            None => in_table,
        };
        let idle_timeout_millis = entry
            .def
            .options
            .get(connector::IDLE_TIMEOUT)
            .and_then(|value| connector::duration(value))
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Some(SourceWatermark {
            column,
            delay_millis,
            idle_timeout_millis,
        })
    }

    fn add(&mut self, plan: &LogicalPlan) -> Result<usize, PlanError> {
        let parallelism = self.options.parallelism.max(1);
        match plan {
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table();
                let Some(entry) = self.catalog.table(name) else {
                    return Err(PlanError::Unsupported(format!("table '{name}' not found")));
                };
                if connector::validate(&entry.def, true)? == connector::ConnectorKind::UpsertKafka {
                    return self.upsert_scan(scan, entry);
                }
                let watermark = self.source_watermark(entry, scan.projection.as_deref());
                let id = self.node(
                    OperatorSpec::Source {
                        table: entry.def.clone(),
                        projection: scan.projection.clone(),
                        watermark,
                    },
                    parallelism,
                    arrow_schema(&scan.projected_schema),
                );
                Ok(self.scan_filters_and_limit(id, scan))
            }
            LogicalPlan::Projection(projection) => {
                let input = self.add(&projection.input)?;
                Ok(self.then(
                    input,
                    OperatorSpec::Project {
                        exprs: projection.expr.clone(),
                        input_schema: projection.input.schema().clone(),
                    },
                    &projection.schema,
                ))
            }
            LogicalPlan::Filter(filter) => {
                if let Some((window, limit)) = top_n::limit_below(filter) {
                    self.top_n_limits.push((window, limit));
                }
                let input = self.add(&filter.input)?;
                Ok(self.then(
                    input,
                    OperatorSpec::Filter {
                        predicate: filter.predicate.clone(),
                        input_schema: filter.input.schema().clone(),
                    },
                    filter.input.schema(),
                ))
            }
            // Renames columns' qualifiers only: the batches are the same.
            LogicalPlan::SubqueryAlias(alias) => self.add(&alias.input),
            LogicalPlan::Aggregate(aggregate) => {
                if aggregate
                    .group_expr
                    .iter()
                    .any(|e| matches!(e, Expr::GroupingSet(_)))
                {
                    return Err(PlanError::Unsupported(
                        "GROUPING SETS, ROLLUP and CUBE are not supported yet".into(),
                    ));
                }
                if let Some(lineage) = window_plan::lineage(&aggregate.input)
                    && let Some(spec) = window_plan::window_aggregate(aggregate, &lineage)?
                {
                    return self.window_aggregate(aggregate, &lineage, spec);
                }
                let input = self.add(&aggregate.input)?;
                let updating_input = self.changelog(input);
                if updating_input {
                    check_retractable(&aggregate.aggr_expr)?;
                }
                let keyed = !aggregate.group_expr.is_empty();
                let id = self.node(
                    OperatorSpec::Aggregate {
                        group_exprs: aggregate.group_expr.clone(),
                        aggr_exprs: aggregate.aggr_expr.clone(),
                        input_schema: aggregate.input.schema().clone(),
                        output_schema: aggregate.schema.clone(),
                        updating_input,
                        state_ttl_millis: self.state_ttl(),
                    },
                    if keyed { parallelism } else { 1 },
                    arrow_schema(&aggregate.schema),
                );
                // In streaming mode the result updates as rows come.
                self.graph.nodes[id].changelog = self.options.streaming;
                if keyed {
                    self.edge(input, id, Partitioning::Hash(aggregate.group_expr.clone()));
                } else {
                    self.connect(input, id);
                }
                Ok(id)
            }
            LogicalPlan::Extension(extension)
                if let Some(tvf) = extension.node.as_any().downcast_ref::<WindowTvf>() =>
            {
                let slices = self
                    .sliced_windows
                    .contains(&window_plan::node_id(&extension.node));
                self.window_assign(tvf, slices)
            }
            LogicalPlan::Extension(extension) => {
                let Some(lateral) = extension.node.as_any().downcast_ref::<LateralTable>() else {
                    return Err(PlanError::Unsupported(format!(
                        "unsupported plan node {}",
                        extension.node.name()
                    )));
                };
                let input = self.add(&lateral.input)?;
                Ok(self.then(
                    input,
                    OperatorSpec::Lateral {
                        function: lateral.function.clone(),
                        args: lateral.args.clone(),
                        outer: lateral.outer,
                        input_schema: lateral.input.schema().clone(),
                    },
                    &lateral.schema,
                ))
            }
            LogicalPlan::Sort(sort) => {
                if self.options.streaming {
                    return Err(PlanError::Unsupported(
                        "ORDER BY runs in batch mode only: a stream never ends, so it is never \
                         sorted (use a window with Top-N in streaming mode)"
                            .into(),
                    ));
                }
                let input = self.add(&sort.input)?;
                let id = self.node(
                    OperatorSpec::Sort {
                        exprs: sort.expr.clone(),
                        fetch: sort.fetch,
                        input_schema: sort.input.schema().clone(),
                    },
                    1,
                    arrow_schema(sort.input.schema()),
                );
                self.connect(input, id);
                Ok(id)
            }
            LogicalPlan::Limit(limit) => {
                let skip = match limit.get_skip_type() {
                    Ok(SkipType::Literal(skip)) => skip,
                    _ => return Err(PlanError::Unsupported("OFFSET must be a number".into())),
                };
                let fetch = match limit.get_fetch_type() {
                    Ok(FetchType::Literal(fetch)) => fetch,
                    _ => return Err(PlanError::Unsupported("LIMIT must be a number".into())),
                };
                let input = self.add(&limit.input)?;
                self.append_only(input, "LIMIT")?;
                Ok(self.limit(input, skip, fetch, limit.input.schema()))
            }
            LogicalPlan::Window(window) => {
                let id = std::ptr::from_ref(window) as usize;
                let Some(&(_, limit)) = self.top_n_limits.iter().find(|(w, _)| *w == id) else {
                    return Err(PlanError::Unsupported(
                        "ROW_NUMBER() OVER (...) runs as Top-N: keep it at most N in an outer \
                         query (WHERE rn <= N); other OVER windows are not supported yet"
                            .into(),
                    ));
                };
                let (partition_by, order_by) = top_n::row_number(window)?;
                let input = self.add(&window.input)?;
                self.append_only(input, "Top-N")?;
                let keyed = !partition_by.is_empty();
                let id = self.node(
                    OperatorSpec::TopN {
                        partition_by: partition_by.clone(),
                        order_by,
                        limit,
                        input_schema: window.input.schema().clone(),
                    },
                    if keyed { parallelism } else { 1 },
                    arrow_schema(&window.schema),
                );
                self.graph.nodes[id].changelog = self.options.streaming;
                if keyed {
                    self.edge(input, id, Partitioning::Hash(partition_by));
                } else {
                    self.connect(input, id);
                }
                Ok(id)
            }
            LogicalPlan::Values(values) => Ok(self.node(
                OperatorSpec::Values {
                    rows: values.values.clone(),
                },
                1,
                arrow_schema(&values.schema),
            )),
            LogicalPlan::EmptyRelation(empty) => Ok(self.node(
                OperatorSpec::Values {
                    rows: if empty.produce_one_row {
                        vec![Vec::new()]
                    } else {
                        Vec::new()
                    },
                },
                1,
                arrow_schema(&empty.schema),
            )),
            LogicalPlan::Join(join) => {
                let (left_join, semi) = match join.join_type {
                    JoinType::Inner => (false, false),
                    JoinType::Left => (true, false),
                    JoinType::LeftSemi => (false, true),
                    other => {
                        return Err(PlanError::Unsupported(format!(
                            "{} joins are not supported yet (inner and left joins are; write a \
                             right join as a left join with the sides swapped)",
                            other.to_string().to_lowercase()
                        )));
                    }
                };
                if join.on.is_empty() {
                    return Err(PlanError::Unsupported(
                        "a join needs an equality between its two sides (ON a.k = b.k): \
                         without one every row meets every other, and state has no key"
                            .into(),
                    ));
                }
                let (left_keys, right_keys): (Vec<Expr>, Vec<Expr>) =
                    join.on.iter().cloned().unzip();
                let interval = if self.options.streaming {
                    let unbounded = self.unbounded(&join.left) || self.unbounded(&join.right);
                    interval::bounds(join, self.catalog, unbounded)?
                } else {
                    None
                };
                let window_ends = if self.options.streaming && interval.is_none() {
                    window_plan::joined_window_ends(join)
                } else {
                    None
                };
                let left = self.add(&join.left)?;
                self.append_only(left, "a join")?;
                let right = self.add(&join.right)?;
                self.append_only(right, "a join")?;
                let id = self.node(
                    OperatorSpec::Join {
                        left_join,
                        semi,
                        left_keys: left_keys.clone(),
                        right_keys: right_keys.clone(),
                        nulls_equal: join.null_equality == NullEquality::NullEqualsNull,
                        filter: join.filter.clone(),
                        interval,
                        window_ends,
                        state_ttl_millis: if interval.is_none() && window_ends.is_none() {
                            self.state_ttl()
                        } else {
                            None
                        },
                        left_schema: join.left.schema().clone(),
                        right_schema: join.right.schema().clone(),
                        output_schema: join.schema.clone(),
                    },
                    parallelism,
                    arrow_schema(&join.schema),
                );
                // A left join's padded rows are taken back when a match comes (an interval
                // join's come out only when no match can come any more).
                self.graph.nodes[id].changelog = left_join
                    && self.options.streaming
                    && interval.is_none()
                    && window_ends.is_none();
                self.edge(left, id, Partitioning::Hash(left_keys));
                self.edge(right, id, Partitioning::Hash(right_keys));
                Ok(id)
            }
            other => Err(PlanError::Unsupported(format!(
                "unsupported query construct: {}",
                other.display()
            ))),
        }
    }

    /// A window table function's rows (checking, in streaming mode, that its time column is a
    /// time attribute).
    fn window_assign(&mut self, tvf: &WindowTvf, slices: bool) -> Result<usize, PlanError> {
        let Some(time_column) = tvf.time_index() else {
            return Err(PlanError::Unsupported(format!(
                "{}: time column {} not found",
                tvf.kind.function_name(),
                tvf.time_column
            )));
        };
        if self.options.streaming {
            window_plan::check_time_attribute(self.catalog, tvf, time_column)?;
        }
        if !slices && matches!(tvf.kind, crate::sql::window::WindowKind::Session { .. }) {
            return Err(PlanError::Unsupported(
                "window SESSION: a row's session depends on the rows around it, so SESSION \
                 works only under GROUP BY window_start, window_end (with the keys sessions \
                 are per), and nothing before that GROUP BY may read the window columns"
                    .into(),
            ));
        }
        let input = self.add(&tvf.input)?;
        self.append_only(input, "a window table function")?;
        Ok(self.then(
            input,
            OperatorSpec::WindowAssign {
                window: tvf.kind,
                time_column,
                slices,
            },
            &tvf.schema,
        ))
    }

    /// GROUP BY window_start, window_end [, keys] over a window table function.
    fn window_aggregate(
        &mut self,
        aggregate: &datafusion_expr::logical_plan::Aggregate,
        lineage: &WindowLineage,
        spec: OperatorSpec,
    ) -> Result<usize, PlanError> {
        if matches!(spec, OperatorSpec::WindowAggregate { sliced: true, .. }) {
            self.sliced_windows.push(lineage.node_id);
        }
        let input = self.add(&aggregate.input)?;
        self.append_only(input, "a window aggregation")?;
        let keys = match &spec {
            OperatorSpec::WindowAggregate { key_exprs, .. } => key_exprs.clone(),
            _ => Vec::new(),
        };
        let keyed = !keys.is_empty();
        let parallelism = if keyed {
            self.options.parallelism.max(1)
        } else {
            1
        };
        let id = self.node(spec, parallelism, arrow_schema(&aggregate.schema));
        if keyed {
            self.edge(input, id, Partitioning::Hash(keys));
        } else {
            self.connect(input, id);
        }
        Ok(id)
    }

    fn limit(
        &mut self,
        input: usize,
        skip: usize,
        fetch: Option<usize>,
        schema: &DFSchemaRef,
    ) -> usize {
        let id = self.node(OperatorSpec::Limit { skip, fetch }, 1, arrow_schema(schema));
        self.connect(input, id);
        id
    }
}

/// Over an updating input every aggregate must take rows back out of its state: COUNT, SUM and
/// AVG (not DISTINCT), and Wasm aggregates that implement `retract`.
fn check_retractable(aggr_exprs: &[Expr]) -> Result<(), PlanError> {
    for expr in aggr_exprs {
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(function) = inner else {
            continue;
        };
        let udaf: &dyn std::any::Any = function.func.inner().as_ref();
        let (name, retracts) = match udaf.downcast_ref::<crate::functions::WasmAggregate>() {
            Some(wasm) => (
                wasm.function.sql_name.clone(),
                matches!(
                    wasm.function.spec.kind,
                    crate::udf::FunctionKind::Aggregate { retract: true, .. }
                ),
            ),
            None => {
                let name = function.func.name().to_string();
                let retracts =
                    ["count", "sum", "avg"].contains(&name.as_str()) && !function.params.distinct;
                (name.to_uppercase(), retracts)
            }
        };
        if !retracts {
            return Err(PlanError::Unsupported(format!(
                "{name} cannot take rows back out of its state (retract), which an aggregate \
                 over an updating input (the changes of a GROUP BY, Top-N or left join) needs: \
                 COUNT, SUM and AVG can (not DISTINCT), and Wasm aggregates that implement \
                 retract; aggregate before the update, or use a window"
            )));
        }
    }
    Ok(())
}
