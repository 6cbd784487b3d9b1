//! Hash aggregation: `GROUP BY` with DataFusion's built-in aggregates and Wasm aggregates.
//!
//! Every group's accumulators live in the keyed state backend, as in Flink: one entry per group
//! key, addressed by (key group, key), whose value is one row (Arrow's row format) holding every
//! aggregate's state: a built-in's state fields, a Wasm aggregate's state bytes. Per batch, the
//! states of the keys the batch touches are read in one `get_many`, merged into fresh DataFusion
//! accumulators numbered 0.. for those keys, updated with the batch (one call per aggregate,
//! one Wasm call per Wasm aggregate), and written back in one `put_many`. The operator itself
//! keeps nothing between batches, so a backend that spills (RocksDB) bounds its memory.
//!
//! In batch mode (the only mode so far) results are emitted at end of input, in key order.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, BooleanArray, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion_common::DFSchemaRef;
use datafusion_common::hash_utils::{RandomState, create_hashes};
use datafusion_expr::{EmitTo, Expr, GroupsAccumulator};
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::GroupsAccumulatorAdapter;
use datafusion_physical_expr::PhysicalExpr;
use datafusion_physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use foldhash::fast::FixedState;

use super::operators::{Operator, evaluate, evaluation_error, make_batch, physical};
use crate::functions::{WasmAggregate, WasmFunction};
use crate::state::{KeyedStateBackend, MemoryStateBackend, StateKey, StateName};
use crate::udf::coerce;

/// The state holding each group's accumulators.
const ACCUMULATORS: StateName = 0;

enum Aggregator {
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

struct Aggregate {
    aggregator: Aggregator,
    filter: Option<Arc<dyn PhysicalExpr>>,
}

pub(crate) struct HashAggregate {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Group keys as bytes (the backend's keys) and back.
    key_converter: RowConverter,
    /// Every aggregate's state of one group as one row (the backend's values) and back.
    state_converter: RowConverter,
    max_parallelism: usize,
    aggregates: Vec<Aggregate>,
    backend: Box<dyn KeyedStateBackend>,
    schema: SchemaRef,
}

/// The groups one batch touches: their state keys, and each row's index among them.
struct Touched {
    keys: Vec<StateKey>,
    row_groups: Vec<usize>,
}

impl HashAggregate {
    pub(crate) fn new(
        group_exprs: &[Expr],
        aggr_exprs: &[Expr],
        input_schema: &DFSchemaRef,
        schema: SchemaRef,
        max_parallelism: usize,
    ) -> Result<Self, String> {
        let keys = group_exprs
            .iter()
            .map(|e| physical(e, input_schema))
            .collect::<Result<Vec<_>, _>>()?;
        let key_types = keys
            .iter()
            .map(|k| {
                k.data_type(input_schema.as_arrow())
                    .map(SortField::new)
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key_converter = RowConverter::new(key_types).map_err(|e| e.to_string())?;
        let mut aggregates = Vec::with_capacity(aggr_exprs.len());
        let mut state_types = Vec::new();
        for expr in aggr_exprs {
            let (aggregate, types) = Self::aggregate(expr, input_schema)?;
            aggregates.push(aggregate);
            state_types.extend(types.into_iter().map(SortField::new));
        }
        let state_converter = RowConverter::new(state_types)
            .map_err(|e| format!("cannot keep the state of these aggregates: {e}"))?;
        Ok(Self {
            keys,
            key_converter,
            state_converter,
            max_parallelism: max_parallelism.max(1),
            aggregates,
            backend: Box::new(MemoryStateBackend::default()),
            schema,
        })
    }

    /// One aggregate, and the types of its state columns.
    fn aggregate(
        expr: &Expr,
        input_schema: &DFSchemaRef,
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
        let types: Vec<DataType> = function
            .state_fields()
            .map_err(|e| format!("{name}: {e}"))?
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
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

    /// The distinct group keys of `batch`, in order of first appearance.
    fn touched(&self, batch: &RecordBatch) -> Result<Touched, String> {
        if self.keys.is_empty() {
            return Ok(Touched {
                keys: vec![state_key(0, &[])],
                row_groups: vec![0; batch.num_rows()],
            });
        }
        let columns = self
            .keys
            .iter()
            .map(|k| evaluate(k, batch))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self
            .key_converter
            .convert_columns(&columns)
            .map_err(|e| e.to_string())?;
        // The same hash the hash edge used, so an entry's key group is the one that routed it.
        let mut hashes = vec![0u64; batch.num_rows()];
        create_hashes(&columns, &RandomState::with_seed(0), &mut hashes)
            .map_err(|e| format!("cannot hash a key: {e}"))?;
        let mut index_of: HashMap<&[u8], usize, FixedState> =
            HashMap::with_capacity_and_hasher(batch.num_rows().min(1024), FixedState::default());
        let mut keys = Vec::new();
        let mut row_groups = Vec::with_capacity(batch.num_rows());
        for (row, hash) in rows.iter().zip(&hashes) {
            let bytes = row.data();
            let index = *index_of.entry(bytes).or_insert_with(|| {
                let key_group = (*hash % self.max_parallelism as u64) as u16;
                keys.push(state_key(key_group, bytes));
                keys.len() - 1
            });
            row_groups.push(index);
        }
        Ok(Touched { keys, row_groups })
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
    fn empty_global_row(&mut self) -> Result<Vec<ArrayRef>, String> {
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
                } => {
                    let state = initial_state(function, initial)?;
                    let states = BinaryArray::from_iter_values([state]);
                    function
                        .module
                        .with_instance(|i| i.aggregate_finish(function.export(), &states))
                        .map_err(|e| e.to_string())?
                }
            });
        }
        Ok(columns)
    }

    /// Result columns for one chunk of stored groups.
    fn finish_chunk(&mut self, entries: &[(StateKey, Vec<u8>)]) -> Result<RecordBatch, String> {
        let groups = entries.len();
        let mut columns: Vec<ArrayRef> = if self.keys.is_empty() {
            Vec::new()
        } else {
            let parser = self.key_converter.parser();
            let rows: Vec<_> = entries.iter().map(|(k, _)| parser.parse(&k.key)).collect();
            self.key_converter
                .convert_rows(rows)
                .map_err(|e| format!("a stored group key is corrupt: {e}"))?
        };
        let states = self
            .decode_states(entries.iter().map(|(_, v)| v.as_slice()))?
            .unwrap_or_default();
        let all: Vec<usize> = (0..groups).collect();
        let mut next = 0;
        for aggregate in &mut self.aggregates {
            columns.push(match &mut aggregate.aggregator {
                Aggregator::BuiltIn {
                    function,
                    state_columns,
                    ..
                } => {
                    let mut accumulator = accumulator(function)?;
                    accumulator
                        .merge_batch(&states[next..next + *state_columns], &all, groups)
                        .map_err(|e| evaluation_error(&e))?;
                    next += *state_columns;
                    accumulator
                        .evaluate(EmitTo::All)
                        .map_err(|e| evaluation_error(&e))?
                }
                Aggregator::Wasm { function, .. } => {
                    let column = &states[next];
                    next += 1;
                    let states = column
                        .as_any()
                        .downcast_ref::<BinaryArray>()
                        .ok_or("a stored Wasm state is not bytes")?;
                    function
                        .module
                        .with_instance(|i| i.aggregate_finish(function.export(), states))
                        .map_err(|e| e.to_string())?
                }
            });
        }
        self.output(columns, groups)
    }

    /// A batch of the output schema (casting where an aggregate's type differs from the plan's).
    fn output(&self, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch, String> {
        let columns = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type()).map_err(|e| e.to_string())
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        make_batch(&self.schema, columns, rows)
    }
}

impl Operator for HashAggregate {
    fn name(&self) -> &'static str {
        "Aggregate"
    }

    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let touched = self.touched(&batch)?;
        let groups = touched.keys.len();
        let stored = self
            .backend
            .get_many(ACCUMULATORS, &touched.keys)
            .map_err(|e| e.to_string())?;
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
                    evaluate(f, &batch)?
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
                        .map(|a| evaluate(a, &batch))
                        .collect::<Result<Vec<_>, _>>()?;
                    accumulator
                        .update_batch(&values, &touched.row_groups, mask.as_ref(), groups)
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
                    let stored = previous
                        .as_ref()
                        .map(|p| {
                            p[next]
                                .as_any()
                                .downcast_ref::<BinaryArray>()
                                .cloned()
                                .ok_or("a stored Wasm state is not bytes")
                        })
                        .transpose()?;
                    next += 1;
                    let initial = initial_state(function, initial)?;
                    let before = BinaryArray::from_iter_values(slot_of_group.iter().map(|slot| {
                        match (slot, &stored) {
                            (Some(slot), Some(stored)) => stored.value(*slot),
                            _ => initial.as_slice(),
                        }
                    }));
                    let after =
                        wasm_accumulate(function, args, &batch, &touched.row_groups, mask, before)?;
                    states.push(Arc::new(after));
                }
            }
        }
        let rows = self
            .state_converter
            .convert_columns(&states)
            .map_err(|e| format!("cannot store aggregate states: {e}"))?;
        let entries = touched
            .keys
            .into_iter()
            .zip(rows.iter())
            .map(|(key, row)| (key, row.as_ref().to_vec()))
            .collect();
        self.backend
            .put_many(ACCUMULATORS, entries)
            .map_err(|e| e.to_string())
    }

    fn on_end(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let entries = self
            .backend
            .entries(ACCUMULATORS)
            .map_err(|e| e.to_string())?;
        if entries.is_empty() {
            // A global aggregate over no rows still has its one row (COUNT(*) = 0); a grouped
            // one has none.
            if self.keys.is_empty() {
                let columns = self.empty_global_row()?;
                out.push(self.output(columns, 1)?);
            }
            return Ok(());
        }
        for chunk in entries.chunks(super::BATCH_SIZE) {
            out.push(self.finish_chunk(chunk)?);
        }
        Ok(())
    }
}

fn state_key(key_group: u16, key: &[u8]) -> StateKey {
    StateKey {
        key_group,
        key: key.to_vec(),
        namespace: Vec::new(),
    }
}

/// A fresh accumulator for `function`'s groups (an adapter where it has no groups form).
fn accumulator(
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

fn initial_state(
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
    let after = function
        .module
        .with_instance(|i| i.aggregate_accumulate(function.export(), &values, &groups, &before))
        .map_err(|e| e.to_string())?;
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
