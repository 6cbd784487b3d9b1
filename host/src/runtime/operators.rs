//! The stateless and batch-only operators, and `create`, which builds any operator of a node.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array, new_null_array};
use arrow::compute::{SortColumn, concat_batches, filter_record_batch, lexsort_to_indices, take};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::{DFSchemaRef, ScalarValue};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{Expr, SortExpr};
use datafusion_physical_expr::{PhysicalExpr, create_physical_expr};

use super::aggregate::{AggregateMode, HashAggregate};
use super::changelog::{row_kinds, with_row_kinds};
use super::join::{Join, JoinSpec};
use super::session::SessionAggregate;
use super::top_n::TopN;
use super::upsert::UpsertNormalize;
use super::window::WindowAssign;
use super::window_aggregate::{WindowAggregate, WindowAggregateSpec};
use crate::connector::Subtask;
use crate::functions::WasmFunction;
use crate::plan::{Node, OperatorSpec};
use crate::sql::window::WindowKind;
use crate::state::KeyedStateBackend;
use crate::udf::coerce;

/// One subtask's operator. Called on a blocking thread, one batch at a time.
pub trait Operator: Send {
    fn name(&self) -> &'static str;
    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String>;
    /// A batch from input `input` (0 for single-input operators; a join's left is 0, right 1).
    fn on_input(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), String> {
        self.on_batch(batch, out)
    }
    /// Event time has reached `watermark` (ms): no row at or before it will come any more.
    /// Emits what that completes (a window's result). The end of input comes after a watermark
    /// of [`super::watermark::END_OF_TIME`].
    fn on_watermark(&mut self, _watermark: i64, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        Ok(())
    }
    /// All input has ended: emit what is held back.
    fn on_end(&mut self, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        Ok(())
    }
    /// How often the operator wants [`Operator::on_timer`] (processing-time windows).
    fn timer_interval(&self) -> Option<std::time::Duration> {
        None
    }
    /// The wall clock reads `now` (ms since the epoch).
    fn on_timer(&mut self, _now: i64, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        Ok(())
    }
    /// Rows dropped as late since the last call (they are counted in the job's stats).
    fn take_late_rows(&mut self) -> u64 {
        0
    }
    /// Needs no more input (a satisfied LIMIT).
    fn is_finished(&self) -> bool {
        false
    }
    /// The operator's keyed state, if it keeps any: checkpoints snapshot it and restores fill it.
    fn state_backend(&mut self) -> Option<&mut Box<dyn KeyedStateBackend>> {
        None
    }
    /// The watermark the operator has acted on, kept by checkpoints so that rows late before a
    /// restore are late after it.
    fn current_watermark(&self) -> Option<i64> {
        None
    }
    /// After its backend was restored: rebuilds what the operator derives from its state (the
    /// timers of windows and expiring rows) and takes back its watermark.
    fn on_restore(&mut self, _watermark: Option<i64>) -> Result<(), String> {
        Ok(())
    }
}

pub(crate) fn physical(expr: &Expr, schema: &DFSchemaRef) -> Result<Arc<dyn PhysicalExpr>, String> {
    create_physical_expr(
        expr,
        schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )
    .map_err(|e| format!("cannot evaluate {expr}: {}", crate::sql::clean_message(&e)))
}

pub(crate) fn evaluate(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<ArrayRef, String> {
    expr.evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|e| evaluation_error(&e))
}

/// A Wasm function's error keeps its own words; DataFusion's lose their prefixes.
pub(crate) fn evaluation_error(error: &datafusion_common::DataFusionError) -> String {
    crate::sql::clean_message(error)
}

/// Builds the operator of `node` for one subtask.
pub fn create(
    spec: &OperatorSpec,
    node: &Node,
    _subtask: Subtask,
    max_parallelism: usize,
) -> Result<Box<dyn Operator>, String> {
    Ok(match spec {
        OperatorSpec::Filter {
            predicate,
            input_schema,
        } => Box::new(Filter {
            predicate: physical(predicate, input_schema)?,
        }),
        OperatorSpec::Project {
            exprs,
            input_schema,
        } => Box::new(Project {
            exprs: exprs
                .iter()
                .map(|e| physical(e, input_schema))
                .collect::<Result<_, _>>()?,
            schema: node.schema.clone(),
        }),
        OperatorSpec::Lateral {
            function,
            args,
            outer,
            input_schema,
        } => Box::new(Lateral {
            function: function.0.clone(),
            args: args
                .iter()
                .map(|e| physical(e, input_schema))
                .collect::<Result<_, _>>()?,
            outer: *outer,
            schema: node.schema.clone(),
        }),
        OperatorSpec::Aggregate {
            group_exprs,
            aggr_exprs,
            input_schema,
            updating_input,
            state_ttl_millis,
            ..
        } => Box::new(HashAggregate::new(
            group_exprs,
            aggr_exprs,
            input_schema,
            node.schema.clone(),
            max_parallelism,
            AggregateMode {
                updating_input: *updating_input,
                emit_changes: node.changelog,
                state_ttl_millis: *state_ttl_millis,
            },
        )?),
        OperatorSpec::WindowAssign {
            window,
            time_column,
            slices,
        } => Box::new(WindowAssign::new(
            *window,
            *time_column,
            *slices,
            node.schema.clone(),
        )),
        OperatorSpec::WindowAggregate {
            window,
            processing_time,
            sliced,
            start_column,
            end_column,
            key_exprs,
            groups,
            aggr_exprs,
            input_schema,
        } => {
            let spec = WindowAggregateSpec {
                window: *window,
                processing_time: *processing_time,
                sliced: *sliced,
                start_column: *start_column,
                end_column: *end_column,
                key_exprs,
                groups,
                aggr_exprs,
                input_schema,
            };
            if *sliced && matches!(window, WindowKind::Session { .. }) {
                Box::new(SessionAggregate::new(
                    &spec,
                    node.schema.clone(),
                    max_parallelism,
                )?)
            } else {
                Box::new(WindowAggregate::new(
                    &spec,
                    node.schema.clone(),
                    max_parallelism,
                )?)
            }
        }
        OperatorSpec::Join {
            left_join,
            semi,
            left_keys,
            right_keys,
            nulls_equal,
            filter,
            interval,
            window_ends,
            state_ttl_millis,
            left_schema,
            right_schema,
            output_schema,
        } => Box::new(Join::new(
            &JoinSpec {
                left_join: *left_join,
                semi: *semi,
                left_keys,
                right_keys,
                nulls_equal: *nulls_equal,
                filter: filter.as_ref(),
                interval: *interval,
                window_ends: *window_ends,
                state_ttl_millis: *state_ttl_millis,
                left_schema,
                right_schema,
                output_schema,
            },
            node.schema.clone(),
            max_parallelism,
            node.changelog,
        )?),
        OperatorSpec::TopN {
            partition_by,
            order_by,
            limit,
            input_schema,
        } => Box::new(TopN::new(
            partition_by,
            order_by,
            *limit,
            input_schema,
            node.schema.clone(),
            max_parallelism,
            node.changelog,
        )?),
        OperatorSpec::UpsertNormalize { key, input_schema } => Box::new(UpsertNormalize::new(
            key,
            input_schema,
            node.schema.clone(),
            max_parallelism,
            node.changelog,
        )?),
        OperatorSpec::Sort {
            exprs,
            fetch,
            input_schema,
        } => Box::new(Sort::new(exprs, *fetch, input_schema, node.schema.clone())?),
        OperatorSpec::Limit { skip, fetch } => Box::new(Limit {
            skip: *skip,
            remaining: *fetch,
        }),
        OperatorSpec::Values { rows } => Box::new(Values {
            rows: rows.clone(),
            schema: node.schema.clone(),
        }),
        OperatorSpec::Source { .. } | OperatorSpec::Sink { .. } | OperatorSpec::Collect => {
            return Err(format!("{} is not an operator", spec.name()));
        }
    })
}

struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
}

impl Operator for Filter {
    fn name(&self) -> &'static str {
        "Filter"
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let mask = evaluate(&self.predicate, &batch)?;
        let Some(mask) = mask.as_any().downcast_ref::<BooleanArray>() else {
            return Err(format!("the filter is {}, not BOOLEAN", mask.data_type()));
        };
        let filtered = filter_record_batch(&batch, mask).map_err(|e| e.to_string())?;
        out.push(filtered);
        Ok(())
    }
}

struct Project {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Operator for Project {
    fn name(&self) -> &'static str {
        "Project"
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let mut columns = self
            .exprs
            .iter()
            .map(|e| evaluate(e, &batch))
            .collect::<Result<Vec<_>, _>>()?;
        // A changelog keeps its row kinds.
        let schema = match row_kinds(&batch) {
            Some(kinds) => {
                columns.push(Arc::new(kinds.clone()));
                with_row_kinds(&self.schema)
            }
            None => self.schema.clone(),
        };
        out.push(make_batch(&schema, columns, batch.num_rows())?);
        Ok(())
    }
}

/// A batch of `schema` from columns (which may be none: `SELECT COUNT(*)` inputs).
pub(crate) fn make_batch(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    rows: usize,
) -> Result<RecordBatch, String> {
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| format!("cannot assemble a batch: {e}"))
}

struct Lateral {
    function: Arc<WasmFunction>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    outer: bool,
    schema: SchemaRef,
}

impl Operator for Lateral {
    fn name(&self) -> &'static str {
        "LateralTable"
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let rows = batch.num_rows();
        let mut args = Vec::with_capacity(self.args.len());
        for (expr, param) in self.args.iter().zip(&self.function.spec.params) {
            let array = evaluate(expr, &batch)?;
            args.push(coerce(&array, param.data_type).map_err(|e| {
                format!(
                    "{}: argument {}: {e}",
                    self.function.signature(),
                    param.name
                )
            })?);
        }
        let started = std::time::Instant::now();
        let result = self
            .function
            .module
            .with_instance(|instance| instance.call_table(self.function.export(), &args, rows));
        self.function.metrics.record(rows, started, &result);
        let produced = result.map_err(|e| e.to_string())?;
        let mut input_rows: Vec<u32> = produced.row_index.values().to_vec();
        let mut function_columns = produced.columns;
        if self.outer {
            // Input rows that produced nothing are kept once, with nulls; order by input row.
            let mut has_output = vec![false; rows];
            for &row in &input_rows {
                if let Some(seen) = has_output.get_mut(row as usize) {
                    *seen = true;
                }
            }
            let missing: Vec<u32> = (0..rows as u32)
                .filter(|r| !has_output[*r as usize])
                .collect();
            if !missing.is_empty() {
                let produced_rows = input_rows.len();
                input_rows.extend(&missing);
                let mut picks: Vec<Option<u32>> = (0..produced_rows as u32).map(Some).collect();
                picks.extend(std::iter::repeat_n(None, missing.len()));
                let picks = UInt32Array::from(picks);
                function_columns = function_columns
                    .iter()
                    .map(|c| take(c, &picks, None))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                let order = lexsort_to_indices(
                    &[SortColumn {
                        values: Arc::new(UInt32Array::from(input_rows.clone())),
                        options: None,
                    }],
                    None,
                )
                .map_err(|e| e.to_string())?;
                input_rows = order
                    .values()
                    .iter()
                    .map(|i| input_rows[*i as usize])
                    .collect();
                function_columns = function_columns
                    .iter()
                    .map(|c| take(c, &order, None))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
            }
        }
        let indices = UInt32Array::from(input_rows);
        let kinds = row_kinds(&batch).map(|k| Arc::new(k.clone()) as ArrayRef);
        let data_columns = batch.num_columns() - usize::from(kinds.is_some());
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .take(data_columns)
            .map(|c| take(c, &indices, None))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for (column, field) in function_columns
            .into_iter()
            .zip(self.schema.fields().iter().skip(data_columns))
        {
            let column = if column.data_type() == field.data_type() {
                column
            } else {
                arrow::compute::cast(&column, field.data_type()).map_err(|e| e.to_string())?
            };
            columns.push(column);
        }
        // A changelog keeps its row kinds: each output row has its input row's.
        let schema = match kinds {
            Some(kinds) => {
                columns.push(take(&kinds, &indices, None).map_err(|e| e.to_string())?);
                with_row_kinds(&self.schema)
            }
            None => self.schema.clone(),
        };
        out.push(make_batch(&schema, columns, indices.len())?);
        Ok(())
    }
}

struct Limit {
    skip: usize,
    remaining: Option<usize>,
}

impl Operator for Limit {
    fn name(&self) -> &'static str {
        "Limit"
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let mut batch = batch;
        if self.skip > 0 {
            let skipped = self.skip.min(batch.num_rows());
            self.skip -= skipped;
            batch = batch.slice(skipped, batch.num_rows() - skipped);
        }
        if let Some(remaining) = &mut self.remaining {
            let taken = (*remaining).min(batch.num_rows());
            *remaining -= taken;
            batch = batch.slice(0, taken);
        }
        out.push(batch);
        Ok(())
    }

    fn is_finished(&self) -> bool {
        self.remaining == Some(0)
    }
}

struct Sort {
    exprs: Vec<(Arc<dyn PhysicalExpr>, arrow::compute::SortOptions)>,
    fetch: Option<usize>,
    schema: SchemaRef,
    held: Vec<RecordBatch>,
}

impl Sort {
    fn new(
        exprs: &[SortExpr],
        fetch: Option<usize>,
        input_schema: &DFSchemaRef,
        schema: SchemaRef,
    ) -> Result<Self, String> {
        Ok(Self {
            exprs: exprs
                .iter()
                .map(|s| {
                    Ok((
                        physical(&s.expr, input_schema)?,
                        arrow::compute::SortOptions {
                            descending: !s.asc,
                            nulls_first: s.nulls_first,
                        },
                    ))
                })
                .collect::<Result<_, String>>()?,
            fetch,
            schema,
            held: Vec::new(),
        })
    }
}

impl Operator for Sort {
    fn name(&self) -> &'static str {
        "Sort"
    }

    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        self.held.push(batch);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let all = concat_batches(&self.schema, &self.held).map_err(|e| e.to_string())?;
        self.held.clear();
        if all.num_rows() == 0 {
            return Ok(());
        }
        let columns = self
            .exprs
            .iter()
            .map(|(e, options)| {
                Ok(SortColumn {
                    values: evaluate(e, &all)?,
                    options: Some(*options),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let indices = lexsort_to_indices(&columns, self.fetch).map_err(|e| e.to_string())?;
        let sorted =
            arrow::compute::take_record_batch(&all, &indices).map_err(|e| e.to_string())?;
        for offset in (0..sorted.num_rows()).step_by(super::BATCH_SIZE) {
            let len = super::BATCH_SIZE.min(sorted.num_rows() - offset);
            out.push(sorted.slice(offset, len));
        }
        Ok(())
    }
}

struct Values {
    rows: Vec<Vec<Expr>>,
    schema: SchemaRef,
}

impl Operator for Values {
    fn name(&self) -> &'static str {
        "Values"
    }

    fn on_batch(&mut self, _batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        Ok(())
    }

    fn on_end(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (index, field) in self.schema.fields().iter().enumerate() {
            let mut scalars = Vec::with_capacity(self.rows.len());
            for row in &self.rows {
                let scalar = match row.get(index).map(|e| e.clone().unalias()) {
                    Some(Expr::Literal(value, _)) => value,
                    Some(other) => {
                        return Err(format!("VALUES takes literals only, not {other}"));
                    }
                    None => ScalarValue::Null,
                };
                let scalar = if scalar.data_type() == *field.data_type() {
                    scalar
                } else {
                    scalar
                        .cast_to(field.data_type())
                        .map_err(|e| e.to_string())?
                };
                scalars.push(scalar);
            }
            columns.push(if scalars.is_empty() {
                new_null_array(field.data_type(), 0)
            } else {
                ScalarValue::iter_to_array(scalars).map_err(|e| e.to_string())?
            });
        }
        out.push(make_batch(&self.schema, columns, self.rows.len())?);
        Ok(())
    }
}
