//! Event time: how a source makes watermarks from its rows, and how an operator combines those
//! of its inputs.
//!
//! As in Flink, a source's watermark trails the largest event time it has read by the table's
//! bounded out-of-orderness (and 1 ms: a row exactly at the watermark is still on time), an
//! operator's watermark is the minimum over its inputs, and an input that has ended holds nothing
//! back: the end of bounded input is a watermark of +infinity, so every window fires.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use arrow::array::AsArray;
use arrow::array::{Array, ArrayRef};
use arrow::compute::max;
use arrow::datatypes::{
    DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};

use crate::connector::SplitRows;
use crate::plan::SourceWatermark;

/// The watermark after every row has been seen.
pub const END_OF_TIME: i64 = i64::MAX;

/// One source subtask's watermark, advanced by the batches it reads.
///
/// A reader of several splits (Kafka partitions) has a watermark per split, as Flink's
/// per-partition watermarks: the subtask's is the least over the splits that are open and not
/// idle (`'scan.watermark.idle-timeout'`), so that one partition running ahead does not make
/// another's rows late. A split that has read nothing yet holds the watermark back until it
/// reads, or goes idle.
#[derive(Debug)]
pub(crate) struct SourceWatermarks {
    spec: SourceWatermark,
    /// The largest event time read so far (ms), if any.
    max_seen: Option<i64>,
    emitted: i64,
    /// Per split, by the reader's split index (empty: the reader has no splits).
    splits: Vec<SplitClock>,
}

#[derive(Debug, Clone, Copy)]
struct SplitClock {
    max_seen: Option<i64>,
    /// When the split last brought rows (or was first seen).
    last_rows: Instant,
}

impl SourceWatermarks {
    pub(crate) fn new(spec: SourceWatermark) -> Self {
        Self {
            spec,
            max_seen: None,
            emitted: i64::MIN,
            splits: Vec::new(),
        }
    }

    /// Takes in a batch's event-time column (and, for a reader of several splits, where each
    /// row came from); the new watermark if it advanced. Called for empty batches too: a split
    /// that has gone idle since may let the watermark advance.
    pub(crate) fn observe(
        &mut self,
        splits: Option<&SplitRows>,
        times: &ArrayRef,
    ) -> Result<Option<i64>, String> {
        self.observe_at(splits, times, Instant::now())
    }

    fn observe_at(
        &mut self,
        splits: Option<&SplitRows>,
        times: &ArrayRef,
        now: Instant,
    ) -> Result<Option<i64>, String> {
        let candidate = match splits {
            None => {
                let Some(batch_max) = max_millis(times)? else {
                    return Ok(None);
                };
                let max_seen = self.max_seen.map_or(batch_max, |m| m.max(batch_max));
                self.max_seen = Some(max_seen);
                max_seen
            }
            Some(splits) => match self.observe_splits(splits, times, now)? {
                Some(candidate) => candidate,
                None => return Ok(None),
            },
        };
        let watermark = candidate
            .saturating_sub(self.spec.delay_millis)
            .saturating_sub(1);
        if watermark > self.emitted {
            self.emitted = watermark;
            Ok(Some(watermark))
        } else {
            Ok(None)
        }
    }

    /// Advances each split's largest time; the least over the open splits that are not idle
    /// (`None` while one of them has read nothing, or when none is active: an all-idle subtask
    /// goes idle downstream instead).
    fn observe_splits(
        &mut self,
        splits: &SplitRows,
        times: &ArrayRef,
        now: Instant,
    ) -> Result<Option<i64>, String> {
        if self.splits.len() < splits.open.len() {
            self.splits.resize(
                splits.open.len(),
                SplitClock {
                    max_seen: None,
                    last_rows: now,
                },
            );
        }
        if splits.rows.len() != times.len() {
            return Err(format!(
                "the source said where {} rows came from, in a batch of {}",
                splits.rows.len(),
                times.len()
            ));
        }
        let millis = millis_per_row(times)?;
        for (&split, time) in splits.rows.iter().zip(millis) {
            let Some(clock) = self.splits.get_mut(split as usize) else {
                return Err(format!(
                    "the source named split {split}, which it does not have"
                ));
            };
            clock.last_rows = now;
            if let Some(time) = time {
                clock.max_seen = Some(clock.max_seen.map_or(time, |m| m.max(time)));
                self.max_seen = Some(self.max_seen.map_or(time, |m| m.max(time)));
            }
        }
        let idle_after = self.idle_timeout();
        let mut least: Option<i64> = None;
        for (clock, &open) in self.splits.iter().zip(&splits.open) {
            let idle = idle_after.is_some_and(|t| now.duration_since(clock.last_rows) >= t);
            if !open || idle {
                continue;
            }
            let Some(seen) = clock.max_seen else {
                return Ok(None);
            };
            least = Some(least.map_or(seen, |l| l.min(seen)));
        }
        Ok(least)
    }

    pub(crate) fn column(&self) -> usize {
        self.spec.column
    }

    /// What a checkpoint keeps of the generator: the event time the emitted watermark trails
    /// (for one clock, the largest time read).
    pub(crate) fn checkpointed(&self) -> Option<i64> {
        if self.splits.is_empty() {
            return self.max_seen;
        }
        self.emitted()
            .map(|w| w.saturating_add(1).saturating_add(self.spec.delay_millis))
    }

    /// Resumes after a restore as if the rows up to `seen` had just been read (without
    /// emitting: downstream operators restored their own watermarks). Splits start again from
    /// nothing, and the watermark never goes back below this.
    pub(crate) fn restore(&mut self, seen: i64) {
        self.max_seen = Some(seen);
        self.emitted = seen
            .saturating_sub(self.spec.delay_millis)
            .saturating_sub(1);
        self.splits.clear();
    }

    /// The last watermark emitted, if any.
    pub(crate) fn emitted(&self) -> Option<i64> {
        (self.emitted > i64::MIN).then_some(self.emitted)
    }

    pub(crate) fn idle_timeout(&self) -> Option<std::time::Duration> {
        self.spec
            .idle_timeout_millis
            .map(std::time::Duration::from_millis)
    }
}

/// Each value of a timestamp column in milliseconds (floored).
fn millis_per_row(times: &ArrayRef) -> Result<Vec<Option<i64>>, String> {
    fn scaled<T: arrow::datatypes::ArrowPrimitiveType<Native = i64>>(
        times: &ArrayRef,
        to_millis: impl Fn(i64) -> i64,
    ) -> Vec<Option<i64>> {
        times
            .as_primitive::<T>()
            .iter()
            .map(|v| v.map(&to_millis))
            .collect()
    }
    let DataType::Timestamp(unit, _) = times.data_type() else {
        return Err(format!(
            "the event-time column is {}, not a TIMESTAMP",
            times.data_type()
        ));
    };
    Ok(match unit {
        TimeUnit::Second => scaled::<TimestampSecondType>(times, |v| v.saturating_mul(1_000)),
        TimeUnit::Millisecond => scaled::<TimestampMillisecondType>(times, |v| v),
        TimeUnit::Microsecond => scaled::<TimestampMicrosecondType>(times, |v| v.div_euclid(1_000)),
        TimeUnit::Nanosecond => {
            scaled::<TimestampNanosecondType>(times, |v| v.div_euclid(1_000_000))
        }
    })
}

/// The largest value of a timestamp column in milliseconds (floored), or `None` if all null.
pub(crate) fn max_millis(times: &ArrayRef) -> Result<Option<i64>, String> {
    let DataType::Timestamp(unit, _) = times.data_type() else {
        return Err(format!(
            "the event-time column is {}, not a TIMESTAMP",
            times.data_type()
        ));
    };
    Ok(match unit {
        TimeUnit::Second => {
            max(times.as_primitive::<TimestampSecondType>()).map(|v| v.saturating_mul(1_000))
        }
        TimeUnit::Millisecond => max(times.as_primitive::<TimestampMillisecondType>()),
        TimeUnit::Microsecond => {
            max(times.as_primitive::<TimestampMicrosecondType>()).map(|v| v.div_euclid(1_000))
        }
        TimeUnit::Nanosecond => {
            max(times.as_primitive::<TimestampNanosecondType>()).map(|v| v.div_euclid(1_000_000))
        }
    })
}

/// An operator subtask's watermark: the minimum of the latest watermark from each upstream
/// subtask, once every one has sent one.
#[derive(Debug)]
pub(crate) struct InputWatermarks {
    inputs: usize,
    latest: HashMap<usize, i64>,
    /// Senders that declared themselves idle (`'scan.watermark.idle-timeout'`): they hold
    /// nothing back until they send a watermark again.
    idle: HashSet<usize>,
    current: i64,
}

impl InputWatermarks {
    pub(crate) fn new(inputs: usize) -> Self {
        Self {
            inputs,
            latest: HashMap::new(),
            idle: HashSet::new(),
            current: i64::MIN,
        }
    }

    /// Records `watermark` from upstream subtask `sender` (active again if it was idle); the
    /// combined watermark if it advanced.
    pub(crate) fn update(&mut self, sender: usize, watermark: i64) -> Option<i64> {
        self.idle.remove(&sender);
        let latest = self.latest.entry(sender).or_insert(i64::MIN);
        // Watermarks never go back, even if a sender's do.
        *latest = (*latest).max(watermark);
        self.advance()
    }

    /// `sender` has ended: it holds time back no more.
    pub(crate) fn end(&mut self, sender: usize) -> Option<i64> {
        self.update(sender, END_OF_TIME)
    }

    /// `sender` is idle: the combined watermark if that let it advance.
    pub(crate) fn idle(&mut self, sender: usize) -> Option<i64> {
        self.idle.insert(sender);
        self.advance()
    }

    /// Whether every input is idle (the operator is then idle too, downstream).
    pub(crate) fn all_idle(&self) -> bool {
        self.idle.len() >= self.inputs
    }

    /// The minimum over the inputs that are not idle, once every input has spoken.
    fn advance(&mut self) -> Option<i64> {
        let spoken = self.latest.len()
            + self
                .idle
                .iter()
                .filter(|s| !self.latest.contains_key(s))
                .count();
        if spoken < self.inputs {
            return None;
        }
        let active = self
            .latest
            .iter()
            .filter(|(sender, _)| !self.idle.contains(sender))
            .map(|(_, watermark)| *watermark)
            .min();
        // With every input idle, time has reached the furthest any of them got (as in Flink:
        // nothing that is still coming holds it back).
        let combined = match active {
            Some(active) => active,
            None => self.latest.values().copied().max()?,
        };
        (combined > self.current).then(|| {
            self.current = combined;
            combined
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{TimestampMicrosecondArray, TimestampMillisecondArray};

    use super::*;

    #[test]
    fn a_source_trails_the_largest_time_by_the_delay_and_a_millisecond() {
        let mut source = SourceWatermarks::new(SourceWatermark {
            column: 0,
            delay_millis: 5_000,
            idle_timeout_millis: None,
        });
        let batch = |times: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(times))
        };
        assert_eq!(source.observe(None, &batch(vec![None, None])), Ok(None));
        assert_eq!(
            source.observe(None, &batch(vec![Some(10_000), Some(12_000), None])),
            Ok(Some(6_999))
        );
        // Out of order, behind the largest: no progress.
        assert_eq!(source.observe(None, &batch(vec![Some(11_000)])), Ok(None));
        assert_eq!(
            source.observe(None, &batch(vec![Some(20_000)])),
            Ok(Some(14_999))
        );
        let micros: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![-1_500]));
        assert_eq!(max_millis(&micros), Ok(Some(-2)));
    }

    #[test]
    fn with_splits_the_least_active_split_decides() {
        let mut source = SourceWatermarks::new(SourceWatermark {
            column: 0,
            delay_millis: 0,
            idle_timeout_millis: Some(1_000),
        });
        let times =
            |times: Vec<i64>| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(times)) };
        let from = |open: Vec<bool>, rows: Vec<u32>| SplitRows { open, rows };
        let start = Instant::now();
        let at = |millis: u64| start + std::time::Duration::from_millis(millis);
        assert_eq!(
            source.observe_at(
                Some(&from(vec![true, true], vec![0, 0])),
                &times(vec![10_000, 20_000]),
                at(0)
            ),
            Ok(None),
            "split 1 has read nothing yet"
        );
        assert_eq!(
            source.observe_at(
                Some(&from(vec![true, true], vec![1, 0])),
                &times(vec![5_000, 21_000]),
                at(100)
            ),
            Ok(Some(4_999)),
            "the least split, not the largest time"
        );
        assert_eq!(
            source.observe_at(
                Some(&from(vec![true, true], vec![0])),
                &times(vec![30_000]),
                at(900)
            ),
            Ok(None),
            "split 1 still holds it at 5,000"
        );
        assert_eq!(
            source.observe_at(
                Some(&from(vec![true, true], vec![])),
                &times(vec![]),
                at(1_200)
            ),
            Ok(Some(29_999)),
            "split 1 has been idle for the timeout: an empty batch lets the watermark on"
        );
        // A third split appears (a discovered partition): it holds the watermark until it reads.
        assert_eq!(
            source.observe_at(
                Some(&from(vec![true, true, true], vec![0])),
                &times(vec![40_000]),
                at(1_300)
            ),
            Ok(None)
        );
        // It ends without reading (a bounded split): it holds nothing back.
        assert_eq!(
            source.observe_at(
                Some(&from(vec![true, true, false], vec![0])),
                &times(vec![41_000]),
                at(1_400)
            ),
            Ok(Some(40_999))
        );
        assert_eq!(source.checkpointed(), Some(41_000));
        assert!(
            source
                .observe_at(
                    Some(&from(vec![true], vec![0, 0])),
                    &times(vec![1]),
                    at(1_500)
                )
                .is_err(),
            "rows and splits must agree"
        );
    }

    #[test]
    fn an_operator_waits_for_every_input_and_takes_the_minimum() {
        let mut inputs = InputWatermarks::new(2);
        assert_eq!(inputs.update(0, 100), None);
        assert_eq!(inputs.update(1, 50), Some(50));
        assert_eq!(inputs.update(1, 40), None, "never back");
        assert_eq!(inputs.update(0, 200), None, "input 1 still at 50");
        assert_eq!(inputs.update(1, 300), Some(200));
        assert_eq!(inputs.end(0), Some(300));
        assert_eq!(inputs.end(1), Some(END_OF_TIME));
        assert_eq!(inputs.update(0, 400), None, "nothing after the end of time");
    }

    #[test]
    fn idle_inputs_hold_nothing_back_until_they_speak_again() {
        let mut inputs = InputWatermarks::new(2);
        assert_eq!(inputs.update(0, 100), None, "input 1 has not spoken");
        assert_eq!(
            inputs.idle(1),
            Some(100),
            "input 1 is idle: input 0 alone counts"
        );
        assert!(!inputs.all_idle());
        assert_eq!(inputs.update(0, 200), Some(200));
        assert_eq!(inputs.update(1, 150), None, "active again, and behind");
        assert_eq!(inputs.update(1, 250), None, "input 0 still at 200");
        assert_eq!(inputs.update(0, 300), Some(250));
        assert_eq!(inputs.idle(0), None, "nothing new to pass");
        assert_eq!(
            inputs.idle(1),
            Some(300),
            "all idle: the furthest any input got"
        );
        assert!(inputs.all_idle());

        // The order of going idle does not matter.
        let mut inputs = InputWatermarks::new(2);
        assert_eq!(inputs.update(0, 100), None);
        assert_eq!(inputs.idle(0), None, "input 1 has not spoken");
        assert_eq!(inputs.idle(1), Some(100));
    }

    #[test]
    fn ends_alone_reach_the_end_of_time() {
        let mut inputs = InputWatermarks::new(3);
        assert_eq!(inputs.end(0), None);
        assert_eq!(inputs.end(2), None);
        assert_eq!(inputs.end(1), Some(END_OF_TIME));
    }
}
