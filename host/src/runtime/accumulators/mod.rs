//! Aggregate functions' states, built-in and Wasm, as one encoded row per group: what the
//! hash and window aggregations keep in the state backend.
//!
//! A group's state row holds every aggregate's state: a built-in's state fields (DataFusion's
//! `state()` columns), a Wasm aggregate's state bytes. Updating takes a batch and the stored rows
//! of the groups it touches, and gives their new rows: fresh DataFusion accumulators numbered 0..
//! for those groups merge the stored states and update with the batch (one call per aggregate,
//! one Wasm call per Wasm aggregate). Finishing merges any number of stored rows per group (the
//! slices of a window) and evaluates. Over an updating input, `retract.rs` takes rows back out.

mod retract;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, BooleanArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion_common::{DFSchemaRef, ScalarValue};
use datafusion_expr::{EmitTo, Expr, GroupsAccumulator};
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::GroupsAccumulatorAdapter;
use datafusion_physical_expr::PhysicalExpr;
use datafusion_physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};

use super::operators::{evaluate, evaluation_error, physical};
use crate::functions::{WasmAggregate, WasmFunction};
use crate::udf::{FunctionKind, coerce};

pub(super) enum Aggregator {
    BuiltIn {
        args: Vec<Arc<dyn PhysicalExpr>>,
        function: Arc<AggregateFunctionExpr>,
        /// How many columns its state has.
        state_columns: usize,
    },
    Wasm {
        function: Arc<WasmFunction>,
        args: Vec<Arc<dyn PhysicalExpr>>,
        /// The module's initial state, asked for once.
        initial: Option<Vec<u8>>,
    },
}

pub(super) struct Aggregate {
    aggregator: Aggregator,
    filter: Option<Arc<dyn PhysicalExpr>>,
}

/// Every aggregate of one aggregation, and the encoding of a group's states as one row.
pub(crate) struct Accumulators {
    aggregates: Vec<Aggregate>,
    state_converter: RowConverter,
    /// Over an updating input: rows may be taken back (`-U`, `-D`). Built-ins then keep
    /// DataFusion's retractable (sliding) accumulator states, per group, and the state row ends
    /// with the group's row count, so that a group whose rows are all gone can be deleted.
    retracting: bool,
}

impl Accumulators {
    pub(crate) fn new(aggr_exprs: &[Expr], input_schema: &DFSchemaRef) -> Result<Self, String> {
        Self::build(aggr_exprs, input_schema, false)
    }

    /// Accumulators that also take rows back (over an updating input).
    ///
    /// # Errors
    /// An aggregate that cannot retract (MIN, MAX, DISTINCT; a Wasm aggregate without
    /// `retract`).
    pub(crate) fn retracting(
        aggr_exprs: &[Expr],
        input_schema: &DFSchemaRef,
    ) -> Result<Self, String> {
        Self::build(aggr_exprs, input_schema, true)
    }

    fn build(
        aggr_exprs: &[Expr],
        input_schema: &DFSchemaRef,
        retracting: bool,
    ) -> Result<Self, String> {
        let mut aggregates = Vec::with_capacity(aggr_exprs.len());
        let mut state_types = Vec::new();
        for expr in aggr_exprs {
            let (aggregate, types) = Self::aggregate(expr, input_schema, retracting)?;
            aggregates.push(aggregate);
            state_types.extend(types.into_iter().map(SortField::new));
        }
        if retracting {
            state_types.push(SortField::new(DataType::Int64));
        }
        let state_converter = RowConverter::new(state_types)
            .map_err(|e| format!("cannot keep the state of these aggregates: {e}"))?;
        Ok(Self {
            aggregates,
            state_converter,
            retracting,
        })
    }

    /// Fails unless every Wasm aggregate can merge states (windows made of slices need it).
    pub(crate) fn require_merge(&self, why: &str) -> Result<(), String> {
        for aggregate in &self.aggregates {
            if let Aggregator::Wasm { function, .. } = &aggregate.aggregator
                && matches!(
                    function.spec.kind,
                    FunctionKind::Aggregate { merge: false, .. }
                )
            {
                return Err(format!(
                    "{}: the aggregate has no merge, which {why} needs; implement merge in the \
                     module",
                    function.sql_name
                ));
            }
        }
        Ok(())
    }

    /// One aggregate, and the types of its state columns.
    fn aggregate(
        expr: &Expr,
        input_schema: &DFSchemaRef,
        retracting: bool,
    ) -> Result<(Aggregate, Vec<DataType>), String> {
        let (name, expr) = match expr {
            Expr::Alias(alias) => (alias.name.clone(), alias.expr.as_ref()),
            other => (other.schema_name().to_string(), other),
        };
        let Expr::AggregateFunction(function) = expr else {
            return Err(format!("{expr} is not an aggregate function"));
        };
        let params = &function.params;
        if !params.order_by.is_empty() {
            return Err(format!(
                "{name}: ORDER BY inside an aggregate is not supported"
            ));
        }
        let args = params
            .args
            .iter()
            .map(|a| physical(a, input_schema))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = params
            .filter
            .as_ref()
            .map(|f| physical(f, input_schema))
            .transpose()?;
        let udaf: &dyn std::any::Any = function.func.inner().as_ref();
        if let Some(wasm) = udaf.downcast_ref::<WasmAggregate>() {
            if params.distinct {
                return Err(format!(
                    "{}: DISTINCT is not supported for Wasm aggregates",
                    wasm.function.sql_name
                ));
            }
            if retracting
                && matches!(
                    wasm.function.spec.kind,
                    FunctionKind::Aggregate { retract: false, .. }
                )
            {
                return Err(retract::refusal(&wasm.function.sql_name));
            }
            let aggregate = Aggregate {
                aggregator: Aggregator::Wasm {
                    function: wasm.function.clone(),
                    args,
                    initial: None,
                },
                filter,
            };
            return Ok((aggregate, vec![DataType::Binary]));
        }
        let mut builder = AggregateExprBuilder::new(function.func.clone(), args.clone())
            .schema(Arc::new(input_schema.as_arrow().clone()))
            .alias(name.clone())
            .human_display(name.clone());
        if params.distinct {
            builder = builder.distinct();
        }
        if let Some(treatment) = params.null_treatment {
            builder = builder
                .with_ignore_nulls(treatment == datafusion_expr::expr::NullTreatment::IgnoreNulls);
        }
        let function = Arc::new(builder.build().map_err(|e| format!("{name}: {e}"))?);
        let types: Vec<DataType> = if retracting {
            // DataFusion's retractable accumulators keep more than its state fields say (SUM
            // its count too): ask one for its state's types.
            let mut probe = function
                .create_sliding_accumulator()
                .map_err(|e| format!("{name}: {e}"))?;
            if !probe.supports_retract_batch() || params.distinct {
                return Err(retract::refusal(&name));
            }
            probe
                .state()
                .map_err(|e| format!("{name}: {e}"))?
                .iter()
                .map(ScalarValue::data_type)
                .collect()
        } else {
            function
                .state_fields()
                .map_err(|e| format!("{name}: {e}"))?
                .iter()
                .map(|f| f.data_type().clone())
                .collect()
        };
        // Fail now, not at the first batch, if DataFusion cannot build it.
        accumulator(&function)?;
        let aggregate = Aggregate {
            aggregator: Aggregator::BuiltIn {
                args,
                function,
                state_columns: types.len(),
            },
            filter,
        };
        Ok((aggregate, types))
    }

    /// Stored state rows as columns (one per state field), or `None` if there are none.
    fn decode_states<'a>(
        &self,
        rows: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Option<Vec<ArrayRef>>, String> {
        let parser = self.state_converter.parser();
        let rows: Vec<_> = rows.map(|r| parser.parse(r)).collect();
        if rows.is_empty() {
            return Ok(None);
        }
        self.state_converter
            .convert_rows(rows)
            .map(Some)
            .map_err(|e| format!("a stored aggregate state is corrupt: {e}"))
    }

    /// The rows of one global aggregate over no input: what fresh accumulators say (COUNT 0,
    /// SUM null).
    pub(crate) fn finish_empty(&mut self) -> Result<Vec<ArrayRef>, String> {
        let mut columns = Vec::with_capacity(self.aggregates.len());
        for aggregate in &mut self.aggregates {
            columns.push(match &mut aggregate.aggregator {
                // Not a groups accumulator: over non-nullable input those report their
                // initial values (0 for SUM) where SQL wants null.
                Aggregator::BuiltIn { function, .. } => function
                    .create_accumulator()
                    .and_then(|mut a| a.evaluate())
                    .and_then(|v| v.to_array_of_size(1))
                    .map_err(|e| evaluation_error(&e))?,
                Aggregator::Wasm {
                    function, initial, ..
                } => wasm_finish(function, initial, 1, &[], None)?,
            });
        }
        Ok(columns)
    }

    /// Folds `batch` into the states of the groups it touches: `row_groups[i]` is row i's group
    /// (0..`stored.len()`), `stored` each group's state row so far (`None`: fresh). The groups'
    /// new state rows, in order.
    pub(crate) fn update(
        &mut self,
        batch: &RecordBatch,
        row_groups: &[usize],
        stored: &[Option<Vec<u8>>],
    ) -> Result<Vec<Vec<u8>>, String> {
        if self.retracting {
            return self.update_retracting(batch, row_groups, stored);
        }
        let groups = stored.len();
        // The groups seen before, and their states as columns.
        let seen: Vec<usize> = (0..groups).filter(|&g| stored[g].is_some()).collect();
        let previous = self.decode_states(stored.iter().filter_map(|s| s.as_deref()))?;
        let mut slot_of_group = vec![None; groups];
        for (slot, &group) in seen.iter().enumerate() {
            slot_of_group[group] = Some(slot);
        }
        let mut states: Vec<ArrayRef> = Vec::with_capacity(self.state_converter.size());
        let mut next = 0;
        for aggregate in &mut self.aggregates {
            let mask = match &aggregate.filter {
                Some(f) => Some(
                    evaluate(f, batch)?
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .cloned()
                        .ok_or("FILTER must be BOOLEAN")?,
                ),
                None => None,
            };
            match &mut aggregate.aggregator {
                Aggregator::BuiltIn {
                    args,
                    function,
                    state_columns,
                } => {
                    let mut accumulator = accumulator(function)?;
                    if let Some(previous) = &previous {
                        accumulator
                            .merge_batch(&previous[next..next + *state_columns], &seen, groups)
                            .map_err(|e| evaluation_error(&e))?;
                    }
                    next += *state_columns;
                    let values = args
                        .iter()
                        .map(|a| evaluate(a, batch))
                        .collect::<Result<Vec<_>, _>>()?;
                    accumulator
                        .update_batch(&values, row_groups, mask.as_ref(), groups)
                        .map_err(|e| evaluation_error(&e))?;
                    states.extend(
                        accumulator
                            .state(EmitTo::All)
                            .map_err(|e| evaluation_error(&e))?,
                    );
                }
                Aggregator::Wasm {
                    function,
                    args,
                    initial,
                } => {
                    let stored = previous.as_ref().map(|p| binary(&p[next])).transpose()?;
                    next += 1;
                    let initial = initial_state(function, initial)?;
                    let before = BinaryArray::from_iter_values(slot_of_group.iter().map(|slot| {
                        match (slot, &stored) {
                            (Some(slot), Some(stored)) => stored.value(*slot),
                            _ => initial.as_slice(),
                        }
                    }));
                    let after = wasm_accumulate(function, args, batch, row_groups, mask, before)?;
                    states.push(Arc::new(after));
                }
            }
        }
        self.encode(&states, groups)
    }

    /// State columns as one row per group. Without aggregates (`SELECT DISTINCT`, a window's
    /// GROUP BY alone) a group's state is empty but still there.
    pub(super) fn encode(
        &self,
        states: &[ArrayRef],
        groups: usize,
    ) -> Result<Vec<Vec<u8>>, String> {
        if states.is_empty() {
            return Ok(vec![Vec::new(); groups]);
        }
        let rows = self
            .state_converter
            .convert_columns(states)
            .map_err(|e| format!("cannot store aggregate states: {e}"))?;
        Ok(rows.iter().map(|row| row.as_ref().to_vec()).collect())
    }

    /// One state row per group, merging each group's `parts` (stored state rows, by group); a
    /// group without parts gets a fresh state.
    pub(crate) fn merge_states(
        &mut self,
        groups: usize,
        parts: &[(usize, &[u8])],
    ) -> Result<Vec<Vec<u8>>, String> {
        if self.retracting {
            return Err("internal error: merging retractable states".into());
        }
        if parts.is_empty() {
            return if groups == 0 {
                Ok(Vec::new())
            } else {
                Err("internal error: no states to merge".to_string())
            };
        }
        let states = self
            .decode_states(parts.iter().map(|(_, state)| *state))?
            .unwrap_or_default();
        let part_groups: Vec<usize> = parts.iter().map(|(group, _)| *group).collect();
        let mut merged: Vec<ArrayRef> = Vec::with_capacity(self.state_converter.size());
        let mut next = 0;
        for aggregate in &mut self.aggregates {
            match &mut aggregate.aggregator {
                Aggregator::BuiltIn {
                    function,
                    state_columns,
                    ..
                } => {
                    let mut accumulator = accumulator(function)?;
                    accumulator
                        .merge_batch(&states[next..next + *state_columns], &part_groups, groups)
                        .map_err(|e| evaluation_error(&e))?;
                    next += *state_columns;
                    merged.extend(
                        accumulator
                            .state(EmitTo::All)
                            .map_err(|e| evaluation_error(&e))?,
                    );
                }
                Aggregator::Wasm {
                    function, initial, ..
                } => {
                    let stored = binary(&states[next])?;
                    next += 1;
                    merged.push(Arc::new(wasm_merge_parts(
                        function,
                        initial,
                        groups,
                        &part_groups,
                        &stored,
                    )?));
                }
            }
        }
        self.encode(&merged, groups)
    }

    /// Each aggregate's result for `groups` groups, one column each: `parts` are stored state
    /// rows and the group each belongs to; a group's parts are merged (a group without any is
    /// fresh).
    pub(crate) fn finish(
        &mut self,
        groups: usize,
        parts: &[(usize, &[u8])],
    ) -> Result<Vec<ArrayRef>, String> {
        if self.retracting {
            return self.finish_retracting(groups, parts);
        }
        let states = self
            .decode_states(parts.iter().map(|(_, state)| *state))?
            .unwrap_or_default();
        let part_groups: Vec<usize> = parts.iter().map(|(group, _)| *group).collect();
        let mut columns = Vec::with_capacity(self.aggregates.len());
        let mut next = 0;
        for aggregate in &mut self.aggregates {
            columns.push(match &mut aggregate.aggregator {
                Aggregator::BuiltIn {
                    function,
                    state_columns,
                    ..
                } => {
                    let mut accumulator = accumulator(function)?;
                    if !parts.is_empty() {
                        accumulator
                            .merge_batch(&states[next..next + *state_columns], &part_groups, groups)
                            .map_err(|e| evaluation_error(&e))?;
                    }
                    next += *state_columns;
                    accumulator
                        .evaluate(EmitTo::All)
                        .map_err(|e| evaluation_error(&e))?
                }
                Aggregator::Wasm {
                    function, initial, ..
                } => {
                    let stored = (!parts.is_empty()).then(|| &states[next]);
                    next += 1;
                    wasm_finish(function, initial, groups, &part_groups, stored)?
                }
            });
        }
        Ok(columns)
    }
}

/// A Wasm aggregate's results for `groups` groups: each group's parts of `stored` (by
/// `part_groups`) merged, or the initial state where there are none.
pub(super) fn wasm_finish(
    function: &WasmFunction,
    initial: &mut Option<Vec<u8>>,
    groups: usize,
    part_groups: &[usize],
    stored: Option<&ArrayRef>,
) -> Result<ArrayRef, String> {
    let merged = match stored {
        Some(stored) => wasm_merge_parts(function, initial, groups, part_groups, &binary(stored)?)?,
        None => {
            let initial = initial_state(function, initial)?;
            BinaryArray::from_iter_values((0..groups).map(|_| initial.as_slice()))
        }
    };
    let started = std::time::Instant::now();
    let result = function
        .module
        .with_instance(|i| i.aggregate_finish(function.export(), &merged));
    function.metrics.record(merged.len(), started, &result);
    result.map_err(|e| e.to_string())
}

/// A fresh accumulator for `function`'s groups (an adapter where it has no groups form).
pub(crate) fn accumulator(
    function: &Arc<AggregateFunctionExpr>,
) -> Result<Box<dyn GroupsAccumulator>, String> {
    if function.groups_accumulator_supported() {
        function
            .create_groups_accumulator()
            .map_err(|e| evaluation_error(&e))
    } else {
        let factory = function.clone();
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            factory.create_accumulator()
        })))
    }
}

pub(super) fn initial_state(
    function: &WasmFunction,
    initial: &mut Option<Vec<u8>>,
) -> Result<Vec<u8>, String> {
    if let Some(state) = initial {
        return Ok(state.clone());
    }
    let state = create_state(function)?;
    *initial = Some(state.clone());
    Ok(state)
}

/// One Wasm aggregate's update of the groups one batch touches: the rows (those `mask` keeps)
/// and every group's state before go to the module in one call; the states after come back.
fn wasm_accumulate(
    function: &WasmFunction,
    args: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
    row_groups: &[usize],
    mask: Option<BooleanArray>,
    before: BinaryArray,
) -> Result<BinaryArray, String> {
    wasm_update(function, args, batch, row_groups, mask, before, false)
}

/// Rows (those `mask` keeps) into (or, with `retract`, out of) their groups' states, in one
/// Wasm call.
pub(super) fn wasm_update(
    function: &WasmFunction,
    args: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
    row_groups: &[usize],
    mask: Option<BooleanArray>,
    before: BinaryArray,
    retract: bool,
) -> Result<BinaryArray, String> {
    let mut values = Vec::with_capacity(args.len());
    for (arg, param) in args.iter().zip(&function.spec.params) {
        let array = evaluate(arg, batch)?;
        values.push(
            coerce(&array, param.data_type)
                .map_err(|e| format!("{}: argument {}: {e}", function.signature(), param.name))?,
        );
    }
    let mut groups: Vec<u32> = row_groups.iter().map(|&g| g as u32).collect();
    if let Some(mask) = mask {
        let keep: Vec<u32> = (0..mask.len())
            .filter(|&i| mask.is_valid(i) && mask.value(i))
            .map(|i| i as u32)
            .collect();
        let keep_array = UInt32Array::from(keep.clone());
        values = values
            .iter()
            .map(|v| take(v, &keep_array, None))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        groups = keep.iter().map(|&i| groups[i as usize]).collect();
    }
    if groups.is_empty() {
        return Ok(before);
    }
    let started = std::time::Instant::now();
    let result = function.module.with_instance(|i| {
        if retract {
            i.aggregate_retract(function.export(), &values, &groups, &before)
        } else {
            i.aggregate_accumulate(function.export(), &values, &groups, &before)
        }
    });
    function.metrics.record(groups.len(), started, &result);
    let after = result.map_err(|e| e.to_string())?;
    if after.len() != before.len() {
        return Err(format!(
            "{} returned {} states for {} groups",
            function.sql_name,
            after.len(),
            before.len()
        ));
    }
    Ok(after)
}

fn create_state(function: &WasmFunction) -> Result<Vec<u8>, String> {
    function
        .module
        .with_instance(|i| i.aggregate_create(function.export()))
        .map_err(|e| e.to_string())
}

/// One state per group: the group's only part as is, several merged (round by round, one Wasm
/// call per round over every group still merging), none the initial state.
pub(super) fn wasm_merge_parts(
    function: &WasmFunction,
    initial: &mut Option<Vec<u8>>,
    groups: usize,
    part_groups: &[usize],
    stored: &BinaryArray,
) -> Result<BinaryArray, String> {
    let mut parts_of: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for (part, &group) in part_groups.iter().enumerate() {
        parts_of[group].push(part);
    }
    let initial = initial_state(function, initial)?;
    let mut merged: Vec<Vec<u8>> = parts_of
        .iter()
        .map(|parts| {
            parts
                .first()
                .map_or(initial.clone(), |&p| stored.value(p).to_vec())
        })
        .collect();
    let rounds = parts_of.iter().map(Vec::len).max().unwrap_or(0);
    for round in 1..rounds {
        let merging: Vec<usize> = (0..groups).filter(|&g| parts_of[g].len() > round).collect();
        let left = BinaryArray::from_iter_values(merging.iter().map(|&g| merged[g].as_slice()));
        let right = BinaryArray::from_iter_values(
            merging.iter().map(|&g| stored.value(parts_of[g][round])),
        );
        let started = std::time::Instant::now();
        let result = function
            .module
            .with_instance(|i| i.aggregate_merge(function.export(), &left, &right));
        function.metrics.record(merging.len(), started, &result);
        let after = result.map_err(|e| e.to_string())?;
        if after.len() != merging.len() {
            return Err(format!(
                "{} merged {} states into {}",
                function.sql_name,
                merging.len(),
                after.len()
            ));
        }
        for (slot, &group) in merging.iter().enumerate() {
            merged[group] = after.value(slot).to_vec();
        }
    }
    Ok(BinaryArray::from_iter_values(
        merged.iter().map(Vec::as_slice),
    ))
}

pub(super) fn binary(column: &ArrayRef) -> Result<BinaryArray, String> {
    column
        .as_any()
        .downcast_ref::<BinaryArray>()
        .cloned()
        .ok_or_else(|| "a stored Wasm state is not bytes".to_string())
}
