//! The parquet format: columns found by name in each file, cast to the declared types.
//!
//! The pieces shared among subtasks are row groups: every subtask reads every file's footer,
//! numbers the row groups of all files in order, and reads every `count`-th. A declared column
//! missing from a file is null there (as a missing json field), unless it is `NOT NULL`.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;

use arrow::array::{ArrayRef, new_null_array};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};

use super::{InputFile, io_error};
use crate::connector::{ConnectorError, SourceReader, Subtask, TableDef};

pub(super) fn open(
    table: &TableDef,
    files: &[InputFile],
    projected: SchemaRef,
    batch_size: usize,
    subtask: Subtask,
) -> Result<Box<dyn SourceReader>, ConnectorError> {
    let mut metadata = Vec::with_capacity(files.len());
    let mut pieces = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let handle = File::open(&file.path).map_err(|e| io_error(&file.path, &e))?;
        let loaded = ArrowReaderMetadata::load(&handle, ArrowReaderOptions::default())
            .map_err(|e| not_parquet(&file.path, e))?;
        for row_group in 0..loaded.metadata().num_row_groups() {
            pieces.push((index, row_group));
        }
        metadata.push(loaded);
    }
    // Consecutive row groups of one file are read with one reader.
    let mut plan: VecDeque<FilePlan> = VecDeque::new();
    for (index, row_group) in super::mine(pieces, subtask) {
        match plan.back_mut() {
            Some(last) if last.index == index => last.row_groups.push(row_group),
            _ => plan.push_back(FilePlan {
                index,
                row_groups: vec![row_group],
            }),
        }
    }
    Ok(Box::new(ParquetSource {
        table: table.name.clone(),
        paths: files.iter().map(|f| f.path.clone()).collect(),
        metadata,
        plan,
        current: None,
        projected,
        batch_size,
    }))
}

fn not_parquet(path: &std::path::Path, error: parquet::errors::ParquetError) -> ConnectorError {
    ConnectorError::Io {
        path: path.to_path_buf(),
        message: format!("cannot read as parquet: {error}"),
    }
}

/// Row groups of one file that this subtask reads.
#[derive(Debug)]
struct FilePlan {
    index: usize,
    row_groups: Vec<usize>,
}

/// Where a projected column comes from in a file.
#[derive(Debug, Clone, Copy)]
enum Column {
    /// This column of the reader's batches.
    Read(usize),
    /// Not in the file: null.
    Missing,
}

struct ParquetSource {
    table: String,
    paths: Vec<PathBuf>,
    metadata: Vec<ArrowReaderMetadata>,
    plan: VecDeque<FilePlan>,
    current: Option<FileReader>,
    projected: SchemaRef,
    batch_size: usize,
}

struct FileReader {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    columns: Vec<Column>,
}

impl ParquetSource {
    fn other(&self, path: &std::path::Path, message: String) -> ConnectorError {
        ConnectorError::Other {
            table: self.table.clone(),
            message: format!("{}: {message}", path.display()),
        }
    }

    fn open_file(&self, plan: FilePlan) -> Result<FileReader, ConnectorError> {
        let (Some(path), Some(metadata)) =
            (self.paths.get(plan.index), self.metadata.get(plan.index))
        else {
            return Err(ConnectorError::Other {
                table: self.table.clone(),
                message: format!("no file {} in the plan", plan.index),
            });
        };
        let file_schema = metadata.schema();
        let mut roots = Vec::new();
        let mut found = Vec::with_capacity(self.projected.fields().len());
        for field in self.projected.fields() {
            match file_schema.fields().find(field.name()) {
                Some((root, in_file)) => {
                    let from = in_file.data_type();
                    if from != field.data_type() && !can_cast_types(from, field.data_type()) {
                        return Err(self.other(
                            path,
                            format!(
                                "column '{}' has type {from} in the file, which cannot be read \
                                 as {}",
                                field.name(),
                                field.data_type()
                            ),
                        ));
                    }
                    roots.push(root);
                    found.push(Some(root));
                }
                None if field.is_nullable() => found.push(None),
                None => {
                    return Err(self.other(
                        path,
                        format!("NOT NULL column '{}' is not in the file", field.name()),
                    ));
                }
            }
        }
        roots.sort_unstable();
        roots.dedup();
        // The reader's batches hold the selected columns in file order.
        let columns = found
            .into_iter()
            .map(
                |root| match root.and_then(|r| roots.binary_search(&r).ok()) {
                    Some(position) => Column::Read(position),
                    None => Column::Missing,
                },
            )
            .collect();
        let mask = ProjectionMask::roots(metadata.parquet_schema(), roots.iter().copied());
        let handle = File::open(path).map_err(|e| io_error(path, &e))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, metadata.clone())
            .with_projection(mask)
            .with_row_groups(plan.row_groups)
            .with_batch_size(self.batch_size)
            .build()
            .map_err(|e| not_parquet(path, e))?;
        Ok(FileReader {
            path: path.clone(),
            reader,
            columns,
        })
    }

    fn convert(
        &self,
        file: &FileReader,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, ConnectorError> {
        let rows = batch.num_rows();
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(file.columns.len());
        for (column, field) in file.columns.iter().zip(self.projected.fields()) {
            let array = match column {
                Column::Read(position) => {
                    let Some(array) = batch.columns().get(*position) else {
                        return Err(self.other(
                            &file.path,
                            format!("the reader returned no column {position}"),
                        ));
                    };
                    if array.data_type() == field.data_type() {
                        array.clone()
                    } else {
                        cast_with_options(array, field.data_type(), &options).map_err(|e| {
                            self.other(
                                &file.path,
                                format!(
                                    "column '{}' cannot be read as {}: {e}",
                                    field.name(),
                                    field.data_type()
                                ),
                            )
                        })?
                    }
                }
                Column::Missing => new_null_array(field.data_type(), rows),
            };
            columns.push(array);
        }
        RecordBatch::try_new_with_options(
            self.projected.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| self.other(&file.path, e.to_string()))
    }
}

impl SourceReader for ParquetSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            if self.current.is_none() {
                let Some(plan) = self.plan.pop_front() else {
                    return Ok(None);
                };
                self.current = Some(self.open_file(plan)?);
            }
            let Some(file) = self.current.as_mut() else {
                continue;
            };
            match file.reader.next() {
                Some(Ok(batch)) => {
                    let Some(file) = self.current.as_ref() else {
                        continue;
                    };
                    return self.convert(file, &batch).map(Some);
                }
                Some(Err(e)) => {
                    return Err(ConnectorError::Io {
                        path: file.path.clone(),
                        message: format!("cannot read as parquet: {e}"),
                    });
                }
                None => self.current = None,
            }
        }
    }
}
