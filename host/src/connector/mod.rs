//! Connectors: where a job's rows come from (sources) and where they go (sinks).
//!
//! A table's `WITH (...)` options pick a connector and configure it, with Flink's option names.
//! Every connector checks its options when the table is used in a job (an unknown or missing
//! option is the user's error, named), then opens one reader or writer per subtask. Readers and
//! writers are blocking and batch-at-a-time: the runtime calls them on blocking threads.
//!
//! **Boundary:** connectors know Arrow and the filesystem; they never see SQL, plans or Wasm.

pub mod blackhole;
pub mod filesystem;
pub mod kafka;
pub mod nexmark;
pub mod print;

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

/// A table's `WITH (...)` options, keys as written (Flink's keys are lowercase).
pub type Options = BTreeMap<String, String>;

/// What a connector is told about the table it serves.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// The table's name in the catalog, for messages.
    pub name: String,
    /// Every declared column, in declared order.
    pub schema: SchemaRef,
    pub options: Options,
    /// `PRIMARY KEY (...) NOT ENFORCED`: what an upsert sink keys its changes by.
    pub primary_key: Vec<String>,
    /// Columns declared `METADATA`: the connector fills them from what it knows of each row
    /// (a Kafka message's offset), not from the payload.
    pub metadata: Vec<MetadataColumn>,
}

/// A column declared `METADATA [FROM 'key'] [VIRTUAL]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataColumn {
    pub column: String,
    pub key: String,
    /// Read only: a sink never writes it, and an `INSERT` leaves it out.
    pub is_virtual: bool,
}

/// Which part of a source one subtask reads: subtask `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subtask {
    pub index: usize,
    pub count: usize,
}

/// How a source is opened for one subtask.
#[derive(Debug, Clone)]
pub struct SourceRequest {
    pub subtask: Subtask,
    /// Indexes into `TableDef::schema` of the columns the job reads, in that order; the reader's
    /// batches hold exactly these columns. `None`: every column.
    pub projection: Option<Vec<usize>>,
    /// Rows per batch (at most).
    pub batch_size: usize,
}

/// The splits a reader has now and where the last batch's rows came from (see
/// [`SourceReader::split_rows`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitRows {
    /// Every split the reader has, by an index that stays the same while it runs: `true` while
    /// it may bring more rows (a bounded split that has ended holds no watermark back).
    pub open: Vec<bool>,
    /// For each row of the last batch, its split (an index into `open`).
    pub rows: Vec<u32>,
}

/// One subtask's reader. `Ok(None)` is the end of (bounded) input; a batch of no rows means
/// nothing came for now (the runtime sends nothing, and counts the time toward the idle
/// timeout): a reader that waits on the outside world returns one now and then, so that
/// checkpoint barriers are not held back.
pub trait SourceReader: Send {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError>;
    /// For a reader of several splits whose event times advance apart (Kafka partitions):
    /// which split each row of the last batch came from. The runtime then keeps a watermark per
    /// split and the subtask's is the least over its splits, as Flink's per-partition
    /// watermarks; `None` (the default): one watermark for everything the subtask reads.
    fn split_rows(&self) -> Option<&SplitRows> {
        None
    }
    /// Rows skipped so far because they could not be parsed (`'<format>.ignore-parse-errors'`).
    fn skipped_rows(&self) -> u64 {
        0
    }
    /// Where the reader is: what a checkpoint keeps so that reading resumes after the last
    /// batch returned.
    ///
    /// # Errors
    /// A source that cannot resume (a checkpointed job refuses it).
    fn position(&self) -> Result<serde_json::Value, ConnectorError> {
        Err(ConnectorError::Other {
            table: "?".into(),
            message: "this source cannot resume from a checkpoint".into(),
        })
    }
    /// A checkpoint holding `position` (what [`SourceReader::position`] said at its barrier)
    /// has completed; `last`: the job's final one, after which the reader is dropped. A reader
    /// may tell the outside world (Kafka commits the offsets to the consumer group, for
    /// monitoring only: a restore reads the checkpoint). Failures are the reader's to log.
    fn checkpoint_completed(&mut self, _position: &serde_json::Value, _last: bool) {}
    /// Moves a freshly opened reader to where a checkpoint left off: `positions` are every
    /// subtask's of the restored checkpoint, by subtask (`None`: that subtask had not started
    /// reading), so that a rescaled job still reads each row exactly once.
    ///
    /// # Errors
    /// Positions this reader cannot resume from.
    fn restore(&mut self, _positions: &[Option<serde_json::Value>]) -> Result<(), ConnectorError> {
        Err(ConnectorError::Other {
            table: "?".into(),
            message: "this source cannot resume from a checkpoint".into(),
        })
    }
}

/// A reader whose position is the number of rows it has returned: restoring reads that many
/// again and drops them. Right for a deterministic reader (the same files, the same split)
/// restored at the same parallelism.
struct RowCountPosition {
    table: String,
    subtask: Subtask,
    /// Subtasks of the job the positions come from; a rescaled file source cannot resume.
    count: usize,
    inner: Box<dyn SourceReader>,
    rows: u64,
    /// Rows still to drop after a restore.
    to_skip: u64,
}

impl SourceReader for RowCountPosition {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            let Some(batch) = self.inner.next_batch()? else {
                return Ok(None);
            };
            let rows = batch.num_rows() as u64;
            if self.to_skip >= rows {
                self.to_skip -= rows;
                self.rows += rows;
                continue;
            }
            let skip = self.to_skip as usize;
            self.to_skip = 0;
            self.rows += rows;
            return Ok(Some(batch.slice(skip, batch.num_rows() - skip)));
        }
    }

    fn skipped_rows(&self) -> u64 {
        self.inner.skipped_rows()
    }

    fn position(&self) -> Result<serde_json::Value, ConnectorError> {
        Ok(serde_json::json!({ "rows": self.rows + self.to_skip }))
    }

    fn restore(&mut self, positions: &[Option<serde_json::Value>]) -> Result<(), ConnectorError> {
        if positions.len() != self.count {
            return Err(self.error(format!(
                "a file source restored at parallelism {} from a checkpoint taken at {} cannot \
                 resume yet (restore it at {})",
                self.count,
                positions.len(),
                positions.len()
            )));
        }
        let Some(position) = positions.get(self.subtask_index()) else {
            return Err(self.error("the checkpoint has no position for this subtask".into()));
        };
        self.to_skip = position
            .as_ref()
            .map(|p| p.get("rows").and_then(serde_json::Value::as_u64))
            .unwrap_or(Some(0))
            .ok_or_else(|| self.error(format!("not a file position: {position:?}")))?;
        Ok(())
    }
}

impl RowCountPosition {
    fn subtask_index(&self) -> usize {
        self.subtask.index
    }

    fn error(&self, message: String) -> ConnectorError {
        ConnectorError::Other {
            table: self.table.clone(),
            message,
        }
    }
}

/// One subtask's writer. Nothing written is visible under its final name before `finish`, or,
/// in a job that takes checkpoints, before the checkpoint after it completes.
pub trait SinkWriter: Send {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError>;
    fn finish(&mut self) -> Result<(), ConnectorError>;
    /// At a checkpoint's barrier: makes what was written durable but not yet visible, labelled
    /// `checkpoint`; returns what committing it needs (kept in the checkpoint), `None` if the
    /// sink has nothing to commit.
    fn pre_commit(
        &mut self,
        _checkpoint: u64,
    ) -> Result<Option<serde_json::Value>, ConnectorError> {
        Ok(None)
    }
    /// Checkpoint `checkpoint` completed: makes visible what was pre-committed up to it.
    fn commit(&mut self, _checkpoint: u64) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Before a job restored from a checkpoint runs: commits what the sink's subtasks had
/// pre-committed for it (`pending`, from the checkpoint) and discards what this job (`job_tag`)
/// wrote after it.
///
/// # Errors
/// Files that cannot be renamed or removed.
pub fn recover_sink(
    table: &TableDef,
    pending: &[serde_json::Value],
    job_tag: &str,
) -> Result<(), ConnectorError> {
    match ConnectorKind::of(table)? {
        ConnectorKind::Filesystem => filesystem::recover_sink(table, pending, job_tag),
        _ => Ok(()),
    }
}

/// Connector errors. Option and parse errors are the user's fault; I/O errors are external.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("table '{table}': unknown connector '{connector}' (known: {KNOWN_CONNECTORS})")]
    UnknownConnector { table: String, connector: String },
    #[error("table '{table}': {message}")]
    Option { table: String, message: String },
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}, line {line}: {reason}", path.display())]
    Parse {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("table '{table}': {message}")]
    Other { table: String, message: String },
}

impl ConnectorError {
    pub(crate) fn option(table: &TableDef, message: impl Into<String>) -> Self {
        ConnectorError::Option {
            table: table.name.clone(),
            message: message.into(),
        }
    }
}

pub const KNOWN_CONNECTORS: &str = "filesystem, kafka, upsert-kafka, print, blackhole, nexmark";

/// The connector named by a table's `'connector'` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    Filesystem,
    Print,
    Blackhole,
    Nexmark,
    Kafka,
    /// Flink's `upsert-kafka`: an updating result written keyed by its primary key.
    UpsertKafka,
}

impl ConnectorKind {
    pub fn of(table: &TableDef) -> Result<Self, ConnectorError> {
        let name = table
            .options
            .get("connector")
            .ok_or_else(|| ConnectorError::option(table, "missing option 'connector'"))?;
        match name.as_str() {
            "filesystem" => Ok(Self::Filesystem),
            "print" => Ok(Self::Print),
            "blackhole" => Ok(Self::Blackhole),
            "nexmark" => Ok(Self::Nexmark),
            "kafka" => Ok(Self::Kafka),
            "upsert-kafka" => Ok(Self::UpsertKafka),
            other => Err(ConnectorError::UnknownConnector {
                table: table.name.clone(),
                connector: other.to_string(),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Filesystem => "filesystem",
            Self::Print => "print",
            Self::Blackhole => "blackhole",
            Self::Nexmark => "nexmark",
            Self::Kafka => "kafka",
            Self::UpsertKafka => "upsert-kafka",
        }
    }

    pub fn can_read(self) -> bool {
        matches!(
            self,
            Self::Filesystem | Self::Nexmark | Self::Kafka | Self::UpsertKafka
        )
    }

    pub fn can_write(self) -> bool {
        matches!(
            self,
            Self::Filesystem | Self::Print | Self::Blackhole | Self::Kafka | Self::UpsertKafka
        )
    }
}

/// Checks a table's options for use as a source (`as_source`) or a sink, without opening files.
pub fn validate(table: &TableDef, as_source: bool) -> Result<ConnectorKind, ConnectorError> {
    let kind = ConnectorKind::of(table)?;
    let usable = if as_source {
        kind.can_read()
    } else {
        kind.can_write()
    };
    if !usable {
        return Err(ConnectorError::option(
            table,
            format!(
                "the '{}' connector cannot be {}",
                kind.name(),
                if as_source { "read from" } else { "written to" }
            ),
        ));
    }
    if let Some(column) = table.metadata.first()
        && !matches!(kind, ConnectorKind::Kafka | ConnectorKind::UpsertKafka)
    {
        return Err(ConnectorError::option(
            table,
            format!(
                "column '{}' is METADATA, but the '{}' connector has no metadata (kafka has)",
                column.column,
                kind.name()
            ),
        ));
    }
    match kind {
        ConnectorKind::Filesystem => filesystem::validate(table)?,
        ConnectorKind::Nexmark => nexmark::validate(table)?,
        ConnectorKind::Print => print::validate(table)?,
        ConnectorKind::Blackhole => blackhole::validate(table)?,
        ConnectorKind::Kafka => kafka::validate(table)?,
        ConnectorKind::UpsertKafka => kafka::validate_upsert(table)?,
    }
    Ok(kind)
}

/// Opens one subtask's reader.
pub fn open_source(
    table: &TableDef,
    request: &SourceRequest,
) -> Result<Box<dyn SourceReader>, ConnectorError> {
    match validate(table, true)? {
        ConnectorKind::Filesystem if is_bounded(table) => Ok(Box::new(RowCountPosition {
            table: table.name.clone(),
            subtask: request.subtask,
            count: request.subtask.count,
            inner: filesystem::open_source(table, request)?,
            rows: 0,
            to_skip: 0,
        })),
        ConnectorKind::Filesystem => filesystem::open_source(table, request),
        ConnectorKind::Nexmark => nexmark::open_source(table, request),
        ConnectorKind::Kafka => kafka::open_source(table, request),
        ConnectorKind::UpsertKafka => kafka::open_upsert_source(table, request),
        ConnectorKind::Print | ConnectorKind::Blackhole => unreachable!("checked by validate"),
    }
}

/// Opens one subtask's writer.
/// `job_tag` is set when the job takes checkpoints: output becomes visible as they complete, and
/// the tag names this job's unfinished files so that a restart finds them.
pub fn open_sink(
    table: &TableDef,
    subtask: Subtask,
    job_tag: Option<&str>,
) -> Result<Box<dyn SinkWriter>, ConnectorError> {
    match validate(table, false)? {
        ConnectorKind::Filesystem => filesystem::open_sink(table, subtask, job_tag),
        ConnectorKind::Print => print::open_sink(table, subtask),
        ConnectorKind::Blackhole => blackhole::open_sink(table, subtask),
        ConnectorKind::Kafka => kafka::open_sink(table, subtask),
        ConnectorKind::UpsertKafka => kafka::open_upsert_sink(table, subtask),
        ConnectorKind::Nexmark => unreachable!("checked by validate"),
    }
}

/// Rejects any option not in `known` (besides `connector`), naming the known ones.
/// Whether reading `table` ends: a file source unless it watches its directory, a generator
/// with `'events.num'`.
pub fn is_bounded(table: &TableDef) -> bool {
    match ConnectorKind::of(table) {
        Ok(ConnectorKind::Filesystem) => !table.options.contains_key("source.monitor-interval"),
        Ok(ConnectorKind::Nexmark) => table.options.contains_key("events.num"),
        Ok(ConnectorKind::Kafka | ConnectorKind::UpsertKafka) => kafka::is_bounded(table),
        _ => true,
    }
}

/// Refuses a sink that cannot take an updating result (a changelog), saying what to change.
///
/// # Errors
/// A filesystem table not told to write the changelog; a connector that cannot be written.
pub fn check_accepts_changelog(table: &TableDef) -> Result<(), ConnectorError> {
    let accepts = match ConnectorKind::of(table)? {
        ConnectorKind::Print | ConnectorKind::Blackhole | ConnectorKind::UpsertKafka => true,
        ConnectorKind::Filesystem => filesystem::accepts_changelog(table)?,
        _ => false,
    };
    if accepts {
        return Ok(());
    }
    Err(ConnectorError::option(
        table,
        "this query's result updates (a GROUP BY without a window, in streaming mode), and \
         the table takes appended rows only: write the changelog with 'sink.changelog-mode' = \
         'all' (an op column of +I, -U, +U, -D first) or 'upsert' (with a PRIMARY KEY), write \
         to an 'upsert-kafka' table, group by a window, or run in batch mode",
    ))
}

/// A duration in an option's usual forms: `'5 s'`, `'200 ms'`, `'2 min'`, a bare number of
/// milliseconds.
pub fn duration(value: &str) -> Option<std::time::Duration> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let amount: u64 = value[..split].parse().ok()?;
    let unit_nanos: u64 = match value[split..].trim() {
        "ns" => 1,
        "us" => 1_000,
        "" | "ms" => 1_000_000,
        "s" | "sec" | "second" | "seconds" => 1_000_000_000,
        "min" | "minute" | "minutes" => 60_000_000_000,
        "h" | "hour" | "hours" => 3_600_000_000_000,
        _ => return None,
    };
    amount
        .checked_mul(unit_nanos)
        .map(std::time::Duration::from_nanos)
}

/// The table option that makes an idle source subtask stop holding watermarks back (any
/// connector: the runtime acts on it).
pub const IDLE_TIMEOUT: &str = "scan.watermark.idle-timeout";

pub(crate) fn check_known_options(table: &TableDef, known: &[&str]) -> Result<(), ConnectorError> {
    if let Some(value) = table.options.get(IDLE_TIMEOUT)
        && duration(value).is_none_or(|d| d.is_zero())
    {
        return Err(ConnectorError::option(
            table,
            format!("option '{IDLE_TIMEOUT}' must be a duration such as '5 s', not '{value}'"),
        ));
    }
    for key in table.options.keys() {
        if key != "connector" && key != IDLE_TIMEOUT && !known.contains(&key.as_str()) {
            let kind = table.options.get("connector").map_or("", String::as_str);
            return Err(ConnectorError::option(
                table,
                format!(
                    "unknown option '{key}' for connector '{kind}' (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
