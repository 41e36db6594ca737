//! Buffers of one size, reused. Uploads hold their bytes in large buffers (1 MiB pieces, S3
//! parts of `chunksize`), filled on one thread and dropped on another (the hasher's, the
//! writer's, the HTTP client's). Allocating one per piece leaves glibc's heap fragmented:
//! once a large block has been freed, blocks of that size no longer get their own mapping
//! (its mmap threshold adapts upwards), and freed blocks stay resident. A pool allocates
//! each buffer once, in one size, and frees the spares at its end; a pool shared by
//! requests (upload pieces) keeps a few spares between them, so a push in many small
//! requests does not fault in and zero fresh memory for each.
//!
//! A buffer's bytes start at an address that is a multiple of [`ALIGN`], so an upload's
//! writer can hand a piece to an `O_DIRECT` write as it is, without copying it into an
//! aligned buffer of its own (`storage::append`).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// The address of a buffer's first byte is a multiple of this: the memory alignment a
/// Linux block device asks of a direct write.
pub(crate) const ALIGN: usize = 4096;

/// Spare buffers of `size` bytes' capacity.
#[derive(Debug)]
pub(crate) struct BufferPool {
    size: usize,
    spare: Mutex<Vec<Buffer>>,
    /// Spare buffers kept at most; more given back are freed.
    keep: usize,
}

/// A growable byte buffer whose bytes start at an [`ALIGN`]ed address (while it holds no
/// more than the capacity it was taken with; beyond that it still works, unaligned).
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    /// `start` bytes of padding, then the buffer's bytes.
    storage: Vec<u8>,
    start: usize,
}

impl Buffer {
    /// An empty buffer with room for `size` bytes at an aligned address.
    fn with_capacity(size: usize) -> Buffer {
        let mut storage: Vec<u8> = Vec::with_capacity(size + ALIGN);
        let start = storage.as_ptr().align_offset(ALIGN);
        storage.resize(start, 0);
        Buffer { storage, start }
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.storage.len() - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `bytes` (growing the buffer if it must).
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.storage.extend_from_slice(bytes);
    }

    fn clear(&mut self) {
        self.storage.truncate(self.start);
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        &self.storage[self.start..]
    }
}

impl BufferPool {
    /// An empty pool of buffers of `size` bytes that keeps every buffer given back (its
    /// user bounds how many it takes).
    pub(crate) fn new(size: usize) -> Arc<Self> {
        Self::keeping(size, usize::MAX)
    }

    /// An empty pool of buffers of `size` bytes that keeps at most `keep` spare ones.
    pub(crate) fn keeping(size: usize, keep: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            size,
            spare: Mutex::new(Vec::new()),
            keep,
        })
    }

    /// The size of the pool's buffers.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// An empty buffer with room for [`BufferPool::size`] bytes: a spare one, or a new one.
    pub(crate) fn take(&self) -> Buffer {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| Buffer::with_capacity(self.size))
    }

    /// Puts `buffer` back for reuse (one that grew, or of another size, is just dropped).
    pub(crate) fn give_back(&self, mut buffer: Buffer) {
        if buffer.storage.capacity() != self.size + ALIGN {
            return;
        }
        buffer.clear();
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < self.keep {
            spare.push(buffer);
        }
    }

    /// `buffer` (taken from this pool) as `Bytes`, which give it back when the last of them
    /// is dropped, and only then drop `hold` (e.g. a share of a memory budget).
    pub(crate) fn freeze<T: Send + 'static>(self: &Arc<Self>, buffer: Buffer, hold: T) -> Bytes {
        Bytes::from_owner(Pooled {
            buffer,
            pool: self.clone(),
            _hold: hold,
        })
    }
}

/// A buffer lent out as `Bytes`.
struct Pooled<T> {
    buffer: Buffer,
    pool: Arc<BufferPool>,
    _hold: T,
}

impl<T> AsRef<[u8]> for Pooled<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        // Back in the pool before `_hold` goes (with the fields, after this): whoever waits
        // for what it holds then finds the buffer, and the pool never outgrows the budget.
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_bytes_go() {
        let pool = BufferPool::new(8);
        let mut buffer = pool.take();
        buffer.extend_from_slice(b"abc");
        let address = buffer.as_ref().as_ptr();
        assert_eq!(address as usize % ALIGN, 0, "bytes start aligned");
        let (dropped, hold) = std::sync::mpsc::channel::<()>();
        let bytes = pool.freeze(buffer, dropped);
        let copy = bytes.clone();
        drop(bytes);
        assert_eq!(&copy[..], b"abc");
        assert!(hold.try_recv().is_err(), "held while a reference remains");
        drop(copy);
        assert!(
            hold.try_recv()
                .is_err_and(|e| e == std::sync::mpsc::TryRecvError::Disconnected)
        );
        let again = pool.take();
        assert_eq!((again.as_ref().as_ptr(), again.len()), (address, 0));
    }

    #[test]
    fn a_shared_pool_keeps_only_so_many_spares() {
        let pool = BufferPool::keeping(8, 2);
        let taken: Vec<Buffer> = (0..3).map(|_| pool.take()).collect();
        let kept: Vec<*const u8> = taken[..2].iter().map(|b| b.as_ref().as_ptr()).collect();
        for buffer in taken {
            pool.give_back(buffer);
        }
        let spare = pool.spare.lock().unwrap();
        assert_eq!(spare.len(), 2);
        assert_eq!(
            spare
                .iter()
                .map(|b| b.as_ref().as_ptr())
                .collect::<Vec<_>>(),
            kept
        );
    }

    #[test]
    fn a_buffer_that_grew_is_not_reused() {
        let pool = BufferPool::new(8);
        let mut buffer = pool.take();
        let more = vec![7u8; 2 * ALIGN];
        buffer.extend_from_slice(&more);
        assert_eq!(buffer.as_ref(), &more[..]);
        pool.give_back(buffer);
        assert!(pool.spare.lock().unwrap().is_empty());
        let fresh = pool.take();
        assert_eq!(fresh.as_ref().as_ptr() as usize % ALIGN, 0);
    }
}
