//! Reading line-based files (csv, json lines) by byte range, in bulk, with exact bad-line reports.
//!
//! A range `start..end` of a file owns the lines that start in it: its reader skips to the first
//! line start at or after `start` and stops after the line that holds byte `end - 1`, so adjacent
//! ranges share no line and miss none. The reader reads large blocks and hands the whole lines of
//! each block to a [`LineDecoder`] at once (Arrow's decoders are fast in bulk, slow row by row),
//! which fails the block if any line is not exactly one row. Only then does the reader bisect the
//! block to find the bad lines, and only when it reports one does it count the lines before it,
//! from the start of the file: line numbers cost nothing until there is an error.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use arrow::record_batch::RecordBatch;

use super::ByteRange;
use crate::connector::{ConnectorError, SourceReader};

/// A line longer than this is an error rather than an unbounded allocation.
const MAX_LINE: usize = 256 << 20;

/// Decodes whole lines of one format into batches of the projected columns.
pub(crate) trait LineDecoder: Send {
    /// Decodes `lines` (whole lines, each ending in `\n`), appending batches of at most the batch
    /// size to `out`. Every line must hold exactly one row, or none if it is blank: any other line
    /// fails the whole call. After an error the caller calls [`LineDecoder::reset`] and discards
    /// what was appended.
    fn decode(&mut self, lines: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), String>;

    /// Forgets any state left by a failed [`LineDecoder::decode`].
    fn reset(&mut self) -> Result<(), String>;

    /// Why `line` alone failed with `error`, in the user's terms; called only to report it.
    fn explain(&self, line: &[u8], error: String) -> String;
}

/// One subtask's reader of line-based files: its byte ranges, in order.
pub(super) struct LineReader<D> {
    /// The table's name, for errors that are not about a line.
    table: String,
    decoder: D,
    ranges: VecDeque<ByteRange>,
    cursor: Option<Cursor>,
    /// Reused across ranges; its length is its capacity, `Cursor::filled` says what holds data.
    buf: Vec<u8>,
    header: bool,
    ignore_errors: bool,
    ready: VecDeque<RecordBatch>,
    scratch: Vec<RecordBatch>,
    skipped: u64,
}

impl<D> std::fmt::Debug for LineReader<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineReader")
            .field("ranges", &self.ranges)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// Where the reader is in its current range.
struct Cursor {
    path: PathBuf,
    file: File,
    /// Lines starting at or after this offset belong to the next range.
    end: u64,
    /// The file offset of `buf[0]`.
    buf_offset: u64,
    /// The first byte of `buf` not yet handed out.
    pos: usize,
    /// The bytes of `buf` holding data.
    filled: usize,
    eof: bool,
    done: bool,
    /// The bytes up to the first newline are not this range's: the end of the previous range's
    /// last line, or a csv header.
    skip_line: bool,
}

impl<D: LineDecoder> LineReader<D> {
    pub(super) fn new(
        table: &str,
        decoder: D,
        ranges: Vec<ByteRange>,
        header: bool,
        ignore_errors: bool,
        block_size: usize,
    ) -> Self {
        LineReader {
            table: table.to_string(),
            decoder,
            ranges: ranges.into(),
            cursor: None,
            buf: vec![0; block_size.max(64)],
            header,
            ignore_errors,
            ready: VecDeque::new(),
            scratch: Vec::new(),
            skipped: 0,
        }
    }

    fn open(&self, range: &ByteRange) -> Result<Cursor, ConnectorError> {
        let io = |e: std::io::Error| super::io_error(&range.path, &e);
        let mut file = File::open(&range.path).map_err(io)?;
        // A range that does not start the file starts after the first newline at or after
        // `start - 1`: the line holding `start - 1` is the previous range's.
        let buf_offset = range.start.saturating_sub(1);
        if buf_offset > 0 {
            file.seek(SeekFrom::Start(buf_offset)).map_err(io)?;
        }
        Ok(Cursor {
            path: range.path.clone(),
            file,
            end: range.end,
            buf_offset,
            pos: 0,
            filled: 0,
            eof: false,
            done: false,
            skip_line: range.start > 0 || self.header,
        })
    }

    /// Decodes the next block of lines into `self.ready`; `false` at the end of every range.
    fn advance(&mut self) -> Result<bool, ConnectorError> {
        loop {
            if self.cursor.is_none() {
                let Some(range) = self.ranges.pop_front() else {
                    return Ok(false);
                };
                self.cursor = Some(self.open(&range)?);
            }
            let Some(cursor) = self.cursor.as_mut() else {
                continue;
            };
            match cursor.next_chunk(&mut self.buf)? {
                Some(chunk) => {
                    let offset = cursor.buf_offset + chunk.start as u64;
                    let result = decode_chunk(
                        &mut self.decoder,
                        &self.buf[chunk],
                        &mut self.ready,
                        &mut self.scratch,
                        self.ignore_errors,
                        &mut self.skipped,
                    );
                    match result {
                        Ok(()) => return Ok(true),
                        Err(ChunkError::Decoder(message)) => {
                            return Err(ConnectorError::Other {
                                table: self.table.clone(),
                                message: format!(
                                    "{}: the decoder failed: {message}",
                                    cursor.path.display()
                                ),
                            });
                        }
                        Err(ChunkError::BadLine { at, reason }) => {
                            let offset = offset + at as u64;
                            return Err(ConnectorError::Parse {
                                line: line_number(&cursor.path, offset)?,
                                path: cursor.path.clone(),
                                reason,
                            });
                        }
                    }
                }
                None => self.cursor = None,
            }
        }
    }
}

impl<D: LineDecoder> SourceReader for LineReader<D> {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                return Ok(Some(batch));
            }
            if !self.advance()? {
                return Ok(None);
            }
        }
    }

    fn skipped_rows(&self) -> u64 {
        self.skipped
    }
}

impl Cursor {
    /// The next run of whole lines of this range, as indexes into `buf`; each ends in `\n` (one is
    /// added after the last line of a file that does not end in one).
    fn next_chunk(
        &mut self,
        buf: &mut Vec<u8>,
    ) -> Result<Option<std::ops::Range<usize>>, ConnectorError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let avail = &buf[self.pos..self.filled];
            if self.skip_line {
                match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.pos += i + 1;
                        self.skip_line = false;
                    }
                    None if self.eof => self.done = true,
                    None => {
                        // Nothing here is ours: drop it rather than grow the buffer for it.
                        self.pos = self.filled;
                        self.refill(buf)?;
                    }
                }
                continue;
            }
            let offset = self.buf_offset + self.pos as u64;
            if offset >= self.end || (avail.is_empty() && self.eof) {
                self.done = true;
                continue;
            }
            // The range's last line is the one holding byte `end - 1`; it ends at the first
            // newline from there on.
            let last = usize::try_from(self.end - 1 - offset).unwrap_or(usize::MAX);
            if let Some(tail) = avail.get(last..)
                && let Some(i) = tail.iter().position(|&b| b == b'\n')
            {
                let chunk = self.pos..self.pos + last + i + 1;
                self.pos = chunk.end;
                self.done = true;
                return Ok(Some(chunk));
            }
            if let Some(i) = avail.iter().rposition(|&b| b == b'\n') {
                let chunk = self.pos..self.pos + i + 1;
                self.pos = chunk.end;
                return Ok(Some(chunk));
            }
            if self.eof {
                // The file's last line has no newline: give it one, so that every chunk ends in
                // one (the decoders then need no end-of-input call).
                if self.filled == buf.len() {
                    buf.push(b'\n');
                } else {
                    buf[self.filled] = b'\n';
                }
                self.filled += 1;
                continue;
            }
            self.refill(buf)?;
        }
    }

    /// Moves the unread bytes to the front of `buf` and reads after them until `buf` is full or
    /// the file ends; grows `buf` when one line fills it.
    fn refill(&mut self, buf: &mut Vec<u8>) -> Result<(), ConnectorError> {
        if self.pos > 0 {
            buf.copy_within(self.pos..self.filled, 0);
            self.buf_offset += self.pos as u64;
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.filled == buf.len() {
            if buf.len() >= MAX_LINE {
                return Err(ConnectorError::Parse {
                    line: line_number(&self.path, self.buf_offset)?,
                    path: self.path.clone(),
                    reason: format!("line longer than {} MiB", MAX_LINE >> 20),
                });
            }
            buf.resize((buf.len() * 2).min(MAX_LINE), 0);
        }
        while self.filled < buf.len() {
            match self.file.read(&mut buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(super::io_error(&self.path, &e)),
            }
        }
        Ok(())
    }
}

/// Why a chunk could not be decoded.
enum ChunkError {
    /// A line of the chunk, at this index, is bad and errors are not ignored.
    BadLine { at: usize, reason: String },
    /// The decoder itself failed (cannot be reset): not the data's fault.
    Decoder(String),
}

/// Decodes `chunk` into `ready`: in bulk, and by bisection only if that fails.
fn decode_chunk<D: LineDecoder>(
    decoder: &mut D,
    chunk: &[u8],
    ready: &mut VecDeque<RecordBatch>,
    scratch: &mut Vec<RecordBatch>,
    ignore_errors: bool,
    skipped: &mut u64,
) -> Result<(), ChunkError> {
    scratch.clear();
    if decoder.decode(chunk, scratch).is_ok() {
        ready.extend(scratch.drain(..));
        return Ok(());
    }
    scratch.clear();
    decoder.reset().map_err(ChunkError::Decoder)?;
    let mut ends: Vec<usize> = newlines(chunk).map(|i| i + 1).collect();
    // Every chunk ends in a newline; this only guards against a chunk that would not.
    if ends.last() != Some(&chunk.len()) {
        ends.push(chunk.len());
    }
    let mut salvage = Salvage {
        decoder,
        chunk,
        ready,
        scratch,
        ignore_errors,
        skipped,
    };
    salvage.run(0, &ends)
}

/// Decodes the good lines of a chunk that failed in bulk, halving the failing parts until single
/// bad lines remain: few bad lines cost a few extra decodes, not one decode per line.
struct Salvage<'a, D> {
    decoder: &'a mut D,
    chunk: &'a [u8],
    ready: &'a mut VecDeque<RecordBatch>,
    scratch: &'a mut Vec<RecordBatch>,
    ignore_errors: bool,
    skipped: &'a mut u64,
}

impl<D: LineDecoder> Salvage<'_, D> {
    /// Decodes the lines that start at `start` and end at each of `ends`.
    fn run(&mut self, start: usize, ends: &[usize]) -> Result<(), ChunkError> {
        let Some(&end) = ends.last() else {
            return Ok(());
        };
        let bytes = &self.chunk[start..end];
        self.scratch.clear();
        let error = match self.decoder.decode(bytes, self.scratch) {
            Ok(()) => {
                self.ready.extend(self.scratch.drain(..));
                return Ok(());
            }
            Err(error) => error,
        };
        self.scratch.clear();
        self.decoder.reset().map_err(ChunkError::Decoder)?;
        if ends.len() > 1 {
            let (left, right) = ends.split_at(ends.len() / 2);
            self.run(start, left)?;
            let middle = left.last().copied().unwrap_or(start);
            return self.run(middle, right);
        }
        if self.ignore_errors {
            *self.skipped += 1;
            return Ok(());
        }
        Err(ChunkError::BadLine {
            at: start,
            reason: self.decoder.explain(bytes, error),
        })
    }
}

/// The offsets of the newlines in `bytes`, in order (memchr's vectorised scan: on json lines this
/// loop ran at a tenth of the decoder's cost with a word-at-a-time scan).
pub(super) fn newlines(bytes: &[u8]) -> memchr::Memchr<'_> {
    memchr::memchr_iter(b'\n', bytes)
}

/// The 1-based number of the line starting at byte `offset` of the file: counted only for an
/// error report, so reading the file's start again costs nothing on the good path.
fn line_number(path: &std::path::Path, offset: u64) -> Result<u64, ConnectorError> {
    let io = |e: std::io::Error| super::io_error(path, &e);
    let file = File::open(path).map_err(io)?;
    let mut reader = file.take(offset);
    let mut buf = vec![0u8; 1 << 16];
    let mut count = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => count += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(count + 1)
}
