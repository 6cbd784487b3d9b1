//! `filesystem`: csv, json (one object per line) and parquet files or directories.
//!
//! A source reads `'path'`, a file or every visible regular file of a directory, with the table's
//! declared columns: nothing is inferred, a value that does not fit its column is a parse error
//! naming the file and line. A sink writes one part file per subtask into the directory `'path'`,
//! hidden under an in-progress name until `finish` renames it, so that readers (this connector
//! included) never see a half-written file.
//!
//! Options, with Flink's names: `'path'`, `'format'` (`csv`, `json`, `parquet`),
//! `'csv.field-delimiter'`, `'csv.header'` (Weir's: the first line of each file is a header),
//! `'csv.null-literal'`, `'csv.ignore-parse-errors'` and `'json.ignore-parse-errors'`; as a
//! sink `'sink.changelog-mode'`; as a source `'source.monitor-interval'` (then the source is
//! unbounded: it keeps watching the directory and reads each new file once, whole files spread
//! over the subtasks by name; files must appear complete, e.g. moved in by rename).
//!
//! **Invariant:** whatever the number of subtasks, the subtasks of a source together read every
//! row of the input exactly once: every subtask lists the same files and cuts them into the same
//! pieces (byte ranges of csv and json files, row groups of parquet files), then takes every
//! `count`-th piece. The input must not change while a job reads it.
//!
//! **Boundary:** this module and its children are the only place that knows file layouts; the
//! readers and writers hand out and take Arrow batches of the declared columns.

pub(crate) mod csv;
pub(crate) mod json;
mod json_flat;
pub(crate) mod lines;
mod monitor;
mod parquet;
mod sink;
#[cfg(test)]
mod tests;
mod timestamp;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use super::{
    ConnectorError, SinkWriter, SourceReader, SourceRequest, Subtask, TableDef, check_known_options,
};

const KNOWN_OPTIONS: &[&str] = &[
    "path",
    "format",
    "csv.field-delimiter",
    "csv.header",
    "csv.ignore-parse-errors",
    "csv.null-literal",
    "json.ignore-parse-errors",
    "sink.changelog-mode",
    "source.monitor-interval",
];

/// The most rows per batch, whatever the job asks: the decoders reserve room for a batch.
const MAX_BATCH_ROWS: usize = 1 << 16;

/// Sizes that decide how files are cut and read; tests make them small to exercise the edges.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// csv and json files larger than this are read as several byte ranges, one piece each.
    split_size: u64,
    /// Bytes read from a file at a time, and so roughly the bytes decoded at a time.
    block_size: usize,
}

impl Tuning {
    const DEFAULT: Tuning = Tuning {
        split_size: 8 << 20,
        block_size: 1 << 20,
    };
}

pub(crate) fn validate(table: &TableDef) -> Result<(), ConnectorError> {
    Config::parse(table).map(drop)
}

pub(crate) fn open_source(
    table: &TableDef,
    request: &SourceRequest,
) -> Result<Box<dyn SourceReader>, ConnectorError> {
    open_source_tuned(table, request, Tuning::DEFAULT)
}

pub(crate) fn open_sink(
    table: &TableDef,
    subtask: Subtask,
    job_tag: Option<&str>,
) -> Result<Box<dyn SinkWriter>, ConnectorError> {
    let config = Config::parse(table)?;
    check_subtask(table, subtask)?;
    sink::open(table, config, subtask, job_tag)
}

pub(crate) fn recover_sink(
    table: &TableDef,
    pending: &[serde_json::Value],
    job_tag: &str,
) -> Result<(), ConnectorError> {
    sink::recover(&Config::parse(table)?, pending, job_tag)
}

fn open_source_tuned(
    table: &TableDef,
    request: &SourceRequest,
    tuning: Tuning,
) -> Result<Box<dyn SourceReader>, ConnectorError> {
    let config = Config::parse(table)?;
    check_subtask(table, request.subtask)?;
    let columns = table.schema.fields().len();
    let projection = match &request.projection {
        Some(projection) => projection.clone(),
        None => (0..columns).collect(),
    };
    if let Some(bad) = projection.iter().find(|&&i| i >= columns) {
        return Err(other(
            table,
            format!("projection index {bad} is out of range (the table has {columns} columns)"),
        ));
    }
    let projected: SchemaRef = Arc::new(
        table
            .schema
            .project(&projection)
            .map_err(|e| other(table, format!("cannot project the columns: {e}")))?,
    );
    // A batch size of zero would never make progress; a huge one would make the decoders reserve
    // room for that many rows up front. Batches are "at most" the size asked, so clamp it.
    let batch_size = request.batch_size.clamp(1, MAX_BATCH_ROWS);
    let files = list_files(&config.path)?;
    let pieces = Pieces {
        table: table.clone(),
        config: config.clone(),
        projection,
        projected,
        batch_size,
        tuning,
    };
    let first = pieces.open(&files, request.subtask)?;
    match config.monitor_interval {
        None => Ok(first),
        Some(interval) => Ok(Box::new(monitor::Monitor::new(
            pieces,
            first,
            &files,
            request.subtask,
            interval,
        ))),
    }
}

/// What a reader over some of a table's files is made of.
#[derive(Debug, Clone)]
struct Pieces {
    table: TableDef,
    config: Config,
    projection: Vec<usize>,
    projected: SchemaRef,
    batch_size: usize,
    tuning: Tuning,
}

impl Pieces {
    /// A reader of `subtask`'s share of `files`.
    fn open(
        &self,
        files: &[InputFile],
        subtask: Subtask,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let (table, config, tuning) = (&self.table, &self.config, self.tuning);
        match config.format {
            Format::Csv => {
                let decoder = csv::CsvLines::new(
                    table,
                    &config.csv,
                    &self.projection,
                    self.projected.clone(),
                    self.batch_size,
                )?;
                let ranges = mine(byte_ranges(files, tuning.split_size), subtask);
                Ok(Box::new(lines::LineReader::new(
                    &table.name,
                    decoder,
                    ranges,
                    config.csv.header,
                    config.ignore_parse_errors,
                    tuning.block_size,
                )))
            }
            Format::Json => {
                let decoder = json::JsonLines::new(table, self.projected.clone(), self.batch_size)?;
                let ranges = mine(byte_ranges(files, tuning.split_size), subtask);
                Ok(Box::new(lines::LineReader::new(
                    &table.name,
                    decoder,
                    ranges,
                    false,
                    config.ignore_parse_errors,
                    tuning.block_size,
                )))
            }
            Format::Parquet => parquet::open(
                table,
                files,
                self.projected.clone(),
                self.batch_size,
                subtask,
            ),
        }
    }
}

/// A file format the connector reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
    Parquet,
}

impl Format {
    /// The `'format'` value, which is also the extension of the part files a sink writes.
    fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Parquet => "parquet",
        }
    }
}

/// The checked options of a filesystem table.
#[derive(Debug, Clone)]
struct Config {
    path: PathBuf,
    format: Format,
    csv: CsvOptions,
    /// `'<format>.ignore-parse-errors'`: skip and count bad rows instead of failing.
    ignore_parse_errors: bool,
    /// `'sink.changelog-mode'`: `'all'` writes an updating result as its changelog, an `op`
    /// column (+I, -U, +U, -D) first; `'upsert'` (with a primary key) leaves out the `-U` rows:
    /// each row inserts or replaces the row of its key, `-D` deletes it.
    changelog: bool,
    upsert: bool,
    /// `'source.monitor-interval'`: keep watching the directory for new files (an unbounded
    /// source), looking this often.
    monitor_interval: Option<std::time::Duration>,
}

/// Whether the table, as a sink, takes an updating result.
pub(crate) fn accepts_changelog(table: &TableDef) -> Result<bool, ConnectorError> {
    Config::parse(table).map(|c| c.changelog)
}

#[derive(Debug, Clone)]
pub(crate) struct CsvOptions {
    pub delimiter: u8,
    pub header: bool,
    /// A field equal to this is null; without it an empty field is null.
    pub null_literal: Option<String>,
}

impl Config {
    fn parse(table: &TableDef) -> Result<Config, ConnectorError> {
        check_known_options(table, KNOWN_OPTIONS)?;
        let options = &table.options;
        let path = match options.get("path") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            Some(_) => return Err(ConnectorError::option(table, "option 'path' is empty")),
            None => return Err(ConnectorError::option(table, "missing option 'path'")),
        };
        let format = match options.get("format").map(String::as_str) {
            Some("csv") => Format::Csv,
            Some("json") => Format::Json,
            Some("parquet") => Format::Parquet,
            Some(other) => {
                return Err(ConnectorError::option(
                    table,
                    format!("unknown format '{other}' (known: csv, json, parquet)"),
                ));
            }
            None => return Err(ConnectorError::option(table, "missing option 'format'")),
        };
        // A csv option on a json table is almost certainly a mistake (a copied DDL); say so
        // rather than ignore it.
        for key in options.keys() {
            if let Some((prefix, _)) = key.split_once('.')
                && prefix != format.name()
                && !["sink", "source", "scan"].contains(&prefix)
            {
                return Err(ConnectorError::option(
                    table,
                    format!(
                        "option '{key}' does not apply to format '{}'",
                        format.name()
                    ),
                ));
            }
        }
        let ignore_key = format!("{}.ignore-parse-errors", format.name());
        let ignore_parse_errors = match options.get(&ignore_key) {
            Some(value) => parse_bool(table, &ignore_key, value)?,
            None => false,
        };
        let mut csv = CsvOptions {
            delimiter: b',',
            header: false,
            null_literal: None,
        };
        if let Some(value) = options.get("csv.field-delimiter") {
            csv.delimiter = parse_delimiter(table, value)?;
        }
        if let Some(value) = options.get("csv.header") {
            csv.header = parse_bool(table, "csv.header", value)?;
        }
        if let Some(value) = options.get("csv.null-literal") {
            if value.contains(['\n', '\r']) {
                return Err(ConnectorError::option(
                    table,
                    format!(
                        "option 'csv.null-literal' must not contain a line break, not {value:?}"
                    ),
                ));
            }
            csv.null_literal = Some(value.clone());
        }
        let (changelog, upsert) = match options.get("sink.changelog-mode").map(String::as_str) {
            None | Some("insert-only") => (false, false),
            Some("all") => (true, false),
            Some("upsert") if table.primary_key.is_empty() => {
                return Err(ConnectorError::option(
                    table,
                    "'sink.changelog-mode' = 'upsert' keys each change by the table's primary \
                     key: declare PRIMARY KEY (...) NOT ENFORCED",
                ));
            }
            Some("upsert") => (true, true),
            Some(other) => {
                return Err(ConnectorError::option(
                    table,
                    format!(
                        "option 'sink.changelog-mode' is 'insert-only', 'all' or 'upsert', not \
                         '{other}'"
                    ),
                ));
            }
        };
        let monitor_interval = match options.get("source.monitor-interval") {
            None => None,
            Some(value) => Some(
                crate::connector::duration(value)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        ConnectorError::option(
                            table,
                            format!(
                                "option 'source.monitor-interval' must be a duration such as \
                                 '1 s' or '200 ms', not '{value}'"
                            ),
                        )
                    })?,
            ),
        };
        Ok(Config {
            path,
            format,
            csv,
            ignore_parse_errors,
            changelog,
            upsert,
            monitor_interval,
        })
    }
}

pub(crate) fn parse_bool(table: &TableDef, key: &str, value: &str) -> Result<bool, ConnectorError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ConnectorError::option(
            table,
            format!("option '{key}' must be 'true' or 'false', not '{value}'"),
        ))
    }
}

pub(crate) fn parse_delimiter(table: &TableDef, value: &str) -> Result<u8, ConnectorError> {
    // DDL cannot easily hold a tab, so Flink users write the two characters `\t`.
    if value == "\\t" {
        return Ok(b'\t');
    }
    match value.as_bytes() {
        [byte] if *byte != b'"' && *byte != b'\n' && *byte != b'\r' => Ok(*byte),
        _ => Err(ConnectorError::option(
            table,
            format!(
                "option 'csv.field-delimiter' must be one ASCII character other than a double \
                 quote or a line break, not '{value}'"
            ),
        )),
    }
}

fn check_subtask(table: &TableDef, subtask: Subtask) -> Result<(), ConnectorError> {
    if subtask.index < subtask.count {
        Ok(())
    } else {
        Err(other(
            table,
            format!("invalid subtask {} of {}", subtask.index, subtask.count),
        ))
    }
}

fn other(table: &TableDef, message: impl Into<String>) -> ConnectorError {
    ConnectorError::Other {
        table: table.name.clone(),
        message: message.into(),
    }
}

/// An I/O error about `path`, worded as the rest of Weir's messages.
fn io_error(path: &Path, error: &std::io::Error) -> ConnectorError {
    let message = match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        _ => error.to_string(),
    };
    ConnectorError::Io {
        path: path.to_path_buf(),
        message,
    }
}

/// A visible input file and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InputFile {
    path: PathBuf,
    size: u64,
}

/// The files a source reads: `path` itself, or the visible regular files directly in it, by name.
///
/// Names starting with `.` or `_` are hidden, as in Flink: they include a sink's in-progress files.
fn list_files(path: &Path) -> Result<Vec<InputFile>, ConnectorError> {
    let metadata = fs::metadata(path).map_err(|e| io_error(path, &e))?;
    if !metadata.is_dir() {
        return Ok(vec![InputFile {
            path: path.to_path_buf(),
            size: metadata.len(),
        }]);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| io_error(path, &e))? {
        let entry = entry.map_err(|e| io_error(path, &e))?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") || name.as_encoded_bytes().starts_with(b"_") {
            continue;
        }
        let file = entry.path();
        // `fs::metadata` follows symbolic links: a link to a regular file is read as one.
        let metadata = match fs::metadata(&file) {
            Ok(metadata) => metadata,
            // A file deleted between listing and here, or a dangling link: nothing to read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&file, &e)),
        };
        if metadata.is_file() {
            files.push(InputFile {
                path: file,
                size: metadata.len(),
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// A byte range of a csv or json file: the lines that start in `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ByteRange {
    path: PathBuf,
    start: u64,
    end: u64,
}

/// Cuts the files into ranges of at most `split_size` bytes, in file order.
fn byte_ranges(files: &[InputFile], split_size: u64) -> Vec<ByteRange> {
    let split_size = split_size.max(1);
    let mut ranges = Vec::new();
    for file in files {
        let mut start = 0;
        while start < file.size {
            let end = file.size.min(start.saturating_add(split_size));
            ranges.push(ByteRange {
                path: file.path.clone(),
                start,
                end,
            });
            start = end;
        }
    }
    ranges
}

/// The pieces subtask `index` of `count` reads: every `count`-th, starting at `index`.
fn mine<T>(pieces: Vec<T>, subtask: Subtask) -> Vec<T> {
    pieces
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % subtask.count == subtask.index)
        .map(|(_, piece)| piece)
        .collect()
}
