//! Nexmark q3–q20 in streaming mode, in Flink SQL, over generated persons, auctions and bids
//! that arrive out of order (within the watermark's bound): each query's streamed result (its
//! changelog applied) equals the batch run's, and each query's answer (q17's in
//! `nexmark.rs`) also equals one recomputed here in plain Rust from the raw events.
//!
//! q12 windows by processing time, so its windows depend on the clock: its test checks that
//! every bid is counted once, per bidder, against the raw events.
//!
//! Departures from the published queries: q15 and q16 keep fewer of their many FILTERed
//! counts; the tables are separate generated streams rather than views over one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use weir_host::job::{NoProgress, Outcome, Session};

use crate::common::python_runtime;
use crate::streaming::sorted_rows;

const EVENTS: u64 = 20_000;

fn tables() -> String {
    let options = format!(
        "'events.num' = '{EVENTS}', 'events.per-second' = '1000', 'events.throttle' = 'false', \
         'events.out-of-orderness' = '1 s', 'seed' = '7'"
    );
    format!(
        "CREATE TABLE person (id BIGINT, name STRING, emailAddress STRING, creditCard STRING, \
           city STRING, state STRING, dateTime TIMESTAMP(3), extra STRING, \
           WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND) \
         WITH ('connector' = 'nexmark', 'nexmark.table' = 'person', {options});\n\
         CREATE TABLE auction (id BIGINT, itemName STRING, description STRING, initialBid BIGINT, \
           reserve BIGINT, dateTime TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, \
           category BIGINT, extra STRING, \
           WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND) \
         WITH ('connector' = 'nexmark', 'nexmark.table' = 'auction', {options});\n\
         CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, \
           url STRING, dateTime TIMESTAMP(3), extra STRING, \
           WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND) \
         WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', {options});\n"
    )
}

const Q3: &str = "SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER JOIN person AS P \
    ON A.seller = P.id WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')";

const Q4: &str = "SELECT Q.category, AVG(Q.final) FROM ( \
      SELECT MAX(B.price) AS final, A.category FROM auction A, bid B \
      WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires \
      GROUP BY A.id, A.category) Q \
    GROUP BY Q.category";

const Q5: &str = "SELECT AuctionBids.auction, AuctionBids.num FROM ( \
      SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime \
      FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
      GROUP BY auction, window_start, window_end) AS AuctionBids \
    JOIN ( \
      SELECT MAX(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime FROM ( \
        SELECT COUNT(*) AS num, window_start AS starttime, window_end AS endtime \
        FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
        GROUP BY auction, window_start, window_end) AS CountBids \
      GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids \
    ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime \
      AND AuctionBids.num >= MaxBids.maxn";

const Q7: &str = "SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra FROM bid B JOIN ( \
      SELECT MAX(price) AS maxprice, window_end AS dateTime \
      FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) \
      GROUP BY window_start, window_end) B1 \
    ON B.price = B1.maxprice \
    WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime";

const Q8: &str = "SELECT P.id, P.name, P.starttime FROM ( \
      SELECT id, name, window_start AS starttime, window_end AS endtime \
      FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) \
      GROUP BY id, name, window_start, window_end) P \
    JOIN ( \
      SELECT seller, window_start AS starttime, window_end AS endtime \
      FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) \
      GROUP BY seller, window_start, window_end) A \
    ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime";

const Q9: &str = "SELECT id, itemName, initialBid, reserve, dateTime, expires, seller, category, \
      auction, bidder, price, bid_dateTime FROM ( \
      SELECT A.*, B.auction, B.bidder, B.price, B.dateTime AS bid_dateTime, \
        ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.dateTime ASC) AS rownum \
      FROM auction A, bid B \
      WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires) \
    WHERE rownum <= 1";

const Q11: &str = "SELECT B.bidder, COUNT(*) AS bid_count, \
      SESSION_START(B.dateTime, INTERVAL '10' SECOND) AS starttime, \
      SESSION_END(B.dateTime, INTERVAL '10' SECOND) AS endtime \
    FROM bid B GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND)";

const Q12: &str = "SELECT bidder, COUNT(*) AS bid_count, window_start, window_end \
    FROM TABLE(TUMBLE(TABLE (SELECT *, PROCTIME() AS p_time FROM bid), DESCRIPTOR(p_time), \
      INTERVAL '10' SECOND)) \
    GROUP BY bidder, window_start, window_end";

const Q15: &str = "SELECT DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS `day`, COUNT(*) AS total_bids, \
      COUNT(*) FILTER (WHERE price < 10000) AS rank1_bids, \
      COUNT(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, \
      COUNT(*) FILTER (WHERE price >= 1000000) AS rank3_bids, \
      COUNT(DISTINCT bidder) AS total_bidders, \
      COUNT(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, \
      COUNT(DISTINCT auction) AS total_auctions \
    FROM bid GROUP BY DATE_FORMAT(dateTime, 'yyyy-MM-dd')";

const Q16: &str = "SELECT channel, DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS `day`, \
      MAX(DATE_FORMAT(dateTime, 'HH:mm')) AS `minute`, COUNT(*) AS total_bids, \
      COUNT(*) FILTER (WHERE price < 10000) AS rank1_bids, \
      COUNT(DISTINCT bidder) AS total_bidders, COUNT(DISTINCT auction) AS total_auctions \
    FROM bid GROUP BY channel, DATE_FORMAT(dateTime, 'yyyy-MM-dd')";

const Q17: &str = "SELECT auction, CAST(dateTime AS DATE) AS `day`, COUNT(*) AS total_bids, \
      COUNT(*) FILTER (WHERE price < 10000) AS rank1_bids, \
      COUNT(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, \
      COUNT(*) FILTER (WHERE price >= 1000000) AS rank3_bids, \
      MIN(price) AS min_price, MAX(price) AS max_price, AVG(price) AS avg_price, \
      SUM(price) AS sum_price \
    FROM bid GROUP BY auction, CAST(dateTime AS DATE)";

const Q18: &str = "SELECT auction, bidder, price, channel, url, dateTime, extra FROM ( \
      SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY dateTime DESC) AS rank_number \
      FROM bid) WHERE rank_number <= 1";

const Q19: &str = "SELECT auction, bidder, price, dateTime, rank_number FROM ( \
      SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number \
      FROM bid) WHERE rank_number <= 10";

const Q20: &str = "SELECT auction, bidder, price, channel, B.dateTime, itemName, initialBid, \
      reserve, A.dateTime, expires, seller, category \
    FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id WHERE A.category = 10";

struct Run {
    batches: Vec<RecordBatch>,
    late: u64,
}

fn run(query: &str, streaming: bool, parallelism: usize) -> Run {
    let script = format!("{}{query};", tables());
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let mut session = Session::new(python_runtime(), ".");
    session
        .set("parallelism.default", &parallelism.to_string())
        .expect("parallelism");
    if streaming {
        session
            .set("execution.runtime-mode", "streaming")
            .expect("mode");
        session
            .set("pipeline.batch-size", "500")
            .expect("batch size");
    }
    let mut result = None;
    for statement in weir_host::sql::parse_script(&script).expect("parses") {
        match tokio.block_on(session.execute(&statement, &script, &mut NoProgress)) {
            Ok(Outcome::Rows { batches, stats, .. }) => {
                let late = stats
                    .operators
                    .iter()
                    .map(|(_, s)| s.late_rows.load(Ordering::Relaxed))
                    .sum();
                result = Some(Run { batches, late });
            }
            Ok(_) => {}
            Err(e) => panic!("{query}: {e}"),
        }
    }
    result.expect("rows")
}

#[test]
fn nexmark_queries_stream_as_they_run_in_batch() {
    let queries = [
        ("q3", Q3),
        ("q4", Q4),
        ("q5", Q5),
        ("q7", Q7),
        ("q8", Q8),
        ("q9", Q9),
        ("q11", Q11),
        ("q15", Q15),
        ("q16", Q16),
        ("q17", Q17),
        ("q18", Q18),
        ("q19", Q19),
        ("q20", Q20),
    ];
    let mut failures = Vec::new();
    for (name, query) in queries {
        let batch = sorted_rows(&run(query, false, 1).batches);
        assert!(!batch.is_empty(), "{name}: no rows");
        for parallelism in [2, 4] {
            let streamed = run(query, true, parallelism);
            let rows = sorted_rows(&streamed.batches);
            if rows != batch || streamed.late != 0 {
                let missing: Vec<_> = batch.iter().filter(|r| !rows.contains(r)).take(3).collect();
                let extra: Vec<_> = rows.iter().filter(|r| !batch.contains(r)).take(3).collect();
                failures.push(format!(
                    "{name} at parallelism {parallelism}: {} late, {} rows vs {} in batch; \
                     missing {missing:?}; extra {extra:?}",
                    streamed.late,
                    rows.len(),
                    batch.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn ints(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("{name}"));
    column.as_primitive::<Int64Type>().values().to_vec()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("{name}"));
    column
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect()
}

fn millis(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("{name}"));
    column
        .as_primitive::<TimestampMillisecondType>()
        .values()
        .to_vec()
}

/// Every row of `table`'s raw events, as (column name → values) per batch.
fn raw(table: &str, columns: &str) -> Vec<RecordBatch> {
    run(&format!("SELECT {columns} FROM {table}"), false, 1).batches
}

/// Rows of the engine's result whose columns are all BIGINT (or STRING), as text, sorted.
fn engine(query: &str) -> Vec<String> {
    sorted_rows(&run(query, false, 1).batches)
}

#[test]
fn nexmark_answers_match_a_recomputation() {
    struct Bid {
        auction: i64,
        bidder: i64,
        price: i64,
        millis: i64,
    }
    struct Auction {
        id: i64,
        millis: i64,
        expires: i64,
        seller: i64,
        category: i64,
    }
    let mut bids = Vec::new();
    for batch in raw("bid", "auction, bidder, price, dateTime") {
        let (a, b, p, t) = (
            ints(&batch, "auction"),
            ints(&batch, "bidder"),
            ints(&batch, "price"),
            millis(&batch, "dateTime"),
        );
        for i in 0..batch.num_rows() {
            bids.push(Bid {
                auction: a[i],
                bidder: b[i],
                price: p[i],
                millis: t[i],
            });
        }
    }
    let mut auctions = Vec::new();
    for batch in raw("auction", "id, dateTime, expires, seller, category") {
        let (id, t, e, s, c) = (
            ints(&batch, "id"),
            millis(&batch, "dateTime"),
            millis(&batch, "expires"),
            ints(&batch, "seller"),
            ints(&batch, "category"),
        );
        for i in 0..batch.num_rows() {
            auctions.push(Auction {
                id: id[i],
                millis: t[i],
                expires: e[i],
                seller: s[i],
                category: c[i],
            });
        }
    }
    let mut persons: HashMap<i64, (String, String, String)> = HashMap::new();
    for batch in raw("person", "id, name, city, state") {
        let (id, n, c, s) = (
            ints(&batch, "id"),
            strings(&batch, "name"),
            strings(&batch, "city"),
            strings(&batch, "state"),
        );
        for i in 0..batch.num_rows() {
            persons.insert(id[i], (n[i].clone(), c[i].clone(), s[i].clone()));
        }
    }
    assert!(bids.len() > 10_000 && !auctions.is_empty() && !persons.is_empty());

    // q3: sellers in OR, ID or CA of category-10 auctions.
    let mut q3: Vec<String> = auctions
        .iter()
        .filter(|a| a.category == 10)
        .filter_map(|a| {
            let (name, city, state) = persons.get(&a.seller)?;
            ["OR", "ID", "CA"]
                .contains(&state.as_str())
                .then(|| format!("{name} | {city} | {state} | {}", a.id))
        })
        .collect();
    q3.sort_unstable();
    assert!(!q3.is_empty(), "q3 finds nothing: the check would be empty");
    assert_eq!(engine(Q3), q3, "q3");

    // q4: per category, the average of each auction's highest bid within its lifetime.
    let by_id: HashMap<i64, &Auction> = auctions.iter().map(|a| (a.id, a)).collect();
    let mut finals: HashMap<i64, (i64, i64)> = HashMap::new();
    for bid in &bids {
        if let Some(a) = by_id.get(&bid.auction)
            && a.millis <= bid.millis
            && bid.millis <= a.expires
        {
            let entry = finals.entry(a.id).or_insert((a.category, i64::MIN));
            entry.1 = entry.1.max(bid.price);
        }
    }
    let mut per_category: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for (category, price) in finals.values() {
        let entry = per_category.entry(*category).or_default();
        entry.0 += *price as f64;
        entry.1 += 1.0;
    }
    let q4_engine: BTreeMap<i64, f64> = engine(Q4)
        .iter()
        .map(|row| {
            let (category, average) = row.split_once(" | ").expect("two columns");
            (
                category.parse().expect("category"),
                average.parse().expect("average"),
            )
        })
        .collect();
    assert_eq!(
        q4_engine.keys().collect::<Vec<_>>(),
        per_category.keys().collect::<Vec<_>>(),
        "q4 categories"
    );
    for (category, (sum, n)) in &per_category {
        let expected = sum / n;
        let got = q4_engine[category];
        assert!(
            (got - expected).abs() <= expected.abs() * 1e-12,
            "q4 category {category}: {got} vs {expected}"
        );
    }

    // q18: each (bidder, auction)'s last bid; q19: each auction's ten highest bids.
    let mut last: HashMap<(i64, i64), &Bid> = HashMap::new();
    for bid in &bids {
        let entry = last.entry((bid.bidder, bid.auction)).or_insert(bid);
        if bid.millis > entry.millis {
            *entry = bid;
        }
    }
    let q18_engine = engine(
        "SELECT auction, bidder, price FROM (SELECT *, ROW_NUMBER() OVER \
        (PARTITION BY bidder, auction ORDER BY dateTime DESC) AS r FROM bid) WHERE r <= 1",
    );
    // (Two bids of a pair at the same millisecond would make the last one ambiguous: the
    // generator's events are microseconds apart at most once per pair here; compare prices
    // only where the last time is unique.)
    let mut q18: Vec<String> = last
        .values()
        .map(|b| format!("{} | {} | {}", b.auction, b.bidder, b.price))
        .collect();
    q18.sort_unstable();
    let ties = bids
        .iter()
        .filter(|b| {
            let l = last[&(b.bidder, b.auction)];
            b.millis == l.millis && !std::ptr::eq(*b, l)
        })
        .count();
    if ties == 0 {
        assert_eq!(q18_engine, q18, "q18");
    } else {
        assert_eq!(
            q18_engine.len(),
            q18.len(),
            "q18: one row per (bidder, auction)"
        );
    }
    let mut q19_prices: HashMap<i64, Vec<i64>> = HashMap::new();
    for bid in &bids {
        q19_prices.entry(bid.auction).or_default().push(bid.price);
    }
    let mut q19: Vec<String> = Vec::new();
    for (auction, prices) in &mut q19_prices {
        prices.sort_unstable_by(|a, b| b.cmp(a));
        for (rank, price) in prices.iter().take(10).enumerate() {
            q19.push(format!("{auction} | {price} | {}", rank + 1));
        }
    }
    q19.sort_unstable();
    let q19_engine = engine(
        "SELECT auction, price, rank_number FROM (SELECT *, ROW_NUMBER() OVER \
        (PARTITION BY auction ORDER BY price DESC) AS rank_number FROM bid) WHERE rank_number <= 10",
    );
    assert_eq!(q19_engine, q19, "q19");

    // q20: bids on category-10 auctions.
    let q20 = bids
        .iter()
        .filter(|b| by_id.get(&b.auction).is_some_and(|a| a.category == 10))
        .count();
    let q20_engine = engine(
        "SELECT B.auction FROM bid AS B INNER JOIN auction AS A \
        ON B.auction = A.id WHERE A.category = 10",
    );
    assert_eq!(q20_engine.len(), q20, "q20");
}

#[test]
fn nexmark_q12_counts_every_bid_once_in_processing_time_windows() {
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    for batch in raw("bid", "bidder") {
        for bidder in ints(&batch, "bidder") {
            *expected.entry(bidder).or_default() += 1;
        }
    }
    for parallelism in [1, 2] {
        let streamed = run(Q12, true, parallelism);
        assert_eq!(streamed.late, 0);
        let mut counted: BTreeMap<i64, i64> = BTreeMap::new();
        for batch in &streamed.batches {
            let (bidders, counts) = (ints(batch, "bidder"), ints(batch, "bid_count"));
            for (bidder, count) in bidders.into_iter().zip(counts) {
                *counted.entry(bidder).or_default() += count;
            }
        }
        assert_eq!(counted, expected, "q12 at parallelism {parallelism}");
    }
}

/// The raw bids, with what the window and statistics queries read.
struct RawBid {
    auction: i64,
    bidder: i64,
    price: i64,
    channel: String,
    millis: i64,
}

fn raw_bids() -> Vec<RawBid> {
    let mut bids = Vec::new();
    for batch in raw("bid", "auction, bidder, price, channel, dateTime") {
        let (a, b, p, c, t) = (
            ints(&batch, "auction"),
            ints(&batch, "bidder"),
            ints(&batch, "price"),
            strings(&batch, "channel"),
            millis(&batch, "dateTime"),
        );
        for i in 0..batch.num_rows() {
            bids.push(RawBid {
                auction: a[i],
                bidder: b[i],
                price: p[i],
                channel: c[i].clone(),
                millis: t[i],
            });
        }
    }
    bids
}

fn sorted(mut rows: Vec<String>) -> Vec<String> {
    rows.sort_unstable();
    rows
}

/// q5, q7, q8, q9, q11, q15 and q16 against plain-Rust answers (the columns compared are the
/// ones that need no timestamp formatting).
#[test]
fn nexmark_window_and_statistics_answers_match_a_recomputation() {
    let bids = raw_bids();
    assert!(bids.len() > 10_000);

    // q5: per HOP window (slide 2 s, size 10 s), the auctions with the most bids.
    let mut counts: HashMap<(i64, i64), i64> = HashMap::new();
    for bid in &bids {
        let mut start = bid.millis.div_euclid(2_000) * 2_000;
        while start > bid.millis - 10_000 {
            *counts.entry((start, bid.auction)).or_default() += 1;
            start -= 2_000;
        }
    }
    let mut most: HashMap<i64, i64> = HashMap::new();
    for ((start, _), n) in &counts {
        let entry = most.entry(*start).or_default();
        *entry = (*entry).max(*n);
    }
    let q5 = sorted(
        counts
            .iter()
            .filter(|((start, _), n)| **n >= most[start])
            .map(|((_, auction), n)| format!("{auction} | {n}"))
            .collect(),
    );
    assert_eq!(engine(Q5), q5, "q5");

    // q7: the bids at their 10 s window's highest price, within the 10 s up to its end.
    let mut highest: HashMap<i64, i64> = HashMap::new();
    for bid in &bids {
        let end = bid.millis.div_euclid(10_000) * 10_000 + 10_000;
        let entry = highest.entry(end).or_insert(i64::MIN);
        *entry = (*entry).max(bid.price);
    }
    let mut q7 = Vec::new();
    for (end, price) in &highest {
        for bid in &bids {
            if bid.price == *price && end - 10_000 <= bid.millis && bid.millis <= *end {
                q7.push(format!("{} | {} | {}", bid.auction, bid.price, bid.bidder));
            }
        }
    }
    assert_eq!(
        engine(&format!("SELECT auction, price, bidder FROM ({Q7}) q")),
        sorted(q7),
        "q7"
    );

    // q8: persons who opened an auction in the 10 s window they registered in.
    let mut persons: HashMap<(i64, String, i64), ()> = HashMap::new();
    for batch in raw("person", "id, name, dateTime") {
        let (id, name, t) = (
            ints(&batch, "id"),
            strings(&batch, "name"),
            millis(&batch, "dateTime"),
        );
        for i in 0..batch.num_rows() {
            persons.insert((id[i], name[i].clone(), t[i].div_euclid(10_000)), ());
        }
    }
    let mut sellers: HashMap<(i64, i64), ()> = HashMap::new();
    let mut auctions: Vec<(i64, i64, i64, i64)> = Vec::new(); // id, millis, expires, seller
    for batch in raw("auction", "id, dateTime, expires, seller") {
        let (id, t, e, s) = (
            ints(&batch, "id"),
            millis(&batch, "dateTime"),
            millis(&batch, "expires"),
            ints(&batch, "seller"),
        );
        for i in 0..batch.num_rows() {
            sellers.insert((s[i], t[i].div_euclid(10_000)), ());
            auctions.push((id[i], t[i], e[i], s[i]));
        }
    }
    let q8 = sorted(
        persons
            .keys()
            .filter(|(id, _, window)| sellers.contains_key(&(*id, *window)))
            .map(|(id, name, _)| format!("{id} | {name}"))
            .collect(),
    );
    assert!(!q8.is_empty(), "q8 finds nothing: the check would be empty");
    assert_eq!(engine(&format!("SELECT id, name FROM ({Q8}) q")), q8, "q8");

    // q9: each auction's highest bid within its lifetime (its price: ties may pick either bid).
    let mut winning: HashMap<i64, i64> = HashMap::new();
    let lifetimes: HashMap<i64, (i64, i64)> = auctions
        .iter()
        .map(|(id, t, e, _)| (*id, (*t, *e)))
        .collect();
    for bid in &bids {
        if let Some((start, end)) = lifetimes.get(&bid.auction)
            && *start <= bid.millis
            && bid.millis <= *end
        {
            let entry = winning.entry(bid.auction).or_insert(i64::MIN);
            *entry = (*entry).max(bid.price);
        }
    }
    let q9 = sorted(
        winning
            .iter()
            .map(|(id, p)| format!("{id} | {p}"))
            .collect(),
    );
    assert_eq!(engine(&format!("SELECT id, price FROM ({Q9}) q")), q9, "q9");

    // q11: bids per bidder session (a gap of 10 s ends one; touching windows merge).
    let mut times: HashMap<i64, Vec<i64>> = HashMap::new();
    for bid in &bids {
        times.entry(bid.bidder).or_default().push(bid.millis);
    }
    let mut q11 = Vec::new();
    for (bidder, times) in &mut times {
        times.sort_unstable();
        let mut count = 0;
        let mut end = i64::MIN;
        for &t in times.iter() {
            if count > 0 && t > end {
                q11.push(format!("{bidder} | {count}"));
                count = 0;
            }
            count += 1;
            // Sorted: the last row's window ends the session.
            end = t + 10_000;
        }
        q11.push(format!("{bidder} | {count}"));
    }
    assert_eq!(
        engine(&format!("SELECT bidder, bid_count FROM ({Q11}) q")),
        sorted(q11),
        "q11"
    );

    // q15 and q16: bid statistics (all bids fall on one day), and per channel.
    let distinct = |filter: &dyn Fn(&RawBid) -> bool, key: &dyn Fn(&RawBid) -> i64| {
        bids.iter()
            .filter(|b| filter(b))
            .map(key)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let count = |filter: &dyn Fn(&RawBid) -> bool| bids.iter().filter(|b| filter(b)).count();
    let q15 = vec![format!(
        "{} | {} | {} | {} | {} | {} | {}",
        count(&|_| true),
        count(&|b| b.price < 10_000),
        count(&|b| (10_000..1_000_000).contains(&b.price)),
        count(&|b| b.price >= 1_000_000),
        distinct(&|_| true, &|b| b.bidder),
        distinct(&|b| b.price < 10_000, &|b| b.bidder),
        distinct(&|_| true, &|b| b.auction),
    )];
    assert_eq!(
        engine(&format!(
            "SELECT total_bids, rank1_bids, rank2_bids, rank3_bids, total_bidders, \
             rank1_bidders, total_auctions FROM ({Q15}) q"
        )),
        q15,
        "q15"
    );
    let channels: std::collections::BTreeSet<&str> =
        bids.iter().map(|b| b.channel.as_str()).collect();
    let q16 = sorted(
        channels
            .iter()
            .map(|channel| {
                let on = |b: &RawBid| b.channel == *channel;
                format!(
                    "{channel} | {} | {} | {} | {}",
                    count(&|b| on(b)),
                    count(&|b| on(b) && b.price < 10_000),
                    distinct(&|b| on(b), &|b| b.bidder),
                    distinct(&|b| on(b), &|b| b.auction),
                )
            })
            .collect(),
    );
    assert_eq!(
        engine(&format!(
            "SELECT channel, total_bids, rank1_bids, total_bidders, total_auctions \
             FROM ({Q16}) q"
        )),
        q16,
        "q16"
    );
}
