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
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::record::ExchangeLog;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum ProxyBody {
    Full(Option<Bytes>),
    Upstream(Box<Tracked>),
    /// Chunks produced by a task as they come (server-sent events).
    Channel(tokio::sync::mpsc::Receiver<Bytes>),
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
            ProxyBody::Channel(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Upstream(t) => t.inner.is_end_stream(),
            ProxyBody::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(t) => t.inner.size_hint(),
            ProxyBody::Channel(_) => SizeHint::default(),
        }
    }
}

/// The longest allowed silence inside a body, in either direction.
///
/// The timer is created on the first wait and re-armed lazily: a frame only records the
/// time, and the timer moves when it fires early, so the hot path (data flowing) never
/// touches the timer wheel, and a body that never waits never allocates one.
struct GapTimer {
    limit: Duration,
    last_frame: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl GapTimer {
    fn new(limit: Duration) -> GapTimer {
        GapTimer {
            limit,
            last_frame: Instant::now(),
            timer: None,
        }
    }

    fn frame(&mut self) {
        self.last_frame = Instant::now();
    }

    /// Ready once the body has been silent for longer than the limit.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let due = self.last_frame + self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        loop {
            ready!(timer.as_mut().poll(cx));
            let due = self.last_frame + self.limit;
            if due <= Instant::now() {
                return Poll::Ready(());
            }
            timer.as_mut().reset(due);
        }
    }
}

/// The origin went silent inside a response body.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {}", humantime::format_duration(*.0))]
pub struct ReadTimeout(pub Duration);

/// The client went silent inside a request body.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing for {}", humantime::format_duration(*.0))]
pub struct UploadTimeout(pub Duration);

/// An upstream body on its way to the client.
pub struct Tracked {
    inner: Incoming,
    gap: GapTimer,
    log: ExchangeLog,
}

impl Tracked {
    pub fn new(inner: Incoming, read_timeout: Duration, mut log: ExchangeLog) -> Tracked {
        // An empty body (a redirect, a 204, a HEAD answer) is never polled at all. A 101
        // keeps the outcome the pipeline gave it.
        if inner.is_end_stream() {
            log.set_outcome_unless_set("complete");
        }
        Tracked {
            inner,
            gap: GapTimer::new(read_timeout),
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
                this.gap.frame();
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
            Poll::Pending => {
                ready!(this.gap.poll_expired(cx));
                this.log.set_outcome("read timeout");
                Poll::Ready(Some(Err(ReadTimeout(this.gap.limit).into())))
            }
        }
    }
}

/// A client's request body on its way upstream: streamed frame by frame, with the
/// session's `read_timeout` as the longest silence, and a signal once it has all been
/// sent (the response timeout starts then, so a long upload is not cut short).
pub struct Upload {
    /// `None` for a body already in memory (`buffered`), or none at all.
    inner: Option<Incoming>,
    /// A small body kept for a replay, sent in one frame.
    buffered: Option<Bytes>,
    /// `request_bytes`, counted as frames go by.
    counted: Option<prometheus_client::metrics::counter::Counter>,
    gap: GapTimer,
    sent: Option<oneshot::Sender<()>>,
}

impl Upload {
    /// Wraps a request body; the receiver resolves when the body has been sent (or
    /// abandoned). `None` for a body that is already complete.
    pub fn new(
        inner: Incoming,
        read_timeout: Duration,
        counted: prometheus_client::metrics::counter::Counter,
    ) -> (Upload, Option<oneshot::Receiver<()>>) {
        let (sent, rx) = if inner.is_end_stream() {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let upload = Upload {
            inner: Some(inner),
            buffered: None,
            counted: Some(counted),
            gap: GapTimer::new(read_timeout),
            sent,
        };
        (upload, rx)
    }

    /// A body already in memory (possibly empty): a replay after a refresh hook.
    pub fn buffered(bytes: Bytes) -> Upload {
        Upload {
            inner: None,
            buffered: (!bytes.is_empty()).then_some(bytes),
            counted: None,
            // Never polled for silence: an empty body ends at once.
            gap: GapTimer::new(Duration::from_secs(1)),
            sent: None,
        }
    }

    fn finished(&mut self) {
        if let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(this.buffered.take().map(|b| Ok(Frame::data(b))));
        };
        match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.gap.frame();
                if let (Some(data), Some(counter)) = (frame.data_ref(), &this.counted) {
                    counter.inc_by(data.len() as u64);
                }
                if inner.is_end_stream() {
                    this.finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.finished();
                Poll::Ready(None)
            }
            Poll::Pending => {
                ready!(this.gap.poll_expired(cx));
                Poll::Ready(Some(Err(UploadTimeout(this.gap.limit).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => self.buffered.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(self.buffered.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
