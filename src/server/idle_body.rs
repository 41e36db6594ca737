//! `connections.bodytimeout`: a request body that fails when the client sends nothing for
//! too long while the handler waits for it. Only time spent waiting on the client counts:
//! while the handler does not ask for more (a slow disk holding the upload back), no clock
//! runs. The handler sees an error from the body, fails the request, and the connection is
//! closed (HTTP/1.1: hyper does not reuse a connection whose request body was left unread;
//! HTTP/2: the stream is reset). An upload session keeps the bytes it had recorded before
//! the request, so the client can resume it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

/// Why a request body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client stopped sending in the middle of the body.
    #[error(
        "the client sent nothing for {}s in the middle of the request body (connections.bodytimeout)",
        .0.as_secs_f32()
    )]
    Idle(Duration),
    /// The connection failed (reset, cut, a protocol error).
    #[error(transparent)]
    Connection(#[from] hyper::Error),
}

/// A request body that fails with [`BodyError::Idle`] after `limit` without data.
pub struct IdleBody {
    inner: Incoming,
    limit: Duration,
    /// Running while the handler waits for data that has not come.
    waiting: Option<Pin<Box<Sleep>>>,
    /// The client the body comes from, for the log.
    peer: SocketAddr,
    timed_out: bool,
}

impl IdleBody {
    /// `inner`, failing after `limit` without data.
    pub fn new(inner: Incoming, limit: Duration, peer: SocketAddr) -> Self {
        IdleBody {
            inner,
            limit,
            waiting: None,
            peer,
            timed_out: false,
        }
    }
}

impl Body for IdleBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(None);
        }
        // Data that has come wins over a clock that ran out while nobody asked for it.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = None;
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::from)));
        }
        let limit = this.limit;
        let waiting = this
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(waiting.as_mut().poll(cx));
        this.timed_out = true;
        tracing::info!(
            peer = %this.peer,
            timeout = ?limit,
            "the client sent nothing in the middle of a request body for connections.bodytimeout; failing the request"
        );
        Poll::Ready(Some(Err(BodyError::Idle(limit))))
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
