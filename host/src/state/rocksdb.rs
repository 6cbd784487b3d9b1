//! Keyed state in RocksDB: one database per operator subtask, on local disk, so state can grow
//! far past memory. The write-ahead log is off: durability comes from checkpoints, which flush
//! and take a RocksDB checkpoint (hard links to the immutable SST files), so that unchanged SST
//! files are uploaded once and shared by later checkpoints (incremental snapshots).
//!
//! Keys sort as Weir's `StateKey`s do: `state (u32 BE) | key group (u16 BE) | key | namespace`,
//! key and namespace each escaped (0x00 → 0x00 0xFF) and ended by 0x00 0x00, so that one state's
//! entries are one key range and come back in the order the in-memory backend gives.

use std::ops::Range;
use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, DB, DBCompressionType, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions,
};

use super::{KeyedStateBackend, LocalSnapshot, StateError, StateKey, StateName};

/// One subtask's RocksDB.
pub struct RocksDbStateBackend {
    db: Option<DB>,
    dir: PathBuf,
    write_options: WriteOptions,
    /// Snapshots are taken into `dir/../<name>.checkpoint-<n>`.
    snapshots: u64,
}

impl std::fmt::Debug for RocksDbStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStateBackend")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn error(context: &str, e: impl std::fmt::Display) -> StateError {
    StateError(format!("rocksdb: {context}: {e}"))
}

fn options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_compression_type(DBCompressionType::Lz4);
    // Point lookups per batch: a bloom filter spares most reads of absent keys (3-4x faster
    // random gets measured here).
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_block_cache(&rocksdb::Cache::new_lru_cache(64 << 20));
    options.set_block_based_table_factory(&table);
    options.set_write_buffer_size(64 << 20);
    options
}

impl RocksDbStateBackend {
    /// A new, empty database in `dir` (removed first if it exists: a subtask's working copy is
    /// never reused; what survives is in checkpoints).
    ///
    /// # Errors
    /// The directory cannot be made, or RocksDB cannot open there.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| error(&dir.display().to_string(), e))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| error(&dir.display().to_string(), e))?;
        let db = DB::open(&options(), dir).map_err(|e| error("open", e))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(Self {
            db: Some(db),
            dir: dir.to_path_buf(),
            write_options,
            snapshots: 0,
        })
    }

    fn db(&self) -> Result<&DB, StateError> {
        self.db
            .as_ref()
            .ok_or_else(|| StateError("rocksdb: the database is closed".into()))
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StateError> {
        self.db()?
            .write_opt(batch, &self.write_options)
            .map_err(|e| error("write", e))
    }
}

impl Drop for RocksDbStateBackend {
    fn drop(&mut self) {
        // Close before deleting the working copy.
        self.db = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Appends `bytes` escaped and terminated, so that encoded order is byte order.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Reads one escaped part; the rest after it.
fn pop_escaped(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0 {
            match bytes.get(i + 1)? {
                0 => return Some((out, &bytes[i + 2..])),
                0xFF => {
                    out.push(0);
                    i += 2;
                    continue;
                }
                _ => return None,
            }
        }
        out.push(b);
        i += 1;
    }
    None
}

pub(crate) fn encode_key(state: StateName, key: &StateKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + key.key.len() + key.namespace.len());
    out.extend_from_slice(&state.to_be_bytes());
    out.extend_from_slice(&key.key_group.to_be_bytes());
    push_escaped(&mut out, &key.key);
    push_escaped(&mut out, &key.namespace);
    out
}

pub(crate) fn decode_key(bytes: &[u8]) -> Option<(StateName, StateKey)> {
    let state = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let key_group = u16::from_be_bytes(bytes.get(4..6)?.try_into().ok()?);
    let (key, rest) = pop_escaped(&bytes[6..])?;
    let (namespace, rest) = pop_escaped(rest)?;
    rest.is_empty().then_some((
        state,
        StateKey {
            key_group,
            key,
            namespace,
        },
    ))
}

fn open_read_only(dir: &Path) -> Result<DB, StateError> {
    DB::open_for_read_only(&options(), dir, false).map_err(|e| {
        error(
            &format!("open the restored checkpoint {}", dir.display()),
            e,
        )
    })
}

/// The entries in `key_groups` of the RocksDB checkpoint in `dir` (the in-memory backend
/// restoring a RocksDB checkpoint).
///
/// # Errors
/// The checkpoint cannot be opened or read.
pub fn read_entries(
    dir: &Path,
    key_groups: Range<u16>,
) -> Result<Vec<(StateName, StateKey, Vec<u8>)>, StateError> {
    let db = open_read_only(dir)?;
    let mut entries = Vec::new();
    for_each_entry(&db, |key, value| {
        let (state, key) = decode_key(key).ok_or_else(|| error("restore", "a corrupt key"))?;
        if key_groups.contains(&key.key_group) {
            entries.push((state, key, value.to_vec()));
        }
        Ok(())
    })?;
    Ok(entries)
}

/// Every entry of an opened database (restoring from another subtask's snapshot).
fn for_each_entry(
    db: &DB,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    for item in db.iterator(IteratorMode::Start) {
        let (key, value) = item.map_err(|e| error("read", e))?;
        visit(&key, &value)?;
    }
    Ok(())
}

impl KeyedStateBackend for RocksDbStateBackend {
    fn get_many(
        &self,
        state: StateName,
        keys: &[StateKey],
    ) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        let encoded: Vec<Vec<u8>> = keys.iter().map(|k| encode_key(state, k)).collect();
        self.db()?
            .multi_get(&encoded)
            .into_iter()
            .map(|r| r.map_err(|e| error("read", e)))
            .collect()
    }

    fn put_many(
        &mut self,
        state: StateName,
        entries: Vec<(StateKey, Vec<u8>)>,
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for (key, value) in &entries {
            batch.put(encode_key(state, key), value);
        }
        self.write(batch)
    }

    fn delete(&mut self, state: StateName, key: &StateKey) -> Result<(), StateError> {
        self.delete_many(state, std::slice::from_ref(key))
    }

    fn delete_many(&mut self, state: StateName, keys: &[StateKey]) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for key in keys {
            batch.delete(encode_key(state, key));
        }
        self.write(batch)
    }

    fn entries(&self, state: StateName) -> Result<Vec<(StateKey, Vec<u8>)>, StateError> {
        let prefix = state.to_be_bytes();
        let mut read = ReadOptions::default();
        if let Some(next) = state.checked_add(1) {
            read.set_iterate_upper_bound(next.to_be_bytes().to_vec());
        }
        let mut entries = Vec::new();
        for item in self
            .db()?
            .iterator_opt(IteratorMode::From(&prefix, Direction::Forward), read)
        {
            let (key, value) = item.map_err(|e| error("read", e))?;
            let (_, key) = decode_key(&key).ok_or_else(|| error("read", "a corrupt key"))?;
            entries.push((key, value.to_vec()));
        }
        Ok(entries)
    }

    fn snapshot(&mut self) -> Result<LocalSnapshot, StateError> {
        self.snapshots += 1;
        let dir = self
            .dir
            .with_extension(format!("checkpoint-{}", self.snapshots));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| error("snapshot", e))?;
        }
        let db = self.db()?;
        // The WAL is off: what is in the memtable must reach SST files first.
        db.flush().map_err(|e| error("flush", e))?;
        rocksdb::checkpoint::Checkpoint::new(db)
            .and_then(|c| c.create_checkpoint(&dir))
            .map_err(|e| error("checkpoint", e))?;
        Ok(LocalSnapshot::Files(dir))
    }

    fn restore(&mut self, snapshot: &[u8], key_groups: Range<u16>) -> Result<(), StateError> {
        // A full snapshot (taken by the in-memory backend) restores into RocksDB too.
        let mut batch = WriteBatch::default();
        for (state, key, value) in super::snapshot::read_entries(snapshot, key_groups)? {
            batch.put(encode_key(state, &key), value);
        }
        self.write(batch)
    }

    fn restore_scratch(&self, name: &str) -> PathBuf {
        self.dir.with_extension(name)
    }

    fn adopt_files(&mut self, dir: &Path) -> Result<bool, StateError> {
        let at = |e: std::io::Error| error(&self.dir.display().to_string(), e);
        self.db = None;
        std::fs::remove_dir_all(&self.dir).map_err(at)?;
        if std::fs::rename(dir, &self.dir).is_err() {
            // Another file system: copy.
            std::fs::create_dir_all(&self.dir).map_err(at)?;
            for entry in std::fs::read_dir(dir).map_err(at)? {
                let entry = entry.map_err(at)?;
                std::fs::copy(entry.path(), self.dir.join(entry.file_name())).map_err(at)?;
            }
            let _ = std::fs::remove_dir_all(dir);
        }
        self.db = Some(DB::open(&options(), &self.dir).map_err(|e| error("open", e))?);
        Ok(true)
    }

    fn restore_files(&mut self, dir: &Path, key_groups: Range<u16>) -> Result<(), StateError> {
        let other = open_read_only(dir)?;
        let mut batch = WriteBatch::default();
        let mut pending = 0;
        for_each_entry(&other, |key, value| {
            let (_, decoded) = decode_key(key).ok_or_else(|| error("restore", "a corrupt key"))?;
            if key_groups.contains(&decoded.key_group) {
                batch.put(key, value);
                pending += 1;
                if pending >= 8192 {
                    self.write(std::mem::take(&mut batch))?;
                    pending = 0;
                }
            }
            Ok(())
        })?;
        self.write(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: u16, key: &[u8], namespace: &[u8]) -> StateKey {
        StateKey {
            key_group: group,
            key: key.to_vec(),
            namespace: namespace.to_vec(),
        }
    }

    #[test]
    fn keys_round_trip_and_sort_as_state_keys() {
        let keys = [
            key(1, b"", b""),
            key(1, b"\0", b""),
            key(1, b"\0\0", b"x"),
            key(1, b"a", b"\0"),
            key(1, b"a", b"\x01"),
            key(1, b"ab", b""),
            key(2, b"", b""),
        ];
        let mut encoded: Vec<Vec<u8>> = keys.iter().map(|k| encode_key(7, k)).collect();
        for (bytes, original) in encoded.iter().zip(&keys) {
            assert_eq!(decode_key(bytes), Some((7, original.clone())));
        }
        let before = encoded.clone();
        encoded.sort();
        assert_eq!(encoded, before, "encoded order is StateKey order");
    }

    #[test]
    fn entries_are_kept_read_deleted_snapshotted_and_restored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut backend = RocksDbStateBackend::open(&dir.path().join("db")).expect("open");
        backend
            .put_many(
                1,
                vec![
                    (key(3, b"a", b""), b"x".to_vec()),
                    (key(90, b"b", b"n"), b"y".to_vec()),
                ],
            )
            .expect("put");
        backend
            .put_many(2, vec![(key(3, b"a", b""), b"other".to_vec())])
            .expect("put");
        let got = backend
            .get_many(1, &[key(3, b"a", b""), key(3, b"zz", b"")])
            .expect("get");
        assert_eq!(got, [Some(b"x".to_vec()), None]);
        assert_eq!(backend.entries(1).expect("entries").len(), 2);
        backend
            .delete_many(2, &[key(3, b"a", b"")])
            .expect("delete");
        assert!(backend.entries(2).expect("entries").is_empty());
        let LocalSnapshot::Files(snapshot) = backend.snapshot().expect("snapshot") else {
            panic!("rocksdb snapshots are files");
        };
        // After the snapshot, changes do not reach it.
        backend
            .put_many(1, vec![(key(5, b"late", b""), b"z".to_vec())])
            .expect("put");
        let mut low = RocksDbStateBackend::open(&dir.path().join("low")).expect("open");
        low.restore_files(&snapshot, 0..64).expect("restore");
        assert_eq!(
            low.entries(1).expect("entries"),
            [(key(3, b"a", b""), b"x".to_vec())]
        );
        let mut all = RocksDbStateBackend::open(&dir.path().join("all")).expect("open");
        all.restore_files(&snapshot, 0..128).expect("restore");
        assert_eq!(all.entries(1).expect("entries").len(), 2);
    }
}
