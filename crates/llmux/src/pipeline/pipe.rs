//! A streamed response's bytes, from the task driving the stream to the client's connection.
//!
//! The response body is itself the receiving end: one small shared buffer (about a hundred
//! bytes while empty), where a channel of messages plus a body reading from it took 1.6 KB per
//! open stream (tokio's channels allocate their slots 32 at a time). Bytes sent while the
//! connection is still writing earlier ones join them, so events arriving together reach the
//! client as one write; past [`MAX_PENDING`] the sender waits for the connection
//! (back-pressure from a slow client). A sender that gives up on the client
//! ([`PipeSender::abort`]) ends the body with an error, which makes the server close the
//! connection rather than go on writing what is pending.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;

/// Bytes waiting for the connection past which the sender waits.
pub(crate) const MAX_PENDING: usize = 64 * 1024;

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    sender_gone: bool,
    /// The sender gave up on the client: the body ends with an error.
    aborted: bool,
    body_gone: bool,
    /// The connection, waiting for bytes.
    body_waker: Option<Waker>,
    /// The driving task, waiting for room or for the client to leave.
    sender_waker: Option<Waker>,
}

/// A new stream: the driving task's end and the response body.
pub(crate) fn pipe() -> (PipeSender, PipeBody) {
    let shared = Arc::new(Mutex::new(State::default()));
    (PipeSender(shared.clone()), PipeBody(shared))
}

pub(crate) struct PipeSender(Arc<Mutex<State>>);

impl PipeSender {
    /// Queue bytes for the client, waiting while too many are pending; false if the client
    /// is gone (the body was dropped), in which case the bytes are discarded.
    pub(crate) async fn send(&mut self, bytes: Vec<u8>) -> bool {
        let mut bytes = Some(bytes);
        poll_fn(|cx| {
            let mut s = self.0.lock();
            if s.body_gone {
                return Poll::Ready(false);
            }
            if s.pending.len() >= MAX_PENDING {
                s.sender_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let b = bytes.take().expect("polled after completion");
            if s.pending.is_empty() {
                s.pending = b;
            } else {
                s.pending.extend_from_slice(&b);
            }
            if let Some(w) = s.body_waker.take() {
                w.wake();
            }
            Poll::Ready(true)
        })
        .await
    }

    /// Resolves when the client is gone.
    pub(crate) async fn closed(&self) {
        poll_fn(|cx| {
            let mut s = self.0.lock();
            if s.body_gone {
                return Poll::Ready(());
            }
            s.sender_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Give up on the client: what is pending is dropped and the body ends with an error.
    pub(crate) fn abort(self) {
        let mut s = self.0.lock();
        s.aborted = true;
        s.pending = Vec::new();
        if let Some(w) = s.body_waker.take() {
            w.wake();
        }
    }
}

/// Why a stream's body ended early: its client took nothing for too long.
#[derive(Debug)]
pub(crate) struct ClientTooSlow;

impl std::fmt::Display for ClientTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client took none of the stream for too long")
    }
}

impl std::error::Error for ClientTooSlow {}

impl Drop for PipeSender {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.sender_gone = true;
        if let Some(w) = s.body_waker.take() {
            w.wake();
        }
    }
}

/// The response body: what was sent, then its end once the sender is dropped.
pub(crate) struct PipeBody(Arc<Mutex<State>>);

impl Body for PipeBody {
    type Data = Bytes;
    type Error = ClientTooSlow;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientTooSlow>>> {
        let mut s = self.0.lock();
        if s.aborted {
            return Poll::Ready(Some(Err(ClientTooSlow)));
        }
        if !s.pending.is_empty() {
            let b = std::mem::take(&mut s.pending);
            if let Some(w) = s.sender_waker.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(b)))));
        }
        if s.sender_gone {
            return Poll::Ready(None);
        }
        s.body_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let s = self.0.lock();
        s.sender_gone && !s.aborted && s.pending.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for PipeBody {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.body_gone = true;
        s.pending = Vec::new();
        if let Some(w) = s.sender_waker.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn bytes_sent_together_arrive_joined_then_the_stream_ends() {
        let (mut tx, mut body) = pipe();
        assert!(tx.send(b"data: 1\n\n".to_vec()).await);
        assert!(tx.send(b"data: 2\n\n".to_vec()).await);
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "data: 1\n\ndata: 2\n\n");
        assert!(tx.send(b"data: 3\n\n".to_vec()).await);
        drop(tx);
        assert!(!body.is_end_stream(), "bytes are still pending");
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "data: 3\n\n");
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_sender_waits_while_the_client_is_slow() {
        let (mut tx, mut body) = pipe();
        assert!(tx.send(vec![b'x'; MAX_PENDING]).await);
        let mut blocked = Box::pin(tx.send(b"more".to_vec()));
        assert!(futures::poll!(blocked.as_mut()).is_pending());
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap().len(), MAX_PENDING);
        assert!(
            blocked.await,
            "room again once the connection took the bytes"
        );
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "more"
        );
    }

    #[tokio::test]
    async fn an_aborted_stream_ends_with_an_error_not_its_pending_bytes() {
        let (mut tx, mut body) = pipe();
        assert!(tx.send(b"data: 1\n\n".to_vec()).await);
        tx.abort();
        assert!(!body.is_end_stream());
        assert!(body.frame().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn the_sender_learns_that_the_client_left() {
        let (mut tx, body) = pipe();
        let waiting = tokio::spawn(async move {
            tx.closed().await;
            tx.send(b"late".to_vec()).await
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the client is still there");
        drop(body);
        let sent = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("closed() resolves once the body is dropped")
            .unwrap();
        assert!(!sent, "nothing is sent to a client that left");
    }
}
