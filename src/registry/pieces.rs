//! An upload's bytes in memory. A request body is copied into pieces of one fixed size,
//! each taken from the request's budget of bytes and holding its share until its last
//! reference is dropped, that is until it is both hashed and written (or copied by the
//! store). However far the disk or the hasher falls behind the network, a request never
//! holds more than its budget: receiving simply waits, and the client with it.
//!
//! The pieces' buffers come from a pool and go back to it ([`crate::storage::buffers`]),
//! so a request allocates at most its budget, once, and none when the pool has spares.

use std::io;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::storage::ByteStream;
use crate::storage::buffers::BufferPool;

/// Copies `body` into pieces of `pool`'s buffer size (the last may be smaller) while
/// holding at most `budget` bytes of pieces: a new piece is started only when the ones
/// handed out earlier and dropped since leave room for it. Whoever consumes the stream
/// must not wait for further pieces before dropping (or copying) the ones it holds, or it
/// waits forever.
pub(crate) fn pieces(body: ByteStream<'_>, pool: Arc<BufferPool>, budget: usize) -> ByteStream<'_> {
    struct State<'a> {
        body: ByteStream<'a>,
        /// What is left of the last chunk of `body`.
        rest: Bytes,
        pool: Arc<BufferPool>,
        /// Permits are bytes.
        budget: Arc<Semaphore>,
        done: bool,
    }
    // Semaphore permits are u32: a piece takes as many as it can hold bytes.
    let permits = u32::try_from(pool.size().max(1)).unwrap_or(u32::MAX);
    let size = permits as usize;
    let state = State {
        body,
        rest: Bytes::new(),
        pool,
        budget: Arc::new(Semaphore::new(budget.max(size))),
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut state| async move {
            if state.done {
                return None;
            }
            let share = match state.budget.clone().acquire_many_owned(permits).await {
                Ok(share) => share,
                Err(closed) => {
                    state.done = true;
                    return Some((Err(io::Error::other(closed)), state));
                }
            };
            let mut buffer = state.pool.take();
            loop {
                if !state.rest.is_empty() {
                    let n = (size - buffer.len()).min(state.rest.len());
                    buffer.extend_from_slice(&state.rest[..n]);
                    if n == state.rest.len() {
                        // Let go of the chunk: its memory is the HTTP server's read buffer.
                        state.rest = Bytes::new();
                    } else {
                        state.rest.advance(n);
                    }
                    if buffer.len() == size {
                        break;
                    }
                }
                match state.body.next().await {
                    Some(Ok(chunk)) => state.rest = chunk,
                    Some(Err(e)) => {
                        state.done = true;
                        state.pool.give_back(buffer);
                        return Some((Err(e), state));
                    }
                    None => {
                        state.done = true;
                        break;
                    }
                }
            }
            if buffer.is_empty() {
                state.pool.give_back(buffer);
                return None;
            }
            let piece = state.pool.freeze(buffer, share);
            Some((Ok(piece), state))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn body(parts: Vec<&'static [u8]>) -> ByteStream<'static> {
        Box::pin(futures_util::stream::iter(
            parts.into_iter().map(|p| Ok(Bytes::from_static(p))),
        ))
    }

    /// Every piece, held at once: the budget must cover them all.
    async fn pieces_of(parts: Vec<&'static [u8]>) -> Vec<Bytes> {
        pieces(body(parts), BufferPool::new(4), 64)
            .map(|p| p.expect("no body error"))
            .collect()
            .await
    }

    #[tokio::test]
    async fn cuts_pieces_of_one_size() {
        assert_eq!(
            pieces_of(vec![b"ab", b"", b"cdefghij", b"k"]).await,
            vec![&b"abcd"[..], b"efgh", b"ijk"]
        );
        assert_eq!(pieces_of(vec![b"abcd"]).await, vec![&b"abcd"[..]]);
        assert!(pieces_of(vec![]).await.is_empty());
        assert!(pieces_of(vec![b""]).await.is_empty());
    }

    #[tokio::test]
    async fn waits_while_the_budget_is_spent_and_reuses_buffers() {
        let mut stream = pieces(body(vec![b"aaaabbbbcccc"]), BufferPool::new(4), 8);
        let a = stream.next().await.unwrap().unwrap();
        let b = stream.next().await.unwrap().unwrap();
        // Two pieces of 4 bytes are held: the budget of 8 is spent and the body is ready,
        // so only the budget can make the third piece wait.
        assert!(
            stream.next().now_or_never().is_none(),
            "a piece beyond the budget was handed out"
        );
        let a_buffer = a.as_ptr();
        drop(a);
        let c = stream.next().await.unwrap().unwrap();
        assert_eq!((&b[..], &c[..]), (&b"bbbb"[..], &b"cccc"[..]));
        assert_eq!(c.as_ptr(), a_buffer, "the dropped piece's buffer is reused");
        drop((b, c));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn passes_body_errors_on() {
        let parts = vec![Ok(Bytes::from_static(b"ab")), Err(io::Error::other("gone"))];
        let mut stream = pieces(
            Box::pin(futures_util::stream::iter(parts)),
            BufferPool::new(4),
            8,
        );
        assert!(stream.next().await.unwrap().is_err());
        assert!(stream.next().await.is_none());
    }
}
