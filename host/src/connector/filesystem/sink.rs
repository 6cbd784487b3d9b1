//! The sink: one part file per subtask, hidden while it is written.
//!
//! Subtask `s` writes `part-<s>-<n>.<format>` in the directory `'path'`, `n` being the first number
//! free in the directory (so a second job adds files beside the first's). Until `finish` the file
//! is `.part-<s>-<n>.<format>.inprogress`, which sources skip as hidden; `finish` flushes it, syncs
//! it to disk, renames it and syncs the directory, so a reader sees a part file whole or not at all.
//! A part file is created at the first row: a subtask that writes nothing leaves nothing.
//!
//! In a job that takes checkpoints the sink commits in two phases, as Flink's file sink does: at
//! each barrier the open part file is closed and synced (pending: still hidden, named with the
//! job's tag, `.part-<s>-<n>.<format>.<tag>.inprogress`); when the checkpoint completes, its
//! pending files are renamed to their final names. The pending list is in the checkpoint, so
//! restoring it renames them (if that had not happened) and deletes this job's other hidden files.

use std::fs::{self, File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, GenericStringArray, OffsetSizeTrait};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use super::{Config, Format, io_error};
use crate::connector::{ConnectorError, SinkWriter, Subtask, TableDef};

pub(super) fn open(
    table: &TableDef,
    config: Config,
    subtask: Subtask,
    job_tag: Option<&str>,
) -> Result<Box<dyn SinkWriter>, ConnectorError> {
    if config.format == Format::Csv
        && let Some(field) = table
            .schema
            .fields()
            .iter()
            .find(|f| f.data_type().is_nested())
    {
        return Err(ConnectorError::option(
            table,
            format!(
                "the csv format cannot write column '{}' of type {}",
                field.name(),
                field.data_type()
            ),
        ));
    }
    // Created here, not at the first row, so that a bad path fails the job before it runs.
    fs::create_dir_all(&config.path).map_err(|e| io_error(&config.path, &e))?;
    let schema = if config.changelog {
        crate::runtime::changelog::display_schema(&table.schema)
    } else {
        table.schema.clone()
    };
    Ok(Box::new(FileSink {
        table: table.name.clone(),
        schema,
        config,
        subtask: subtask.index,
        part: None,
        finished: false,
        failed: false,
        job_tag: job_tag.map(str::to_string),
        pending: Vec::new(),
    }))
}

/// A closed part file waiting for its checkpoint to complete.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Pending {
    in_progress: PathBuf,
    target: PathBuf,
    checkpoint: u64,
}

/// Commits `pending` (each subtask's list from a restored checkpoint) and deletes every other
/// hidden file of job `job_tag` in the table's directory.
pub(super) fn recover(
    config: &Config,
    pending: &[serde_json::Value],
    job_tag: &str,
) -> Result<(), ConnectorError> {
    let dir = &config.path;
    if !dir.exists() {
        return Ok(());
    }
    let mut committed = std::collections::HashSet::new();
    for list in pending {
        let files: Vec<Pending> =
            serde_json::from_value(list.clone()).map_err(|e| ConnectorError::Io {
                path: dir.clone(),
                message: format!("the checkpoint's list of pending files is unreadable: {e}"),
            })?;
        for file in files {
            commit_file(&file)?;
            committed.insert(file.in_progress);
        }
    }
    let suffix = format!(".{job_tag}.inprogress");
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, &e))?;
    for entry in entries {
        let path = entry.map_err(|e| io_error(dir, &e))?.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".part-") && n.ends_with(&suffix));
        if ours && !committed.contains(&path) {
            // Written after the checkpoint restored: it will be written again.
            fs::remove_file(&path).map_err(|e| io_error(&path, &e))?;
        }
    }
    sync_dir(dir)
}

/// Renames a pending file to its final name, unless that was done already.
fn commit_file(file: &Pending) -> Result<(), ConnectorError> {
    if file.in_progress.exists() {
        fs::rename(&file.in_progress, &file.target).map_err(|e| io_error(&file.in_progress, &e))?;
    } else if !file.target.exists() {
        return Err(ConnectorError::Io {
            path: file.in_progress.clone(),
            message: "a pre-committed part file is missing: the checkpoint's output cannot be \
                      committed"
                .into(),
        });
    }
    Ok(())
}

struct FileSink {
    table: String,
    schema: SchemaRef,
    config: Config,
    subtask: usize,
    part: Option<Part>,
    finished: bool,
    /// A write to the part file failed part-way: it must never become visible.
    failed: bool,
    /// Set when the job takes checkpoints (two-phase commit).
    job_tag: Option<String>,
    pending: Vec<Pending>,
}

/// The part file being written.
struct Part {
    in_progress: PathBuf,
    target: PathBuf,
    encoder: Encoder,
}

/// One per part file, so boxed: the writers differ in size by hundreds of bytes.
enum Encoder {
    Csv(Box<arrow::csv::Writer<BufWriter<File>>>),
    Json(Box<arrow::json::LineDelimitedWriter<BufWriter<File>>>),
    // Parquet buffers row groups itself.
    Parquet(Box<ArrowWriter<File>>),
}

impl FileSink {
    fn other(&self, message: String) -> ConnectorError {
        ConnectorError::Other {
            table: self.table.clone(),
            message,
        }
    }

    /// Creates the next free part file, under its in-progress name.
    fn create_part(&self) -> Result<Part, ConnectorError> {
        let dir = &self.config.path;
        let extension = self.config.format.name();
        for n in 0..u64::from(u32::MAX) {
            let target = dir.join(format!("part-{}-{n}.{extension}", self.subtask));
            let in_progress = match &self.job_tag {
                None => dir.join(format!(".part-{}-{n}.{extension}.inprogress", self.subtask)),
                Some(tag) => dir.join(format!(
                    ".part-{}-{n}.{extension}.{tag}.inprogress",
                    self.subtask
                )),
            };
            if target.exists() || in_progress.exists() {
                continue;
            }
            // `create_new`: if another writer took the name since the check, take the next one.
            let file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&in_progress)
            {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(&in_progress, &e)),
            };
            let encoder = match self.config.format {
                Format::Csv => {
                    let mut builder = arrow::csv::WriterBuilder::new()
                        .with_header(self.config.csv.header)
                        .with_delimiter(self.config.csv.delimiter);
                    if let Some(literal) = &self.config.csv.null_literal {
                        builder = builder.with_null(literal.clone());
                    }
                    Encoder::Csv(Box::new(
                        builder.build(BufWriter::with_capacity(1 << 20, file)),
                    ))
                }
                Format::Json => Encoder::Json(Box::new(arrow::json::LineDelimitedWriter::new(
                    BufWriter::with_capacity(1 << 20, file),
                ))),
                Format::Parquet => Encoder::Parquet(Box::new(
                    ArrowWriter::try_new(file, self.schema.clone(), None).map_err(|e| {
                        ConnectorError::Io {
                            path: in_progress.clone(),
                            message: format!("cannot write parquet: {e}"),
                        }
                    })?,
                )),
            };
            return Ok(Part {
                in_progress,
                target,
                encoder,
            });
        }
        Err(self.other("no free part file name".into()))
    }

    /// A csv record is one line: refuse a string value holding a newline rather than write a file
    /// that reads back wrong.
    fn check_csv_line_breaks(&self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        for (column, field) in batch.columns().iter().zip(self.schema.fields()) {
            let row = match column.data_type() {
                DataType::Utf8 => newline_row(column.as_string::<i32>()),
                DataType::LargeUtf8 => newline_row(column.as_string::<i64>()),
                DataType::Utf8View => column
                    .as_string_view()
                    .iter()
                    .position(|v| v.is_some_and(|v| v.contains('\n'))),
                _ => None,
            };
            if let Some(row) = row {
                return Err(self.other(format!(
                    "column '{}' holds a line break (row {} of a batch), which a csv file cannot \
                     hold: a csv record is one line (use the json or parquet format)",
                    field.name(),
                    row + 1
                )));
            }
        }
        Ok(())
    }
}

/// The first row whose string holds `\n`: one pass over the value bytes, rows only if one is found.
fn newline_row<O: OffsetSizeTrait>(array: &GenericStringArray<O>) -> Option<usize> {
    let offsets = array.value_offsets();
    let (first, last) = (offsets.first()?.as_usize(), offsets.last()?.as_usize());
    let bytes = array.value_data().get(first..last)?;
    if !bytes.contains(&b'\n') {
        return None;
    }
    array
        .iter()
        .position(|v| v.is_some_and(|v| v.contains('\n')))
}

impl SinkWriter for FileSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if self.finished {
            return Err(self.other("write after finish".into()));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // An append-only input (a batch job, an append-only query) written as a changelog is
        // all inserts, as in Flink.
        let inserts;
        let batch =
            if self.config.changelog && batch.num_columns() + 1 == self.schema.fields().len() {
                let mut columns: Vec<arrow::array::ArrayRef> =
                    vec![std::sync::Arc::new(arrow::array::StringArray::from(vec![
                    "+I";
                    batch.num_rows()
                ]))];
                columns.extend(batch.columns().iter().cloned());
                inserts = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| {
                    self.other(format!("a batch does not fit the table's columns: {e}"))
                })?;
                &inserts
            } else {
                batch
            };
        // An upsert log leaves out the rows before an update: the row after replaces it.
        let upserts;
        let batch = if self.config.upsert {
            let ops = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .ok_or_else(|| self.other("an upsert batch has no op column".into()))?;
            let keep: arrow::array::BooleanArray =
                ops.iter().map(|op| Some(op != Some("-U"))).collect();
            upserts = arrow::compute::filter_record_batch(batch, &keep)
                .map_err(|e| self.other(e.to_string()))?;
            &upserts
        } else {
            batch
        };
        // Written with the declared names (the csv header, the json keys), whatever the job's.
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| self.other(format!("a batch does not fit the table's columns: {e}")))?;
        if self.config.format == Format::Csv {
            self.check_csv_line_breaks(&batch)?;
        }
        if self.part.is_none() {
            self.part = Some(self.create_part()?);
        }
        let Some(part) = self.part.as_mut() else {
            return Ok(());
        };
        let result = match &mut part.encoder {
            Encoder::Csv(writer) => writer.write(&batch).map_err(|e| e.to_string()),
            Encoder::Json(writer) => writer.write(&batch).map_err(|e| e.to_string()),
            Encoder::Parquet(writer) => writer.write(&batch).map_err(|e| e.to_string()),
        };
        result.map_err(|message| {
            self.failed = true;
            ConnectorError::Io {
                path: part.in_progress.clone(),
                message: format!("cannot write: {message}"),
            }
        })
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        self.finished = true;
        let Some((in_progress, target)) = self.close_part()? else {
            return Ok(());
        };
        fs::rename(&in_progress, &target).map_err(|e| io_error(&in_progress, &e))?;
        sync_dir(&self.config.path)
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<serde_json::Value>, ConnectorError> {
        if let Some((in_progress, target)) = self.close_part()? {
            self.pending.push(Pending {
                in_progress,
                target,
                checkpoint,
            });
        }
        serde_json::to_value(&self.pending)
            .map(Some)
            .map_err(|e| self.other(format!("cannot list the pending files: {e}")))
    }

    fn commit(&mut self, checkpoint: u64) -> Result<(), ConnectorError> {
        let (ready, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.checkpoint <= checkpoint);
        self.pending = waiting;
        if ready.is_empty() {
            return Ok(());
        }
        for file in &ready {
            commit_file(file)?;
        }
        sync_dir(&self.config.path)
    }
}

impl FileSink {
    /// Closes the open part file, synced to disk but still hidden: its (hidden, final) names.
    fn close_part(&mut self) -> Result<Option<(PathBuf, PathBuf)>, ConnectorError> {
        let Some(part) = self.part.take() else {
            return Ok(None);
        };
        if self.failed {
            return Err(ConnectorError::Io {
                path: part.in_progress,
                message: "a write failed, so the part file stays hidden".into(),
            });
        }
        let in_progress = part.in_progress;
        let fail = |message: String| ConnectorError::Io {
            path: in_progress.clone(),
            message,
        };
        let file = match part.encoder {
            Encoder::Csv(writer) => writer
                .into_inner()
                .into_inner()
                .map_err(|e| fail(format!("cannot write: {}", e.error())))?,
            Encoder::Json(mut writer) => {
                writer
                    .finish()
                    .map_err(|e| fail(format!("cannot write: {e}")))?;
                writer
                    .into_inner()
                    .into_inner()
                    .map_err(|e| fail(format!("cannot write: {}", e.error())))?
            }
            Encoder::Parquet(writer) => writer
                .into_inner()
                .map_err(|e| fail(format!("cannot write: {e}")))?,
        };
        // Durable before visible: data, then the name, then the directory entry.
        file.sync_all().map_err(|e| io_error(&in_progress, &e))?;
        drop(file);
        Ok(Some((in_progress, part.target)))
    }
}

fn sync_dir(dir: &Path) -> Result<(), ConnectorError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, &e))
}
