//! The kafka source: each partition is a split; subtask `i` of `n` reads the partitions Flink's
//! Kafka source would give it, `(hash(topic) + partition) % n`, so that subtasks need not
//! agree on anything at run time and a partition found later has an owner at once.
//!
//! A subtask assigns its partitions to its own consumer (no group rebalancing: the checkpoint,
//! not the group, says where to resume) and polls for at most `'scan.poll-timeout'` per batch,
//! so that barriers pass a quiet topic. Its position is the next offset of each partition (and
//! where a bounded read stops), so a restore resumes exactly after the last message returned.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::format::Polled;
use super::rows::{RowBuilder, Rows, RowsError};
use super::{Bounded, Config, Startup};
use crate::connector::{ConnectorError, SourceRequest, SplitRows, Subtask, TableDef};

/// The largest batch a reader returns, whatever the job asks.
const MAX_BATCH_ROWS: usize = 1 << 16;
/// A poll stops taking messages once their payloads reach this much: rows are counted by the
/// batch size, but large messages must not make a batch (and every copy of it downstream) huge.
const MAX_BATCH_BYTES: usize = 16 << 20;

/// One partition this subtask reads.
#[derive(Debug, Clone)]
struct Split {
    topic: usize,
    partition: i32,
    /// The offset of the next message to return.
    next: i64,
    /// A bounded read returns messages before this offset only.
    stop: Option<i64>,
    /// `'scan.bounded.mode' = 'latest-offset'`: the split ends where the reader first finds
    /// the end of the partition (then `stop` is set there).
    to_end: bool,
    done: bool,
}

pub(super) struct KafkaReader {
    config: Config,
    subtask: Subtask,
    consumer: BaseConsumer,
    splits: Vec<Split>,
    assigned: bool,
    batch_size: usize,
    polled: Polled,
    /// Makes the returned rows of each poll's messages.
    rows: RowBuilder,
    /// Where the last batch's rows came from: watermarks are per partition.
    split_rows: SplitRows,
    skipped: u64,
    last_discovery: Instant,
    /// When a transient error (a broker down) was last logged.
    last_warning: Option<Instant>,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("table", &self.config.table)
            .field("splits", &self.splits)
            .finish_non_exhaustive()
    }
}

/// Java's `String.hashCode`, as Flink's Kafka source uses to spread a topic's partitions.
fn java_hash(text: &str) -> i32 {
    text.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

fn owner(topic: &str, partition: i32, count: usize) -> usize {
    let count = count.max(1) as i64;
    let start = i64::from(java_hash(topic).wrapping_mul(31) & 0x7FFF_FFFF) % count;
    ((start + i64::from(partition)) % count) as usize
}

impl KafkaReader {
    pub(super) fn open(
        table: &TableDef,
        config: Config,
        request: &SourceRequest,
    ) -> Result<Self, ConnectorError> {
        let projection: Vec<usize> = request
            .projection
            .clone()
            .unwrap_or_else(|| (0..table.schema.fields().len()).collect());
        let batch_size = request.batch_size.clamp(1, MAX_BATCH_ROWS);
        let rows = RowBuilder::new(table, &config, &projection, batch_size)?;
        let group = config
            .group_id
            .clone()
            .unwrap_or_else(|| format!("weir-{}", config.table));
        let consumer: BaseConsumer = config
            .client_config(&[
                ("group.id", group.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "true"),
                // What librdkafka fetches ahead is bounded: a slow job slows the fetching
                // rather than buffering the topic.
                ("queued.max.messages.kbytes", "32768"),
                ("auto.offset.reset", "latest"),
            ])
            .create()
            .map_err(|e| config.error(format!("cannot create a Kafka consumer: {e}")))?;
        let mut reader = KafkaReader {
            subtask: request.subtask,
            consumer,
            splits: Vec::new(),
            assigned: false,
            batch_size,
            polled: Polled::default(),
            rows,
            split_rows: SplitRows::default(),
            skipped: 0,
            last_discovery: Instant::now(),
            last_warning: None,
            config,
        };
        let partitions = reader.partitions(true)?;
        let mine: Vec<(usize, i32)> = partitions
            .into_iter()
            .filter(|(topic, partition)| {
                owner(
                    &reader.config.topics[*topic],
                    *partition,
                    reader.subtask.count,
                ) == reader.subtask.index
            })
            .collect();
        reader.splits = reader.starting_splits(&mine, false)?;
        Ok(reader)
    }

    /// Every partition of every topic (with `'topic-pattern'`, of every topic that matches:
    /// new ones join the reader's topics). A topic named that does not exist is an error at
    /// once.
    /// `patient`: retry while no broker answers (at open); else one attempt (at discovery,
    /// which must not hold the reader, and so barriers, back).
    fn partitions(&mut self, patient: bool) -> Result<Vec<(usize, i32)>, ConnectorError> {
        let mut partitions = Vec::new();
        if let Some(pattern) = self.config.topic_pattern.clone() {
            let metadata = self.metadata(None, patient)?;
            for found in metadata.topics() {
                if !pattern.is_match(found.name()) || found.error().is_some() {
                    continue;
                }
                let index = match self.config.topics.iter().position(|t| t == found.name()) {
                    Some(index) => index,
                    None => {
                        self.config.topics.push(found.name().to_string());
                        self.config.topics.len() - 1
                    }
                };
                partitions.extend(found.partitions().iter().map(|p| (index, p.id())));
            }
            partitions.sort_unstable();
            return Ok(partitions);
        }
        for (index, topic) in self.config.topics.iter().enumerate() {
            let metadata = self.metadata(Some(topic), patient)?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(self.missing_topic(topic));
            };
            if found.error().is_some() || found.partitions().is_empty() {
                return Err(self.missing_topic(topic));
            }
            partitions.extend(found.partitions().iter().map(|p| (index, p.id())));
        }
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// The cluster's metadata (of one topic, or all), retried with back-off while no broker
    /// answers, up to `'connect.timeout'`.
    fn metadata(
        &self,
        topic: Option<&str>,
        patient: bool,
    ) -> Result<rdkafka::metadata::Metadata, ConnectorError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let attempt_timeout = if patient {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(1)
        };
        loop {
            match self.consumer.fetch_metadata(topic, attempt_timeout) {
                Ok(metadata) => return Ok(metadata),
                Err(e) if patient && started.elapsed() < self.config.connect_timeout => {
                    tracing::warn!(
                        "table '{}': Kafka at {} does not answer ({e}); retrying in {backoff:?}",
                        self.config.table,
                        self.config.bootstrap()
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(self.config.error(format!(
                        "cannot reach Kafka at {} within {:?} ('connect.timeout'): {e}",
                        self.config.bootstrap(),
                        self.config.connect_timeout
                    )));
                }
            }
        }
    }

    fn missing_topic(&self, topic: &str) -> ConnectorError {
        self.config.error(format!(
            "topic '{topic}' does not exist on Kafka at {}",
            self.config.bootstrap()
        ))
    }

    /// Where each of `partitions` starts (and stops): by the startup mode, or at the earliest
    /// offset for partitions found after the job started (`discovered`).
    fn starting_splits(
        &self,
        partitions: &[(usize, i32)],
        discovered: bool,
    ) -> Result<Vec<Split>, ConnectorError> {
        let timeout = Duration::from_secs(10);
        let mut splits = Vec::with_capacity(partitions.len());
        // Timestamps and group offsets are looked up for all partitions in one call each.
        let lookup = |offset_of: &dyn Fn(i32) -> Offset,
                      committed: bool|
         -> Result<BTreeMap<(usize, i32), Offset>, ConnectorError> {
            let mut list = TopicPartitionList::new();
            for &(topic, partition) in partitions {
                list.add_partition_offset(
                    &self.config.topics[topic],
                    partition,
                    offset_of(partition),
                )
                .map_err(|e| self.config.error(e.to_string()))?;
            }
            let answer = if committed {
                self.consumer.committed_offsets(list, timeout)
            } else {
                self.consumer.offsets_for_times(list, timeout)
            }
            .map_err(|e| self.config.error(format!("cannot look up offsets: {e}")))?;
            let mut offsets = BTreeMap::new();
            for element in answer.elements() {
                if let Some(topic) = self.config.topics.iter().position(|t| t == element.topic()) {
                    offsets.insert((topic, element.partition()), element.offset());
                }
            }
            Ok(offsets)
        };
        let startup = if discovered {
            Startup::Earliest
        } else {
            self.config.startup.clone()
        };
        let starts = match &startup {
            Startup::Timestamp(millis) => Some(lookup(&|_| Offset::Offset(*millis), false)?),
            Startup::GroupOffsets => Some(lookup(&|_| Offset::Invalid, true)?),
            _ => None,
        };
        let stops = match (&self.config.bounded, discovered) {
            (Bounded::Timestamp(millis), false) => {
                Some(lookup(&|_| Offset::Offset(*millis), false)?)
            }
            _ => None,
        };
        let reset_to_earliest = self
            .config
            .properties
            .get("auto.offset.reset")
            .is_some_and(|r| matches!(r.as_str(), "earliest" | "smallest" | "beginning"));
        for &(topic, partition) in partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.config.topics[topic], partition, timeout)
                .map_err(|e| {
                    self.config.error(format!(
                        "cannot read the offsets of {}/{partition}: {e}",
                        self.config.topics[topic]
                    ))
                })?;
            let resolve = |offset: Option<&Offset>, otherwise: i64| match offset {
                Some(Offset::Offset(o)) => (*o).clamp(low, high),
                Some(Offset::End) => high,
                Some(Offset::Beginning) => low,
                _ => otherwise,
            };
            let next = match &startup {
                Startup::Earliest => low,
                Startup::Latest => high,
                Startup::Specific(offsets) => offsets
                    .get(&partition)
                    .map_or(low, |o| (*o).clamp(low, high)),
                Startup::Timestamp(_) => resolve(
                    starts.as_ref().and_then(|s| s.get(&(topic, partition))),
                    high,
                ),
                Startup::GroupOffsets => resolve(
                    starts.as_ref().and_then(|s| s.get(&(topic, partition))),
                    if reset_to_earliest { low } else { high },
                ),
            };
            let stop = if discovered {
                None
            } else {
                match &self.config.bounded {
                    Bounded::Unbounded => None,
                    // Not `high`: a broker may list it wrong (tansu lists the start of the
                    // last record batch); the end the consumer reaches is what it fetched.
                    Bounded::Latest => None,
                    Bounded::Specific(offsets) => {
                        Some(offsets.get(&partition).copied().unwrap_or(high))
                    }
                    Bounded::Timestamp(_) => Some(resolve(
                        stops.as_ref().and_then(|s| s.get(&(topic, partition))),
                        high,
                    )),
                }
            };
            let to_end = !discovered && self.config.bounded == Bounded::Latest;
            splits.push(Split {
                topic,
                partition,
                next,
                stop,
                to_end,
                // An empty partition has nothing to wait for.
                done: stop.is_some_and(|stop| next >= stop) || (to_end && high <= next),
            });
        }
        Ok(splits)
    }

    /// Hands the open splits to the consumer at their next offsets.
    fn assign(&mut self) -> Result<(), ConnectorError> {
        let mut list = TopicPartitionList::new();
        for split in self.splits.iter().filter(|s| !s.done) {
            list.add_partition_offset(
                &self.config.topics[split.topic],
                split.partition,
                Offset::Offset(split.next),
            )
            .map_err(|e| self.config.error(e.to_string()))?;
        }
        self.consumer
            .assign(&list)
            .map_err(|e| self.config.error(format!("cannot assign partitions: {e}")))?;
        self.assigned = true;
        Ok(())
    }

    /// New partitions of an unbounded read, every `'scan.topic-partition-discovery.interval'`.
    fn discover(&mut self) -> Result<(), ConnectorError> {
        let Some(interval) = self.config.discovery_interval else {
            return Ok(());
        };
        if self.config.bounded != Bounded::Unbounded || self.last_discovery.elapsed() < interval {
            return Ok(());
        }
        self.last_discovery = Instant::now();
        let partitions = match self.partitions(false) {
            Ok(partitions) => partitions,
            Err(e) => {
                tracing::warn!("{e}; partition discovery tries again later");
                return Ok(());
            }
        };
        let new: Vec<(usize, i32)> = partitions
            .into_iter()
            .filter(|(topic, partition)| {
                owner(&self.config.topics[*topic], *partition, self.subtask.count)
                    == self.subtask.index
                    && !self
                        .splits
                        .iter()
                        .any(|s| s.topic == *topic && s.partition == *partition)
            })
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        tracing::info!(
            "table '{}': reading {} new partition(s)",
            self.config.table,
            new.len()
        );
        let added = match self.starting_splits(&new, true) {
            Ok(added) => added,
            Err(e) => {
                tracing::warn!("{e}; partition discovery tries again later");
                return Ok(());
            }
        };
        self.splits.extend(added);
        self.assign()
    }

    fn split_index(&self, topic: &str, partition: i32) -> Option<usize> {
        let topic = self.config.topics.iter().position(|t| t == topic)?;
        self.splits
            .iter()
            .position(|s| s.topic == topic && s.partition == partition)
    }

    /// A bounded split has reached its stop offset: fetching it stops.
    fn finish_split(&mut self, index: usize) {
        let split = &mut self.splits[index];
        split.done = true;
        let mut list = TopicPartitionList::new();
        if list
            .add_partition_offset(
                &self.config.topics[split.topic],
                split.partition,
                Offset::Offset(split.next),
            )
            .is_ok()
        {
            let _ = self.consumer.pause(&list);
        }
    }

    /// The consumer reached the end of `partition` (of some topic): a split reading to the end
    /// is done there, and a split whose stop lies before the end is done too, even when the
    /// last offsets before the stop were transaction markers (which are never delivered).
    fn at_end_of(&mut self, partition: i32) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for index in 0..self.splits.len() {
            let split = &self.splits[index];
            if split.partition != partition || split.done {
                continue;
            }
            let position = positions
                .find_partition(&self.config.topics[split.topic], partition)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(split.next);
            let split = &mut self.splits[index];
            if split.to_end && split.stop.is_none() {
                split.stop = Some(position.max(split.next));
            }
            if let Some(stop) = split.stop
                && (position >= stop || split.next >= stop)
            {
                split.next = split.next.max(position.min(stop));
                self.finish_split(index);
            }
        }
    }

    fn all_done(&self) -> bool {
        self.config.bounded != Bounded::Unbounded && self.splits.iter().all(|s| s.done)
    }

    /// An error from the consumer: fatal ones fail the job; a broker that is down is logged
    /// (at most every 10 s) while librdkafka reconnects.
    fn consumer_error(&mut self, error: KafkaError) -> Result<(), ConnectorError> {
        let fatal = matches!(error, KafkaError::MessageConsumptionFatal(_))
            || matches!(
                error.rdkafka_error_code(),
                Some(
                    rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                        | rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed
                        | rdkafka::types::RDKafkaErrorCode::Fatal
                )
            );
        if fatal {
            return Err(self.config.error(format!("Kafka: {error}")));
        }
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(
                "table '{}': Kafka at {}: {error} (retrying)",
                self.config.table,
                self.config.bootstrap()
            );
        }
        Ok(())
    }
}

impl crate::connector::SourceReader for KafkaReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if !self.assigned {
            self.assign()?;
        }
        self.discover()?;
        if self.all_done() {
            return Ok(None);
        }
        self.polled.clear();
        self.rows.clear();
        let deadline = Instant::now() + self.config.poll_timeout;
        while self.polled.len() < self.batch_size
            && self.polled.bytes.len() < MAX_BATCH_BYTES
            && !self.all_done()
        {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let polled = self.consumer.poll(remaining);
            match polled {
                None => break,
                Some(Err(KafkaError::PartitionEOF(partition))) => self.at_end_of(partition),
                Some(Err(error)) => self.consumer_error(error)?,
                Some(Ok(message)) => {
                    let (offset, partition) = (message.offset(), message.partition());
                    let Some(index) = self.split_index(message.topic(), partition) else {
                        continue;
                    };
                    let split = &self.splits[index];
                    if split.done || split.stop.is_some_and(|stop| offset >= stop) {
                        drop(message);
                        self.finish_split(index);
                        continue;
                    }
                    self.polled
                        .push(message.payload(), (split.topic, partition, offset), index);
                    self.rows.observe(&message);
                    drop(message);
                    let split = &mut self.splits[index];
                    split.next = offset + 1;
                    if split.stop.is_some_and(|stop| split.next >= stop) {
                        self.finish_split(index);
                    }
                }
            }
            if remaining.is_zero() {
                break;
            }
        }
        // Only an upsert table reads a message without a value (as a delete).
        if !self.config.upsert {
            let tombstones = self.polled.payloads.iter().filter(|p| p.is_none()).count();
            self.skipped += tombstones as u64;
        }
        let rows = match self.rows.build(
            &self.polled,
            &self.config.topics,
            self.config.ignore_parse_errors,
        ) {
            Ok(rows) => rows,
            Err(RowsError::Message(bad)) => return Err(self.bad_message(&bad.reason, bad.index)),
            Err(RowsError::Other(message)) => return Err(self.config.error(message)),
        };
        let Rows { batch, bad, kept } = rows;
        if !bad.is_empty() {
            self.skipped += bad.len() as u64;
            if let Some(first) = bad.first() {
                tracing::warn!("{} (skipped)", self.bad_message(&first.reason, first.index));
            }
        }
        self.split_rows.rows.clear();
        self.split_rows
            .rows
            .extend(kept.iter().map(|&i| self.polled.splits[i]));
        self.split_rows.open.clear();
        self.split_rows
            .open
            .extend(self.splits.iter().map(|s| !s.done));
        Ok(Some(batch))
    }

    fn split_rows(&self) -> Option<&SplitRows> {
        Some(&self.split_rows)
    }

    fn skipped_rows(&self) -> u64 {
        self.skipped
    }

    fn position(&self) -> Result<serde_json::Value, ConnectorError> {
        let mut topics: BTreeMap<&str, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
        for split in &self.splits {
            topics
                .entry(&self.config.topics[split.topic])
                .or_default()
                .insert(
                    split.partition.to_string(),
                    serde_json::json!({
                        "next": split.next,
                        "stop": split.stop,
                        "to_end": split.to_end,
                    }),
                );
        }
        Ok(serde_json::json!({ "kafka": topics }))
    }

    /// Commits the checkpoint's offsets to the consumer group (`'properties.group.id'`), as
    /// Flink does: for monitoring lag, and for a new job started with `group-offsets`.
    fn checkpoint_completed(&mut self, position: &serde_json::Value, last: bool) {
        if self.config.group_id.is_none() {
            return;
        }
        let mut list = TopicPartitionList::new();
        let topics = position.get("kafka").and_then(|k| k.as_object());
        for (topic, partitions) in topics.into_iter().flatten() {
            for (partition, offsets) in partitions.as_object().into_iter().flatten() {
                let (Ok(partition), Some(next)) = (
                    partition.parse::<i32>(),
                    offsets.get("next").and_then(serde_json::Value::as_i64),
                ) else {
                    continue;
                };
                let _ = list.add_partition_offset(topic, partition, Offset::Offset(next));
            }
        }
        if list.count() == 0 {
            return;
        }
        // The last commit waits: the consumer is closed right after.
        let mode = if last {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        if let Err(e) = self.consumer.commit(&list, mode) {
            tracing::warn!(
                "table '{}': cannot commit offsets to the consumer group: {e}",
                self.config.table
            );
        }
    }

    fn restore(&mut self, positions: &[Option<serde_json::Value>]) -> Result<(), ConnectorError> {
        // Every subtask's partitions, merged: after a rescale a partition may come from any.
        let mut saved: BTreeMap<(String, i32), (i64, Option<i64>, bool)> = BTreeMap::new();
        for position in positions.iter().flatten() {
            let Some(topics) = position.get("kafka").and_then(|k| k.as_object()) else {
                return Err(self
                    .config
                    .error(format!("not a Kafka source position: {position}")));
            };
            for (topic, partitions) in topics {
                for (partition, offsets) in partitions.as_object().into_iter().flatten() {
                    let partition: i32 = partition.parse().map_err(|_| {
                        self.config
                            .error(format!("not a partition in a checkpoint: '{partition}'"))
                    })?;
                    let next = offsets.get("next").and_then(serde_json::Value::as_i64);
                    let stop = offsets.get("stop").and_then(serde_json::Value::as_i64);
                    let to_end = offsets
                        .get("to_end")
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(false);
                    let Some(next) = next else {
                        return Err(self
                            .config
                            .error(format!("no offset for {topic}/{partition} in a checkpoint")));
                    };
                    saved.insert((topic.clone(), partition), (next, stop, to_end));
                }
            }
        }
        for index in 0..self.splits.len() {
            let topic = self.config.topics[self.splits[index].topic].clone();
            let partition = self.splits[index].partition;
            match saved.get(&(topic.clone(), partition)) {
                Some(&(next, stop, to_end)) => {
                    let split = &mut self.splits[index];
                    split.next = next;
                    split.stop = stop;
                    split.to_end = to_end;
                    split.done = stop.is_some_and(|stop| next >= stop);
                }
                // A partition (or a topic matching the pattern) the checkpointed job did not
                // know: created since, so all of it.
                None if !saved.is_empty() => {
                    let earliest =
                        self.starting_splits(&[(self.splits[index].topic, partition)], true)?;
                    if let Some(split) = earliest.into_iter().next() {
                        self.splits[index].next = split.next;
                    }
                }
                None => {}
            }
        }
        Ok(())
    }
}

impl KafkaReader {
    fn bad_message(&self, reason: &str, index: usize) -> ConnectorError {
        let (topic, partition, offset) = self
            .polled
            .origins
            .get(index)
            .copied()
            .unwrap_or((0, -1, -1));
        let name = self.config.value.name();
        ConnectorError::Other {
            table: self.config.table.clone(),
            message: format!(
                "bad {name} message in topic '{}', partition {partition}, offset {offset}: \
                 {reason} (to skip and count such messages: '{name}.ignore-parse-errors' = 'true')",
                self.config.topics.get(topic).map_or("?", String::as_str)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_spread_as_flinks_kafka_source_spreads_them() {
        assert_eq!(java_hash("bids"), 3_023_638);
        // Consecutive partitions go to consecutive subtasks, from a start the topic decides.
        let owners: Vec<usize> = (0..4).map(|p| owner("bids", p, 2)).collect();
        assert_eq!(owners[0], owners[2]);
        assert_ne!(owners[0], owners[1]);
        assert!(owners.iter().all(|&o| o < 2));
    }
}
