//! The tables and functions a script has declared, and DataFusion's view of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{Result as DfResult, TableReference, plan_err};
use datafusion_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};

use super::SqlError;
use super::parser::{CreateTable, WatermarkDef};
use crate::connector::{MetadataColumn, TableDef};
use crate::functions::{WasmAggregate, WasmFunction, WasmScalar};
use crate::udf::FunctionKind;

/// A declared table: what its connector needs, plus its watermark (used in streaming mode).
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub def: TableDef,
    pub watermark: Option<WatermarkDef>,
    /// The watermark's bounded out-of-orderness, in milliseconds.
    pub watermark_delay_millis: Option<i64>,
    pub primary_key: Vec<String>,
}

/// Tables and functions by name (names as DataFusion folds them: unquoted → lowercase).
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    tables: BTreeMap<String, TableEntry>,
    functions: BTreeMap<String, Arc<WasmFunction>>,
}

impl Catalog {
    /// Adds a table from its `CREATE TABLE`.
    ///
    /// # Errors
    /// A table of that name exists (unless `IF NOT EXISTS`), duplicate or badly typed columns, a
    /// watermark on a column that is not a timestamp.
    pub fn create_table(&mut self, create: &CreateTable) -> Result<(), SqlError> {
        if self.tables.contains_key(&create.name) {
            if create.if_not_exists {
                return Ok(());
            }
            return Err(SqlError::plan(
                format!("table '{}' already exists", create.name),
                None,
            ));
        }
        let mut fields = Vec::with_capacity(create.columns.len());
        for column in &create.columns {
            if fields.iter().any(|f: &Field| f.name() == &column.name) {
                return Err(SqlError::plan(
                    format!("column '{}' is declared twice", column.name),
                    Some(column.location),
                ));
            }
            let data_type = super::types::arrow_type(&column.data_type)
                .map_err(|message| SqlError::plan(message, Some(column.location)))?;
            fields.push(Field::new(&column.name, data_type, !column.not_null));
        }
        let mut watermark_delay_millis = None;
        if let Some(watermark) = &create.watermark {
            match fields.iter().find(|f| f.name() == &watermark.column) {
                Some(field) if matches!(field.data_type(), DataType::Timestamp(..)) => {
                    watermark_delay_millis = Some(
                        watermark
                            .delay_millis()
                            .map_err(|m| SqlError::plan(m, Some(watermark.location)))?,
                    );
                }
                Some(field) => {
                    return Err(SqlError::plan(
                        format!(
                            "the watermark column '{}' must be a TIMESTAMP, not {}",
                            watermark.column,
                            field.data_type()
                        ),
                        Some(watermark.location),
                    ));
                }
                None => {
                    return Err(SqlError::plan(
                        format!(
                            "the watermark column '{}' is not a column",
                            watermark.column
                        ),
                        Some(watermark.location),
                    ));
                }
            }
        }
        for key in &create.primary_key {
            if !fields.iter().any(|f| f.name() == key) {
                return Err(SqlError::plan(
                    format!("the primary key column '{key}' is not a column"),
                    None,
                ));
            }
        }
        let options = create.options.iter().cloned().collect();
        self.tables.insert(
            create.name.clone(),
            TableEntry {
                def: TableDef {
                    name: create.name.clone(),
                    schema: Arc::new(Schema::new(fields)),
                    options,
                    primary_key: create.primary_key.clone(),
                    metadata: create
                        .columns
                        .iter()
                        .filter_map(|c| {
                            let m = c.metadata.as_ref()?;
                            Some(MetadataColumn {
                                column: c.name.clone(),
                                key: m.key.clone(),
                                is_virtual: m.is_virtual,
                            })
                        })
                        .collect(),
                },
                watermark: create.watermark.clone(),
                watermark_delay_millis,
                primary_key: create.primary_key.clone(),
            },
        );
        Ok(())
    }

    pub fn table(&self, name: &str) -> Option<&TableEntry> {
        self.tables.get(name)
    }

    pub fn tables(&self) -> impl Iterator<Item = &TableEntry> {
        self.tables.values()
    }

    /// Registers a function. Replacing one of the same name is refused unless `if_not_exists`,
    /// which keeps the old one, as in Flink.
    ///
    /// # Errors
    /// The name is taken.
    pub fn add_function(
        &mut self,
        function: Arc<WasmFunction>,
        if_not_exists: bool,
    ) -> Result<(), SqlError> {
        if self.functions.contains_key(&function.sql_name) {
            if if_not_exists {
                return Ok(());
            }
            return Err(SqlError::plan(
                format!("function '{}' already exists", function.sql_name),
                None,
            ));
        }
        self.functions.insert(function.sql_name.clone(), function);
        Ok(())
    }

    pub fn function(&self, name: &str) -> Option<&Arc<WasmFunction>> {
        self.functions.get(name)
    }

    pub fn functions(&self) -> impl Iterator<Item = &Arc<WasmFunction>> {
        self.functions.values()
    }
}

/// A declared table as DataFusion's planner sees it: a name and a schema.
#[derive(Debug)]
pub struct CatalogTable {
    pub name: String,
    pub schema: SchemaRef,
}

impl TableSource for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The catalog plus DataFusion's built-in functions, for one planning run.
#[derive(Debug)]
pub(crate) struct PlanningContext<'a> {
    catalog: &'a Catalog,
    options: Arc<ConfigOptions>,
    scalars: HashMap<String, Arc<ScalarUDF>>,
    aggregates: HashMap<String, Arc<AggregateUDF>>,
    relation_planners: Vec<Arc<dyn RelationPlanner>>,
    expr_planners: Vec<Arc<dyn ExprPlanner>>,
}

impl<'a> PlanningContext<'a> {
    pub(crate) fn new(catalog: &'a Catalog) -> Self {
        let mut scalars = HashMap::new();
        for function in datafusion_functions::all_default_functions() {
            for alias in function.aliases() {
                scalars.insert(alias.clone(), function.clone());
            }
            scalars.insert(function.name().to_string(), function);
        }
        let flink_mod = Arc::new(ScalarUDF::new_from_impl(super::flink::Mod::default()));
        scalars.insert("mod".to_string(), flink_mod);
        scalars.insert(
            "date_format".to_string(),
            Arc::new(ScalarUDF::new_from_impl(super::flink::DateFormat::default())),
        );
        scalars.insert(
            "proctime".to_string(),
            Arc::new(ScalarUDF::new_from_impl(super::flink::ProcTime::default())),
        );
        let mut aggregates = HashMap::new();
        for function in datafusion_functions_aggregate::all_default_aggregate_functions() {
            for alias in function.aliases() {
                aggregates.insert(alias.clone(), function.clone());
            }
            aggregates.insert(function.name().to_string(), function);
        }
        // Registered functions shadow built-ins of the same name, as in Flink.
        for function in catalog.functions() {
            match function.spec.kind {
                FunctionKind::Scalar => {
                    scalars.insert(
                        function.sql_name.clone(),
                        Arc::new(ScalarUDF::new_from_impl(WasmScalar::new(function.clone()))),
                    );
                }
                FunctionKind::Aggregate { .. } => {
                    aggregates.insert(
                        function.sql_name.clone(),
                        Arc::new(AggregateUDF::new_from_impl(WasmAggregate::new(
                            function.clone(),
                        ))),
                    );
                }
                FunctionKind::Table => {}
            }
        }
        Self {
            catalog,
            options: super::config(),
            scalars,
            aggregates,
            relation_planners: vec![
                Arc::new(super::lateral::LateralPlanner::new(catalog)),
                Arc::new(super::window::WindowPlanner),
            ],
            // What DataFusion's session registers: COUNT(*), EXTRACT, SUBSTRING ... FROM, POSITION,
            // struct literals and the like are planned by these.
            expr_planners: vec![
                Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
                Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
                Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
                Arc::new(datafusion_functions_aggregate::planner::AggregateFunctionPlanner),
            ],
        }
    }
}

impl ContextProvider for PlanningContext<'_> {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        match self.catalog.table(name.table()) {
            Some(entry) => Ok(Arc::new(CatalogTable {
                name: entry.def.name.clone(),
                schema: entry.def.schema.clone(),
            })),
            None => {
                let known: Vec<&str> = self.catalog.tables.keys().map(String::as_str).collect();
                plan_err!(
                    "table '{}' not found (tables: {})",
                    name.table(),
                    if known.is_empty() {
                        "none; declare one with CREATE TABLE".to_string()
                    } else {
                        known.join(", ")
                    }
                )
            }
        }
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.expr_planners
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        &self.relation_planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.scalars.get(name).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.aggregates.get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        (name == "row_number")
            .then(|| Arc::new(WindowUDF::new_from_impl(super::flink::RowNumber::default())))
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn get_variable_field(&self, _variable_names: &[String]) -> Option<FieldRef> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    // Sorted: DataFusion's "did you mean" picks the first of equally close names.
    fn udf_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.scalars.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.aggregates.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}
