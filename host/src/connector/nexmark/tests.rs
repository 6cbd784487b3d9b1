//! Tests of the nexmark connector: through its entry points, and its reader and clock directly.

use super::*;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    Int64Type, Schema, TimeUnit, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::generator::{
    BASE_TIME_SECONDS, FIRST_NAMES, HOT_CHANNELS, LAST_NAMES, US_CITIES, US_STATES,
};
use super::reader::{Clock, NexmarkReader};
use crate::connector::Subtask;

const BASE_NS: i64 = BASE_TIME_SECONDS * 1_000_000_000;

fn ts(unit: TimeUnit) -> DataType {
    DataType::Timestamp(unit, None)
}

/// Every field of `kind`, as Flink declares them (dateTime in milliseconds).
fn full_schema(kind: &str) -> Vec<(&'static str, DataType)> {
    let fields = Kind::parse(kind).expect("kind").fields();
    fields
        .iter()
        .map(|spec| {
            let data_type = match spec.ty {
                FieldType::BigInt => DataType::Int64,
                FieldType::Varchar => DataType::Utf8,
                FieldType::Timestamp => ts(TimeUnit::Millisecond),
            };
            (spec.name, data_type)
        })
        .collect()
}

fn table_def(columns: &[(&str, DataType)], options: &[(&str, &str)]) -> TableDef {
    let fields: Vec<_> = columns
        .iter()
        .map(|(name, t)| arrow::datatypes::Field::new(*name, t.clone(), true))
        .collect();
    let mut all = BTreeMap::from([("connector".to_string(), "nexmark".to_string())]);
    all.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TableDef {
        name: "events".to_string(),
        schema: Arc::new(Schema::new(fields)),
        options: all,
        primary_key: Vec::new(),
        metadata: Vec::new(),
    }
}

fn kind_table(kind: &str, options: &[(&str, &str)]) -> TableDef {
    let mut all = vec![("nexmark.table", kind)];
    all.extend_from_slice(options);
    table_def(&full_schema(kind), &all)
}

fn request(index: usize, count: usize, batch_size: usize) -> SourceRequest {
    SourceRequest {
        subtask: Subtask { index, count },
        projection: None,
        batch_size,
    }
}

fn read(table: &TableDef, request: &SourceRequest) -> Vec<RecordBatch> {
    let mut reader = super::super::open_source(table, request).expect("open");
    let mut batches = Vec::new();
    while let Some(batch) = reader.next_batch().expect("batch") {
        assert!(batch.num_rows() <= request.batch_size);
        batches.push(batch);
    }
    batches
}

fn read_all(table: &TableDef) -> Vec<RecordBatch> {
    read(table, &request(0, 1, 1024))
}

fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Rows as text, one string per row.
fn render(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<_> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows
}

fn int_column(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name(name).expect("column");
            column.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

fn error(table: &TableDef) -> String {
    validate(table).expect_err("an error").to_string()
}

#[test]
fn kinds_come_in_proportions_1_3_46() {
    let options = [("events.num", "50000")];
    assert_eq!(count(&read_all(&kind_table("person", &options))), 1000);
    assert_eq!(count(&read_all(&kind_table("auction", &options))), 3000);
    assert_eq!(count(&read_all(&kind_table("bid", &options))), 46_000);
}

#[test]
fn events_num_bounds_the_whole_sequence() {
    let counts = |events: &str, subtasks: usize| {
        ["person", "auction", "bid"].map(|kind| {
            let table = kind_table(kind, &[("events.num", events)]);
            (0..subtasks)
                .map(|k| count(&read(&table, &request(k, subtasks, 100))))
                .sum::<usize>()
        })
    };
    assert_eq!(counts("1000", 1), [20, 60, 920]);
    // Events 1000..1010: a person, three auctions and bids 1004..1009.
    assert_eq!(counts("1010", 1), [21, 63, 926]);
    assert_eq!(counts("1010", 3), [21, 63, 926]);
    assert_eq!(counts("2", 2), [1, 1, 0]);
    assert_eq!(counts("0", 1), [0, 0, 0]);
}

#[test]
fn the_same_seed_gives_the_same_events() {
    for kind in ["person", "auction", "bid"] {
        let events = |seed: &str| {
            let table = kind_table(kind, &[("events.num", "5000"), ("seed", seed)]);
            render(&read_all(&table))
        };
        assert_eq!(events("7"), events("7"), "{kind}");
        let (a, b) = (events("7"), events("8"));
        // Ids and times follow the index only; everything random differs.
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(
            same < a.len() / 20,
            "{kind}: {same} of {} rows equal",
            a.len()
        );
    }
    // The default seed is 0.
    let table = |options: &[(&str, &str)]| render(&read_all(&kind_table("bid", options)));
    assert_eq!(
        table(&[("events.num", "500")]),
        table(&[("events.num", "500"), ("seed", "0")])
    );
}

#[test]
fn subtasks_share_out_the_sequence_whatever_their_number() {
    for kind in ["person", "auction", "bid"] {
        let table = kind_table(kind, &[("events.num", "10007")]);
        let mut whole = render(&read(&table, &request(0, 1, 333)));
        whole.sort();
        for n in [2, 3] {
            let mut union: Vec<String> = (0..n)
                .flat_map(|k| render(&read(&table, &request(k, n, 97))))
                .collect();
            union.sort();
            assert_eq!(union, whole, "{kind} with {n} subtasks");
        }
    }
}

#[test]
fn an_unbounded_source_keeps_producing_full_batches() {
    let table = kind_table("bid", &[]);
    let mut reader = super::super::open_source(&table, &request(1, 4, 500)).expect("open");
    for _ in 0..10 {
        let batch = reader.next_batch().expect("batch").expect("not the end");
        assert_eq!(batch.num_rows(), 500);
    }
}

#[test]
fn projection_picks_declared_columns_in_any_order() {
    let full = read_all(&kind_table("bid", &[("events.num", "3000")]));
    // A subset in another order, with snake_case and odd case, projected in yet another.
    let table = table_def(
        &[
            ("PRICE", DataType::Int64),
            ("date_time", ts(TimeUnit::Millisecond)),
            ("auction", DataType::Int64),
            ("Channel", DataType::Utf8),
        ],
        &[("nexmark.table", "bid"), ("events.num", "3000")],
    );
    let mut request = request(0, 1, 1000);
    request.projection = Some(vec![3, 0, 2]);
    let batches = read(&table, &request);
    let schema = batches[0].schema();
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["Channel", "PRICE", "auction"]);
    assert_eq!(int_column(&batches, "PRICE"), int_column(&full, "price"));
    assert_eq!(
        int_column(&batches, "auction"),
        int_column(&full, "auction")
    );
    let channels = |batches: &[RecordBatch], name: &str| -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                let column = b.column_by_name(name).expect("column").as_string::<i32>();
                column
                    .iter()
                    .map(|v| v.expect("no nulls").to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(channels(&batches, "Channel"), channels(&full, "channel"));

    // No columns at all (as for count(*)): batches still carry their row counts.
    let mut request = request.clone();
    request.projection = Some(vec![]);
    let batches = read(&table, &request);
    assert_eq!(batches[0].num_columns(), 0);
    assert_eq!(count(&batches), 2760);
}

#[test]
fn every_field_looks_like_nexmark() {
    let options = [("events.num", "20000")];
    let bids = read_all(&kind_table("bid", &options));
    let prices = int_column(&bids, "price");
    assert!(prices.iter().all(|p| (100..=100_000_000).contains(p)));
    let strings = |batches: &[RecordBatch], name: &str| -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                let column = b.column_by_name(name).expect("column").as_string::<i32>();
                column
                    .iter()
                    .map(|v| v.expect("no nulls").to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let channels = strings(&bids, "channel");
    let hot = channels
        .iter()
        .filter(|c| HOT_CHANNELS.contains(&c.as_str()))
        .count();
    assert!((0.45..0.55).contains(&(hot as f64 / channels.len() as f64)));
    assert!(channels.iter().all(|c| {
        HOT_CHANNELS.contains(&c.as_str())
            || c.strip_prefix("channel-")
                .is_some_and(|n| n.parse::<u64>().is_ok())
    }));
    let urls = strings(&bids, "url");
    assert!(
        urls.iter()
            .all(|u| u.starts_with("https://www.nexmark.com/"))
    );
    // One url per channel.
    let mut url_of = HashMap::new();
    for (channel, url) in channels.iter().zip(&urls) {
        assert_eq!(url_of.entry(channel).or_insert(url), &url);
    }
    let extras = strings(&bids, "extra");
    let mean = extras.iter().map(String::len).sum::<usize>() as f64 / extras.len() as f64;
    assert!((60.0..76.0).contains(&mean), "mean bid extra {mean}");

    let persons = read_all(&kind_table("person", &options));
    for name in strings(&persons, "name") {
        let (first, last) = name.split_once(' ').expect("first and last name");
        assert!(
            FIRST_NAMES.contains(&first) && LAST_NAMES.contains(&last),
            "{name}"
        );
    }
    for email in strings(&persons, "emailAddress") {
        assert!(email.ends_with(".com") && email.contains('@'), "{email}");
    }
    for card in strings(&persons, "creditCard") {
        let groups: Vec<_> = card.split(' ').collect();
        assert_eq!(groups.len(), 4, "{card}");
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit()))
        );
    }
    assert!(
        strings(&persons, "state")
            .iter()
            .all(|s| US_STATES.contains(&s.as_str()))
    );
    assert!(
        strings(&persons, "city")
            .iter()
            .all(|c| US_CITIES.contains(&c.as_str()))
    );

    let auctions = read_all(&kind_table("auction", &options));
    let initial = int_column(&auctions, "initialBid");
    let reserve = int_column(&auctions, "reserve");
    assert!(initial.iter().zip(&reserve).all(|(i, r)| r > i));
    assert!(
        int_column(&auctions, "category")
            .iter()
            .all(|c| (10..15).contains(c))
    );
    for item in strings(&auctions, "itemName") {
        assert!(item.len() <= 19 && item.trim() == item, "'{item}'");
    }
}

/// Every bid's auction and bidder, and every auction's seller, exist earlier in the sequence;
/// most go to the hot ones.
#[test]
fn references_point_to_earlier_events() {
    let columns = |kind: &str, names: &[&'static str]| {
        let mut schema: Vec<_> = names.iter().map(|n| (*n, DataType::Int64)).collect();
        schema.push(("dateTime", ts(TimeUnit::Nanosecond)));
        let table = table_def(&schema, &[("nexmark.table", kind), ("events.num", "50000")]);
        let batches = read_all(&table);
        // At the default rate, event i is at i × 100 ns.
        let index: Vec<u64> = batches
            .iter()
            .flat_map(|b| {
                let times = b
                    .column(names.len())
                    .as_primitive::<TimestampNanosecondType>();
                times
                    .values()
                    .iter()
                    .map(|t| ((t - BASE_NS) / 100) as u64)
                    .collect::<Vec<_>>()
            })
            .collect();
        let values: Vec<Vec<i64>> = names.iter().map(|n| int_column(&batches, n)).collect();
        (index, values)
    };
    let (person_index, persons) = columns("person", &["id"]);
    let (auction_index, auctions) = columns("auction", &["id", "seller"]);
    let (bid_index, bids) = columns("bid", &["auction", "bidder"]);

    // Ids count up from 1000 in sequence order.
    assert!(
        persons[0]
            .iter()
            .zip(1000..)
            .all(|(id, expected)| *id == expected)
    );
    assert!(
        auctions[0]
            .iter()
            .zip(1000..)
            .all(|(id, expected)| *id == expected)
    );
    let person_at: HashMap<i64, u64> = persons[0].iter().copied().zip(person_index).collect();
    let auction_at: HashMap<i64, u64> = auctions[0]
        .iter()
        .copied()
        .zip(auction_index.iter().copied())
        .collect();

    for (seller, at) in auctions[1].iter().zip(&auction_index) {
        assert!(person_at[seller] < *at, "auction at {at}: seller {seller}");
    }
    let (mut hot_auctions, mut hot_bidders) = (0, 0);
    for ((auction, bidder), at) in bids[0].iter().zip(&bids[1]).zip(&bid_index) {
        assert!(auction_at[auction] < *at, "bid at {at}: auction {auction}");
        assert!(person_at[bidder] < *at, "bid at {at}: bidder {bidder}");
        let latest_auction = 1000 + (at / 50 * 3 + 2) as i64;
        assert!(
            latest_auction - auction <= 100,
            "bid at {at}: auction {auction}"
        );
        hot_auctions += usize::from(*auction == latest_auction / 2 * 2);
        hot_bidders +=
            usize::from((bidder - 1000) % 4 == 1 && at / 50 - (bidder - 1000) as u64 <= 4);
    }
    let share = |n: usize| n as f64 / bid_index.len() as f64;
    assert!(
        (0.45..0.55).contains(&share(hot_auctions)),
        "{}",
        share(hot_auctions)
    );
    assert!(
        (0.70..0.80).contains(&share(hot_bidders)),
        "{}",
        share(hot_bidders)
    );
}

#[test]
fn event_time_follows_index_and_rate_in_the_declared_unit() {
    let persons = |unit: TimeUnit, zone: Option<&str>, rate: &str| {
        let data_type = DataType::Timestamp(unit, zone.map(Arc::from));
        let table = table_def(
            &[("date_time", data_type.clone()), ("id", DataType::Int64)],
            &[("nexmark.table", "person"), ("events.per-second", rate)],
        );
        let mut reader = NexmarkReader::open(&table, &request(0, 1, 10)).expect("open");
        // Event time does not depend on the throttle: read without it.
        reader.throttle = None;
        let batch = reader.next_batch().expect("batch").expect("rows");
        assert_eq!(batch.column(0).data_type(), &data_type);
        batch
    };
    // Person k is event 50 k: at 1000 events per second, 50 k ms after the base time.
    let batch = persons(TimeUnit::Millisecond, Some("UTC"), "1000");
    let times = batch.column(0).as_primitive::<TimestampMillisecondType>();
    let expected: Vec<i64> = (0..10).map(|k| BASE_TIME_SECONDS * 1000 + 50 * k).collect();
    assert_eq!(times.values().to_vec(), expected);
    assert_eq!(
        ArrayFormatter::try_new(times, &FormatOptions::default())
            .expect("formatter")
            .value(1)
            .to_string(),
        "2026-01-01T00:00:00.050Z"
    );
    // At 30 per second, in seconds: rounded down.
    let batch = persons(TimeUnit::Second, None, "30");
    let times = batch.column(0).as_primitive::<TimestampSecondType>();
    let expected: Vec<i64> = (0..10).map(|k| BASE_TIME_SECONDS + 50 * k / 30).collect();
    assert_eq!(times.values().to_vec(), expected);
    // At 3 per second, in nanoseconds: event 50 k at floor(50 k / 3 s).
    let batch = persons(TimeUnit::Nanosecond, None, "3");
    let times = batch.column(0).as_primitive::<TimestampNanosecondType>();
    let expected: Vec<i64> = (0..10)
        .map(|k| BASE_NS + 50 * k * 1_000_000_000 / 3)
        .collect();
    assert_eq!(times.values().to_vec(), expected);

    // Stepping through consecutive indexes agrees with computing each one.
    for rate in [1, 3, 7, 1000, 10_000_000, 999_999_937, 1_000_000_000] {
        let clock = Clock { rate };
        let rows: Vec<u64> = (0..200).chain(5_000_000_000..5_000_000_100).collect();
        let mut stepped = Vec::new();
        clock.for_each(&rows, |_, nanos| stepped.push(nanos));
        let direct: Vec<u64> = rows.iter().map(|&i| clock.nanos(i)).collect();
        assert_eq!(stepped, direct, "rate {rate}");
    }
}

#[test]
fn auctions_expire_after_they_start() {
    let table = table_def(
        &[
            ("dateTime", ts(TimeUnit::Microsecond)),
            ("expires", ts(TimeUnit::Microsecond)),
        ],
        &[("nexmark.table", "auction"), ("events.num", "20000")],
    );
    let batches = read_all(&table);
    for batch in &batches {
        let start = batch
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let end = batch
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        for (s, e) in start.values().iter().zip(end.values()) {
            // 1 ms plus up to twice the 1666 events' time at 10M events/s.
            assert!((1000..=1000 + 334).contains(&(e - s)), "{s} {e}");
        }
    }
}

#[test]
fn a_throttled_source_keeps_to_its_rate() {
    // 500 events at 2000 per second: the last is due 249.5 ms after the start.
    let table = kind_table(
        "bid",
        &[("events.num", "500"), ("events.per-second", "2000")],
    );
    let started = Instant::now();
    let batches = read(&table, &request(0, 1, 10_000));
    assert!(started.elapsed() >= Duration::from_millis(249));
    assert_eq!(count(&batches), 460);
    // Batches leave as their events fall due rather than when 10,000 rows are ready.
    assert!(batches.len() > 1);
}

#[test]
fn bad_options_are_named() {
    let bid = full_schema("bid");
    let message = error(&table_def(
        &bid,
        &[("nexmark.table", "bid"), ("events", "1")],
    ));
    assert!(message.contains("unknown option 'events'"), "{message}");
    assert!(message.contains("events.num"), "{message}");

    let message = error(&table_def(&bid, &[]));
    assert_eq!(
        message,
        "table 'events': missing option 'nexmark.table' (one of: bid, person, auction)"
    );
    let message = error(&table_def(&bid, &[("nexmark.table", "bids")]));
    assert!(
        message.contains("must be one of bid, person, auction, got 'bids'"),
        "{message}"
    );

    let message = error(&kind_table("bid", &[("events.num", "lots")]));
    assert_eq!(
        message,
        "table 'events': option 'events.num' must be a non-negative integer, got 'lots'"
    );
    let message = error(&kind_table("bid", &[("events.num", "-1")]));
    assert!(
        message.contains("'events.num'") && message.contains("'-1'"),
        "{message}"
    );
    for rate in ["0", "fast", "2000000000"] {
        let message = error(&kind_table("bid", &[("events.per-second", rate)]));
        assert!(
            message.contains("'events.per-second' must be an integer from 1 to 1000000000")
                && message.contains(&format!("'{rate}'")),
            "{message}"
        );
    }
    let message = error(&kind_table("bid", &[("seed", "x")]));
    assert!(message.contains("option 'seed'"), "{message}");

    let message = error(&table_def(
        &[("auction", DataType::Int64), ("seller", DataType::Int64)],
        &[("nexmark.table", "bid")],
    ));
    assert_eq!(
        message,
        "table 'events': column 'seller' is not a field of nexmark bid events; bid fields: \
         auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, \
         dateTime TIMESTAMP, extra VARCHAR"
    );
    let message = error(&table_def(
        &[("price", DataType::Utf8)],
        &[("nexmark.table", "bid")],
    ));
    assert!(
        message.starts_with(
            "table 'events': column 'price' is declared Utf8 but nexmark bid field 'price' \
             is BIGINT, which needs Int64; bid fields: auction BIGINT"
        ),
        "{message}"
    );
    let message = error(&table_def(
        &[("dateTime", DataType::Int64)],
        &[("nexmark.table", "person")],
    ));
    assert!(
        message.contains("is TIMESTAMP, which needs a Timestamp (any unit)"),
        "{message}"
    );

    // Through the connector entry point too.
    let table = table_def(&[("id", DataType::Int32)], &[("nexmark.table", "auction")]);
    assert!(super::super::validate(&table, true).is_err());
    assert!(super::super::validate(&kind_table("auction", &[]), true).is_ok());
}

#[test]
fn out_of_orderness_lags_events_within_its_bound() {
    let times = |options: &[(&str, &str)]| -> Vec<i64> {
        let mut all = vec![
            ("nexmark.table", "bid"),
            ("events.num", "20000"),
            ("events.per-second", "10000"),
        ];
        all.extend_from_slice(options);
        let table = table_def(&[("dateTime", ts(TimeUnit::Millisecond))], &all);
        read_all(&table)
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<TimestampMillisecondType>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    let in_order = times(&[]);
    assert!(in_order.windows(2).all(|w| w[0] <= w[1]));
    let lagged = times(&[("events.out-of-orderness", "200 ms")]);
    assert_eq!(
        lagged,
        times(&[("events.out-of-orderness", "200")]),
        "same events"
    );
    assert_eq!(lagged.len(), in_order.len());
    let mut behind = 0;
    let mut max_seen = i64::MIN;
    for (lagged, nominal) in lagged.iter().zip(&in_order) {
        assert!(
            (nominal - 200..=*nominal).contains(lagged),
            "{lagged} vs {nominal}"
        );
        // Never behind a watermark that trails the largest time by the bound.
        assert!(
            *lagged > max_seen.saturating_sub(201),
            "{lagged} after {max_seen}"
        );
        behind += usize::from(*lagged < max_seen);
        max_seen = max_seen.max(*lagged);
    }
    assert!(behind > lagged.len() / 2, "mostly out of order: {behind}");

    for bad in ["soon", "-5 s", "5 weeks", "1.5 s"] {
        let table = kind_table("bid", &[("events.out-of-orderness", bad)]);
        let message = error(&table);
        assert!(
            message.contains("'events.out-of-orderness' must be a duration"),
            "{message}"
        );
    }
}

#[test]
fn restored_positions_read_every_event_once_at_any_parallelism() {
    for kind in ["person", "bid"] {
        let table = kind_table(kind, &[("events.num", "20011")]);
        let mut whole = render(&read(&table, &request(0, 1, 333)));
        whole.sort();
        for (before, after) in [(2, 2), (2, 1), (2, 3), (3, 2), (1, 4)] {
            // Each old subtask reads a different share, then a checkpoint takes the positions.
            let mut seen = Vec::new();
            let mut positions = Vec::new();
            for k in 0..before {
                let mut reader =
                    super::super::open_source(&table, &request(k, before, 97)).expect("open");
                for _ in 0..(k * 7 + 3) {
                    if let Some(batch) = reader.next_batch().expect("batch") {
                        seen.extend(render(&[batch]));
                    }
                }
                positions.push(Some(reader.position().expect("position")));
            }
            for k in 0..after {
                let mut reader =
                    super::super::open_source(&table, &request(k, after, 89)).expect("open");
                reader.restore(&positions).expect("restore");
                while let Some(batch) = reader.next_batch().expect("batch") {
                    assert!(batch.num_rows() > 0, "no empty batches");
                    seen.extend(render(&[batch]));
                }
            }
            seen.sort();
            assert_eq!(seen, whole, "{kind}: {before} -> {after} subtasks");
        }
    }
}
