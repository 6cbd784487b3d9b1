//! Tests of the filesystem connector: options, reading (splits, projection, bad lines) and
//! writing (part files, round trips).

mod read;
mod write;

use std::path::Path;
use std::sync::Arc;

use arrow::array::TimestampMillisecondArray;
use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{Tuning, open_source_tuned};
use crate::connector::{ConnectorError, Options, SourceRequest, Subtask, TableDef};

/// Small pieces and blocks, so that small files exercise every edge of the range logic.
const SMALL: Tuning = Tuning {
    split_size: 97,
    block_size: 64,
};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("ok", DataType::Boolean, true),
    ]))
}

fn table(path: &Path, format: &str, extra: &[(&str, &str)]) -> TableDef {
    let mut options = Options::new();
    options.insert("connector".into(), "filesystem".into());
    options.insert("path".into(), path.display().to_string());
    options.insert("format".into(), format.into());
    for (key, value) in extra {
        options.insert((*key).into(), (*value).into());
    }
    TableDef {
        name: "t".into(),
        schema: schema(),
        options,
        primary_key: Vec::new(),
        metadata: Vec::new(),
    }
}

fn subtask(index: usize, count: usize) -> Subtask {
    Subtask { index, count }
}

/// Every batch of one subtask, and the rows it skipped.
fn read_with(
    table: &TableDef,
    subtask: Subtask,
    projection: Option<Vec<usize>>,
    batch_size: usize,
    tuning: Tuning,
) -> Result<(Vec<RecordBatch>, u64), ConnectorError> {
    let request = SourceRequest {
        subtask,
        projection,
        batch_size,
    };
    let mut reader = open_source_tuned(table, &request, tuning)?;
    let mut batches = Vec::new();
    while let Some(batch) = reader.next_batch()? {
        assert!(batch.num_rows() <= batch_size, "batch larger than asked");
        batches.push(batch);
    }
    Ok((batches, reader.skipped_rows()))
}

/// All rows of a one-subtask read, rendered.
fn read_rows(table: &TableDef) -> Vec<String> {
    let (batches, skipped) =
        read_with(table, subtask(0, 1), None, 1000, Tuning::DEFAULT).expect("the file reads");
    assert_eq!(skipped, 0);
    rows(&batches)
}

/// Rows as `a|b|c`, null as `∅`.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("∅");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable"))
            .collect();
        for row in 0..batch.num_rows() {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push(values.join("|"));
        }
    }
    out
}

/// The first column of every row, as ids.
fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("an id column")
                .values()
                .to_vec()
        })
        .collect()
}

/// Three rows with nulls, unicode, quotes, delimiters, timestamps and awkward doubles.
fn sample() -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, -2, i64::MAX])),
        Arc::new(StringArray::from(vec![
            Some("héllo, wörld \"quoted\" 世界 🦀"),
            None,
            Some("tab\there;semi"),
        ])),
        Arc::new(Float64Array::from(vec![Some(0.1), Some(-1.5e300), None])),
        Arc::new(TimestampMillisecondArray::from(vec![
            Some(1_767_225_600_123),
            None,
            Some(-1),
        ])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
    ];
    RecordBatch::try_new(schema(), columns).expect("a valid batch")
}

fn expect_parse(result: Result<(Vec<RecordBatch>, u64), ConnectorError>) -> (u64, String) {
    match result {
        Err(ConnectorError::Parse { line, reason, .. }) => (line, reason),
        Err(other) => panic!("expected a parse error, got {other}"),
        Ok((batches, _)) => panic!("expected a parse error, read {:?}", rows(&batches)),
    }
}

fn expect_option_error(table: &TableDef) -> String {
    match super::validate(table) {
        Err(ConnectorError::Option { message, .. }) => message,
        Err(other) => panic!("expected an option error, got {other}"),
        Ok(()) => panic!("expected an option error"),
    }
}

#[test]
fn validate_accepts_good_options_without_the_path_existing() {
    let missing = Path::new("/nonexistent/weir/out");
    for (format, extra) in [
        (
            "csv",
            vec![("csv.field-delimiter", "\\t"), ("csv.header", "TRUE")],
        ),
        (
            "csv",
            vec![
                ("csv.null-literal", "\\N"),
                ("csv.ignore-parse-errors", "false"),
            ],
        ),
        ("json", vec![("json.ignore-parse-errors", "true")]),
        ("parquet", vec![]),
    ] {
        super::validate(&table(missing, format, &extra)).expect("valid options");
    }
}

#[test]
fn unknown_options_and_bad_values_are_named() {
    let path = Path::new("/tmp/x");
    let message = expect_option_error(&table(path, "csv", &[("csv.delimiter", ";")]));
    assert!(
        message.contains("unknown option 'csv.delimiter'"),
        "{message}"
    );
    let message = expect_option_error(&table(path, "csv", &[("json.ignore-parse-errors", "true")]));
    assert_eq!(
        message,
        "option 'json.ignore-parse-errors' does not apply to format 'csv'"
    );
    let message = expect_option_error(&table(path, "parquet", &[("csv.header", "true")]));
    assert_eq!(
        message,
        "option 'csv.header' does not apply to format 'parquet'"
    );
    for delimiter in ["", ";;", "é", "\"", "\n"] {
        let message =
            expect_option_error(&table(path, "csv", &[("csv.field-delimiter", delimiter)]));
        assert!(message.contains("'csv.field-delimiter'"), "{message}");
        assert!(message.contains(&format!("'{delimiter}'")), "{message}");
    }
    let message = expect_option_error(&table(path, "csv", &[("csv.header", "yes")]));
    assert_eq!(
        message,
        "option 'csv.header' must be 'true' or 'false', not 'yes'"
    );
    let message = expect_option_error(&table(path, "xml", &[]));
    assert_eq!(message, "unknown format 'xml' (known: csv, json, parquet)");
    let mut no_format = table(path, "csv", &[]);
    no_format.options.remove("format");
    assert_eq!(expect_option_error(&no_format), "missing option 'format'");
    let mut no_path = table(path, "csv", &[]);
    no_path.options.remove("path");
    assert_eq!(expect_option_error(&no_path), "missing option 'path'");
    let message = expect_option_error(&table(path, "csv", &[("sink.changelog-mode", "upsert")]));
    assert!(message.contains("PRIMARY KEY"), "{message}");
    let message = expect_option_error(&table(path, "csv", &[("sink.changelog-mode", "some")]));
    assert!(
        message.contains("'insert-only', 'all' or 'upsert'"),
        "{message}"
    );
    for interval in ["0 s", "soon"] {
        let message = expect_option_error(&table(
            path,
            "csv",
            &[("source.monitor-interval", interval)],
        ));
        assert!(message.contains("'source.monitor-interval'"), "{message}");
    }
}

#[test]
fn a_missing_path_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("nope.csv");
    match read_with(&table(&missing, "csv", &[]), subtask(0, 1), None, 10, SMALL) {
        Err(ConnectorError::Io { path, message }) => {
            assert_eq!(path, missing);
            assert_eq!(message, "no such file or directory");
        }
        other => panic!(
            "expected an I/O error, got {:?}",
            other.map(|(b, _)| rows(&b))
        ),
    }
}

#[test]
fn an_invalid_subtask_or_projection_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("a.json");
    std::fs::write(&file, "{\"id\": 1}\n").expect("written");
    let table = table(&file, "json", &[]);
    assert!(read_with(&table, subtask(2, 2), None, 10, SMALL).is_err());
    assert!(read_with(&table, subtask(0, 0), None, 10, SMALL).is_err());
    assert!(read_with(&table, subtask(0, 1), Some(vec![7]), 10, SMALL).is_err());
    // A zero batch size reads one row at a time rather than looping forever.
    let request = SourceRequest {
        subtask: subtask(0, 1),
        projection: None,
        batch_size: 0,
    };
    let mut reader = open_source_tuned(&table, &request, SMALL).expect("opens");
    assert_eq!(
        reader.next_batch().expect("reads").map(|b| b.num_rows()),
        Some(1)
    );
    // A huge one reserves nothing huge.
    let (batches, _) = read_with(&table, subtask(0, 1), None, usize::MAX, SMALL).expect("reads");
    assert_eq!(ids(&batches), [1]);
}

#[test]
fn an_append_only_input_written_as_a_changelog_is_all_inserts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let table = table(&out, "csv", &[("sink.changelog-mode", "all")]);
    let mut sink = crate::connector::open_sink(&table, subtask(0, 1), None).expect("sink");
    sink.write(&sample()).expect("append-only rows");
    sink.finish().expect("finish");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(&out).expect("out") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("part");
        lines.extend(text.lines().map(str::to_string));
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("+I,")), "{lines:?}");
}
