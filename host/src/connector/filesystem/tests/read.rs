//! Reading: declared columns, splits among subtasks, projection, bad lines.

use std::fmt::Write as _;
use std::path::Path;

use super::*;

/// `n` json lines with ids `0..n`, of varying lengths (some longer than `SMALL`'s block).
fn json_lines(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        writeln!(
            text,
            r#"{{"id": {i}, "name": "{}", "price": {i}.5, "ts": "2026-01-01 00:00:{:02}.250"}}"#,
            "é".repeat(i % 41),
            i % 60
        )
        .expect("formatting to a string");
    }
    text
}

/// The same rows as csv, with a header.
fn csv_lines(n: usize) -> String {
    let mut text = String::from("id,name,price,ts,ok\n");
    for i in 0..n {
        writeln!(
            text,
            "{i},\"{},x\",{i}.5,2026-01-01T00:00:00,true",
            "ü".repeat(i % 41)
        )
        .expect("formatting to a string");
    }
    text
}

fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::write(path, text).expect("a test file is written");
}

/// Every id read by `count` subtasks together, sorted.
fn ids_of_all_subtasks(table: &TableDef, count: usize, tuning: Tuning) -> Vec<i64> {
    let mut all = Vec::new();
    for index in 0..count {
        let (batches, skipped) =
            read_with(table, subtask(index, count), None, 7, tuning).expect("the input reads");
        assert_eq!(skipped, 0);
        all.extend(ids(&batches));
    }
    all.sort_unstable();
    all
}

#[test]
fn json_reads_the_declared_columns_and_ignores_the_rest() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("bids.json");
    write(
        &file,
        concat!(
            r#"{"id": 1, "name": "a", "price": 1.5, "ts": "2026-01-01 00:00:00.123", "ok": true, "extra": [1, {"x": 2}]}"#,
            "\n\n   \n",
            r#"{"ts": "2026-01-01T00:00:00.5Z", "id": 2}"#,
            "\r\n",
            r#"{"id": "3", "name": 42, "price": 2, "ts": null}"#,
        ),
    );
    assert_eq!(
        read_rows(&table(&file, "json", &[])),
        [
            "1|a|1.5|2026-01-01T00:00:00.123|true",
            "2|∅|∅|2026-01-01T00:00:00.500|∅",
            "3|42|2.0|∅|∅",
        ]
    );
}

#[test]
fn json_bad_lines_are_reported_with_their_line_number() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let good = r#"{"id": 1, "name": "a"}"#;
    for (bad, expected) in [
        (r#"{"id": 2, "name": "#, "incomplete JSON value"),
        (r#"{"id": "two"}"#, "'id'"),
        (r#"{"id": 2, "price": "cheap"}"#, "cheap"),
        (
            r#"{"id": 2} {"id": 3}"#,
            "more than one JSON value on one line",
        ),
        (r#"{"name": "no id"}"#, "id"),
        (
            r#"{"id": 2, "ts": "soon"}"#,
            "'ts': failed to parse \"soon\"",
        ),
        (r#"{"id": 2, "ts": "2025-02-29 00:00:00"}"#, "2025-02-29"),
        // An object spread over lines, whose lines each look like one object.
        ("{\"id\": 2, \"name\": \"}\n{\"}", "incomplete JSON value"),
        // Two objects on one line and one over two lines: as many rows as lines in the block.
        (
            "{\"id\": 2} {\"id\": 3}\n{\"id\": 4,\n\"name\": \"x\"}",
            "more than one JSON value on one line",
        ),
        ("[1, 2]", ""),
        ("not json", ""),
    ] {
        let file = dir.path().join("bad.json");
        write(&file, format!("{good}\n{good}\n\n{bad}\n{good}\n"));
        let table = table(&file, "json", &[]);
        for tuning in [Tuning::DEFAULT, SMALL] {
            let (line, reason) = expect_parse(read_with(&table, subtask(0, 1), None, 10, tuning));
            assert_eq!(line, 4, "{bad}: {reason}");
            assert!(reason.contains(expected), "{bad}: {reason}");
        }
    }
}

#[test]
fn a_bad_line_in_a_later_range_has_its_line_number_in_the_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (format, text, bad, options) in [
        ("json", json_lines(300), "{\"id\": oops}\n", vec![]),
        (
            "csv",
            csv_lines(300),
            "1,2,3\n",
            vec![("csv.header", "true")],
        ),
    ] {
        // The bad line becomes line 250 of the file.
        let mut text = text;
        let at = text
            .match_indices('\n')
            .nth(248)
            .map(|(i, _)| i + 1)
            .expect("250 lines");
        text.insert_str(at, bad);
        let file = dir.path().join(format!("big.{format}"));
        write(&file, &text);
        let table = table(&file, format, &options);
        for count in [1, 2, 3] {
            let mut errors = Vec::new();
            for index in 0..count {
                if let Err(e) = read_with(&table, subtask(index, count), None, 10, SMALL) {
                    errors.push(e);
                }
            }
            match errors.as_slice() {
                [ConnectorError::Parse { line, path, .. }] => {
                    assert_eq!(*line, 250, "{format}");
                    assert_eq!(path, &file);
                }
                other => panic!("expected one parse error, got {other:?}"),
            }
        }
    }
}

#[test]
fn ignored_parse_errors_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("a.json");
    write(
        &json,
        "{\"id\": 1}\n{\"id\": \nnope\n{\"id\": 2}\n{\"id\": \"x\"}\n\n{\"id\": 3}\n{\"id\": 4}{\"id\": 5}\n",
    );
    let csv = dir.path().join("a.csv");
    write(&csv, "1,a,,,\n2,b\n3,c,,,\n4,d,NaN?,,\n5,\"e,,,\n6,f,,,\n");
    for (table, expected, bad) in [
        (
            table(&json, "json", &[("json.ignore-parse-errors", "true")]),
            [1, 2, 3],
            4,
        ),
        (
            table(&csv, "csv", &[("csv.ignore-parse-errors", "true")]),
            [1, 3, 6],
            3,
        ),
    ] {
        for tuning in [Tuning::DEFAULT, SMALL] {
            let (batches, skipped) =
                read_with(&table, subtask(0, 1), None, 2, tuning).expect("bad lines are skipped");
            assert_eq!(ids(&batches), expected);
            assert_eq!(skipped, bad, "{:?}", table.options);
        }
    }
}

#[test]
fn subtasks_read_every_row_exactly_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json_dir = dir.path().join("json");
    let csv_dir = dir.path().join("csv");
    std::fs::create_dir_all(&json_dir).expect("a directory");
    std::fs::create_dir_all(&csv_dir).expect("a directory");
    // Three files of different sizes (one empty); the last line of one without a newline.
    let json = json_lines(500);
    let (first, second) = json.split_at(json.match_indices('\n').nth(199).expect("rows").0 + 1);
    write(&json_dir.join("a.json"), first);
    write(&json_dir.join("b.json"), second.trim_end());
    write(&json_dir.join("c.json"), "");
    let csv = csv_lines(500);
    let header_end = csv.find('\n').expect("a header") + 1;
    let (header, body) = csv.split_at(header_end);
    let (first, second) = body.split_at(body.match_indices('\n').nth(199).expect("rows").0 + 1);
    write(&csv_dir.join("a.csv"), format!("{header}{first}"));
    write(
        &csv_dir.join("b.csv"),
        format!("{header}{}", second.trim_end()),
    );
    write(&csv_dir.join("c.csv"), header);
    let tables = [
        table(&json_dir, "json", &[]),
        table(&csv_dir, "csv", &[("csv.header", "true")]),
    ];
    let expected: Vec<i64> = (0..500).collect();
    for table in &tables {
        for split_size in [1, 2, 5, 97, 1000, 1 << 20] {
            for block_size in [64, 1000, 1 << 20] {
                let tuning = Tuning {
                    split_size,
                    block_size,
                };
                for count in [1, 2, 3] {
                    assert_eq!(
                        ids_of_all_subtasks(table, count, tuning),
                        expected,
                        "{} split {split_size} block {block_size} count {count}",
                        table.options["format"]
                    );
                }
            }
        }
    }
}

#[test]
fn a_directory_is_read_in_name_order_without_hidden_files_or_subdirectories() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write(&dir.path().join("b.json"), "{\"id\": 2}\n");
    write(&dir.path().join("a.json"), "{\"id\": 1}\n");
    write(
        &dir.path().join(".part-0-0.json.inprogress"),
        "{\"id\": 3}\n",
    );
    write(&dir.path().join("_SUCCESS"), "not json at all\n");
    std::fs::create_dir(dir.path().join("sub")).expect("a subdirectory");
    write(&dir.path().join("sub").join("c.json"), "{\"id\": 4}\n");
    let table = table(dir.path(), "json", &[]);
    let (batches, _) = read_with(&table, subtask(0, 1), None, 10, SMALL).expect("reads");
    assert_eq!(ids(&batches), [1, 2]);
}

#[test]
fn projection_picks_columns_in_the_asked_order() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("a.json");
    write(&json, json_lines(3));
    let csv = dir.path().join("a.csv");
    write(&csv, csv_lines(3));
    for table in [
        table(&json, "json", &[]),
        table(&csv, "csv", &[("csv.header", "true")]),
    ] {
        let (batches, _) =
            read_with(&table, subtask(0, 1), Some(vec![3, 0]), 10, SMALL).expect("reads");
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["ts", "id"]);
        let rows = rows(&batches);
        assert_eq!(rows.len(), 3);
        assert!(rows[2].ends_with("|2"), "{rows:?}");
        // No column at all (a count): the rows are still there.
        let (batches, _) = read_with(&table, subtask(0, 1), Some(vec![]), 2, SMALL).expect("reads");
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert!(batches.iter().all(|b| b.num_columns() == 0));
    }
}

#[test]
fn csv_honours_delimiter_header_quotes_and_line_endings() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("a.csv");
    write(
        &file,
        "id;name;price;ts;ok\r\n1;\"a;b \"\"q\"\"\";1.5;2026-01-01 00:00:00.123;true\r\n\r\n2;;;;\r\n3;plain;-0.25;2026-01-01T00:00:00Z;FALSE",
    );
    let options = [("csv.field-delimiter", ";"), ("csv.header", "true")];
    assert_eq!(
        read_rows(&table(&file, "csv", &options)),
        [
            "1|a;b \"q\"|1.5|2026-01-01T00:00:00.123|true",
            "2|∅|∅|∅|∅",
            "3|plain|-0.25|2026-01-01T00:00:00|false",
        ]
    );
    let tabbed = dir.path().join("b.csv");
    write(&tabbed, "7\tx,y\t\t\t\n");
    assert_eq!(
        read_rows(&table(&tabbed, "csv", &[("csv.field-delimiter", "\\t")])),
        ["7|x,y|∅|∅|∅"]
    );
}

#[test]
fn csv_null_literal_is_the_only_null() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("a.csv");
    write(&file, "1,,\\N,\\N,\\N\n2,\\N,1,\\N,true\n");
    assert_eq!(
        read_rows(&table(&file, "csv", &[("csv.null-literal", "\\N")])),
        ["1||∅|∅|∅", "2|∅|1.0|∅|true"]
    );
}

#[test]
fn csv_bad_rows_are_reported_with_their_line_number() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (bad, expected) in [
        ("2,a,1.5,", "expected 5 fields, found 4"),
        ("2,a,1.5,,,", "expected 5 fields, found 6"),
        ("two,a,1.5,,", "column 'id'"),
        (
            "2,a,cheap,,",
            "column 'price': cannot read 'cheap' as Float64",
        ),
        ("2,a,1,yesterday,", "column 'ts'"),
        ("2,a,1,,maybe", "column 'ok'"),
        (",a,1,,", "column 'id' is NOT NULL"),
        ("2,\"a,1,,", "unterminated quoted field"),
    ] {
        let file = dir.path().join("bad.csv");
        write(
            &file,
            format!("id,name,price,ts,ok\n1,a,,,\n{bad}\n3,c,,,\n"),
        );
        let table = table(&file, "csv", &[("csv.header", "true")]);
        for tuning in [Tuning::DEFAULT, SMALL] {
            let (line, reason) = expect_parse(read_with(&table, subtask(0, 1), None, 10, tuning));
            assert_eq!(line, 3, "{bad}: {reason}");
            assert!(reason.contains(expected), "{bad}: {reason}");
        }
    }
}

#[test]
fn garbage_is_an_error_or_skipped_never_a_panic() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut bytes = Vec::new();
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let byte = (state >> 24) as u8;
        // Plenty of newlines, quotes, braces and delimiters among arbitrary bytes.
        bytes.push(match byte % 8 {
            0 => b'\n',
            1 => b'"',
            2 => b'{',
            3 => b',',
            _ => byte,
        });
    }
    for format in ["csv", "json"] {
        let file = dir.path().join(format!("garbage.{format}"));
        write(&file, &bytes);
        let ignore = format!("{format}.ignore-parse-errors");
        for options in [vec![], vec![(ignore.as_str(), "true")]] {
            let table = table(&file, format, &options);
            for tuning in [Tuning::DEFAULT, SMALL] {
                let _ = read_with(&table, subtask(0, 1), None, 10, tuning);
            }
        }
    }
    let file = dir.path().join("garbage.parquet");
    write(&file, &bytes);
    assert!(
        read_with(
            &table(&file, "parquet", &[]),
            subtask(0, 1),
            None,
            10,
            SMALL
        )
        .is_err()
    );
}
