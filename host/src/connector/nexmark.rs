//! `nexmark`: a deterministic generator of Nexmark's Person, Auction and Bid events.
//!
//! The events follow Apache Beam's `NexmarkGenerator` (which Flink's nexmark benchmark uses): one
//! global sequence of event indexes 0, 1, 2, … in which every run of 50 events (an *epoch*) holds
//! one person (offset 0), three auctions (offsets 1–3) and 46 bids (offsets 4–49). Person and
//! auction ids count up from 1000 in sequence order; bids and auctions refer to persons and
//! auctions already in the sequence, mostly to a few "hot" recent ones. A table carries one kind of
//! event (`'nexmark.table'`) and sees only that kind's events of the shared sequence.
//!
//! Every field of an event is a pure function of `('seed', event index)`, and its `dateTime` of the
//! index and `'events.per-second'`, never of the wall clock: two runs with the same options produce
//! the same events whatever the parallelism. Subtask `k` of `n` generates the epochs
//! `k, k + n, k + 2n, …`, so every subtask gets the same mix of kinds and the subtasks' event times
//! stay within `50 × n` events of one another.
//!
//! Generation is columnar and only for the projected columns: a batch is a list of event indexes,
//! and each column is filled from them by one loop over a counter-based random number (splitmix64
//! of the seed, the field and the index). Strings are copied out of a fixed pool of random text or
//! out of a table of the channels and their urls, built when a reader opens.
//!
//! **Boundary:** pure computation; the only effect is the optional throttle's sleep.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::{ConnectorError, SourceReader, SourceRequest, Subtask, TableDef, check_known_options};

const OPT_TABLE: &str = "nexmark.table";
const OPT_EVENTS: &str = "events.num";
const OPT_RATE: &str = "events.per-second";
const OPT_SEED: &str = "seed";
const KNOWN_OPTIONS: &[&str] = &[OPT_TABLE, OPT_EVENTS, OPT_RATE, OPT_SEED];
const KINDS: &str = "bid, person, auction";

/// Events per epoch; each kind's place in it is `Kind::slots`.
const EPOCH: u64 = 50;
const AUCTIONS_PER_EPOCH: u64 = 3;

const FIRST_PERSON_ID: u64 = 1000;
const FIRST_AUCTION_ID: u64 = 1000;
const FIRST_CATEGORY_ID: u64 = 10;
const NUM_CATEGORIES: u64 = 5;
/// Bidders and sellers that are not hot are drawn from the latest this many persons.
const ACTIVE_PEOPLE: u64 = 1000;
/// Bids that are not for the hot auction go to one of the latest this many auctions (and the
/// auction length is the time this many auctions take to appear, as in Beam).
const IN_FLIGHT_AUCTIONS: u64 = 100;
/// Beam's hotness: `(ratio - 1) / ratio` of the choices go to the hot item.
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_BIDDER_RATIO: u64 = 4;
const HOT_SELLER_RATIO: u64 = 4;
const HOT_CHANNEL_RATIO: u64 = 2;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
/// Channels that are not hot are `channel-0` … `channel-9999`.
const CHANNELS: u64 = 10_000;

const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];

/// Lengths of `extra`: Beam pads each event to an average size (bid 100, person 200, auction 500
/// bytes) minus what its other fields take on average, ±20%. The padding does not depend on the
/// event's other strings here, so that each column can be generated alone.
const BID_EXTRA: ExtraLength = ExtraLength::around(100 - 32);
const PERSON_EXTRA: ExtraLength = ExtraLength::around(200 - 60);
const AUCTION_EXTRA: ExtraLength = ExtraLength::around(500 - 110);

/// 2026-01-01T00:00:00Z in seconds since the Unix epoch: event 0's `dateTime`.
const BASE_TIME_SECONDS: i64 = 1_767_225_600;
const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// Events per second of event time when `'events.per-second'` is absent.
const DEFAULT_RATE: u64 = 10_000_000;
/// One event per nanosecond: event times are whole nanoseconds.
const MAX_RATE: u64 = NANOS_PER_SECOND;
/// The shortest auction, as in Beam.
const MIN_AUCTION_NANOS: u64 = 1_000_000;

/// The most rows in one batch, whatever `batch_size` asks: with strings of at most 512 bytes it
/// keeps a column's i32 string offsets far from overflow.
const MAX_BATCH_ROWS: usize = 1 << 20;
/// A throttled source holds a batch back at most this long past its first row's due time to fill
/// it: few large batches at high rates, little latency at low ones.
const MAX_BATCH_DELAY: Duration = Duration::from_millis(10);

/// Checks the options and the declared columns without generating anything.
pub(crate) fn validate(table: &TableDef) -> Result<(), ConnectorError> {
    Config::parse(table).map(|_| ())
}

/// Opens subtask `k` of `n`: the events of epochs `k, k + n, k + 2n, …` of the table's kind.
pub(crate) fn open_source(
    table: &TableDef,
    request: &SourceRequest,
) -> Result<Box<dyn SourceReader>, ConnectorError> {
    Ok(Box::new(NexmarkReader::open(table, request)?))
}

/// Which events a table carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Person,
    Auction,
    Bid,
}

impl Kind {
    fn parse(value: &str) -> Option<Self> {
        [Self::Bid, Self::Person, Self::Auction]
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(value.trim()))
    }

    fn name(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Auction => "auction",
            Self::Bid => "bid",
        }
    }

    /// The offset in an epoch of this kind's first event, and its number of events per epoch.
    fn slots(self) -> (u64, u64) {
        match self {
            Self::Person => (0, 1),
            Self::Auction => (1, AUCTIONS_PER_EPOCH),
            Self::Bid => (1 + AUCTIONS_PER_EPOCH, EPOCH - 1 - AUCTIONS_PER_EPOCH),
        }
    }

    fn fields(self) -> &'static [FieldSpec] {
        match self {
            Self::Person => PERSON_FIELDS,
            Self::Auction => AUCTION_FIELDS,
            Self::Bid => BID_FIELDS,
        }
    }

    fn extra(self) -> ExtraLength {
        match self {
            Self::Person => PERSON_EXTRA,
            Self::Auction => AUCTION_EXTRA,
            Self::Bid => BID_EXTRA,
        }
    }

    fn describe_fields(self) -> String {
        self.fields()
            .iter()
            .map(|spec| format!("{} {}", spec.name, spec.ty.sql()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every field of every kind. The discriminant also names the field's random stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    // Bid.
    Auction,
    Bidder,
    Price,
    Channel,
    Url,
    // Person.
    PersonId,
    Name,
    EmailAddress,
    CreditCard,
    City,
    State,
    // Auction.
    AuctionId,
    ItemName,
    Description,
    InitialBid,
    Reserve,
    Expires,
    Seller,
    Category,
    // All kinds.
    DateTime,
    Extra,
}

/// A field's SQL type, as Flink's nexmark tables declare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    BigInt,
    Varchar,
    Timestamp,
}

impl FieldType {
    fn sql(self) -> &'static str {
        match self {
            Self::BigInt => "BIGINT",
            Self::Varchar => "VARCHAR",
            Self::Timestamp => "TIMESTAMP",
        }
    }

    fn arrow(self) -> &'static str {
        match self {
            Self::BigInt => "Int64",
            Self::Varchar => "Utf8",
            Self::Timestamp => "a Timestamp (any unit)",
        }
    }

    fn fits(self, data_type: &DataType) -> bool {
        match self {
            Self::BigInt => *data_type == DataType::Int64,
            Self::Varchar => *data_type == DataType::Utf8,
            Self::Timestamp => matches!(data_type, DataType::Timestamp(..)),
        }
    }
}

#[derive(Debug)]
struct FieldSpec {
    name: &'static str,
    field: Field,
    ty: FieldType,
}

const fn spec(name: &'static str, field: Field, ty: FieldType) -> FieldSpec {
    FieldSpec { name, field, ty }
}

const BID_FIELDS: &[FieldSpec] = &[
    spec("auction", Field::Auction, FieldType::BigInt),
    spec("bidder", Field::Bidder, FieldType::BigInt),
    spec("price", Field::Price, FieldType::BigInt),
    spec("channel", Field::Channel, FieldType::Varchar),
    spec("url", Field::Url, FieldType::Varchar),
    spec("dateTime", Field::DateTime, FieldType::Timestamp),
    spec("extra", Field::Extra, FieldType::Varchar),
];

const PERSON_FIELDS: &[FieldSpec] = &[
    spec("id", Field::PersonId, FieldType::BigInt),
    spec("name", Field::Name, FieldType::Varchar),
    spec("emailAddress", Field::EmailAddress, FieldType::Varchar),
    spec("creditCard", Field::CreditCard, FieldType::Varchar),
    spec("city", Field::City, FieldType::Varchar),
    spec("state", Field::State, FieldType::Varchar),
    spec("dateTime", Field::DateTime, FieldType::Timestamp),
    spec("extra", Field::Extra, FieldType::Varchar),
];

const AUCTION_FIELDS: &[FieldSpec] = &[
    spec("id", Field::AuctionId, FieldType::BigInt),
    spec("itemName", Field::ItemName, FieldType::Varchar),
    spec("description", Field::Description, FieldType::Varchar),
    spec("initialBid", Field::InitialBid, FieldType::BigInt),
    spec("reserve", Field::Reserve, FieldType::BigInt),
    spec("dateTime", Field::DateTime, FieldType::Timestamp),
    spec("expires", Field::Expires, FieldType::Timestamp),
    spec("seller", Field::Seller, FieldType::BigInt),
    spec("category", Field::Category, FieldType::BigInt),
    spec("extra", Field::Extra, FieldType::Varchar),
];

/// Lowercase without underscores, so that `dateTime`, `datetime` and `date_time` all match.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A declared column: the field it carries and the Arrow type to produce it as.
#[derive(Debug, Clone)]
struct Column {
    field: Field,
    data_type: DataType,
}

/// A table's options and declared columns, checked.
#[derive(Debug)]
struct Config {
    kind: Kind,
    /// `'events.num'`: the sequence ends before this event index.
    events: Option<u64>,
    /// `'events.per-second'`: event time and throttle.
    rate: Option<u64>,
    seed: u64,
    /// One per declared column, in declared order.
    columns: Vec<Column>,
}

impl Config {
    fn parse(table: &TableDef) -> Result<Self, ConnectorError> {
        check_known_options(table, KNOWN_OPTIONS)?;
        let kind = match table.options.get(OPT_TABLE) {
            None => {
                return Err(ConnectorError::option(
                    table,
                    format!("missing option '{OPT_TABLE}' (one of: {KINDS})"),
                ));
            }
            Some(value) => Kind::parse(value).ok_or_else(|| {
                ConnectorError::option(
                    table,
                    format!("option '{OPT_TABLE}' must be one of {KINDS}, got '{value}'"),
                )
            })?,
        };
        let events = parse_u64(table, OPT_EVENTS, "a non-negative integer", |_| true)?;
        let rate = parse_u64(table, OPT_RATE, "an integer from 1 to 1000000000", |rate| {
            (1..=MAX_RATE).contains(&rate)
        })?;
        let seed = parse_u64(table, OPT_SEED, "a non-negative integer", |_| true)?.unwrap_or(0);
        let columns = table
            .schema
            .fields()
            .iter()
            .map(|declared| {
                let wanted = normalize(declared.name());
                let spec = kind
                    .fields()
                    .iter()
                    .find(|spec| normalize(spec.name) == wanted)
                    .ok_or_else(|| {
                        ConnectorError::option(
                            table,
                            format!(
                                "column '{}' is not a field of nexmark {} events; {} fields: {}",
                                declared.name(),
                                kind.name(),
                                kind.name(),
                                kind.describe_fields()
                            ),
                        )
                    })?;
                if !spec.ty.fits(declared.data_type()) {
                    return Err(ConnectorError::option(
                        table,
                        format!(
                            "column '{}' is declared {} but nexmark {} field '{}' is {}, which \
                             needs {}; {} fields: {}",
                            declared.name(),
                            declared.data_type(),
                            kind.name(),
                            spec.name,
                            spec.ty.sql(),
                            spec.ty.arrow(),
                            kind.name(),
                            kind.describe_fields()
                        ),
                    ));
                }
                Ok(Column {
                    field: spec.field,
                    data_type: declared.data_type().clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            kind,
            events,
            rate,
            seed,
            columns,
        })
    }
}

/// An optional integer option; `what` describes the values that `ok` accepts, for the message.
fn parse_u64(
    table: &TableDef,
    key: &str,
    what: &str,
    ok: impl Fn(u64) -> bool,
) -> Result<Option<u64>, ConnectorError> {
    let Some(value) = table.options.get(key) else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(parsed) if ok(parsed) => Ok(Some(parsed)),
        _ => Err(ConnectorError::option(
            table,
            format!("option '{key}' must be {what}, got '{value}'"),
        )),
    }
}

/// One subtask's reader.
#[derive(Debug)]
struct NexmarkReader {
    generator: Generator,
    /// The projected columns, in output order.
    columns: Vec<Column>,
    schema: SchemaRef,
    cursor: Cursor,
    /// The first event index past the end (`u64::MAX`: unbounded).
    limit: u64,
    max_rows: usize,
    throttle: Option<Throttle>,
    /// The event indexes of the batch being built; kept to reuse its allocation.
    rows: Vec<u64>,
}

impl NexmarkReader {
    fn open(table: &TableDef, request: &SourceRequest) -> Result<Self, ConnectorError> {
        let config = Config::parse(table)?;
        let bug = |message: String| ConnectorError::Other {
            table: table.name.clone(),
            message,
        };
        let Subtask { index, count } = request.subtask;
        if index >= count {
            return Err(bug(format!("there is no subtask {index} of {count}")));
        }
        let projection = request
            .projection
            .clone()
            .unwrap_or_else(|| (0..config.columns.len()).collect());
        let columns = projection
            .iter()
            .map(|&i| {
                config.columns.get(i).cloned().ok_or_else(|| {
                    bug(format!(
                        "projected column {i} is not among the {} declared columns",
                        config.columns.len()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schema = table
            .schema
            .project(&projection)
            .map_err(|e| bug(format!("cannot project the declared schema: {e}")))?;
        let clock = Clock {
            rate: config.rate.unwrap_or(DEFAULT_RATE),
        };
        let needs_channels = columns
            .iter()
            .any(|c| matches!(c.field, Field::Channel | Field::Url));
        let (first_slot, slots) = config.kind.slots();
        Ok(Self {
            generator: Generator {
                table: table.name.clone(),
                kind: config.kind,
                seed: config.seed,
                clock,
                channels: needs_channels.then(|| ChannelTable::new(config.seed)),
            },
            columns,
            schema: Arc::new(schema),
            cursor: Cursor {
                epoch: index as u64,
                slot: 0,
                step: count as u64,
                first_slot,
                slots,
            },
            limit: config.events.unwrap_or(u64::MAX),
            max_rows: request.batch_size.clamp(1, MAX_BATCH_ROWS),
            throttle: config.rate.map(|_| Throttle { clock, start: None }),
            rows: Vec::new(),
        })
    }
}

impl SourceReader for NexmarkReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let first = self.cursor.index();
        if first >= self.limit {
            return Ok(None);
        }
        let bound = match &mut self.throttle {
            None => self.limit,
            Some(throttle) => {
                let last = self
                    .cursor
                    .nth(self.max_rows as u64 - 1)
                    .min(self.limit - 1);
                throttle.wait(first, last).min(self.limit)
            }
        };
        self.rows.clear();
        self.cursor.take(self.max_rows, bound, &mut self.rows);
        let columns = self
            .columns
            .iter()
            .map(|column| self.generator.column(column, &self.rows))
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows.len()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map(Some)
            .map_err(|e| self.generator.bug(format!("cannot assemble a batch: {e}")))
    }
}

/// Where a subtask is in the sequence: at slot `slot` of its kind's events in epoch `epoch`.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    epoch: u64,
    slot: u64,
    /// Subtasks: this one's next epoch after `epoch` is `epoch + step`.
    step: u64,
    /// `Kind::slots`.
    first_slot: u64,
    slots: u64,
}

impl Cursor {
    /// The event index of the next row.
    fn index(&self) -> u64 {
        self.nth(0)
    }

    /// The event index of the row `k` rows after the next one.
    fn nth(&self, k: u64) -> u64 {
        let t = self.slot.saturating_add(k);
        let epoch = self
            .epoch
            .saturating_add((t / self.slots).saturating_mul(self.step));
        epoch
            .saturating_mul(EPOCH)
            .saturating_add(self.first_slot + t % self.slots)
    }

    /// Appends the next event indexes below `bound` to `rows`, until it holds `max_rows`.
    fn take(&mut self, max_rows: usize, bound: u64, rows: &mut Vec<u64>) {
        while rows.len() < max_rows {
            let base = self
                .epoch
                .saturating_mul(EPOCH)
                .saturating_add(self.first_slot);
            let start = base.saturating_add(self.slot);
            if start >= bound {
                break;
            }
            let room = (max_rows - rows.len()) as u64;
            let end = base
                .saturating_add(self.slots)
                .min(start.saturating_add(room))
                .min(bound);
            rows.extend(start..end);
            self.slot = end - base;
            if self.slot == self.slots {
                self.epoch = self.epoch.saturating_add(self.step);
                self.slot = 0;
            }
        }
    }
}

/// Event time: event `index` happens `index / rate` seconds after the base time.
#[derive(Debug, Clone, Copy)]
struct Clock {
    rate: u64,
}

impl Clock {
    /// Nanoseconds from the base time to event `index`, rounded down.
    fn nanos(self, index: u64) -> u64 {
        // Split so that nothing overflows: the remainder times 1e9 is below 1e18 as rate <= 1e9.
        let whole = (index / self.rate).wrapping_mul(NANOS_PER_SECOND);
        whole.wrapping_add(index % self.rate * NANOS_PER_SECOND / self.rate)
    }

    /// Calls `emit(index, nanos(index))` for each row, stepping from one index to the next without
    /// a division (rows are mostly runs of consecutive indexes).
    #[inline]
    fn for_each(self, rows: &[u64], mut emit: impl FnMut(u64, u64)) {
        let rate = self.rate;
        let (step, step_remainder) = (NANOS_PER_SECOND / rate, NANOS_PER_SECOND % rate);
        // nanos = floor(index * 1e9 / rate); remainder = index * 1e9 mod rate.
        let (mut nanos, mut remainder) = (0u64, 0u64);
        let mut next = None;
        for &index in rows {
            if next == Some(index) {
                nanos = nanos.wrapping_add(step);
                remainder += step_remainder;
                if remainder >= rate {
                    remainder -= rate;
                    nanos = nanos.wrapping_add(1);
                }
            } else {
                nanos = self.nanos(index);
                remainder = index % rate * NANOS_PER_SECOND % rate;
            }
            next = index.checked_add(1);
            emit(index, nanos);
        }
    }
}

/// Holds batches back so that event `i` leaves no earlier than `i / rate` seconds after the first
/// batch: the subtasks together emit at most `rate` events per second, in event-time order.
#[derive(Debug)]
struct Throttle {
    clock: Clock,
    start: Option<Instant>,
}

impl Throttle {
    /// Sleeps until a batch from event `first` up to event `last` may leave (or until it has
    /// waited long enough), then returns the first event index that is not yet due.
    fn wait(&mut self, first: u64, last: u64) -> u64 {
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = |index| Duration::from_nanos(self.clock.nanos(index));
        let wake = due(last).min(due(first) + MAX_BATCH_DELAY);
        if let Some(rest) = wake.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
        // Event i is due once floor(i * 1e9 / rate) <= elapsed, that is i * 1e9 < (elapsed + 1) *
        // rate: the due events are those below ceil((elapsed + 1) * rate / 1e9).
        let elapsed = start.elapsed().as_nanos();
        let ns = u128::from(NANOS_PER_SECOND);
        let due_count = ((elapsed + 1) * u128::from(self.clock.rate)).div_ceil(ns);
        u64::try_from(due_count)
            .unwrap_or(u64::MAX)
            .max(first.saturating_add(1))
    }
}

/// Fills columns for a list of event indexes.
#[derive(Debug)]
struct Generator {
    table: String,
    kind: Kind,
    seed: u64,
    clock: Clock,
    /// Built only when `channel` or `url` is read.
    channels: Option<ChannelTable>,
}

impl Generator {
    fn bug(&self, message: String) -> ConnectorError {
        ConnectorError::Other {
            table: self.table.clone(),
            message,
        }
    }

    fn stream(&self, field: Field) -> Stream {
        Stream::new(self.seed, field as u64)
    }

    fn column(&self, column: &Column, rows: &[u64]) -> Result<ArrayRef, ConnectorError> {
        let pools = pools();
        let prices = price_steps();
        let s = self.stream(column.field);
        let array = match column.field {
            Field::DateTime => self.timestamps(rows, &column.data_type, None)?,
            Field::Expires => self.timestamps(rows, &column.data_type, Some(s))?,
            Field::Extra => {
                let extra = self.kind.extra();
                strings(rows, extra.max(), |i, out| {
                    let r = s.at(i);
                    let start = pool_start(r);
                    let longest = &pools.letters[start..start + extra.max()];
                    push_prefix(out, longest, extra.pick(r));
                })
            }

            Field::Auction => ints(rows, |i| bid_auction(i, s.at(i))),
            Field::Bidder => ints(rows, |i| bid_bidder(i, s.at(i))),
            Field::Price => ints(rows, |i| price(prices, s.at(i))),
            Field::Channel | Field::Url => {
                let Some(table) = &self.channels else {
                    return Err(self.bug("the channel table was not built".to_string()));
                };
                // Channel and url come from the same draw: a url belongs to its channel.
                let s = self.stream(Field::Channel);
                let entries = if column.field == Field::Channel {
                    &table.names
                } else {
                    &table.urls
                };
                strings(rows, entries.stride, |i, out| {
                    let (slot, len) = entries.slot(channel_slot(s.at(i)));
                    push_prefix(out, slot, len);
                })
            }

            Field::PersonId => ints(rows, |i| FIRST_PERSON_ID + last_person(i)),
            Field::Name => strings(rows, 14, |i, out| {
                let r = s.at(i);
                out.extend_from_slice(pick(&FIRST_NAMES, r).as_bytes());
                out.push(b' ');
                out.extend_from_slice(pick(&LAST_NAMES, r.rotate_left(32)).as_bytes());
            }),
            Field::EmailAddress => strings(rows, 15, |i, out| {
                // Beam's local part is 3 to 6 characters, the domain 3 or 4, then ".com".
                let r = s.at(i);
                let local_len = 3 + below(r, 4) as usize;
                let domain_len = 3 + below(r.rotate_left(32), 2) as usize;
                out.extend_from_slice(pool_slice(&pools.letters, r, local_len));
                out.push(b'@');
                out.extend_from_slice(pool_slice(&pools.letters, r >> 16, domain_len));
                out.extend_from_slice(b".com");
            }),
            Field::CreditCard => strings(rows, 19, |i, out| {
                // Four groups of four digits: 16 digits from one draw.
                let mut digits = below(s.at(i), 10_000_000_000_000_000);
                let mut card = [b' '; 19];
                for (pos, byte) in card.iter_mut().enumerate().rev() {
                    if pos % 5 != 4 {
                        *byte = b'0' + (digits % 10) as u8;
                        digits /= 10;
                    }
                }
                out.extend_from_slice(&card);
            }),
            Field::City => strings(rows, 13, |i, out| {
                out.extend_from_slice(pick(&US_CITIES, s.at(i)).as_bytes());
            }),
            Field::State => strings(rows, 2, |i, out| {
                out.extend_from_slice(pick(&US_STATES, s.at(i)).as_bytes());
            }),

            Field::AuctionId => ints(rows, |i| {
                FIRST_AUCTION_ID + i / EPOCH * AUCTIONS_PER_EPOCH + i % EPOCH - 1
            }),
            // Beam's item names and descriptions: up to 20 and 100 characters with spaces, trimmed.
            Field::ItemName => strings(rows, 19, |i, out| {
                let r = s.at(i);
                out.extend_from_slice(pool_slice(&pools.spaced, r, 3 + below(r, 17) as usize));
            }),
            Field::Description => strings(rows, 99, |i, out| {
                let r = s.at(i);
                out.extend_from_slice(pool_slice(&pools.spaced, r, 3 + below(r, 97) as usize));
            }),
            Field::InitialBid => ints(rows, |i| price(prices, s.at(i))),
            Field::Reserve => {
                let initial = self.stream(Field::InitialBid);
                ints(rows, |i| {
                    price(prices, initial.at(i)) + price(prices, s.at(i))
                })
            }
            Field::Seller => ints(rows, |i| seller(i, s.at(i))),
            Field::Category => ints(rows, |i| FIRST_CATEGORY_ID + below(s.at(i), NUM_CATEGORIES)),
        };
        Ok(array)
    }

    /// `dateTime` or, with the `expires` stream, `expires`, in the declared unit and time zone.
    fn timestamps(
        &self,
        rows: &[u64],
        data_type: &DataType,
        expires: Option<Stream>,
    ) -> Result<ArrayRef, ConnectorError> {
        let DataType::Timestamp(unit, zone) = data_type else {
            return Err(self.bug(format!("{data_type} is not a timestamp type")));
        };
        let zone = zone.clone();
        let array: ArrayRef = match unit {
            TimeUnit::Second => Arc::new(
                TimestampSecondArray::new(self.times::<1_000_000_000>(rows, expires), None)
                    .with_timezone_opt(zone),
            ),
            TimeUnit::Millisecond => Arc::new(
                TimestampMillisecondArray::new(self.times::<1_000_000>(rows, expires), None)
                    .with_timezone_opt(zone),
            ),
            TimeUnit::Microsecond => Arc::new(
                TimestampMicrosecondArray::new(self.times::<1_000>(rows, expires), None)
                    .with_timezone_opt(zone),
            ),
            TimeUnit::Nanosecond => Arc::new(
                TimestampNanosecondArray::new(self.times::<1>(rows, expires), None)
                    .with_timezone_opt(zone),
            ),
        };
        Ok(array)
    }

    /// Times in units of `NANOS_PER_UNIT` nanoseconds since the Unix epoch (a constant, so that the
    /// division compiles to a multiplication).
    fn times<const NANOS_PER_UNIT: u64>(
        &self,
        rows: &[u64],
        expires: Option<Stream>,
    ) -> ScalarBuffer<i64> {
        let base = BASE_TIME_SECONDS * (NANOS_PER_SECOND / NANOS_PER_UNIT) as i64;
        let mut values = Vec::with_capacity(rows.len());
        match expires {
            None => self.clock.for_each(rows, |_, nanos| {
                values.push(base.wrapping_add((nanos / NANOS_PER_UNIT) as i64));
            }),
            Some(s) => {
                // Beam's auctions last from 1 ms up to twice the time that IN_FLIGHT_AUCTIONS
                // auctions take to appear.
                let horizon = self
                    .clock
                    .nanos(IN_FLIGHT_AUCTIONS * EPOCH / AUCTIONS_PER_EPOCH);
                let spread = horizon.saturating_mul(2).max(1);
                self.clock.for_each(rows, |i, nanos| {
                    let length = MIN_AUCTION_NANOS + below(s.at(i), spread);
                    let end = nanos.wrapping_add(length);
                    values.push(base.wrapping_add((end / NANOS_PER_UNIT) as i64));
                });
            }
        }
        ScalarBuffer::from(values)
    }
}

/// A string column: `fill` appends row `i`'s bytes, at most `max_len` of them, all ASCII
/// (from the pools, constants and digits).
fn strings(rows: &[u64], max_len: usize, mut fill: impl FnMut(u64, &mut Vec<u8>)) -> ArrayRef {
    // Room for the longest strings: growing the buffer would copy it.
    let mut values = Vec::with_capacity(rows.len() * max_len);
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0i32);
    for &i in rows {
        fill(i, &mut values);
        // Cannot truncate: MAX_BATCH_ROWS rows of at most 512 bytes.
        offsets.push(values.len() as i32);
    }
    debug_assert!(values.is_ascii() && values.len() <= i32::MAX as usize);
    // SAFETY: the offsets start at 0 and never decrease, the last is the values' length, and
    // the values are ASCII, hence UTF-8 with every offset a char boundary: `try_new` would
    // succeed; its checks would only be a second pass over every offset and every byte.
    let array = unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
            Buffer::from_vec(values),
            None,
        )
    };
    Arc::new(array)
}

fn ints(rows: &[u64], value: impl Fn(u64) -> u64) -> ArrayRef {
    // Ids and prices stay far below 2^63.
    let values: Vec<i64> = rows.iter().map(|&i| value(i) as i64).collect();
    Arc::new(Int64Array::from(values))
}

/// Base-0 id of the latest person at or before event `index` (each epoch starts with a person).
fn last_person(index: u64) -> u64 {
    index / EPOCH
}

/// Base-0 id of the latest auction before bid event `index` (each epoch's auctions precede its
/// bids).
fn last_auction_before_bid(index: u64) -> u64 {
    index / EPOCH * AUCTIONS_PER_EPOCH + AUCTIONS_PER_EPOCH - 1
}

/// Beam's `if (nextInt(ratio) > 0) hot else other`, true for `(ratio - 1) / ratio` of the draws.
/// Both values are computed up front: the choice is a fresh coin flip for each row, which a
/// branch would mispredict often (it made the bid columns four times slower).
#[inline]
fn hot_or<T>(r: u64, ratio: u64, hot: T, other: T) -> T {
    std::hint::select_unpredictable(!r.is_multiple_of(ratio), hot, other)
}

/// A bid's auction: the hot one (the first of the latest pair of auctions) or one in flight.
fn bid_auction(index: u64, r: u64) -> u64 {
    let last = last_auction_before_bid(index);
    let first = last.saturating_sub(IN_FLIGHT_AUCTIONS);
    let hot = last / HOT_AUCTION_RATIO * HOT_AUCTION_RATIO;
    FIRST_AUCTION_ID
        + hot_or(
            r,
            HOT_AUCTION_RATIO,
            hot,
            first + below(r, last - first + 1),
        )
}

/// A bid's bidder: the hot one or an active person.
fn bid_bidder(index: u64, r: u64) -> u64 {
    let last = last_person(index);
    // Beam's hot bidder is the second person of the latest group of HOT_BIDDER_RATIO, so that it
    // is never a hot seller (the first). Until that person exists, it is the previous group's
    // second, or the only person.
    let second = last / HOT_BIDDER_RATIO * HOT_BIDDER_RATIO + 1;
    let hot = if second <= last {
        second
    } else if second > HOT_BIDDER_RATIO {
        second - HOT_BIDDER_RATIO
    } else {
        last
    };
    FIRST_PERSON_ID + hot_or(r, HOT_BIDDER_RATIO, hot, active_person(index, r))
}

/// An auction's seller: the hot one (the first of the latest group of persons) or an active one.
fn seller(index: u64, r: u64) -> u64 {
    let hot = last_person(index) / HOT_SELLER_RATIO * HOT_SELLER_RATIO;
    FIRST_PERSON_ID + hot_or(r, HOT_SELLER_RATIO, hot, active_person(index, r))
}

/// Base-0 id of one of the latest ACTIVE_PEOPLE persons at event `index`.
fn active_person(index: u64, r: u64) -> u64 {
    let last = last_person(index);
    let first = (last + 1).saturating_sub(ACTIVE_PEOPLE);
    first + below(r, last - first + 1)
}

/// Beam's prices: 10^(6u) × 100 cents for a uniform u, so from $1 to $1,000,000, log-uniform.
/// Interpolated between `PRICE_STEPS` powers of ten (within 0.003% of the exact power): a call to
/// `exp` cost more than all the rest of the price column.
fn price(steps: &[f64; PRICE_STEPS + 1], r: u64) -> u64 {
    const FRACTION_BITS: u32 = 64 - PRICE_STEP_BITS;
    let step = (r >> FRACTION_BITS) as usize;
    // The fraction's 53 high bits, as a double in [0, 1).
    let fraction = ((r << PRICE_STEP_BITS) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let (low, high) = (steps[step], steps[step + 1]);
    // Through i64: one instruction converts a double to it, where u64 takes several.
    (((high - low) * fraction + low) * 100.0 + 0.5) as i64 as u64
}

const PRICE_STEP_BITS: u32 = 10;
const PRICE_STEPS: usize = 1 << PRICE_STEP_BITS;

/// 10^(6 × i / PRICE_STEPS) for i in 0..=PRICE_STEPS.
fn price_steps() -> &'static [f64; PRICE_STEPS + 1] {
    static STEPS: OnceLock<[f64; PRICE_STEPS + 1]> = OnceLock::new();
    STEPS.get_or_init(|| std::array::from_fn(|i| 10f64.powf(6.0 * i as f64 / PRICE_STEPS as f64)))
}

/// The channel table's entry for a bid: a hot channel, or one of CHANNELS others.
fn channel_slot(r: u64) -> usize {
    let hot = (r >> 1) % HOT_CHANNELS.len() as u64;
    let other = HOT_CHANNELS.len() as u64 + below(r, CHANNELS);
    hot_or(r, HOT_CHANNEL_RATIO, hot, other) as usize
}

/// Every channel's name and url: the hot ones, then `channel-0` … `channel-9999`.
#[derive(Debug)]
struct ChannelTable {
    names: StringTable,
    urls: StringTable,
}

impl ChannelTable {
    /// Built once per reader (10,004 short strings) so that bids only copy bytes.
    fn new(seed: u64) -> Self {
        let urls_stream = Stream::new(seed, STREAM_URLS);
        let mut names: Vec<String> = HOT_CHANNELS.iter().map(|n| n.to_string()).collect();
        let mut urls: Vec<String> = (0..HOT_CHANNELS.len() as u64)
            .map(|i| base_url(urls_stream.at(i)))
            .collect();
        for channel in 0..CHANNELS {
            names.push(format!("channel-{channel}"));
            let r = urls_stream.at(HOT_CHANNELS.len() as u64 + channel);
            let mut url = base_url(r);
            // As Beam: most channels' urls carry a channel id (its number's bits reversed).
            if below(r.rotate_left(32), 10) > 0 {
                let id = (channel as u32).reverse_bits();
                url.push_str(&format!("&channel_id={id}"));
            }
            urls.push(url);
        }
        Self {
            names: StringTable::new(&names),
            urls: StringTable::new(&urls),
        }
    }
}

/// Beam's item url: three random path segments of 3 or 4 characters (letters, sometimes `_`).
fn base_url(r: u64) -> String {
    let mut rng = SplitMix(r);
    let mut url = String::from("https://www.nexmark.com");
    for _ in 0..3 {
        url.push('/');
        let len = 3 + below(rng.next(), 2);
        for _ in 0..len {
            let r = rng.next();
            url.push(if below(r, 13) == 0 {
                '_'
            } else {
                char::from(b'a' + below(r.rotate_left(32), 26) as u8)
            });
        }
    }
    url.push_str("/item.htm?query=1");
    url
}

/// Short strings in fixed-size slots, so that fetching one touches one place in memory (the
/// lengths are small enough to stay in cache).
struct StringTable {
    bytes: Vec<u8>,
    lens: Vec<u8>,
    /// Slot size: the longest string's length.
    stride: usize,
}

impl StringTable {
    /// Every string is shorter than 256 bytes.
    fn new(strings: &[String]) -> Self {
        let stride = strings.iter().map(String::len).max().unwrap_or(0);
        debug_assert!(stride <= usize::from(u8::MAX));
        let mut bytes = vec![0; strings.len() * stride];
        for (slot, s) in bytes.chunks_exact_mut(stride.max(1)).zip(strings) {
            slot[..s.len()].copy_from_slice(s.as_bytes());
        }
        let lens = strings.iter().map(|s| s.len() as u8).collect();
        Self {
            bytes,
            lens,
            stride,
        }
    }

    /// String `i`'s slot (`stride` bytes) and its length in it.
    #[inline]
    fn slot(&self, i: usize) -> (&[u8], usize) {
        let start = i * self.stride;
        (
            &self.bytes[start..start + self.stride],
            usize::from(self.lens[i]),
        )
    }
}

impl std::fmt::Debug for StringTable {
    // The strings themselves are hundreds of kilobytes of noise.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StringTable")
            .field("len", &self.lens.len())
            .field("stride", &self.stride)
            .finish_non_exhaustive()
    }
}

/// The random stream for channel urls; fields' streams are their discriminants.
const STREAM_URLS: u64 = 1000;

/// The golden-ratio increment of splitmix64.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's output function: a bijective mix of 64 bits.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One random number per event index for one field: the `index`-th output of a splitmix64
/// generator whose state starts from a mix of the seed and the field. Counter-based, so any event
/// is drawn without drawing the ones before it.
#[derive(Debug, Clone, Copy)]
struct Stream(u64);

impl Stream {
    fn new(seed: u64, id: u64) -> Self {
        Self(mix64(seed ^ mix64(id.wrapping_add(1).wrapping_mul(GOLDEN))))
    }

    #[inline]
    fn at(self, index: u64) -> u64 {
        mix64(self.0.wrapping_add(index.wrapping_mul(GOLDEN)))
    }
}

/// A sequential splitmix64, for the tables built once.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }
}

/// A number in `0..n` from the high bits of `r` (Lemire's multiply-shift; the bias is at most
/// n / 2^64).
#[inline]
fn below(r: u64, n: u64) -> u64 {
    ((u128::from(r) * u128::from(n)) >> 64) as u64
}

#[inline]
fn pick<'a>(choices: &[&'a str], r: u64) -> &'a str {
    choices[below(r, choices.len() as u64) as usize]
}

/// How long an `extra` is: `min + below(spread)` bytes, that is the average ±20%, as in Beam.
#[derive(Debug, Clone, Copy)]
struct ExtraLength {
    min: u64,
    spread: u64,
}

impl ExtraLength {
    const fn around(average: u64) -> Self {
        let delta = (average + 2) / 5;
        Self {
            min: average - delta,
            spread: 2 * delta,
        }
    }

    fn max(self) -> usize {
        (self.min + self.spread) as usize
    }

    #[inline]
    fn pick(self, r: u64) -> usize {
        (self.min + below(r, self.spread)) as usize
    }
}

/// Random text that strings are sliced from: cheaper than drawing each character, and as good
/// for a benchmark's padding and names.
#[derive(Debug)]
struct Pools {
    /// Lowercase letters.
    letters: Vec<u8>,
    /// Lowercase letters and, one in 13, a space (Beam's `nextString`).
    spaced: Vec<u8>,
}

/// Slices start anywhere in the first POOL_LEN bytes; POOL_SLACK more hold the longest string.
const POOL_LEN: usize = 1 << 16;
const POOL_SLACK: usize = 512;

fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(|| {
        // A fixed seed: the pools are part of the generator, the same for every 'seed'.
        let mut rng = SplitMix(0x6e65_786d_6172_6b21);
        let letter = |r: u64| b'a' + below(r, 26) as u8;
        let letters = (0..POOL_LEN + POOL_SLACK)
            .map(|_| letter(rng.next()))
            .collect();
        let spaced = (0..POOL_LEN + POOL_SLACK)
            .map(|_| {
                let r = rng.next();
                if below(r, 13) == 0 {
                    b' '
                } else {
                    letter(r.rotate_left(32))
                }
            })
            .collect();
        Pools { letters, spaced }
    })
}

/// Where a string starts in a pool: the low bits of `r`.
#[inline]
fn pool_start(r: u64) -> usize {
    (r as usize) & (POOL_LEN - 1)
}

/// `len` bytes of `pool` from `pool_start(r)`, without leading or trailing spaces.
#[inline]
fn pool_slice(pool: &[u8], r: u64, len: usize) -> &[u8] {
    let start = pool_start(r);
    pool[start..start + len].trim_ascii()
}

/// Appends the first `len` bytes of `source`. Copies all of `source`, then drops the rest: a copy
/// of the same size for every row, where one of each row's size would branch on it.
#[inline]
fn push_prefix(out: &mut Vec<u8>, source: &[u8], len: usize) {
    let end = out.len() + len;
    out.extend_from_slice(source);
    out.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::{BTreeMap, HashMap};

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{
        Int64Type, Schema, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    };
    use arrow::util::display::{ArrayFormatter, FormatOptions};

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
}
