//! Counter-based random numbers, and the text (pools, string tables) strings are copied from.

use std::sync::OnceLock;

/// Short strings in fixed-size slots, so that fetching one touches one place in memory (the
/// lengths are small enough to stay in cache).
pub(super) struct StringTable {
    bytes: Vec<u8>,
    lens: Vec<u8>,
    /// Slot size: the longest string's length.
    pub(super) stride: usize,
}

impl StringTable {
    /// Every string is shorter than 256 bytes.
    pub(super) fn new(strings: &[String]) -> Self {
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
    pub(super) fn slot(&self, i: usize) -> (&[u8], usize) {
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
pub(super) const STREAM_URLS: u64 = 1000;
/// The random stream for events' lag behind their place (`'events.out-of-orderness'`).
pub(super) const STREAM_LATENESS: u64 = 1001;

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
pub(super) struct Stream(u64);

impl Stream {
    pub(super) fn new(seed: u64, id: u64) -> Self {
        Self(mix64(seed ^ mix64(id.wrapping_add(1).wrapping_mul(GOLDEN))))
    }

    #[inline]
    pub(super) fn at(self, index: u64) -> u64 {
        mix64(self.0.wrapping_add(index.wrapping_mul(GOLDEN)))
    }
}

/// A sequential splitmix64, for the tables built once.
#[derive(Debug)]
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }
}

/// A number in `0..n` from the high bits of `r` (Lemire's multiply-shift; the bias is at most
/// n / 2^64).
#[inline]
pub(super) fn below(r: u64, n: u64) -> u64 {
    ((u128::from(r) * u128::from(n)) >> 64) as u64
}

#[inline]
pub(super) fn pick<'a>(choices: &[&'a str], r: u64) -> &'a str {
    choices[below(r, choices.len() as u64) as usize]
}

/// How long an `extra` is: `min + below(spread)` bytes, that is the average ±20%, as in Beam.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExtraLength {
    min: u64,
    spread: u64,
}

impl ExtraLength {
    pub(super) const fn around(average: u64) -> Self {
        let delta = (average + 2) / 5;
        Self {
            min: average - delta,
            spread: 2 * delta,
        }
    }

    pub(super) fn max(self) -> usize {
        (self.min + self.spread) as usize
    }

    #[inline]
    pub(super) fn pick(self, r: u64) -> usize {
        (self.min + below(r, self.spread)) as usize
    }
}

/// Random text that strings are sliced from: cheaper than drawing each character, and as good
/// for a benchmark's padding and names.
#[derive(Debug)]
pub(super) struct Pools {
    /// Lowercase letters.
    pub(super) letters: Vec<u8>,
    /// Lowercase letters and, one in 13, a space (Beam's `nextString`).
    pub(super) spaced: Vec<u8>,
}

/// Slices start anywhere in the first POOL_LEN bytes; POOL_SLACK more hold the longest string.
const POOL_LEN: usize = 1 << 16;
const POOL_SLACK: usize = 512;

pub(super) fn pools() -> &'static Pools {
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
pub(super) fn pool_start(r: u64) -> usize {
    (r as usize) & (POOL_LEN - 1)
}

/// `len` bytes of `pool` from `pool_start(r)`, without leading or trailing spaces.
#[inline]
pub(super) fn pool_slice(pool: &[u8], r: u64, len: usize) -> &[u8] {
    let start = pool_start(r);
    pool[start..start + len].trim_ascii()
}

/// Appends the first `len` bytes of `source`. Copies all of `source`, then drops the rest: a copy
/// of the same size for every row, where one of each row's size would branch on it.
#[inline]
pub(super) fn push_prefix(out: &mut Vec<u8>, source: &[u8], len: usize) {
    let end = out.len() + len;
    out.extend_from_slice(source);
    out.truncate(end);
}
