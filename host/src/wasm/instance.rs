//! One instance of a module for one calling task: batch calls, and what happens when they fail.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, UInt32Array};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::ToByteSlice;
use wasmtime::component::{Func, Instance, TypedFunc};
use wasmtime::{Store, Trap};

use super::abi::{self, BatchParam, CallResult, ColumnParam};
use super::convert::{self, PreparedColumn};
use super::sandbox::InstanceState;
use super::{ExportIndices, WasmModule};
use crate::udf::{
    CallSite, FunctionKind, FunctionSpec, PrimitiveType, TableRows, TrapCause, UdfError, UdfType,
};

type DescribeFn = TypedFunc<(), (Vec<abi::FunctionSpec>,)>;
type ScalarFn = TypedFunc<(u32, BatchParam<'static>), CallResult<abi::Column>>;
type TableFn = TypedFunc<(u32, BatchParam<'static>), CallResult<abi::TableOutput>>;
type CreateFn = TypedFunc<(u32,), CallResult<Vec<u8>>>;
type UpdateFn = TypedFunc<
    (
        u32,
        BatchParam<'static>,
        &'static [u8],
        ColumnParam<'static>,
    ),
    CallResult<abi::Column>,
>;
type MergeFn =
    TypedFunc<(u32, ColumnParam<'static>, ColumnParam<'static>), CallResult<abi::Column>>;
type FinishFn = TypedFunc<(u32, ColumnParam<'static>), CallResult<abi::Column>>;

struct Funcs {
    describe: DescribeFn,
    scalar: ScalarFn,
    table: TableFn,
    create: CreateFn,
    accumulate: UpdateFn,
    retract: UpdateFn,
    merge: MergeFn,
    finish: FinishFn,
}

/// Looks up and types one export. At load the types are checked against the contract; for the
/// instances made after that, the same component's exports are known to match.
fn typed<P, R>(
    store: &mut Store<InstanceState>,
    instance: &Instance,
    index: &wasmtime::component::ComponentExportIndex,
    name: &str,
    checked: bool,
) -> Result<TypedFunc<P, R>, String>
where
    P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower,
    R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift,
{
    let func: Func = instance
        .get_func(&mut *store, index)
        .ok_or_else(|| format!("`{name}` is not a function"))?;
    if checked {
        func.typed::<P, R>(&*store)
            .map_err(|e| format!("`{name}` does not have the weir:udf@0.2.0 signature: {e:#}"))
    } else {
        // SAFETY: `WasmModule::load` checked this component's export at `index` against exactly
        // these types (the `checked` path) before the module could be used.
        Ok(unsafe { TypedFunc::new_unchecked(func) })
    }
}

impl Funcs {
    fn new(
        store: &mut Store<InstanceState>,
        instance: &Instance,
        exports: &ExportIndices,
        checked: bool,
    ) -> Result<Self, String> {
        Ok(Funcs {
            describe: typed(store, instance, &exports.describe, "describe", checked)?,
            scalar: typed(
                store,
                instance,
                &exports.call_scalar,
                "call-scalar",
                checked,
            )?,
            table: typed(store, instance, &exports.call_table, "call-table", checked)?,
            create: typed(
                store,
                instance,
                &exports.aggregate_create,
                "aggregate-create",
                checked,
            )?,
            accumulate: typed(
                store,
                instance,
                &exports.aggregate_accumulate,
                "aggregate-accumulate",
                checked,
            )?,
            retract: typed(
                store,
                instance,
                &exports.aggregate_retract,
                "aggregate-retract",
                checked,
            )?,
            merge: typed(
                store,
                instance,
                &exports.aggregate_merge,
                "aggregate-merge",
                checked,
            )?,
            finish: typed(
                store,
                instance,
                &exports.aggregate_finish,
                "aggregate-finish",
                checked,
            )?,
        })
    }
}

struct Live {
    store: Store<InstanceState>,
    funcs: Funcs,
}

/// A module instance owned by one calling task. Not `Sync`: each task makes its own.
///
/// Calls take Arrow arrays and return Arrow arrays, one call per batch. After a trap (deadline,
/// memory cap, panic) the instance is dropped and the next call instantiates a fresh one.
pub struct ModuleInstance {
    module: Arc<WasmModule>,
    live: Option<Live>,
    instantiations: u64,
}

impl std::fmt::Debug for ModuleInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleInstance")
            .field("module", &self.module.name)
            .field("live", &self.live.is_some())
            .field("instantiations", &self.instantiations)
            .finish()
    }
}

fn instantiate(module: &WasmModule, checked: bool) -> Result<Live, UdfError> {
    let mut store = module.new_store()?;
    store.set_epoch_deadline(module.deadline_ticks());
    let instance = module.pre.instantiate(&mut store).map_err(|e| {
        let reason = if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            format!(
                "its start-up ran past the deadline of {:?}",
                module.limits.call_deadline
            )
        } else {
            format!("{e:#}")
        };
        UdfError::Instantiate {
            module: module.name.clone(),
            reason,
        }
    })?;
    let funcs = Funcs::new(&mut store, &instance, &module.exports, checked).map_err(|reason| {
        UdfError::WrongWorld {
            module: module.name.clone(),
            reason,
        }
    })?;
    Ok(Live { store, funcs })
}

fn log_guest_output(module: &str, function: &str, stream: &str, text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if stream == "stderr" {
            tracing::warn!(target: "weir::guest", module, function, stream, "{line}");
        } else {
            tracing::info!(target: "weir::guest", module, function, stream, "{line}");
        }
    }
}

/// The function's index and signature, checked to be of `kind`, with the site of a call over
/// `rows` input rows.
fn lookup<'m>(
    module: &'m WasmModule,
    function: &str,
    kind: &'static str,
    rows: usize,
) -> Result<(u32, &'m FunctionSpec, CallSite), UdfError> {
    let (index, spec) = module.function(function)?;
    if spec.kind.name() != kind {
        return Err(UdfError::WrongKind {
            module: module.name.clone(),
            function: spec.name.clone(),
            expected: kind,
            actual: spec.kind.name(),
        });
    }
    let site = CallSite {
        module: module.name.clone(),
        function: spec.name.clone(),
        rows: 0..rows as u64,
    };
    Ok((index, spec, site))
}

/// Checks arguments against the signature and prepares them for lowering.
fn prepare_args(
    spec: &FunctionSpec,
    args: &[ArrayRef],
    num_rows: usize,
    site: &CallSite,
) -> Result<Vec<PreparedColumn>, UdfError> {
    let fail = |reason: String| UdfError::Arguments {
        site: site.clone(),
        reason,
    };
    if args.len() != spec.params.len() {
        return Err(fail(format!(
            "takes {} arguments, got {}",
            spec.params.len(),
            args.len()
        )));
    }
    if u32::try_from(num_rows).is_err() {
        return Err(fail(format!(
            "a batch of {num_rows} rows is too large for one call"
        )));
    }
    args.iter()
        .zip(&spec.params)
        .enumerate()
        .map(|(i, (array, param))| {
            if array.len() != num_rows {
                return Err(fail(format!(
                    "argument {} (`{}`) has {} rows, the batch {num_rows}",
                    i + 1,
                    param.name,
                    array.len()
                )));
            }
            convert::prepare(array.as_ref(), param.data_type)
                .map_err(|e| fail(format!("argument {} (`{}`): {e}", i + 1, param.name)))
        })
        .collect()
}

/// Prepares `args` and hands `call` the batch parameter that borrows them.
fn with_batch<R>(
    spec: &FunctionSpec,
    args: &[ArrayRef],
    num_rows: usize,
    site: &CallSite,
    call: impl FnOnce(BatchParam<'_>) -> Result<R, UdfError>,
) -> Result<R, UdfError> {
    let prepared = prepare_args(spec, args, num_rows, site)?;
    let columns: Vec<ColumnParam<'_>> = prepared.iter().map(PreparedColumn::param).collect();
    call(BatchParam {
        columns: &columns,
        num_rows: num_rows as u32,
    })
}

const BINARY: UdfType = UdfType::Primitive(PrimitiveType::Binary);

impl ModuleInstance {
    pub(super) fn new(module: Arc<WasmModule>) -> Self {
        ModuleInstance {
            module,
            live: None,
            instantiations: 0,
        }
    }

    /// Instantiates the module with every export type-checked, and reads `describe`.
    pub(super) fn describe(module: &WasmModule) -> Result<Vec<FunctionSpec>, UdfError> {
        let mut live = instantiate(module, true)?;
        live.store.set_epoch_deadline(module.deadline_ticks());
        let outcome = live.funcs.describe.call(&mut live.store, ());
        let stderr = live.store.data().stderr.drain();
        log_guest_output(&module.name, "describe", "stderr", &stderr);
        match outcome {
            Ok((specs,)) => Ok(specs.into_iter().map(FunctionSpec::from_abi).collect()),
            Err(e) => Err(UdfError::Trap {
                site: CallSite {
                    module: module.name.clone(),
                    function: "describe".into(),
                    rows: 0..0,
                },
                cause: classify(&e, live.store.data().limiter.hit, module),
                guest_stderr: stderr,
            }),
        }
    }

    /// The module this instance runs.
    pub fn module(&self) -> &Arc<WasmModule> {
        &self.module
    }

    /// How many times this instance was (re)created: 1 after the first call, +1 per trap.
    pub fn instantiations(&self) -> u64 {
        self.instantiations
    }

    fn live(&mut self) -> Result<&mut Live, UdfError> {
        if self.live.is_none() {
            self.live = Some(instantiate(&self.module, false)?);
            self.instantiations += 1;
        }
        self.live.as_mut().ok_or_else(|| UdfError::Instantiate {
            module: self.module.name.clone(),
            reason: "instance vanished".into(),
        })
    }

    /// Makes sure an instance exists, so that the first call does not pay for instantiation.
    ///
    /// # Errors
    /// [`UdfError::Instantiate`].
    pub fn warm_up(&mut self) -> Result<(), UdfError> {
        self.live().map(|_| ())
    }

    /// Runs one call with its deadline, cap and output capture; on a trap, drops the instance.
    fn invoke<R>(
        &mut self,
        site: &CallSite,
        call: impl FnOnce(&mut Store<InstanceState>, &Funcs) -> wasmtime::Result<CallResult<R>>,
    ) -> Result<R, UdfError> {
        let module = self.module.clone();
        let ticks = module.deadline_ticks();
        let live = self.live()?;
        live.store.set_epoch_deadline(ticks);
        live.store.data_mut().limiter.hit = false;
        let outcome = call(&mut live.store, &live.funcs);
        let stdout = live.store.data().stdout.drain();
        let stderr = live.store.data().stderr.drain();
        log_guest_output(&module.name, &site.function, "stdout", &stdout);
        match outcome {
            Ok((Ok(value),)) => {
                log_guest_output(&module.name, &site.function, "stderr", &stderr);
                Ok(value)
            }
            Ok((Err(error),)) => {
                log_guest_output(&module.name, &site.function, "stderr", &stderr);
                Err(UdfError::Failed {
                    site: site.clone(),
                    row: error.row.map(u64::from),
                    message: error.message,
                })
            }
            Err(e) => {
                let cause = classify(&e, live.store.data().limiter.hit, &module);
                tracing::debug!(module = %module.name, function = %site.function, "instance dropped after: {e:?}");
                self.live = None;
                Err(UdfError::Trap {
                    site: site.clone(),
                    cause,
                    guest_stderr: stderr,
                })
            }
        }
    }

    /// Calls a scalar function on `num_rows` rows of `args` (one array per parameter).
    ///
    /// # Errors
    /// Unknown function or wrong kind, arguments that do not match the signature, an error the
    /// function returned, a trap, or a malformed result.
    pub fn call_scalar(
        &mut self,
        function: &str,
        args: &[ArrayRef],
        num_rows: usize,
    ) -> Result<ArrayRef, UdfError> {
        let module = self.module.clone();
        let (index, spec, site) = lookup(&module, function, "scalar", num_rows)?;
        let column = with_batch(spec, args, num_rows, &site, |batch| {
            self.invoke(&site, |store, funcs| {
                funcs.scalar.call(store, (index, batch))
            })
        })?;
        convert::to_arrow(column, spec.results[0].data_type, num_rows)
            .map_err(|reason| UdfError::BadOutput { site, reason })
    }

    /// Calls a table function on `num_rows` rows of `args`.
    ///
    /// # Errors
    /// As [`ModuleInstance::call_scalar`].
    pub fn call_table(
        &mut self,
        function: &str,
        args: &[ArrayRef],
        num_rows: usize,
    ) -> Result<TableRows, UdfError> {
        let module = self.module.clone();
        let (index, spec, site) = lookup(&module, function, "table", num_rows)?;
        let output = with_batch(spec, args, num_rows, &site, |batch| {
            self.invoke(&site, |store, funcs| {
                funcs.table.call(store, (index, batch))
            })
        })?;
        let bad = |reason: String| UdfError::BadOutput {
            site: site.clone(),
            reason,
        };
        let rows = output.rows.num_rows as usize;
        if output.row_index.len() != rows * 4 {
            return Err(bad(format!(
                "{} bytes of row indexes for {rows} rows (4 per row)",
                output.row_index.len()
            )));
        }
        let row_index: Vec<u32> = output
            .row_index
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut previous = 0;
        for &i in &row_index {
            if i as usize >= num_rows || i < previous {
                return Err(bad(format!(
                    "row index {i} is out of range or out of order for {num_rows} input rows"
                )));
            }
            previous = i;
        }
        if output.rows.columns.len() != spec.results.len() {
            return Err(bad(format!(
                "{} columns, the signature has {}",
                output.rows.columns.len(),
                spec.results.len()
            )));
        }
        let columns = output
            .rows
            .columns
            .into_iter()
            .zip(&spec.results)
            .map(|(column, field)| {
                convert::to_arrow(column, field.data_type, rows)
                    .map_err(|e| bad(format!("column `{}`: {e}", field.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TableRows {
            row_index: UInt32Array::new(ScalarBuffer::from(row_index), None),
            columns,
        })
    }

    /// An aggregate's index, signature, call site and (retract, merge) capabilities.
    fn aggregate<'m>(
        module: &'m WasmModule,
        function: &str,
        rows: usize,
    ) -> Result<(u32, &'m FunctionSpec, CallSite, bool, bool), UdfError> {
        let (index, spec, site) = lookup(module, function, "aggregate", rows)?;
        let (retract, merge) = match spec.kind {
            FunctionKind::Aggregate { retract, merge } => (retract, merge),
            FunctionKind::Scalar | FunctionKind::Table => (false, false),
        };
        Ok((index, spec, site, retract, merge))
    }

    fn states_from(
        column: abi::Column,
        len: usize,
        site: &CallSite,
    ) -> Result<BinaryArray, UdfError> {
        let array =
            convert::to_arrow(column, BINARY, len).map_err(|reason| UdfError::BadOutput {
                site: site.clone(),
                reason: format!("states: {reason}"),
            })?;
        if array.null_count() > 0 {
            return Err(UdfError::BadOutput {
                site: site.clone(),
                reason: "a state is null".into(),
            });
        }
        Ok(array.as_binary::<i32>().clone())
    }

    /// The serialized state of a group that has seen no rows.
    ///
    /// # Errors
    /// Unknown function or wrong kind, an error the function returned, or a trap.
    pub fn aggregate_create(&mut self, function: &str) -> Result<Vec<u8>, UdfError> {
        let module = self.module.clone();
        let (index, _, site, ..) = Self::aggregate(&module, function, 0)?;
        self.invoke(&site, |store, funcs| funcs.create.call(store, (index,)))
    }

    fn aggregate_update(
        &mut self,
        function: &str,
        args: &[ArrayRef],
        groups: &[u32],
        states: &BinaryArray,
        retract: bool,
    ) -> Result<BinaryArray, UdfError> {
        let module = self.module.clone();
        let num_rows = groups.len();
        let (index, spec, site, can_retract, _) = Self::aggregate(&module, function, num_rows)?;
        if retract && !can_retract {
            return Err(UdfError::Unsupported {
                module: module.name.clone(),
                function: spec.name.clone(),
                operation: "retract",
            });
        }
        if let Some(bad) = groups.iter().find(|&&g| g as usize >= states.len()) {
            return Err(UdfError::Arguments {
                site,
                reason: format!("group index {bad} is past the {} states", states.len()),
            });
        }
        let states_in = convert::prepare(states, BINARY).map_err(|reason| UdfError::Arguments {
            site: site.clone(),
            reason: format!("states: {reason}"),
        })?;
        let column = with_batch(spec, args, num_rows, &site, |batch| {
            // Group indexes cross as little-endian bytes (see the WIT); wasm and our hosts are
            // little-endian, so the slice's own bytes are that encoding.
            let params = (index, batch, groups.to_byte_slice(), states_in.param());
            self.invoke(&site, |store, funcs| {
                if retract {
                    funcs.retract.call(store, params)
                } else {
                    funcs.accumulate.call(store, params)
                }
            })
        })?;
        Self::states_from(column, states.len(), &site)
    }

    /// Adds each row of `args` to the state of its group: `groups[i]` is the position in
    /// `states` of row i's group. Returns the new states, in the same order.
    ///
    /// # Errors
    /// As [`ModuleInstance::call_scalar`], or a group index past the states.
    pub fn aggregate_accumulate(
        &mut self,
        function: &str,
        args: &[ArrayRef],
        groups: &[u32],
        states: &BinaryArray,
    ) -> Result<BinaryArray, UdfError> {
        self.aggregate_update(function, args, groups, states, false)
    }

    /// Takes rows back out of their groups' states; same shape as `aggregate_accumulate`.
    ///
    /// # Errors
    /// [`UdfError::Unsupported`] if the function cannot retract, or as `aggregate_accumulate`.
    pub fn aggregate_retract(
        &mut self,
        function: &str,
        args: &[ArrayRef],
        groups: &[u32],
        states: &BinaryArray,
    ) -> Result<BinaryArray, UdfError> {
        self.aggregate_update(function, args, groups, states, true)
    }

    /// Merges `right[i]` into `left[i]` for every i.
    ///
    /// # Errors
    /// [`UdfError::Unsupported`] if the function cannot merge, states of different counts, or
    /// as [`ModuleInstance::call_scalar`].
    pub fn aggregate_merge(
        &mut self,
        function: &str,
        left: &BinaryArray,
        right: &BinaryArray,
    ) -> Result<BinaryArray, UdfError> {
        let module = self.module.clone();
        let (index, spec, site, _, can_merge) = Self::aggregate(&module, function, left.len())?;
        if !can_merge {
            return Err(UdfError::Unsupported {
                module: module.name.clone(),
                function: spec.name.clone(),
                operation: "merge",
            });
        }
        if left.len() != right.len() {
            return Err(UdfError::Arguments {
                site,
                reason: format!("cannot merge {} states with {}", left.len(), right.len()),
            });
        }
        let prepare = |states: &BinaryArray| {
            convert::prepare(states, BINARY).map_err(|reason| UdfError::Arguments {
                site: site.clone(),
                reason: format!("states: {reason}"),
            })
        };
        let (l, r) = (prepare(left)?, prepare(right)?);
        let column = self.invoke(&site, |store, funcs| {
            funcs.merge.call(store, (index, l.param(), r.param()))
        })?;
        Self::states_from(column, left.len(), &site)
    }

    /// The final value of each state.
    ///
    /// # Errors
    /// As [`ModuleInstance::call_scalar`].
    pub fn aggregate_finish(
        &mut self,
        function: &str,
        states: &BinaryArray,
    ) -> Result<ArrayRef, UdfError> {
        let module = self.module.clone();
        let (index, spec, site, ..) = Self::aggregate(&module, function, states.len())?;
        let prepared = convert::prepare(states, BINARY).map_err(|reason| UdfError::Arguments {
            site: site.clone(),
            reason: format!("states: {reason}"),
        })?;
        let column = self.invoke(&site, |store, funcs| {
            funcs.finish.call(store, (index, prepared.param()))
        })?;
        convert::to_arrow(column, spec.results[0].data_type, states.len())
            .map_err(|reason| UdfError::BadOutput { site, reason })
    }
}

/// Why a call failed with a host-side error: deadline, memory cap, or another trap.
fn classify(error: &wasmtime::Error, memory_cap_hit: bool, module: &WasmModule) -> TrapCause {
    let trap = error.downcast_ref::<Trap>();
    if trap == Some(&Trap::Interrupt) {
        TrapCause::Deadline(module.limits.call_deadline)
    } else if memory_cap_hit {
        TrapCause::MemoryCap(module.limits.memory_cap)
    } else if let Some(trap) = trap {
        TrapCause::Trap(trap.to_string())
    } else {
        TrapCause::Trap(format!("{error:#}"))
    }
}
