//! A completed checkpoint's metadata: what each subtask of each operator saved, written last and
//! whole (`chk-<id>/_metadata`), so a checkpoint exists exactly when its metadata does.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plan::Graph;

/// Bumped when the layout changes; a reader refuses versions it does not know.
pub const FORMAT_VERSION: u32 = 1;
pub const METADATA_FILE: &str = "_metadata";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub format_version: u32,
    pub id: u64,
    /// A savepoint: taken on request, kept until the user deletes it.
    pub savepoint: bool,
    /// Every task had finished: the job's output is complete and committed by this checkpoint.
    pub finished: bool,
    /// Names this job's in-progress sink files across restarts (see the filesystem sink).
    pub job_tag: String,
    pub max_parallelism: usize,
    /// Wall clock at completion, ms since the epoch.
    pub completed_millis: i64,
    pub operators: Vec<OperatorSnapshot>,
}

/// One operator's subtasks, under the operator's stable id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    pub operator_id: String,
    /// e.g. `WindowAggregate [3]`, for messages.
    pub name: String,
    pub parallelism: usize,
    pub subtasks: Vec<SubtaskSnapshot>,
}

/// What one subtask saved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubtaskSnapshot {
    pub subtask: usize,
    /// The task had ended: on restore it emits nothing again, only its end of input.
    pub finished: bool,
    /// An operator's last watermark (late rows stay late after a restore); a source's
    /// watermark generator's state.
    pub watermark: Option<i64>,
    /// Keyed state, in storage.
    pub state: Option<StateHandle>,
    /// A source's position (connector-specific).
    pub source: Option<serde_json::Value>,
    /// A sink's pre-committed output, to commit when the checkpoint completes.
    pub sink: Option<serde_json::Value>,
}

/// Where a subtask's keyed state is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StateHandle {
    /// One file in Weir's snapshot format, in the checkpoint's directory.
    Full { file: String, bytes: u64 },
    /// A RocksDB checkpoint's files.
    Rocksdb { files: Vec<StateFile> },
}

/// One file of a RocksDB checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    /// Its name in the RocksDB directory.
    pub name: String,
    /// Where it is stored: under `shared/` of the storage when `shared` (an SST file uploaded
    /// once and used by later checkpoints too), else in the checkpoint's directory.
    pub object: String,
    pub shared: bool,
    pub bytes: u64,
}

impl StateHandle {
    /// Every stored object with its size: (object, relative to the storage root (shared) or
    /// to the checkpoint's directory, bytes).
    pub fn objects(&self) -> Vec<(&str, bool, u64)> {
        match self {
            StateHandle::Full { file, bytes } => vec![(file.as_str(), false, *bytes)],
            StateHandle::Rocksdb { files } => files
                .iter()
                .map(|f| (f.object.as_str(), f.shared, f.bytes))
                .collect(),
        }
    }
}

/// Every node's stable id: a hash of what it does, its output schema and its inputs' ids, so the
/// same query gets the same ids in every run, and state goes back to the operator it came from.
pub fn operator_ids(graph: &Graph) -> Vec<String> {
    let mut ids: Vec<String> = Vec::with_capacity(graph.nodes.len());
    // Nodes are numbered so that inputs come first.
    for node in &graph.nodes {
        let mut hasher = Sha256::new();
        hasher.update(node.operator.name().as_bytes());
        hasher.update([0]);
        hasher.update(node.operator.describe().as_bytes());
        hasher.update([0]);
        for field in node.schema.fields() {
            hasher.update(format!("{}:{};", field.name(), field.data_type()).as_bytes());
        }
        for edge in graph.inputs_of(node.id) {
            let input = ids.get(edge.from).map_or("?", String::as_str);
            hasher.update(format!("<{input} {}", edge.partitioning).as_bytes());
        }
        let digest = hasher.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let mut id = format!("{}-{hex}", node.operator.name().to_ascii_lowercase());
        // Twins (the same subquery twice over the same input, as in Nexmark q5) are told apart
        // by their order in the graph, which the same query always gives them.
        let twins = ids
            .iter()
            .filter(|earlier| *earlier == &id || earlier.starts_with(&format!("{id}~")))
            .count();
        if twins > 0 {
            id = format!("{id}~{twins}");
        }
        ids.push(id);
    }
    ids
}

impl CheckpointMetadata {
    /// Reads metadata, refusing what this version cannot read.
    ///
    /// # Errors
    /// Not JSON of this shape, or another format version.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not checkpoint metadata: {e}"))?;
        let version = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(format!(
                "format version {} (this Weir reads version {FORMAT_VERSION})",
                version.map_or("unknown".to_string(), |v| v.to_string())
            ));
        }
        serde_json::from_value(value).map_err(|e| format!("not checkpoint metadata: {e}"))
    }

    pub fn operator(&self, id: &str) -> Option<&OperatorSnapshot> {
        self.operators.iter().find(|o| o.operator_id == id)
    }
}
