//! Writeback started while an upload's bytes still arrive. A blob is fsynced before it
//! becomes visible; left to itself, the kernel holds most of a large blob dirty in the page
//! cache until that fsync, which then waits for all of it while the client waits for its
//! `201`. Instead, the writer thread asks the disk to start writing each [`STEP`] as soon as
//! it is written (`sync_file_range(WRITE)`, which does not wait), and waits for the step
//! before it (`WAIT_BEFORE | WRITE | WAIT_AFTER`). So the disk writes while the network
//! delivers and the hash runs, at most about two steps of an upload are dirty at any time
//! (memory stays flat when the disk is slower than the network: the writer waits, its queue
//! fills, the request body is read no faster than the disk takes it), and the final fsync
//! finds little left to flush.
//!
//! Only a hint: `sync_file_range` makes nothing durable by itself (no metadata, no disk
//! cache flush), so the fsync in `upload_seal` still decides. Where the call fails (not
//! Linux, a filesystem that does not support it), the upload goes on without it.

use std::fs::File;
use std::io;

/// Bytes written between two writeback requests.
pub(super) const STEP: u64 = 8 * 1024 * 1024;

/// The writeback state of one file being appended to.
#[derive(Debug)]
pub(super) struct Writeback {
    /// Writeback was requested for every byte before this offset.
    started: u64,
    /// Every byte before this offset has been written back (or the append began here).
    settled: u64,
    /// False once a call failed: the rest of the append is left to the final fsync.
    enabled: bool,
}

impl Writeback {
    /// Writeback for a file whose bytes before `offset` are not this append's concern.
    pub(super) fn new(offset: u64) -> Self {
        Writeback {
            started: offset,
            settled: offset,
            enabled: true,
        }
    }

    /// Called after the bytes before `end` were written to `file`: starts their writeback
    /// once a step has gathered, then waits for the step before.
    pub(super) fn written(&mut self, file: &File, end: u64) {
        if !self.enabled || end.saturating_sub(self.started) < STEP {
            return;
        }
        let previous = self.settled..self.started;
        self.request(file, self.started, end, Flags::Start);
        self.started = end;
        if self.enabled && !previous.is_empty() {
            self.request(file, previous.start, previous.end, Flags::StartAndWait);
            self.settled = previous.end;
        }
    }

    /// Called when the append ends at `end`: starts writeback of what is left, without
    /// waiting (the next append, or the fsync, will).
    pub(super) fn finish(&mut self, file: &File, end: u64) {
        if self.enabled && end > self.started {
            self.request(file, self.started, end, Flags::Start);
            self.started = end;
        }
    }

    fn request(&mut self, file: &File, start: u64, end: u64, flags: Flags) {
        if let Err(e) = sync_file_range(file, start, end - start, flags) {
            tracing::debug!(error = %e, "sync_file_range failed; leaving writeback to fsync");
            self.enabled = false;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Flags {
    /// Start writing the range's dirty pages; do not wait.
    Start,
    /// Wait for writes in flight, start the rest, wait for all of them.
    StartAndWait,
}

#[cfg(target_os = "linux")]
fn sync_file_range(file: &File, offset: u64, len: u64, flags: Flags) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = match flags {
        Flags::Start => libc::SYNC_FILE_RANGE_WRITE,
        Flags::StartAndWait => {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        }
    };
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: sync_file_range(2) reads no memory of ours: it takes a descriptor and three
    // integers, and `file` keeps the descriptor open for the duration of the call.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_file_range(_file: &File, _offset: u64, _len: u64, _flags: Flags) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn steps_are_started_then_settled_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("f")).unwrap();
        let mut writeback = Writeback::new(0);
        let piece = vec![7u8; 1024 * 1024];
        let mut end = 0u64;
        for _ in 0..20 {
            file.write_all(&piece).unwrap();
            end += piece.len() as u64;
            writeback.written(&file, end);
            assert!(writeback.enabled, "sync_file_range works on a regular file");
            assert!(writeback.settled <= writeback.started && writeback.started <= end);
            assert!(
                end - writeback.settled < 3 * STEP,
                "at most about two steps dirty"
            );
        }
        assert_eq!(writeback.started, 16 * 1024 * 1024);
        assert_eq!(writeback.settled, 8 * 1024 * 1024);
        writeback.finish(&file, end);
        assert_eq!(writeback.started, end);
        assert_eq!(std::fs::metadata(dir.path().join("f")).unwrap().len(), end);
    }

    #[test]
    fn an_append_from_an_offset_counts_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let mut writeback = Writeback::new(5 * STEP);
        writeback.written(&file, 5 * STEP + 1);
        assert_eq!(
            writeback.started,
            5 * STEP,
            "less than a step: nothing requested"
        );
    }

    #[test]
    fn a_failing_call_turns_writeback_off() {
        // A pipe is not a regular file: sync_file_range answers ESPIPE.
        let (reader, _writer) = std::io::pipe().unwrap();
        let file = File::from(std::os::fd::OwnedFd::from(reader));
        let mut writeback = Writeback::new(0);
        writeback.written(&file, STEP);
        assert!(!writeback.enabled);
        let started = writeback.started;
        writeback.written(&file, 3 * STEP);
        writeback.finish(&file, 4 * STEP);
        assert_eq!(writeback.started, started, "nothing more is asked once off");
        assert_eq!(writeback.settled, 0);
    }
}
