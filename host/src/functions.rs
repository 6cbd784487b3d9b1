//! Wasm functions as the SQL planner and DataFusion's expressions see them.
//!
//! A scalar Wasm function becomes a DataFusion `ScalarUDF`, so it may stand anywhere an
//! expression may (projections, filters, grouping keys, aggregate arguments); calling it calls the
//! component once per batch. Aggregate Wasm functions are `AggregateUDF`s for planning only: Weir's
//! aggregation operator calls them with host-owned states. Table functions are planned by
//! `sql::lateral`. Argument types are checked and coerced here, from the module's `describe`.
//!
//! **Boundary:** sees `wasm::WasmModule` and `ModuleInstance`, never a wasmtime type. A
//! `ModuleInstance` is used by one call at a time (a `Store` moves between threads only between
//! calls).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion_common::{DataFusionError, Result as DfResult, not_impl_err, plan_err};
use datafusion_expr::function::AccumulatorArgs;
use datafusion_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::udf::{FunctionKind, FunctionSpec, UdfError, UdfType};
use crate::wasm::{ModuleInstance, WasmModule};

static NEXT_MODULE_ID: AtomicU64 = AtomicU64::new(1);

/// A loaded module with an id that is never reused, and its instances not in use.
///
/// A call takes an idle instance (or makes one) and gives it back: there are as many
/// instances as calls ever ran at once on the handle, whichever threads made them, and they
/// go when the last clone does. (Instances kept per thread grew with the blocking pool, which
/// a busy machine makes large, until the engine's 256-instance pool ran out.)
#[derive(Debug, Clone)]
pub struct ModuleHandle {
    pub id: u64,
    pub module: Arc<WasmModule>,
    idle: Arc<Mutex<Vec<ModuleInstance>>>,
}

impl ModuleHandle {
    pub fn new(module: Arc<WasmModule>) -> Self {
        let id = NEXT_MODULE_ID.fetch_add(1, Ordering::Relaxed);
        Self {
            id,
            module,
            idle: Arc::default(),
        }
    }

    /// Runs `f` with an instance of the module no other call is using.
    pub fn with_instance<T>(&self, f: impl FnOnce(&mut ModuleInstance) -> T) -> T {
        let call = || {
            let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let mut instance = taken.unwrap_or_else(|| self.module.instance());
            let result = f(&mut instance);
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(instance);
            }
            result
        };
        // WASI's file calls block on tokio, which panics on a thread that drives a runtime (a
        // constant folded while planning, on a thread inside `block_on`): step out of it.
        // (On the blocking threads where calls normally run this is a plain call.)
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(call)
            }
            _ => call(),
        }
    }
}

/// Calls, rows, time and errors of one registered function, over every subtask.
#[derive(Debug, Default)]
pub struct UdfMetrics {
    pub calls: AtomicU64,
    pub rows: AtomicU64,
    pub nanos: AtomicU64,
    pub errors: AtomicU64,
}

impl UdfMetrics {
    pub fn record<T, E>(&self, rows: usize, started: Instant, result: &Result<T, E>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A function registered with `CREATE FUNCTION`: its SQL name, export and module.
#[derive(Debug)]
pub struct WasmFunction {
    /// The name SQL uses (`CREATE FUNCTION <name>`).
    pub sql_name: String,
    /// The module's export (`AS '<export>'`), as `describe` lists it.
    pub spec: FunctionSpec,
    pub module: ModuleHandle,
    /// Where the module came from, for SHOW FUNCTIONS and messages.
    pub path: String,
    pub metrics: UdfMetrics,
}

impl WasmFunction {
    pub fn export(&self) -> &str {
        &self.spec.name
    }

    /// The SQL signature with the SQL name: `usd(amount DOUBLE, currency VARCHAR) -> DOUBLE`.
    pub fn signature(&self) -> String {
        let signature = self.spec.signature();
        match signature.split_once('(') {
            Some((_, rest)) => format!("{}({rest}", self.sql_name),
            None => signature,
        }
    }

    /// Checks argument types against the parameters and says what each converts to.
    pub fn coerce(&self, arg_types: &[DataType]) -> Result<Vec<DataType>, String> {
        let params = &self.spec.params;
        if arg_types.len() != params.len() {
            return Err(format!(
                "{} takes {} argument{}, but {} {} given",
                self.signature(),
                params.len(),
                if params.len() == 1 { "" } else { "s" },
                arg_types.len(),
                if arg_types.len() == 1 { "was" } else { "were" },
            ));
        }
        params
            .iter()
            .zip(arg_types)
            .enumerate()
            .map(|(i, (param, given))| {
                let wanted = param.data_type.arrow_type();
                if converts_implicitly(given, param.data_type) {
                    Ok(wanted)
                } else {
                    Err(format!(
                        "{}: argument {} ({}) must be {}, but the query passes {}",
                        self.signature(),
                        i + 1,
                        param.name,
                        param.data_type,
                        sql_type_name(given)
                    ))
                }
            })
            .collect()
    }

    /// [`WasmFunction::coerce`] as DataFusion's planner wants it.
    fn planned_coerce(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.coerce(arg_types)
            .or_else(|message| plan_err!("{message}"))
    }

    /// The type of the (first) result.
    fn result_type(&self) -> DfResult<DataType> {
        match self.spec.results.first() {
            Some(result) => Ok(result.data_type.arrow_type()),
            None => plan_err!("{} returns nothing", self.signature()),
        }
    }

    /// Calls the scalar function on one batch of argument arrays.
    pub fn call_scalar(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef, UdfError> {
        let started = Instant::now();
        let result = self
            .module
            .with_instance(|instance| instance.call_scalar(self.export(), args, rows));
        self.metrics.record(rows, started, &result);
        result
    }
}

/// Conversions that lose nothing a user would miss: the SQL standard's implicit casts.
fn converts_implicitly(given: &DataType, to: UdfType) -> bool {
    use DataType as D;
    let wanted = to.arrow_type();
    if *given == wanted || given.is_null() {
        return true;
    }
    matches!(
        (&wanted, given),
        (D::Int16, D::Int8)
            | (D::Int32, D::Int8 | D::Int16)
            | (
                D::Int64,
                D::Int8 | D::Int16 | D::Int32 | D::UInt8 | D::UInt16 | D::UInt32
            )
            | (D::Float32, D::Int8 | D::Int16)
            | (
                D::Float64,
                D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::Float32
            )
            | (D::Float64, D::Decimal128(..))
            | (D::Utf8, D::Utf8View | D::LargeUtf8)
            | (D::Binary, D::BinaryView | D::LargeBinary)
            | (D::Timestamp(..), D::Timestamp(..))
    )
}

/// How a SQL user would name an Arrow type in a message.
pub fn sql_type_name(data_type: &DataType) -> String {
    UdfType::from_arrow(data_type).map_or_else(|| data_type.to_string(), |t| t.to_string())
}

fn volatility(spec: &FunctionSpec) -> Volatility {
    if spec.deterministic {
        Volatility::Immutable
    } else {
        Volatility::Volatile
    }
}

fn udf_error(error: UdfError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// DataFusion's functions must be `Eq` and `Hash`: a registered function is itself.
macro_rules! same_function_is_equal {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.function, &other.function)
            }
        }

        impl Eq for $t {}

        impl Hash for $t {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.function.sql_name.hash(state);
                self.function.module.id.hash(state);
            }
        }
    };
}

/// A Wasm scalar function as a DataFusion scalar function.
#[derive(Debug)]
pub struct WasmScalar {
    pub function: Arc<WasmFunction>,
    signature: Signature,
}

impl WasmScalar {
    pub fn new(function: Arc<WasmFunction>) -> Self {
        let signature = Signature::user_defined(volatility(&function.spec));
        Self {
            function,
            signature,
        }
    }
}

same_function_is_equal!(WasmScalar);

impl ScalarUDFImpl for WasmScalar {
    fn name(&self) -> &str {
        &self.function.sql_name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.function.planned_coerce(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        self.function.result_type()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .into_iter()
            .map(|arg| arg.into_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        self.function
            .call_scalar(&arrays, rows)
            .map(ColumnarValue::Array)
            .map_err(udf_error)
    }
}

/// A Wasm aggregate function, for planning. Weir's aggregation operator calls the module itself.
#[derive(Debug)]
pub struct WasmAggregate {
    pub function: Arc<WasmFunction>,
    signature: Signature,
}

impl WasmAggregate {
    pub fn new(function: Arc<WasmFunction>) -> Self {
        let signature = Signature::user_defined(volatility(&function.spec));
        Self {
            function,
            signature,
        }
    }

    pub fn can_retract(&self) -> bool {
        matches!(
            self.function.spec.kind,
            FunctionKind::Aggregate { retract: true, .. }
        )
    }
}

same_function_is_equal!(WasmAggregate);

impl AggregateUDFImpl for WasmAggregate {
    fn name(&self) -> &str {
        &self.function.sql_name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.function.planned_coerce(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        self.function.result_type()
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        not_impl_err!(
            "{} is a Wasm aggregate: only Weir's aggregation operator calls it",
            self.function.sql_name
        )
    }
}
