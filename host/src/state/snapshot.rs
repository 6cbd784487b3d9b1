//! Weir's own snapshot format for keyed state: every entry of every state, then a checksum.
//!
//! The in-memory backend writes its whole state in this format at a checkpoint; restoring reads
//! the entries back and keeps those whose key group the subtask owns (all of them, unless the job
//! was rescaled). A truncated or altered file fails its checksum and is refused, never half-read.
//!
//! Layout: `WEIRSTATE1`, then per entry `state u32, key group u16, key, namespace, value` (the
//! three byte strings each with a u32 length; all integers little-endian), then the first 8 bytes
//! of the SHA-256 of everything before them.

use std::ops::Range;

use sha2::{Digest, Sha256};

use super::{StateError, StateKey, StateName};

const MAGIC: &[u8] = b"WEIRSTATE1";
const CHECKSUM_BYTES: usize = 8;

/// Appends entries; `finish` seals them.
#[derive(Debug)]
pub struct SnapshotWriter {
    bytes: Vec<u8>,
}

impl Default for SnapshotWriter {
    fn default() -> Self {
        Self {
            bytes: MAGIC.to_vec(),
        }
    }
}

impl SnapshotWriter {
    pub fn entry(&mut self, state: StateName, key: &StateKey, value: &[u8]) {
        self.bytes.extend_from_slice(&state.to_le_bytes());
        self.bytes.extend_from_slice(&key.key_group.to_le_bytes());
        for part in [&key.key[..], &key.namespace[..], value] {
            self.bytes
                .extend_from_slice(&(part.len() as u32).to_le_bytes());
            self.bytes.extend_from_slice(part);
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        let digest = Sha256::digest(&self.bytes);
        self.bytes.extend_from_slice(&digest[..CHECKSUM_BYTES]);
        self.bytes
    }
}

/// Every entry of `snapshot` whose key group is in `key_groups`, after checking the whole file.
///
/// # Errors
/// A file that is not a state snapshot, is truncated or fails its checksum.
pub fn read_entries(
    snapshot: &[u8],
    key_groups: Range<u16>,
) -> Result<Vec<(StateName, StateKey, Vec<u8>)>, StateError> {
    let corrupt = |what: &str| StateError(format!("the state snapshot is corrupt: {what}"));
    let body_len = snapshot
        .len()
        .checked_sub(CHECKSUM_BYTES)
        .filter(|&n| n >= MAGIC.len())
        .ok_or_else(|| corrupt("it is too short (truncated?)"))?;
    let (body, checksum) = snapshot.split_at(body_len);
    if !body.starts_with(MAGIC) {
        return Err(corrupt("it does not start as a Weir state snapshot"));
    }
    if Sha256::digest(body)[..CHECKSUM_BYTES] != *checksum {
        return Err(corrupt(
            "its checksum does not match (truncated or altered)",
        ));
    }
    let mut rest = &body[MAGIC.len()..];
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let (state, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("an entry is cut short"))?;
        let (group, mut after) = after
            .split_first_chunk::<2>()
            .ok_or_else(|| corrupt("an entry is cut short"))?;
        let mut parts: [&[u8]; 3] = [&[]; 3];
        for part in &mut parts {
            let (length, tail) = after
                .split_first_chunk::<4>()
                .ok_or_else(|| corrupt("an entry is cut short"))?;
            let (bytes, tail) = tail
                .split_at_checked(u32::from_le_bytes(*length) as usize)
                .ok_or_else(|| corrupt("an entry is cut short"))?;
            *part = bytes;
            after = tail;
        }
        rest = after;
        let key_group = u16::from_le_bytes(*group);
        if key_groups.contains(&key_group) {
            entries.push((
                u32::from_le_bytes(*state),
                StateKey {
                    key_group,
                    key: parts[0].to_vec(),
                    namespace: parts[1].to_vec(),
                },
                parts[2].to_vec(),
            ));
        }
    }
    Ok(entries)
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
    fn entries_round_trip_and_filter_by_key_group() {
        let mut writer = SnapshotWriter::default();
        writer.entry(1, &key(3, b"a", b""), b"x");
        writer.entry(2, &key(70, b"bb", b"ns"), b"");
        let bytes = writer.finish();
        let all = read_entries(&bytes, 0..128).expect("read");
        assert_eq!(
            all,
            [
                (1, key(3, b"a", b""), b"x".to_vec()),
                (2, key(70, b"bb", b"ns"), Vec::new())
            ]
        );
        let upper = read_entries(&bytes, 64..128).expect("read");
        assert_eq!(upper, [(2, key(70, b"bb", b"ns"), Vec::new())]);
    }

    #[test]
    fn truncated_or_altered_snapshots_are_refused() {
        let mut writer = SnapshotWriter::default();
        writer.entry(1, &key(3, b"a", b""), b"value");
        let bytes = writer.finish();
        for cut in [0, 5, bytes.len() - 1] {
            let error = read_entries(&bytes[..cut], 0..128).expect_err("truncated");
            assert!(error.to_string().contains("corrupt"), "{error}");
        }
        let mut altered = bytes.clone();
        altered[14] ^= 1;
        let error = read_entries(&altered, 0..128).expect_err("altered");
        assert!(error.to_string().contains("checksum"), "{error}");
    }
}
