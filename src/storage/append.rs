//! Appending an upload's bytes to its staging file, on the upload's writer thread.
//!
//! Where the filesystem allows it (Linux, `O_DIRECT`), whole blocks go straight from memory
//! to the disk, past the page cache: an upload then costs no copy into the page cache and
//! no writeback work, which measured as most of the kernel's share of a push (a 1 GiB `dd`
//! here: 1.3–1.5 s of system CPU through the page cache, 0.1 s direct), and a large push no
//! longer evicts what pulls are reading from the cache. A piece that starts at an aligned
//! address where the file is at a block boundary (the request's pieces come from an aligned
//! pool: `storage::buffers`) is written as it is; other bytes are first gathered into an
//! aligned buffer of the writer's. A blob's first [`CACHED_HEAD`] bytes, and the bytes that
//! do not fill a block (the start of an append at an unaligned offset, the end of one), are
//! written through the page cache, with [`Writeback`] started early as everywhere else.
//! Either way nothing here is durable: the commit's fsync decides.
//!
//! Where `O_DIRECT` is refused (when opening, as on tmpfs, or by a write), every byte goes
//! through the page cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes};

use super::writeback::Writeback;

/// File offsets, lengths and buffer addresses of direct writes are multiples of this (the
/// largest logical block size and memory alignment a Linux block device asks for).
const BLOCK: usize = super::buffers::ALIGN;

/// The first bytes of every blob go through the page cache all the same: small blobs
/// (configs, small layers) are the ones pulled right after a push, and cheap to keep in
/// memory; what follows is written directly. A multiple of [`BLOCK`].
const CACHED_HEAD: u64 = 16 * 1024 * 1024;

/// Bytes gathered before a direct write.
const DIRECT_BUFFER: usize = 1024 * 1024;

/// Appends to one staging file from `offset` on.
#[derive(Debug)]
pub(super) struct Appender {
    /// The file, through the page cache.
    file: File,
    /// Where the file is, to open it for direct writes once the append passes the head.
    path: PathBuf,
    /// The same file opened for direct writes, while they work.
    direct: Option<Direct>,
    /// False once direct writes were refused (or where there are none): no more tries.
    may_go_direct: bool,
    /// Bytes in the file (written or not yet written from `direct`'s piece and buffer).
    end: u64,
    writeback: Writeback,
}

#[derive(Debug)]
struct Direct {
    file: File,
    /// Whole blocks at an aligned address, to be written as they are at `written`.
    piece: Option<Bytes>,
    /// `BLOCK`-aligned storage of `DIRECT_BUFFER` bytes at `start` (allocated when first
    /// needed: not at all while every piece is aligned).
    storage: Vec<u8>,
    start: usize,
    /// Bytes gathered in the buffer, to be written after `piece`.
    held: usize,
    /// Bytes of the file written so far: where `piece`, then the buffer's bytes, belong.
    written: u64,
}

impl Appender {
    /// Appends to `file` (already cut to `offset` bytes, the file at `path`) from `offset`.
    pub(super) fn new(path: &Path, file: File, offset: u64) -> Self {
        Appender {
            path: path.to_owned(),
            direct: None,
            may_go_direct: cfg!(target_os = "linux"),
            file,
            end: offset,
            writeback: Writeback::new(offset),
        }
    }

    /// Appends `bytes`: written through the page cache, or kept for a direct write (the
    /// piece itself if it is aligned, else a copy in the writer's buffer). The caller then
    /// calls [`Appender::settle`], which writes and waits for the disk.
    pub(super) fn append(&mut self, mut bytes: Bytes) -> io::Result<()> {
        if self.direct.is_none()
            && self.may_go_direct
            && self.end.saturating_add(bytes.len() as u64) > CACHED_HEAD
        {
            // Opened only now: most blobs (configs, small layers) never get this far.
            self.direct = Direct::open(&self.path, self.end);
            self.may_go_direct = self.direct.is_some();
        }
        let Some(direct) = &mut self.direct else {
            self.file.write_all_at(&bytes, self.end)?;
            self.end += bytes.len() as u64;
            return Ok(());
        };
        // Through the page cache: the blob's head, or up to the next block boundary.
        let cached_until = direct
            .written
            .next_multiple_of(BLOCK as u64)
            .max(CACHED_HEAD);
        if direct.held == 0 && direct.piece.is_none() && direct.written < cached_until {
            let n = usize::try_from(cached_until - direct.written)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            self.file.write_all_at(&bytes[..n], direct.written)?;
            direct.written += n as u64;
            self.end += n as u64;
            bytes.advance(n);
        }
        // Whole blocks at an aligned address, where the file is at a block boundary:
        // written as they are.
        if direct.held == 0
            && direct.piece.is_none()
            && direct.written.is_multiple_of(BLOCK as u64)
            && (bytes.as_ptr() as usize).is_multiple_of(BLOCK)
        {
            let whole = bytes.len() - bytes.len() % BLOCK;
            if whole > 0 {
                direct.piece = Some(bytes.split_to(whole));
                self.end += whole as u64;
            }
        }
        while !bytes.is_empty() {
            if direct.held == DIRECT_BUFFER && !direct.write_blocks(&self.file)? {
                self.stop_direct()?;
                return self.append(bytes);
            }
            let n = direct.gather(&bytes);
            self.end += n as u64;
            bytes.advance(n);
        }
        Ok(())
    }

    /// Writes a piece or a full buffer directly, or lets writeback of what went through
    /// the page cache progress: where the writer waits for the disk.
    pub(super) fn settle(&mut self) -> io::Result<()> {
        if let Some(direct) = &mut self.direct {
            self.writeback
                .written(&self.file, direct.written.min(CACHED_HEAD));
            let still_direct = direct.write_piece(&self.file)?
                && (direct.held < DIRECT_BUFFER || direct.write_blocks(&self.file)?);
            if !still_direct {
                self.stop_direct()?;
            }
            return Ok(());
        }
        self.writeback.written(&self.file, self.end);
        Ok(())
    }

    /// Writes what is still kept and starts writeback of what went through the page
    /// cache: the append is complete in the file (not durable) when this returns.
    pub(super) fn finish(mut self) -> io::Result<u64> {
        // At most a piece and a buffer's worth.
        if let Some(mut direct) = self.direct.take() {
            direct.write_piece(&self.file)?;
            direct.write_blocks(&self.file)?;
            direct.write_cached(&self.file)?;
        }
        self.writeback.finish(&self.file, self.end);
        Ok(self.end)
    }

    /// Stops direct writes after one was refused: what is still kept for them is written
    /// through the page cache.
    fn stop_direct(&mut self) -> io::Result<()> {
        self.may_go_direct = false;
        match self.direct.take() {
            Some(direct) => direct.write_cached(&self.file),
            None => Ok(()),
        }
    }
}

impl Direct {
    /// `path` opened for direct writes, or `None` where that is refused.
    #[cfg(target_os = "linux")]
    fn open(path: &Path, offset: u64) -> Option<Direct> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .inspect_err(
                |e| tracing::debug!(error = %e, "no O_DIRECT; writing through the page cache"),
            )
            .ok()?;
        Some(Direct {
            file,
            piece: None,
            storage: Vec::new(),
            start: 0,
            held: 0,
            written: offset,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn open(_path: &Path, _offset: u64) -> Option<Direct> {
        None
    }

    /// Copies as much of `bytes` as fits into the buffer: how much.
    fn gather(&mut self, bytes: &[u8]) -> usize {
        if self.storage.is_empty() {
            self.storage = vec![0u8; DIRECT_BUFFER + BLOCK];
            self.start = self.storage.as_ptr().align_offset(BLOCK);
        }
        let n = bytes.len().min(DIRECT_BUFFER - self.held);
        let at = self.start + self.held;
        self.storage[at..at + n].copy_from_slice(&bytes[..n]);
        self.held += n;
        n
    }

    /// Writes the piece kept, if any, directly. False if the filesystem refused the direct
    /// write: the bytes then went through `file` instead, and direct writes should stop.
    fn write_piece(&mut self, file: &File) -> io::Result<bool> {
        let Some(piece) = self.piece.take() else {
            return Ok(true);
        };
        let direct = write_direct(&self.file, file, &piece, self.written)?;
        self.written += piece.len() as u64;
        Ok(direct)
    }

    /// Writes the buffer's whole blocks directly (after the piece kept, if any), keeping
    /// the rest (less than a block) at its front. False as for [`Direct::write_piece`].
    fn write_blocks(&mut self, file: &File) -> io::Result<bool> {
        if !self.write_piece(file)? {
            return Ok(false);
        }
        let whole = self.held - self.held % BLOCK;
        let blocks = &self.storage[self.start..self.start + whole];
        let direct = write_direct(&self.file, file, blocks, self.written)?;
        self.written += whole as u64;
        self.storage
            .copy_within(self.start + whole..self.start + self.held, self.start);
        self.held -= whole;
        Ok(direct)
    }

    /// Writes everything still kept through `file` (the page cache).
    fn write_cached(mut self, file: &File) -> io::Result<()> {
        if let Some(piece) = self.piece.take() {
            file.write_all_at(&piece, self.written)?;
            self.written += piece.len() as u64;
        }
        file.write_all_at(
            &self.storage[self.start..self.start + self.held],
            self.written,
        )
    }
}

/// Writes `bytes` (whole blocks at an aligned address) at `offset` of `direct`, or, if the
/// filesystem refuses that, through `cached` (false).
fn write_direct(direct: &File, cached: &File, bytes: &[u8], offset: u64) -> io::Result<bool> {
    match direct.write_all_at(bytes, offset) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::debug!(error = %e, "O_DIRECT write refused; writing through the page cache");
            cached.write_all_at(bytes, offset)?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::buffers::BufferPool;

    /// What an append left: the file's bytes, the bytes appended to it, whether direct
    /// writes were used to the end, and whether any bytes were copied into the writer's
    /// own buffer for them.
    struct Appended {
        got: Vec<u8>,
        want: Vec<u8>,
        direct: bool,
        copied: bool,
    }

    /// Appends `pieces` to a file of `offset` bytes in `dir`, the pieces in buffers of an
    /// aligned pool if `aligned`.
    fn append_pieces(dir: &Path, offset: usize, pieces: &[usize], aligned: bool) -> Appended {
        let path = dir.join(format!("staging-{offset}-{}-{aligned}", pieces.len()));
        let mut want: Vec<u8> = (0..offset).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &want).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut appender = Appender::new(&path, file, offset as u64);
        let pool = BufferPool::new(pieces.iter().copied().max().unwrap_or(0));
        let mut next = 0u8;
        let mut copied = false;
        for &len in pieces {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    next = next.wrapping_add(7);
                    next
                })
                .collect();
            want.extend_from_slice(&bytes);
            let piece = if aligned {
                let mut buffer = pool.take();
                buffer.extend_from_slice(&bytes);
                pool.freeze(buffer, ())
            } else {
                Bytes::from(bytes)
            };
            appender.append(piece).unwrap();
            copied |= appender
                .direct
                .as_ref()
                .is_some_and(|direct| !direct.storage.is_empty());
            appender.settle().unwrap();
        }
        let direct = appender.direct.is_some();
        assert_eq!(appender.finish().unwrap(), want.len() as u64);
        let got = std::fs::read(&path).unwrap();
        Appended {
            got,
            want,
            direct,
            copied,
        }
    }

    #[test]
    fn appends_every_byte_at_any_offset_in_any_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let mib = DIRECT_BUFFER;
        let head = CACHED_HEAD as usize;
        let cases: &[(usize, &[usize])] = &[
            (0, &[mib, mib, mib]),
            (0, &[mib, 1, mib - 1, 3 * mib + 17]),
            (100, &[mib, mib, 5]),
            (BLOCK - 1, &[1, 1, BLOCK, mib]),
            (mib + 5, &[2 * mib + 1000]),
            (head - 100, &[mib, 7, mib]),
            (head + 1, &[BLOCK, 2 * mib + 3]),
            (0, &[head + 3 * mib + 5]),
            (head, &[mib + 5, mib, 3]),
            (head, &[BLOCK + 1, BLOCK - 1, mib]),
            (0, &[10]),
            (7, &[]),
        ];
        for aligned in [false, true] {
            for &(offset, pieces) in cases {
                let appended = append_pieces(dir.path(), offset, pieces, aligned);
                assert!(
                    appended.got == appended.want,
                    "offset {offset}, pieces {pieces:?}, aligned {aligned}"
                );
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn direct_writes_are_used_where_the_filesystem_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        if Direct::open(&probe, 0).is_none() {
            eprintln!("O_DIRECT refused here (tmpfs?): nothing to check");
            return;
        }
        let head = CACHED_HEAD as usize;
        let appended = append_pieces(dir.path(), 3, &[head, 3 * DIRECT_BUFFER + 1], false);
        assert!(appended.got == appended.want);
        assert!(appended.direct, "the appends past the head stayed direct");
        // An upload's pieces: aligned, of 1 MiB, from offset 0.
        let pieces = vec![DIRECT_BUFFER; head / DIRECT_BUFFER + 4];
        let appended = append_pieces(dir.path(), 0, &pieces, true);
        assert!(appended.got == appended.want);
        assert!(appended.direct);
        assert!(!appended.copied, "aligned pieces were written as they are");
    }
}
