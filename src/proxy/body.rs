//! The response body the client receives: either a short text made by the proxy, or the
//! upstream body streaming through untouched, frame by frame, with the session's
//! `read_timeout` enforced between frames and the access-log line written when the body
//! ends (or the client goes away). Nothing is buffered: hyper polls one frame at a time,
//! which is what carries backpressure from the client to the origin.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::record::ExchangeLog;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum ProxyBody {
    Full(Option<Bytes>),
    Upstream(Box<Tracked>),
}

impl ProxyBody {
    pub fn full(bytes: Bytes) -> ProxyBody {
        ProxyBody::Full(Some(bytes))
    }

    pub fn empty() -> ProxyBody {
        ProxyBody::Full(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(t) => Pin::new(t.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Upstream(t) => t.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(t) => t.inner.size_hint(),
        }
    }
}

/// The read timeout fired: the origin went silent inside a body.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {}", humantime::format_duration(*.0))]
pub struct ReadTimeout(pub Duration);

/// An upstream body on its way to the client.
pub struct Tracked {
    inner: Incoming,
    read_timeout: Duration,
    /// Armed for `read_timeout` after the last frame. It is re-armed lazily: a frame only
    /// records the time, and the timer moves when it fires early, so the hot path never
    /// touches the timer wheel.
    timer: Pin<Box<Sleep>>,
    last_frame: Instant,
    log: ExchangeLog,
}

impl Tracked {
    pub fn new(inner: Incoming, read_timeout: Duration, mut log: ExchangeLog) -> Tracked {
        // An empty body (a redirect, a 204, a HEAD answer) is never polled at all.
        if inner.is_end_stream() {
            log.set_outcome("complete");
        }
        let now = Instant::now();
        Tracked {
            inner,
            read_timeout,
            timer: Box::pin(tokio::time::sleep_until(now + read_timeout)),
            last_frame: now,
            log,
        }
    }

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.log.add_bytes(data.len());
                }
                this.last_frame = Instant::now();
                // hyper stops polling once a length-delimited body is complete, so the
                // end is noticed here rather than waiting for a `None` that never comes.
                if this.inner.is_end_stream() {
                    this.log.set_outcome("complete");
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.log.set_outcome("upstream body error");
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.log.set_outcome("complete");
                Poll::Ready(None)
            }
            Poll::Pending => loop {
                ready!(this.timer.as_mut().poll(cx));
                let due = this.last_frame + this.read_timeout;
                if due <= Instant::now() {
                    this.log.set_outcome("read timeout");
                    return Poll::Ready(Some(Err(ReadTimeout(this.read_timeout).into())));
                }
                this.timer.as_mut().reset(due);
            },
        }
    }
}
