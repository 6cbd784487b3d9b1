//! Keyed state: what stateful operators keep per key, behind one trait.
//!
//! State is addressed by (state name, key group, key, namespace), as in Flink: the key group
//! (`hash(key) % max_parallelism`) decides which subtask owns an entry, so that restoring with other
//! key-group ranges rescales a job. Values are opaque bytes (an operator encodes its own). Access
//! is per batch: `get_many` and `put_many` take every key a batch touches at once.
//!
//! The in-memory backend serves tests and small jobs; RocksDB is the embedded default.
//! At a checkpoint a backend hands over a [`LocalSnapshot`]; `checkpoint/` stores it, and restoring
//! feeds it back, keeping the key groups the subtask now owns (rescaling).
//!
//! **Boundary:** only this module and `checkpoint/` know how state is stored.

pub mod rocksdb;
pub mod snapshot;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use foldhash::fast::FixedState;

/// Names one piece of state of one operator (e.g. "aggregate 2 states").
pub type StateName = u32;

/// An entry's address, minus the state name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateKey {
    pub key_group: u16,
    pub key: Vec<u8>,
    /// e.g. a window; empty when the state has none.
    pub namespace: Vec<u8>,
}

/// State failures (an external fault: disk, RocksDB).
#[derive(Debug, thiserror::Error)]
#[error("state: {0}")]
pub struct StateError(pub String);

/// One subtask's keyed state.
pub trait KeyedStateBackend: Send + std::fmt::Debug {
    /// The values of `keys`, in order (`None` where absent).
    fn get_many(
        &self,
        state: StateName,
        keys: &[StateKey],
    ) -> Result<Vec<Option<Vec<u8>>>, StateError>;
    /// Writes every entry.
    fn put_many(
        &mut self,
        state: StateName,
        entries: Vec<(StateKey, Vec<u8>)>,
    ) -> Result<(), StateError>;
    fn delete(&mut self, state: StateName, key: &StateKey) -> Result<(), StateError>;
    /// Deletes every key (absent ones are ignored).
    fn delete_many(&mut self, state: StateName, keys: &[StateKey]) -> Result<(), StateError>;
    /// Every entry of `state`, in key order.
    fn entries(&self, state: StateName) -> Result<Vec<(StateKey, Vec<u8>)>, StateError>;
    /// A consistent copy of everything, taken between two batches (at a checkpoint barrier).
    fn snapshot(&mut self) -> Result<LocalSnapshot, StateError>;
    /// Adds the entries of `snapshot` in `key_groups` (called once per restored subtask's
    /// snapshot: several when a rescaled job merges them).
    fn restore(&mut self, snapshot: &[u8], key_groups: Range<u16>) -> Result<(), StateError>;
    /// Adds the entries in `key_groups` of a RocksDB checkpoint copied to `dir`.
    fn restore_files(&mut self, dir: &Path, key_groups: Range<u16>) -> Result<(), StateError>;
    /// Where to copy a checkpoint's files before restoring them: beside the working copy, so
    /// that [`Self::adopt_files`] can move them in.
    fn restore_scratch(&self, name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(name)
    }
    /// Makes the RocksDB checkpoint copied to `dir` this backend's whole state, taking the
    /// directory (it must hold exactly this subtask's key groups, and the backend nothing yet):
    /// no copying of entries, so recovery costs about the download. `false` when this backend
    /// cannot; then `restore_files` copies the entries.
    fn adopt_files(&mut self, dir: &Path) -> Result<bool, StateError> {
        let _ = dir;
        Ok(false)
    }
}

/// What a backend hands to a checkpoint.
#[derive(Debug)]
pub enum LocalSnapshot {
    /// The whole state in [`snapshot`]'s format.
    Full(Vec<u8>),
    /// A RocksDB checkpoint in this directory (SST files, MANIFEST, CURRENT, OPTIONS), which
    /// the caller uploads and then deletes.
    Files(std::path::PathBuf),
}

/// A new, empty RocksDB backend in `dir` (a subtask's working copy).
///
/// # Errors
/// RocksDB cannot open there.
pub fn open_rocksdb(dir: &Path) -> Result<Box<dyn KeyedStateBackend>, StateError> {
    Ok(Box::new(rocksdb::RocksDbStateBackend::open(dir)?))
}

/// Which backend keeps keyed state (`'state.backend.type'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    /// In memory (`hashmap`).
    Memory,
    /// RocksDB, each subtask's database under this directory.
    RocksDb(std::path::PathBuf),
}

/// Everything in hash maps; `entries` sorts.
#[derive(Debug, Default)]
pub struct MemoryStateBackend {
    states: HashMap<StateName, HashMap<StateKey, Vec<u8>, FixedState>>,
}

impl KeyedStateBackend for MemoryStateBackend {
    fn get_many(
        &self,
        state: StateName,
        keys: &[StateKey],
    ) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        let map = self.states.get(&state);
        Ok(keys
            .iter()
            .map(|k| map.and_then(|m| m.get(k)).cloned())
            .collect())
    }

    fn put_many(
        &mut self,
        state: StateName,
        entries: Vec<(StateKey, Vec<u8>)>,
    ) -> Result<(), StateError> {
        let map = self.states.entry(state).or_default();
        for (key, value) in entries {
            map.insert(key, value);
        }
        Ok(())
    }

    fn delete(&mut self, state: StateName, key: &StateKey) -> Result<(), StateError> {
        if let Some(map) = self.states.get_mut(&state) {
            map.remove(key);
        }
        Ok(())
    }

    fn delete_many(&mut self, state: StateName, keys: &[StateKey]) -> Result<(), StateError> {
        if let Some(map) = self.states.get_mut(&state) {
            for key in keys {
                map.remove(key);
            }
        }
        Ok(())
    }

    fn entries(&self, state: StateName) -> Result<Vec<(StateKey, Vec<u8>)>, StateError> {
        let mut entries: Vec<(StateKey, Vec<u8>)> = self
            .states
            .get(&state)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    fn snapshot(&mut self) -> Result<LocalSnapshot, StateError> {
        let mut writer = snapshot::SnapshotWriter::default();
        let mut names: Vec<&StateName> = self.states.keys().collect();
        names.sort_unstable();
        for name in names {
            for (key, value) in &self.states[name] {
                writer.entry(*name, key, value);
            }
        }
        Ok(LocalSnapshot::Full(writer.finish()))
    }

    fn restore(&mut self, bytes: &[u8], key_groups: Range<u16>) -> Result<(), StateError> {
        for (state, key, value) in snapshot::read_entries(bytes, key_groups)? {
            self.states.entry(state).or_default().insert(key, value);
        }
        Ok(())
    }

    fn restore_files(&mut self, dir: &Path, key_groups: Range<u16>) -> Result<(), StateError> {
        for (state, key, value) in rocksdb::read_entries(dir, key_groups)? {
            self.states.entry(state).or_default().insert(key, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: u16, key: &[u8]) -> StateKey {
        StateKey {
            key_group: group,
            key: key.to_vec(),
            namespace: Vec::new(),
        }
    }

    #[test]
    fn states_are_separate_and_batched() {
        let mut backend = MemoryStateBackend::default();
        backend
            .put_many(
                1,
                vec![(key(3, b"a"), b"x".to_vec()), (key(0, b"b"), b"y".to_vec())],
            )
            .expect("put");
        backend
            .put_many(2, vec![(key(3, b"a"), b"other".to_vec())])
            .expect("put");
        let got = backend
            .get_many(1, &[key(3, b"a"), key(3, b"missing"), key(0, b"b")])
            .expect("get");
        assert_eq!(got, [Some(b"x".to_vec()), None, Some(b"y".to_vec())]);
        backend.delete(1, &key(3, b"a")).expect("delete");
        backend
            .delete_many(2, &[key(3, b"a"), key(9, b"absent")])
            .expect("delete many");
        assert!(backend.entries(2).expect("entries").is_empty());
        let entries = backend.entries(1).expect("entries");
        assert_eq!(entries, [(key(0, b"b"), b"y".to_vec())]);
    }

    #[test]
    fn restoring_a_snapshot_keeps_the_owned_key_groups() {
        let mut backend = MemoryStateBackend::default();
        backend
            .put_many(
                1,
                vec![
                    (key(3, b"a"), b"x".to_vec()),
                    (key(90, b"b"), b"y".to_vec()),
                ],
            )
            .expect("put");
        let LocalSnapshot::Full(bytes) = backend.snapshot().expect("snapshot") else {
            panic!("a full snapshot");
        };
        let mut low = MemoryStateBackend::default();
        low.restore(&bytes, 0..64).expect("restore");
        assert_eq!(
            low.entries(1).expect("entries"),
            [(key(3, b"a"), b"x".to_vec())]
        );
        let mut all = MemoryStateBackend::default();
        all.restore(&bytes, 0..128).expect("restore");
        assert_eq!(all.entries(1).expect("entries").len(), 2);
    }
}
