//! The event model: each field's value for an event index, filled column by column.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, TimeUnit};

use super::random::{
    STREAM_LATENESS, STREAM_URLS, SplitMix, Stream, StringTable, below, pick, pool_slice,
    pool_start, pools, push_prefix,
};
use super::reader::Clock;
use super::{AUCTIONS_PER_EPOCH, Column, EPOCH, Field, Kind, NANOS_PER_SECOND};
use crate::connector::ConnectorError;

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
pub(super) const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
/// Channels that are not hot are `channel-0` … `channel-9999`.
const CHANNELS: u64 = 10_000;

pub(super) const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
pub(super) const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
pub(super) const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
pub(super) const US_CITIES: [&str; 10] = [
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

/// 2026-01-01T00:00:00Z in seconds since the Unix epoch: event 0's `dateTime`.
pub(super) const BASE_TIME_SECONDS: i64 = 1_767_225_600;
/// The shortest auction, as in Beam.
const MIN_AUCTION_NANOS: u64 = 1_000_000;

/// Fills columns for a list of event indexes.
#[derive(Debug)]
pub(super) struct Generator {
    table: String,
    kind: Kind,
    seed: u64,
    clock: Clock,
    /// The most an event's time falls behind its place in the sequence (ns).
    out_of_orderness: u64,
    /// Built only when `channel` or `url` is read.
    channels: Option<ChannelTable>,
}

impl Generator {
    /// A generator for `columns` of `kind`'s events; it builds the channel table only if they
    /// read `channel` or `url`.
    pub(super) fn new(
        table: String,
        kind: Kind,
        seed: u64,
        clock: Clock,
        out_of_orderness: u64,
        columns: &[Column],
    ) -> Self {
        let needs_channels = columns
            .iter()
            .any(|c| matches!(c.field, Field::Channel | Field::Url));
        Self {
            table,
            kind,
            seed,
            clock,
            out_of_orderness,
            channels: needs_channels.then(|| ChannelTable::new(seed)),
        }
    }

    pub(super) fn bug(&self, message: String) -> ConnectorError {
        ConnectorError::Other {
            table: self.table.clone(),
            message,
        }
    }

    fn stream(&self, field: Field) -> Stream {
        Stream::new(self.seed, field as u64)
    }

    pub(super) fn column(&self, column: &Column, rows: &[u64]) -> Result<ArrayRef, ConnectorError> {
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
            None if self.out_of_orderness > 0 => {
                // Each event falls behind its place by a random lag of at most the bound, so a
                // watermark trailing the largest time seen by the bound never passes a later one.
                let lateness = Stream::new(self.seed, STREAM_LATENESS);
                let spread = self.out_of_orderness.saturating_add(1);
                self.clock.for_each(rows, |i, nanos| {
                    let nanos = nanos.saturating_sub(below(lateness.at(i), spread));
                    values.push(base.wrapping_add((nanos / NANOS_PER_UNIT) as i64));
                });
            }
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
