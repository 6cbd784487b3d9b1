//! Writing: part files, round trips through every format, and parquet's pieces.

use std::path::Path;
use std::sync::Arc;

use arrow::array::Int32Array;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::*;

fn sink(table: &TableDef, index: usize) -> Box<dyn crate::connector::SinkWriter> {
    super::super::open_sink(table, subtask(index, 2), None).expect("the sink opens")
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("a directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_format_round_trips() {
    let expected = rows(&[sample()]);
    for (format, options) in [
        ("csv", vec![]),
        (
            "csv",
            vec![
                ("csv.field-delimiter", "\\t"),
                ("csv.header", "true"),
                ("csv.null-literal", "NULL"),
            ],
        ),
        ("json", vec![]),
        ("parquet", vec![]),
    ] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = dir.path().join("out");
        let table = table(&out, format, &options);
        let mut writer = sink(&table, 1);
        writer.write(&sample()).expect("written");
        writer
            .write(&sample().slice(0, 0))
            .expect("an empty batch is fine");
        writer.write(&sample().slice(2, 1)).expect("written");
        writer.finish().expect("finished");
        assert_eq!(names(&out), [format!("part-1-0.{format}")]);
        let mut all = expected.clone();
        all.push(expected[2].clone());
        assert_eq!(read_rows(&table), all, "{format} {options:?}");
    }
}

#[test]
fn csv_with_a_null_literal_keeps_empty_strings_apart_from_nulls() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let table = table(dir.path(), "csv", &[("csv.null-literal", "\\N")]);
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec![Some(""), None])),
            Arc::new(Float64Array::from(vec![None, Some(f64::MIN_POSITIVE)])),
            Arc::new(TimestampMillisecondArray::from(vec![None, Some(1)])),
            Arc::new(BooleanArray::from(vec![None, Some(true)])),
        ],
    )
    .expect("a valid batch");
    let mut writer = sink(&table, 0);
    writer.write(&batch).expect("written");
    writer.finish().expect("finished");
    assert_eq!(read_rows(&table), rows(&[batch]));
}

#[test]
fn a_part_file_is_hidden_until_finish() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let table = table(dir.path(), "json", &[]);
    let mut writer = sink(&table, 0);
    assert!(names(dir.path()).is_empty(), "nothing before the first row");
    writer.write(&sample()).expect("written");
    assert_eq!(names(dir.path()), [".part-0-0.json.inprogress"]);
    assert!(
        read_rows(&table).is_empty(),
        "readers skip in-progress files"
    );
    writer.finish().expect("finished");
    assert_eq!(names(dir.path()), ["part-0-0.json"]);
    assert_eq!(read_rows(&table).len(), 3);
    assert!(writer.write(&sample()).is_err(), "no write after finish");

    // A failed job never finishes: its file stays hidden, and the next job takes new names.
    let mut failed = sink(&table, 0);
    failed.write(&sample()).expect("written");
    drop(failed);
    let mut next = sink(&table, 0);
    next.write(&sample()).expect("written");
    next.finish().expect("finished");
    let mut other = sink(&table, 1);
    other.write(&sample()).expect("written");
    other.finish().expect("finished");
    assert_eq!(
        names(dir.path()),
        [
            ".part-0-1.json.inprogress",
            "part-0-0.json",
            "part-0-2.json",
            "part-1-0.json"
        ]
    );
    assert_eq!(read_rows(&table).len(), 9);
}

#[test]
fn the_sink_refuses_what_it_cannot_write_faithfully() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let table = table(dir.path(), "csv", &[]);
    let mut writer = sink(&table, 0);
    let mut columns = sample().columns().to_vec();
    columns[1] = Arc::new(StringArray::from(vec![Some("a"), Some("two\nlines"), None]));
    let batch = RecordBatch::try_new(schema(), columns).expect("a valid batch");
    match writer.write(&batch) {
        Err(ConnectorError::Other { message, .. }) => {
            assert!(
                message.contains("column 'name' holds a line break"),
                "{message}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    let narrow = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .expect("a valid batch");
    assert!(writer.write(&narrow).is_err(), "a batch of other columns");
    writer.finish().expect("nothing to finish");
    assert!(names(dir.path()).is_empty());
}

#[test]
fn parquet_row_groups_are_shared_among_subtasks() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Files with another column order, a narrower id type, a missing column and an extra one.
    let file_schema = Arc::new(Schema::new(vec![
        Field::new("extra", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("id", DataType::Int32, false),
    ]));
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(10))
        .build();
    for (name, ids) in [("a.parquet", 0..95), ("b.parquet", 95..120)] {
        let file = std::fs::File::create(dir.path().join(name)).expect("created");
        let mut writer = ArrowWriter::try_new(file, file_schema.clone(), Some(properties.clone()))
            .expect("a parquet writer");
        let ids: Vec<i32> = ids.collect();
        let batch = RecordBatch::try_new(
            file_schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["x"; ids.len()])),
                Arc::new(Float64Array::from(vec![1.5; ids.len()])),
                Arc::new(Int32Array::from(ids)),
            ],
        )
        .expect("a valid batch");
        writer.write(&batch).expect("written");
        writer.close().expect("closed");
    }
    let table = table(dir.path(), "parquet", &[]);
    let expected: Vec<i64> = (0..120).collect();
    for count in [1, 2, 3, 5] {
        let mut all = Vec::new();
        for index in 0..count {
            let (batches, _) =
                read_with(&table, subtask(index, count), None, 4, SMALL).expect("reads");
            all.extend(ids(&batches));
        }
        all.sort_unstable();
        assert_eq!(all, expected, "{count} subtasks");
    }
    let (batches, _) =
        read_with(&table, subtask(0, 1), Some(vec![2, 0, 1]), 50, SMALL).expect("reads");
    assert_eq!(rows(&batches)[..2], ["1.5|0|∅", "1.5|1|∅"]);
    let (batches, _) = read_with(&table, subtask(0, 1), Some(vec![]), 50, SMALL).expect("reads");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 120);
}

#[test]
fn with_checkpoints_output_shows_only_when_its_checkpoint_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let table = table(&out, "csv", &[]);
    let mut writer = super::super::open_sink(&table, subtask(0, 1), Some("tag1")).expect("opens");
    writer.write(&sample()).expect("write");
    let first = writer
        .pre_commit(1)
        .expect("pre-commit")
        .expect("a pending list");
    writer.write(&sample()).expect("write");
    writer.pre_commit(2).expect("pre-commit");
    assert_eq!(
        names(&out),
        [
            ".part-0-0.csv.tag1.inprogress",
            ".part-0-1.csv.tag1.inprogress"
        ],
        "pre-committed output stays hidden"
    );
    writer.commit(1).expect("commit");
    assert_eq!(
        names(&out),
        [".part-0-1.csv.tag1.inprogress", "part-0-0.csv"],
        "checkpoint 1's file only"
    );
    // A crash now; the job restarts from checkpoint 1, whose list has only the first file:
    // the second is discarded, as is a file written after it; another job's file stays.
    writer.write(&sample()).expect("write");
    drop(writer);
    std::fs::write(out.join(".part-0-9.csv.other.inprogress"), "x").expect("write");
    super::super::recover_sink(&table, &[first], "tag1").expect("recover");
    assert_eq!(
        names(&out),
        [".part-0-9.csv.other.inprogress", "part-0-0.csv"]
    );
    // Restarting from checkpoint 2 instead commits its file, even if it had not been renamed.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let out2 = dir2.path().join("out");
    let table2 = super::table(&out2, "csv", &[]);
    let mut writer = super::super::open_sink(&table2, subtask(0, 1), Some("t")).expect("opens");
    writer.write(&sample()).expect("write");
    let pending = writer
        .pre_commit(5)
        .expect("pre-commit")
        .expect("a pending list");
    drop(writer);
    super::super::recover_sink(&table2, std::slice::from_ref(&pending), "t").expect("recover");
    super::super::recover_sink(&table2, &[pending], "t").expect("recovering twice is fine");
    assert_eq!(names(&out2), ["part-0-0.csv"]);
    assert_eq!(
        std::fs::read_to_string(out2.join("part-0-0.csv")).expect("read"),
        std::fs::read_to_string(out.join("part-0-0.csv")).expect("read")
    );
}
