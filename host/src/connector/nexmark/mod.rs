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

mod generator;
mod random;
mod reader;
#[cfg(test)]
mod tests;

use arrow::datatypes::DataType;

use self::random::ExtraLength;
use self::reader::NexmarkReader;
use super::{ConnectorError, SourceReader, SourceRequest, TableDef, check_known_options};

const OPT_TABLE: &str = "nexmark.table";
const OPT_EVENTS: &str = "events.num";
const OPT_RATE: &str = "events.per-second";
const OPT_THROTTLE: &str = "events.throttle";
const OPT_SEED: &str = "seed";
const OPT_OUT_OF_ORDERNESS: &str = "events.out-of-orderness";
const KNOWN_OPTIONS: &[&str] = &[
    OPT_TABLE,
    OPT_EVENTS,
    OPT_RATE,
    OPT_THROTTLE,
    OPT_SEED,
    OPT_OUT_OF_ORDERNESS,
];
const KINDS: &str = "bid, person, auction";

/// Events per epoch; each kind's place in it is `Kind::slots`.
const EPOCH: u64 = 50;
const AUCTIONS_PER_EPOCH: u64 = 3;

/// Lengths of `extra`: Beam pads each event to an average size (bid 100, person 200, auction 500
/// bytes) minus what its other fields take on average, ±20%. The padding does not depend on the
/// event's other strings here, so that each column can be generated alone.
const BID_EXTRA: ExtraLength = ExtraLength::around(100 - 32);
const PERSON_EXTRA: ExtraLength = ExtraLength::around(200 - 60);
const AUCTION_EXTRA: ExtraLength = ExtraLength::around(500 - 110);

const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// Events per second of event time when `'events.per-second'` is absent.
const DEFAULT_RATE: u64 = 10_000_000;
/// One event per nanosecond: event times are whole nanoseconds.
const MAX_RATE: u64 = NANOS_PER_SECOND;

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
    /// `'events.throttle'` (default true): pace reading to the rate's wall-clock time; false
    /// keeps the rate's event times but reads as fast as it can (tests, benchmarks).
    throttle: bool,
    seed: u64,
    /// `'events.out-of-orderness'`: each event's time is up to this much (ns) before its place
    /// in the sequence says.
    out_of_orderness_nanos: u64,
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
        let throttle = match table.options.get(OPT_THROTTLE).map(String::as_str) {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(ConnectorError::option(
                    table,
                    format!("option '{OPT_THROTTLE}' is true or false, not '{other}'"),
                ));
            }
        };
        let seed = parse_u64(table, OPT_SEED, "a non-negative integer", |_| true)?.unwrap_or(0);
        let out_of_orderness_nanos = match table.options.get(OPT_OUT_OF_ORDERNESS) {
            None => 0,
            Some(value) => duration_nanos(value).ok_or_else(|| {
                ConnectorError::option(
                    table,
                    format!(
                        "option '{OPT_OUT_OF_ORDERNESS}' must be a duration such as '5 s', \
                         '200 ms' or '2 min', got '{value}'"
                    ),
                )
            })?,
        };
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
            throttle,
            seed,
            out_of_orderness_nanos,
            columns,
        })
    }
}

/// A duration as Flink writes them: `5 s`, `200 ms`, `2 min`, `1 h`, or bare milliseconds.
fn duration_nanos(value: &str) -> Option<u64> {
    crate::connector::duration(value).and_then(|d| u64::try_from(d.as_nanos()).ok())
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
