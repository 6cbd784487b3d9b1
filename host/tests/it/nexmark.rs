//! Nexmark queries in Flink SQL over generated events, checked against the same answers
//! recomputed here in plain Rust from the raw bids.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
use weir_host::job::{NoProgress, Outcome, Session};

use crate::common::{component, runtime};

const EVENTS: u64 = 50_000;

fn bid_table() -> String {
    format!(
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, \
         dateTime TIMESTAMP(3), extra STRING) WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', \
         'events.num' = '{EVENTS}', 'seed' = '42');\n\
         CREATE FUNCTION count_char AS 'count_char' LANGUAGE WASM USING JAR '{}';\n\
         CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR '{}';\n",
        component("currency").display(),
        component("stats").display()
    )
}

/// The rows of the script's last SELECT, at `parallelism`.
fn select(query: &str, parallelism: usize) -> Vec<RecordBatch> {
    let script = format!("{}{query};", bid_table());
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let mut session = Session::new(runtime(), ".");
    session
        .set("parallelism.default", &parallelism.to_string())
        .expect("parallelism");
    let mut rows = Vec::new();
    for statement in weir_host::sql::parse_script(&script).expect("parses") {
        match tokio.block_on(session.execute(&statement, &script, &mut NoProgress)) {
            Ok(Outcome::Rows { batches, .. }) => rows = batches,
            Ok(_) => {}
            Err(e) => panic!("{query}: {e}"),
        }
    }
    rows
}

#[derive(Debug, Clone, PartialEq)]
struct Bid {
    auction: i64,
    bidder: i64,
    price: i64,
    url: String,
    millis: i64,
    extra: String,
}

fn bids() -> Vec<Bid> {
    let mut all = Vec::new();
    for batch in select(
        "SELECT auction, bidder, price, url, dateTime, extra FROM bid",
        1,
    ) {
        let auction = batch.column(0).as_primitive::<Int64Type>();
        let bidder = batch.column(1).as_primitive::<Int64Type>();
        let price = batch.column(2).as_primitive::<Int64Type>();
        let url = batch.column(3).as_string::<i32>();
        let time = batch.column(4).as_primitive::<TimestampMillisecondType>();
        let extra = batch.column(5).as_string::<i32>();
        for i in 0..batch.num_rows() {
            all.push(Bid {
                auction: auction.value(i),
                bidder: bidder.value(i),
                price: price.value(i),
                url: url.value(i).to_string(),
                millis: time.value(i),
                extra: extra.value(i).to_string(),
            });
        }
    }
    all
}

fn int_column(batches: &[RecordBatch], column: usize) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(column).as_primitive::<Int64Type>().clone();
            (0..a.len())
                .map(move |i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn string_column(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(column).as_string::<i32>().clone();
            (0..a.len())
                .map(move |i| a.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn nexmark_queries_agree_with_a_recomputation() {
    let bids = bids();
    // 46 bids in every 50 events.
    assert_eq!(bids.len() as u64, EVENTS / 50 * 46);

    // q0: pass-through, at parallelism 2: the same multiset of bids.
    let q0 = select("SELECT auction, bidder, price FROM bid", 2);
    let mut got: Vec<(i64, i64, i64)> = int_column(&q0, 0)
        .into_iter()
        .zip(int_column(&q0, 1))
        .zip(int_column(&q0, 2))
        .map(|((a, b), p)| (a.unwrap_or(-1), b.unwrap_or(-1), p.unwrap_or(-1)))
        .collect();
    let mut expected: Vec<(i64, i64, i64)> = bids
        .iter()
        .map(|b| (b.auction, b.bidder, b.price))
        .collect();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected);

    // q1: currency conversion; compare the total in thousandths (0.908 is exact in DECIMAL).
    let q1 = select(
        "SELECT CAST(SUM(0.908 * price) * 1000 AS BIGINT) AS milli FROM bid",
        2,
    );
    let expected_milli: i64 = bids.iter().map(|b| b.price * 908).sum();
    assert_eq!(int_column(&q1, 0), [Some(expected_milli)]);

    // q2: selection.
    let q2 = select(
        "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
        2,
    );
    let mut got: Vec<i64> = int_column(&q2, 0).into_iter().flatten().collect();
    let mut expected: Vec<i64> = bids
        .iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| b.auction)
        .collect();
    got.sort_unstable();
    expected.sort_unstable();
    assert!(!expected.is_empty(), "q2 selects something");
    assert_eq!(got, expected);

    // q14: a Wasm UDF on every row, a price filter and a CASE on the hour.
    let q14 = select(
        "SELECT CASE WHEN EXTRACT(HOUR FROM dateTime) >= 8 AND EXTRACT(HOUR FROM dateTime) <= 18 \
         THEN 'dayTime' WHEN EXTRACT(HOUR FROM dateTime) <= 6 OR EXTRACT(HOUR FROM dateTime) >= 20 \
         THEN 'nightTime' ELSE 'otherTime' END AS bidTimeType, \
         COUNT(*) AS bids, SUM(count_char(extra, 'c')) AS c_counts FROM bid \
         WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000 \
         GROUP BY 1 ORDER BY 1",
        2,
    );
    let mut expected: HashMap<&str, (i64, i64)> = HashMap::new();
    for b in &bids {
        let converted = b.price as f64 * 0.908;
        if !(converted > 1_000_000.0 && converted < 50_000_000.0) {
            continue;
        }
        let hour = (b.millis / 3_600_000).rem_euclid(24);
        let kind = if (8..=18).contains(&hour) {
            "dayTime"
        } else if hour <= 6 || hour >= 20 {
            "nightTime"
        } else {
            "otherTime"
        };
        let entry = expected.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += b.extra.matches('c').count() as i64;
    }
    let kinds = string_column(&q14, 0);
    let counts = int_column(&q14, 1);
    let chars = int_column(&q14, 2);
    assert_eq!(kinds.len(), expected.len());
    for ((kind, count), c) in kinds.iter().zip(counts).zip(chars) {
        assert_eq!(
            (count, c),
            (
                Some(expected[kind.as_str()].0),
                Some(expected[kind.as_str()].1)
            ),
            "{kind}"
        );
    }

    // q17-style: per auction and day, counts by price band and price statistics.
    let q17 = select(
        "SELECT auction, COUNT(*) AS total, COUNT(*) FILTER (WHERE price < 10000) AS rank1, \
         MIN(price) AS lo, MAX(price) AS hi, SUM(price) AS total_price \
         FROM bid GROUP BY auction, CAST(dateTime AS DATE)",
        4,
    );
    let mut expected: HashMap<i64, (i64, i64, i64, i64, i64)> = HashMap::new();
    for b in &bids {
        let day = b.millis.div_euclid(86_400_000);
        assert_eq!(
            day,
            bids[0].millis.div_euclid(86_400_000),
            "one day of events"
        );
        let e = expected
            .entry(b.auction)
            .or_insert((0, 0, i64::MAX, i64::MIN, 0));
        e.0 += 1;
        e.1 += i64::from(b.price < 10_000);
        e.2 = e.2.min(b.price);
        e.3 = e.3.max(b.price);
        e.4 += b.price;
    }
    let columns: Vec<Vec<Option<i64>>> = (0..6).map(|c| int_column(&q17, c)).collect();
    assert_eq!(columns[0].len(), expected.len());
    for (row, auction) in columns[0].iter().enumerate() {
        let auction = auction.expect("auction");
        let e = expected[&auction];
        let got: Vec<i64> = columns[1..]
            .iter()
            .map(|c| c[row].expect("value"))
            .collect();
        assert_eq!(got, [e.0, e.1, e.2, e.3, e.4], "auction {auction}");
    }

    // q22-style: the url's directories by string splitting.
    let q22 = select(
        "SELECT SPLIT_PART(url, '/', 4) AS dir1, SPLIT_PART(url, '/', 5) AS dir2, \
         SPLIT_PART(url, '/', 6) AS dir3 FROM bid",
        2,
    );
    let mut got: Vec<(String, String, String)> = string_column(&q22, 0)
        .into_iter()
        .zip(string_column(&q22, 1))
        .zip(string_column(&q22, 2))
        .map(|((a, b), c)| (a, b, c))
        .collect();
    let mut expected: Vec<(String, String, String)> = bids
        .iter()
        .map(|b| {
            let parts: Vec<&str> = b.url.split('/').collect();
            let part = |i: usize| parts.get(i).copied().unwrap_or("").to_string();
            (part(3), part(4), part(5))
        })
        .collect();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected);

    // Groups that every batch touches again: states go to the backend and come back per batch.
    let spread = select(
        "SELECT MOD(bidder, 7) AS k, COUNT(DISTINCT auction) AS auctions, AVG(price) AS mean, \
         weighted_avg(CAST(price AS DOUBLE), 1) FILTER (WHERE price < 10000) AS cheap_mean \
         FROM bid GROUP BY MOD(bidder, 7)",
        2,
    );
    let mut expected: HashMap<i64, (HashSet<i64>, i64, i64, i64, i64)> = HashMap::new();
    for b in &bids {
        let e = expected.entry(b.bidder % 7).or_default();
        e.0.insert(b.auction);
        e.1 += b.price;
        e.2 += 1;
        if b.price < 10_000 {
            e.3 += b.price;
            e.4 += 1;
        }
    }
    let keys = int_column(&spread, 0);
    let auctions = int_column(&spread, 1);
    let floats = |column: usize| -> Vec<Option<f64>> {
        spread
            .iter()
            .flat_map(|b| b.column(column).as_primitive::<Float64Type>().iter())
            .collect()
    };
    let (means, cheap_means) = (floats(2), floats(3));
    assert_eq!(keys.len(), expected.len());
    let close = |got: Option<f64>, want: f64| {
        got.is_some_and(|got| (got - want).abs() <= 1e-9 * want.abs().max(1.0))
    };
    for (row, key) in keys.iter().enumerate() {
        let key = key.expect("key");
        let (distinct, sum, count, cheap_sum, cheap_count) = &expected[&key];
        assert_eq!(auctions[row], Some(distinct.len() as i64), "k = {key}");
        assert!(close(means[row], *sum as f64 / *count as f64), "k = {key}");
        assert!(
            close(cheap_means[row], *cheap_sum as f64 / *cheap_count as f64),
            "k = {key}: {:?}",
            cheap_means[row]
        );
    }
}
