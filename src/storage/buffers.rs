//! Buffers of one size, reused. Uploads hold their bytes in large buffers (1 MiB pieces, S3
//! parts of `chunksize`), filled on one thread and dropped on another (the hasher's, the
//! writer's, the HTTP client's). Allocating one per piece leaves glibc's heap fragmented:
//! once a large block has been freed, blocks of that size no longer get their own mapping
//! (its mmap threshold adapts upwards), and freed blocks stay resident. A pool allocates
//! each buffer once per request, in one size, and frees them all at its end.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Spare buffers of `size` bytes' capacity.
#[derive(Debug)]
pub(crate) struct BufferPool {
    size: usize,
    spare: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty pool of buffers of `size` bytes.
    pub(crate) fn new(size: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            size,
            spare: Mutex::new(Vec::new()),
        })
    }

    /// An empty buffer of capacity [`BufferPool::size`]: a spare one, or a new one.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Puts `buffer` back for reuse (a buffer of another capacity is just dropped).
    pub(crate) fn give_back(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() != self.size {
            return;
        }
        buffer.clear();
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
    }

    /// `buffer` (taken from this pool) as `Bytes`, which give it back when the last of them
    /// is dropped, and only then drop `hold` (e.g. a share of a memory budget).
    pub(crate) fn freeze<T: Send + 'static>(self: &Arc<Self>, buffer: Vec<u8>, hold: T) -> Bytes {
        Bytes::from_owner(Pooled {
            buffer,
            pool: self.clone(),
            _hold: hold,
        })
    }
}

/// A buffer lent out as `Bytes`.
struct Pooled<T> {
    buffer: Vec<u8>,
    pool: Arc<BufferPool>,
    _hold: T,
}

impl<T> AsRef<[u8]> for Pooled<T> {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
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
        let address = buffer.as_ptr();
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
        assert_eq!(
            (again.as_ptr(), again.len(), again.capacity()),
            (address, 0, 8)
        );
    }
}
