//! `weir call <module.wasm> <function> --input FILE`: runs one function over a file, one call per
//! batch, and prints the result. Aggregates print one final value (per `--group-by` value), with
//! the states held by this command between batches, as the engine holds them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{Array, ArrayRef, BinaryArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use weir_host::udf::{FunctionKind, FunctionSpec, coerce};
use weir_host::wasm::ModuleInstance;

use crate::input;
use crate::output::{OutputFormat, print_batches};

/// Arguments of `weir call`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component.
    pub module: PathBuf,
    /// The function to call.
    pub function: String,
    /// The input: a .csv (with a header), .jsonl or .parquet file.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Input columns to pass as arguments, in order (default: the columns named like the
    /// parameters, else the first columns).
    #[arg(long, value_delimiter = ',', value_name = "COL,COL")]
    pub args: Vec<String>,
    /// Rows per call.
    #[arg(long, default_value_t = 8192)]
    pub batch_size: usize,
    /// For an aggregate: one result per value of this column.
    #[arg(long, value_name = "COL")]
    pub group_by: Option<String>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// Runs the function over the file and prints the result.
pub fn run(args: Args, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let module = super::load_module(&args.module, cache_dir)?;
    let (_, spec) = module.function(&args.function)?;
    let spec = spec.clone();
    let input = input::open(&args.input, args.batch_size)?;
    let arg_indexes = argument_columns(&args, &spec, &input.schema)?;
    if args.group_by.is_some() && !matches!(spec.kind, FunctionKind::Aggregate { .. }) {
        bail!(
            "--group-by applies to aggregate functions; `{}` is a {} function",
            spec.name,
            spec.kind.name()
        );
    }
    let group_index = match &args.group_by {
        Some(name) => Some(
            input
                .schema
                .index_of(name)
                .with_context(|| format!("no column `{name}` in {}", args.input.display()))?,
        ),
        None => None,
    };
    let mut instance = module.instance();
    let mut run = Run {
        spec: &spec,
        instance: &mut instance,
        output: Vec::new(),
        groups: Groups::default(),
    };
    let mut offset = 0u64;
    for batch in input.batches {
        let batch = batch?;
        let arguments = arg_indexes
            .iter()
            .zip(&spec.params)
            .map(|(&i, param)| {
                coerce(batch.column(i), param.data_type).map_err(|e| {
                    anyhow::anyhow!(
                        "column `{}` for parameter `{}`: {e}",
                        input.schema.field(i).name(),
                        param.name
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let names: Vec<&str> = arg_indexes
            .iter()
            .map(|&i| input.schema.field(i).name().as_str())
            .collect();
        let group_column = group_index.map(|i| batch.column(i).clone());
        run.batch(&names, &arguments, group_column, batch.num_rows(), offset)
            .map_err(|e| match e.downcast::<weir_host::udf::UdfError>() {
                Ok(udf) => anyhow::Error::from(udf.offset_rows(offset)),
                Err(other) => other,
            })?;
        offset += batch.num_rows() as u64;
    }
    let output = run.finish(args.group_by.as_deref())?;
    print_batches(&output, args.format)
}

fn argument_columns(
    args: &Args,
    spec: &FunctionSpec,
    schema: &Schema,
) -> anyhow::Result<Vec<usize>> {
    if !args.args.is_empty() {
        if args.args.len() != spec.params.len() {
            bail!(
                "`{}` takes {} arguments ({}); --args names {}",
                spec.name,
                spec.params.len(),
                spec.signature(),
                args.args.len()
            );
        }
        return args
            .args
            .iter()
            .map(|name| {
                schema
                    .index_of(name)
                    .with_context(|| format!("no column `{name}` in {}", args.input.display()))
            })
            .collect();
    }
    let by_name: Option<Vec<usize>> = spec
        .params
        .iter()
        .map(|p| schema.index_of(&p.name).ok())
        .collect();
    if let Some(indexes) = by_name {
        return Ok(indexes);
    }
    if schema.fields().len() < spec.params.len() {
        bail!(
            "`{}` takes {} arguments but {} has {} columns; name them with --args",
            spec.signature(),
            spec.params.len(),
            args.input.display(),
            schema.fields().len()
        );
    }
    Ok((0..spec.params.len()).collect())
}

/// Host-held aggregate states, one per group, keyed by the group value as printed.
#[derive(Default)]
struct Groups {
    index: HashMap<String, usize>,
    keys: Vec<ArrayRef>,
    states: Vec<Vec<u8>>,
}

struct Run<'a> {
    spec: &'a FunctionSpec,
    instance: &'a mut ModuleInstance,
    output: Vec<RecordBatch>,
    groups: Groups,
}

impl Run<'_> {
    fn batch(
        &mut self,
        names: &[&str],
        arguments: &[ArrayRef],
        group_column: Option<ArrayRef>,
        num_rows: usize,
        offset: u64,
    ) -> anyhow::Result<()> {
        let function = self.spec.name.as_str();
        match self.spec.kind {
            FunctionKind::Scalar => {
                let result = self.instance.call_scalar(function, arguments, num_rows)?;
                let mut fields: Vec<Field> = names
                    .iter()
                    .zip(arguments)
                    .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
                    .collect();
                fields.push(Field::new(function, result.data_type().clone(), true));
                let mut columns = arguments.to_vec();
                columns.push(result);
                self.output.push(RecordBatch::try_new(
                    Arc::new(Schema::new(fields)),
                    columns,
                )?);
            }
            FunctionKind::Table => {
                let rows = self.instance.call_table(function, arguments, num_rows)?;
                let input_rows: UInt64Array = rows
                    .row_index
                    .iter()
                    .map(|i| i.map(|i| u64::from(i) + offset))
                    .collect();
                let mut fields = vec![Field::new("row", DataType::UInt64, false)];
                fields.extend(
                    self.spec
                        .results
                        .iter()
                        .zip(&rows.columns)
                        .map(|(r, c)| Field::new(&r.name, c.data_type().clone(), true)),
                );
                let mut columns: Vec<ArrayRef> = vec![Arc::new(input_rows)];
                columns.extend(rows.columns);
                self.output.push(RecordBatch::try_new(
                    Arc::new(Schema::new(fields)),
                    columns,
                )?);
            }
            FunctionKind::Aggregate { .. } => self.accumulate(arguments, group_column, num_rows)?,
        }
        Ok(())
    }

    fn group_of(
        &mut self,
        key: String,
        column: Option<&ArrayRef>,
        row: usize,
    ) -> anyhow::Result<usize> {
        if let Some(&g) = self.groups.index.get(&key) {
            return Ok(g);
        }
        let g = self.groups.states.len();
        self.groups
            .states
            .push(self.instance.aggregate_create(&self.spec.name)?);
        if let Some(column) = column {
            self.groups.keys.push(column.slice(row, 1));
        }
        self.groups.index.insert(key, g);
        Ok(g)
    }

    fn accumulate(
        &mut self,
        arguments: &[ArrayRef],
        group_column: Option<ArrayRef>,
        num_rows: usize,
    ) -> anyhow::Result<()> {
        let mut global = Vec::with_capacity(num_rows);
        match &group_column {
            Some(column) => {
                let formatter = ArrayFormatter::try_new(
                    column.as_ref(),
                    &FormatOptions::default().with_null("NULL"),
                )?;
                for row in 0..num_rows {
                    let key = formatter.value(row).to_string();
                    global.push(self.group_of(key, Some(column), row)?);
                }
            }
            None => {
                let g = self.group_of(String::new(), None, 0)?;
                global.resize(num_rows, g);
            }
        }
        // The call sees only the groups present in this batch, numbered from zero.
        let mut local_of: HashMap<usize, u32> = HashMap::new();
        let mut present: Vec<usize> = Vec::new();
        let groups: Vec<u32> = global
            .iter()
            .map(|&g| {
                *local_of.entry(g).or_insert_with(|| {
                    present.push(g);
                    (present.len() - 1) as u32
                })
            })
            .collect();
        let states = BinaryArray::from_iter_values(present.iter().map(|&g| &self.groups.states[g]));
        let updated =
            self.instance
                .aggregate_accumulate(&self.spec.name, arguments, &groups, &states)?;
        for (local, &g) in present.iter().enumerate() {
            self.groups.states[g] = updated.value(local).to_vec();
        }
        Ok(())
    }

    fn finish(mut self, group_by: Option<&str>) -> anyhow::Result<Vec<RecordBatch>> {
        if !matches!(self.spec.kind, FunctionKind::Aggregate { .. }) {
            return Ok(self.output);
        }
        if self.groups.states.is_empty() && group_by.is_none() {
            // No rows at all: the aggregate of nothing, as SQL gives it.
            self.group_of(String::new(), None, 0)?;
        }
        let states = BinaryArray::from_iter_values(self.groups.states.iter());
        let results = self.instance.aggregate_finish(&self.spec.name, &states)?;
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        if let Some(name) = group_by {
            let keys: Vec<&dyn Array> = self.groups.keys.iter().map(|k| k.as_ref()).collect();
            if let Some(first) = keys.first() {
                fields.push(Field::new(name, first.data_type().clone(), true));
                columns.push(arrow::compute::concat(&keys)?);
            } else {
                return Ok(Vec::new());
            }
        }
        fields.push(Field::new(
            &self.spec.name,
            results.data_type().clone(),
            true,
        ));
        columns.push(results);
        Ok(vec![RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?])
    }
}
