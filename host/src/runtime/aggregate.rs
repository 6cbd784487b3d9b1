//! Hash aggregation: `GROUP BY` with DataFusion's built-in aggregates and Wasm aggregates.
//!
//! Keys are encoded with Arrow's row format (one comparable byte string per key) and numbered in
//! order of arrival. Built-ins update DataFusion's `GroupsAccumulator`s once per batch (in memory).
//! A Wasm aggregate's states are host-owned bytes in the keyed state backend, addressed by (key
//! group, group key): per batch, the states of the groups the batch touches are read in one
//! `get_many`, go to the module in one call, and are written back in one `put_many`.
//!
//! In batch mode (the only mode so far) results are emitted at end of input.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, BooleanArray, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion_common::DFSchemaRef;
use datafusion_expr::{EmitTo, Expr, GroupsAccumulator};
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::GroupsAccumulatorAdapter;
use datafusion_physical_expr::PhysicalExpr;
use datafusion_physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};

use super::operators::{Operator, evaluate, make_batch, physical};
use crate::functions::{WasmAggregate, WasmFunction};
use crate::state::{KeyedStateBackend, MemoryStateBackend, StateKey, StateName};
use crate::udf::coerce;
use datafusion_common::hash_utils::{RandomState, create_hashes};

enum Aggregator {
    BuiltIn {
        args: Vec<Arc<dyn PhysicalExpr>>,
        accumulator: Box<dyn GroupsAccumulator>,
        /// For the one row of a global aggregate over no input.
        function: Arc<AggregateFunctionExpr>,
    },
    Wasm {
        function: Arc<WasmFunction>,
        args: Vec<Arc<dyn PhysicalExpr>>,
        /// Where its states live in the backend.
        state: StateName,
        initial: Option<Vec<u8>>,
    },
}

struct Aggregate {
    aggregator: Aggregator,
    filter: Option<Arc<dyn PhysicalExpr>>,
}

pub(crate) struct HashAggregate {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
    groups: HashMap<Box<[u8]>, u32>,
    /// Group keys in group-index order (row-format bytes), and each one's key group.
    key_rows: Vec<Box<[u8]>>,
    key_groups: Vec<u16>,
    max_parallelism: usize,
    aggregates: Vec<Aggregate>,
    backend: Box<dyn KeyedStateBackend>,
    /// Whether any row arrived (a global aggregate emits one row even when none did).
    rows_seen: bool,
    schema: SchemaRef,
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
        let converter = RowConverter::new(key_types).map_err(|e| e.to_string())?;
        let aggregates = aggr_exprs
            .iter()
            .enumerate()
            .map(|(i, e)| Self::aggregate(e, input_schema, i as StateName))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            keys,
            converter,
            groups: HashMap::new(),
            key_rows: Vec::new(),
            key_groups: Vec::new(),
            max_parallelism: max_parallelism.max(1),
            aggregates,
            backend: Box::new(MemoryStateBackend::default()),
            rows_seen: false,
            schema,
        })
    }

    fn aggregate(
        expr: &Expr,
        input_schema: &DFSchemaRef,
        state: StateName,
    ) -> Result<Aggregate, String> {
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
            return Ok(Aggregate {
                aggregator: Aggregator::Wasm {
                    function: wasm.function.clone(),
                    args,
                    state,
                    initial: None,
                },
                filter,
            });
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
        let aggregate = Arc::new(builder.build().map_err(|e| format!("{name}: {e}"))?);
        let accumulator: Box<dyn GroupsAccumulator> = if aggregate.groups_accumulator_supported() {
            aggregate
                .create_groups_accumulator()
                .map_err(|e| format!("{name}: {e}"))?
        } else {
            let factory = aggregate.clone();
            Box::new(GroupsAccumulatorAdapter::new(move || {
                factory.create_accumulator()
            }))
        };
        Ok(Aggregate {
            aggregator: Aggregator::BuiltIn {
                args,
                accumulator,
                function: aggregate,
            },
            filter,
        })
    }

    /// The group index of each row, creating groups for new keys.
    fn group_indices(&mut self, batch: &RecordBatch) -> Result<Vec<usize>, String> {
        if self.keys.is_empty() {
            if self.key_rows.is_empty() {
                self.key_rows.push(Box::new([]));
                self.key_groups.push(0);
            }
            return Ok(vec![0; batch.num_rows()]);
        }
        let columns = self
            .keys
            .iter()
            .map(|k| evaluate(k, batch))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| e.to_string())?;
        // The same hash the hash edge used, so an entry's key group is the one that routed it.
        let mut hashes = vec![0u64; batch.num_rows()];
        create_hashes(&columns, &RandomState::with_seed(0), &mut hashes)
            .map_err(|e| format!("cannot hash a key: {e}"))?;
        let mut indices = Vec::with_capacity(batch.num_rows());
        for (row, hash) in rows.iter().zip(&hashes) {
            let bytes = row.as_ref();
            let index = match self.groups.get(bytes) {
                Some(index) => *index,
                None => {
                    let index = self.key_rows.len() as u32;
                    self.groups.insert(bytes.into(), index);
                    self.key_rows.push(bytes.into());
                    self.key_groups
                        .push((*hash % self.max_parallelism as u64) as u16);
                    index
                }
            };
            indices.push(index as usize);
        }
        Ok(indices)
    }
}

impl Operator for HashAggregate {
    fn name(&self) -> &'static str {
        "Aggregate"
    }

    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        self.rows_seen |= batch.num_rows() > 0;
        let groups = self.group_indices(&batch)?;
        let total_groups = self.key_rows.len();
        let keys = GroupKeys {
            rows: &self.key_rows,
            key_groups: &self.key_groups,
        };
        for aggregate in &mut self.aggregates {
            let mask = match &aggregate.filter {
                Some(f) => {
                    let mask = evaluate(f, &batch)?;
                    Some(
                        mask.as_any()
                            .downcast_ref::<BooleanArray>()
                            .cloned()
                            .ok_or("FILTER must be BOOLEAN")?,
                    )
                }
                None => None,
            };
            match &mut aggregate.aggregator {
                Aggregator::BuiltIn {
                    args, accumulator, ..
                } => {
                    let values = args
                        .iter()
                        .map(|a| evaluate(a, &batch))
                        .collect::<Result<Vec<_>, _>>()?;
                    accumulator
                        .update_batch(&values, &groups, mask.as_ref(), total_groups)
                        .map_err(|e| super::operators::evaluation_error(&e))?;
                }
                Aggregator::Wasm {
                    function,
                    args,
                    state,
                    initial,
                } => {
                    let update = WasmUpdate {
                        function,
                        state: *state,
                        keys: &keys,
                    };
                    update.accumulate(
                        args,
                        self.backend.as_mut(),
                        initial,
                        &batch,
                        &groups,
                        mask,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if self.keys.is_empty() && self.key_rows.is_empty() {
            // A global aggregate over no rows still has its one row (COUNT(*) = 0).
            self.key_rows.push(Box::new([]));
            self.key_groups.push(0);
        }
        let groups = self.key_rows.len();
        if groups == 0 {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = if self.keys.is_empty() {
            Vec::new()
        } else {
            let parser = self.converter.parser();
            let rows: Vec<_> = self.key_rows.iter().map(|k| parser.parse(k)).collect();
            self.converter
                .convert_rows(rows)
                .map_err(|e| e.to_string())?
        };
        for aggregate in &mut self.aggregates {
            let column = match &mut aggregate.aggregator {
                Aggregator::BuiltIn {
                    accumulator,
                    function,
                    ..
                } => {
                    if self.rows_seen {
                        accumulator
                            .evaluate(EmitTo::All)
                            .map_err(|e| super::operators::evaluation_error(&e))?
                    } else {
                        // A global aggregate over no rows: what a fresh accumulator says (COUNT
                        // 0, SUM null). Groups accumulators over non-nullable input would
                        // report their initial values instead.
                        function
                            .create_accumulator()
                            .and_then(|mut a| a.evaluate())
                            .and_then(|v| v.to_array_of_size(1))
                            .map_err(|e| super::operators::evaluation_error(&e))?
                    }
                }
                Aggregator::Wasm {
                    function,
                    state,
                    initial,
                    ..
                } => {
                    let initial = match initial {
                        Some(i) => i.clone(),
                        None => create_state(function)?,
                    };
                    let keys = GroupKeys {
                        rows: &self.key_rows,
                        key_groups: &self.key_groups,
                    };
                    let all_keys: Vec<StateKey> = (0..groups).map(|g| keys.state_key(g)).collect();
                    let states = self
                        .backend
                        .get_many(*state, &all_keys)
                        .map_err(|e| e.to_string())?;
                    let all = BinaryArray::from_iter_values(
                        states.iter().map(|s| s.as_deref().unwrap_or(&initial)),
                    );
                    function
                        .module
                        .with_instance(|i| i.aggregate_finish(function.export(), &all))
                        .map_err(|e| e.to_string())?
                }
            };
            columns.push(column);
        }
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
        let batch = make_batch(&self.schema, columns, groups)?;
        for offset in (0..groups).step_by(super::BATCH_SIZE) {
            out.push(batch.slice(offset, super::BATCH_SIZE.min(groups - offset)));
        }
        Ok(())
    }
}

fn create_state(function: &WasmFunction) -> Result<Vec<u8>, String> {
    function
        .module
        .with_instance(|i| i.aggregate_create(function.export()))
        .map_err(|e| e.to_string())
}

/// Group keys and their key groups, in group-index order.
struct GroupKeys<'a> {
    rows: &'a [Box<[u8]>],
    key_groups: &'a [u16],
}

impl GroupKeys<'_> {
    fn state_key(&self, group: usize) -> StateKey {
        StateKey {
            key_group: self.key_groups[group],
            key: self.rows[group].to_vec(),
            namespace: Vec::new(),
        }
    }
}

/// One Wasm aggregate's update of the groups one batch touches.
struct WasmUpdate<'a> {
    function: &'a Arc<WasmFunction>,
    state: StateName,
    keys: &'a GroupKeys<'a>,
}

impl WasmUpdate<'_> {
    /// Reads the touched groups' states, calls the module once, writes them back.
    fn accumulate(
        &self,
        args: &[Arc<dyn PhysicalExpr>],
        backend: &mut dyn KeyedStateBackend,
        initial: &mut Option<Vec<u8>>,
        batch: &RecordBatch,
        groups: &[usize],
        mask: Option<BooleanArray>,
    ) -> Result<(), String> {
        let function = self.function;
        let mut values = Vec::with_capacity(args.len());
        for (arg, param) in args.iter().zip(&function.spec.params) {
            let array = evaluate(arg, batch)?;
            values.push(
                coerce(&array, param.data_type).map_err(|e| {
                    format!("{}: argument {}: {e}", function.signature(), param.name)
                })?,
            );
        }
        let mut groups: Vec<usize> = groups.to_vec();
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
            return Ok(());
        }
        if initial.is_none() {
            *initial = Some(create_state(function)?);
        }
        let initial = initial.as_deref().unwrap_or_default();
        // Number the touched groups 0.. in order of first appearance.
        let mut local_of = HashMap::new();
        let mut touched = Vec::new();
        let local: Vec<u32> = groups
            .iter()
            .map(|&g| {
                *local_of.entry(g).or_insert_with(|| {
                    touched.push(g);
                    (touched.len() - 1) as u32
                })
            })
            .collect();
        let state_keys: Vec<StateKey> = touched.iter().map(|&g| self.keys.state_key(g)).collect();
        let stored = backend
            .get_many(self.state, &state_keys)
            .map_err(|e| e.to_string())?;
        let before =
            BinaryArray::from_iter_values(stored.iter().map(|s| s.as_deref().unwrap_or(initial)));
        let after = function
            .module
            .with_instance(|i| i.aggregate_accumulate(function.export(), &values, &local, &before))
            .map_err(|e| e.to_string())?;
        if after.len() != touched.len() {
            return Err(format!(
                "{} returned {} states for {} groups",
                function.sql_name,
                after.len(),
                touched.len()
            ));
        }
        let entries = state_keys
            .into_iter()
            .enumerate()
            .map(|(slot, key)| (key, after.value(slot).to_vec()))
            .collect();
        backend
            .put_many(self.state, entries)
            .map_err(|e| e.to_string())
    }
}
