//! Reading a CSV, JSON-lines or Parquet file as Arrow batches of a chosen size.

use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::Path;

use anyhow::{Context, bail};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

/// The batches of a file and its schema, in file order.
pub struct Input {
    pub schema: SchemaRef,
    pub batches: Box<dyn Iterator<Item = anyhow::Result<RecordBatch>>>,
}

/// Opens `path` by its extension: `.csv`, `.json`/`.jsonl`/`.ndjson`, or `.parquet`.
pub fn open(path: &Path, batch_size: usize) -> anyhow::Result<Input> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    match extension.as_str() {
        "csv" => {
            let format = arrow::csv::reader::Format::default().with_header(true);
            let (schema, _) = format
                .infer_schema(&mut file, Some(10_000))
                .with_context(|| format!("cannot infer the columns of {}", path.display()))?;
            file.rewind()?;
            let reader = arrow::csv::ReaderBuilder::new(schema.into())
                .with_format(format)
                .with_batch_size(batch_size)
                .build(file)?;
            Ok(Input {
                schema: reader.schema(),
                batches: Box::new(reader.map(|b| b.map_err(anyhow::Error::from))),
            })
        }
        "json" | "jsonl" | "ndjson" => {
            let mut buffered = BufReader::new(file);
            let (schema, _) =
                arrow::json::reader::infer_json_schema_from_seekable(&mut buffered, Some(10_000))
                    .with_context(|| format!("cannot infer the fields of {}", path.display()))?;
            let schema: SchemaRef = schema.into();
            let reader = arrow::json::ReaderBuilder::new(schema.clone())
                .with_batch_size(batch_size)
                .build(buffered)?;
            Ok(Input {
                schema,
                batches: Box::new(reader.map(|b| b.map_err(anyhow::Error::from))),
            })
        }
        "parquet" => {
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .with_context(|| format!("cannot read {} as Parquet", path.display()))?;
            let reader = builder.with_batch_size(batch_size).build()?;
            Ok(Input {
                schema: arrow::record_batch::RecordBatchReader::schema(&reader),
                batches: Box::new(reader.map(|b| b.map_err(anyhow::Error::from))),
            })
        }
        other => bail!(
            "cannot tell the format of {} from its extension `{other}`: use .csv, .jsonl or .parquet",
            path.display()
        ),
    }
}
