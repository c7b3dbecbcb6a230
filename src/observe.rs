//! Watching traffic: every finished exchange becomes one [`Exchange`] record, published
//! to live subscribers (`GET /events`, server-sent events) and kept in its session's ring
//! of recent exchanges (`GET /sessions/NAME/har`, HAR 1.2).
//!
//! Publishing never waits: subscribers read from a broadcast channel, and one that falls
//! behind is told so and dropped rather than slowing the proxy. Records keep header maps
//! as they were; secrets are redacted when a record is rendered, not when it is made.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Uri, Version, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::metrics::{Metrics, OutcomeLabels, RequestLabels, status_class};
use crate::proxy::record::RedactedUri;

/// Events buffered for subscribers before a slow one is dropped.
const EVENT_BUFFER: usize = 1024;

/// One finished exchange.
#[derive(Debug)]
pub struct Exchange {
    pub session: Option<Arc<str>>,
    /// `configured`, `dynamic` or `none`: the only session label metrics carry.
    pub session_class: &'static str,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    pub started: SystemTime,
    pub duration: Duration,
    /// Until the response head arrived, when one did.
    pub wait: Option<Duration>,
    pub outcome: &'static str,
    pub cookies_set: usize,
    /// As sent upstream (after the session's treatment): redacted when rendered.
    pub request_headers: Option<HeaderMap>,
    pub response_headers: Option<HeaderMap>,
}

/// The hub records go through.
pub struct Observer {
    events: broadcast::Sender<Arc<Exchange>>,
    har_entries: usize,
    metrics: Arc<Metrics>,
}

/// A session's most recent exchanges.
#[derive(Debug, Default)]
pub struct Recent(std::sync::Mutex<VecDeque<Arc<Exchange>>>);

impl Recent {
    pub fn snapshot(&self) -> Vec<Arc<Exchange>> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Exchange>>> {
        // Plain data; a panic elsewhere cannot leave it inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Observer {
    /// `har_entries` is each session's ring size (0 keeps none).
    pub fn new(har_entries: usize, metrics: Arc<Metrics>) -> Observer {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Observer {
            events,
            har_entries,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether anyone wants full records (a HAR ring or a live subscriber): header maps
    /// are only copied when they do.
    pub fn wants_details(&self) -> bool {
        self.har_entries > 0
    }

    pub fn publish(&self, exchange: Exchange, recent: Option<&Recent>) {
        self.count(&exchange);
        let exchange = Arc::new(exchange);
        if let Some(recent) = recent
            && self.har_entries > 0
        {
            let mut ring = recent.lock();
            if ring.len() >= self.har_entries {
                ring.pop_front();
            }
            ring.push_back(Arc::clone(&exchange));
        }
        // No subscriber is not an error.
        let _ = self.events.send(exchange);
    }

    fn count(&self, e: &Exchange) {
        let m = &self.metrics;
        if e.method == Method::CONNECT {
            m.tunnels
                .get_or_create(&OutcomeLabels { outcome: e.outcome })
                .inc();
        }
        m.requests
            .get_or_create(&RequestLabels {
                session: e.session_class,
                status: status_class(e.status),
            })
            .inc();
        m.response_bytes.inc_by(e.bytes);
        if let Some(wait) = e.wait {
            m.upstream_wait.observe(wait.as_secs_f64());
        }
    }

    /// A stream of `text/event-stream` chunks for one subscriber, optionally for one
    /// session. Ends after telling a subscriber that fell behind.
    pub fn subscribe(&self, session: Option<String>) -> mpsc::Receiver<Bytes> {
        let mut events = self.events.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b": sessiond events\n\n")).await;
            let mut keepalive = tokio::time::interval(Duration::from_secs(15));
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    _ = keepalive.tick() => {
                        // Also how a gone subscriber is noticed when traffic is quiet.
                        if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                match event {
                    Ok(e) => {
                        if session
                            .as_deref()
                            .is_some_and(|s| e.session.as_deref() != Some(s))
                        {
                            continue;
                        }
                        let line = format!("event: exchange\ndata: {}\n\n", event_json(&e));
                        if tx.send(Bytes::from(line)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let note = format!(
                            "event: dropped\ndata: {{\"reason\":\"too slow\",\"missed\":{missed}}}\n\n"
                        );
                        let _ = tx.send(Bytes::from(note)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        rx
    }
}

/// The JSON of one live event: no header values at all.
fn event_json(e: &Exchange) -> Value {
    json!({
        "session": e.session.as_deref(),
        "method": e.method.as_str(),
        "url": RedactedUri(&e.uri).to_string(),
        "status": e.status,
        "bytes": e.bytes,
        "started": rfc3339(e.started),
        "duration_ms": ms(e.duration),
        "wait_ms": e.wait.map(ms),
        "outcome": e.outcome,
        "cookies_set": e.cookies_set,
    })
}

/// HAR 1.2 for a session's recent exchanges. Without `secrets`, credentials, cookies and
/// query values are redacted (`extra_secret_headers`: headers the session's credentials
/// set, such as `X-Api-Key`).
pub fn har(
    exchanges: &[Arc<Exchange>],
    secrets: bool,
    extra_secret_headers: &[HeaderName],
) -> Value {
    let entries: Vec<Value> = exchanges
        .iter()
        .map(|e| har_entry(e, secrets, extra_secret_headers))
        .collect();
    json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "sessiond", "version": env!("CARGO_PKG_VERSION") },
            "entries": entries,
        }
    })
}

fn har_entry(e: &Exchange, secrets: bool, extra: &[HeaderName]) -> Value {
    let url = if secrets {
        e.uri.to_string()
    } else {
        RedactedUri(&e.uri).to_string()
    };
    let query: Vec<Value> = e
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| json!({ "name": k, "value": if secrets { v.into_owned() } else { "…".into() } }))
                .collect()
        })
        .unwrap_or_default();
    let total = ms(e.duration);
    let wait = e.wait.map(ms).unwrap_or(total);
    let mime = e
        .response_headers
        .as_ref()
        .and_then(|h| h.get(header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    json!({
        "startedDateTime": rfc3339(e.started),
        "time": total,
        "request": {
            "method": e.method.as_str(),
            "url": url,
            "httpVersion": version(e.version),
            "cookies": [],
            "headers": headers(e.request_headers.as_ref(), secrets, extra),
            "queryString": query,
            "headersSize": -1,
            "bodySize": -1,
        },
        "response": {
            "status": e.status,
            "statusText": http::StatusCode::from_u16(e.status).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
            "httpVersion": version(e.version),
            "cookies": [],
            "headers": headers(e.response_headers.as_ref(), secrets, extra),
            "content": { "size": e.bytes, "mimeType": mime },
            "redirectURL": e.response_headers.as_ref().and_then(|h| h.get(header::LOCATION)).and_then(|v| v.to_str().ok()).unwrap_or(""),
            "headersSize": -1,
            "bodySize": e.bytes,
        },
        "cache": {},
        "timings": { "send": 0, "wait": wait, "receive": (total - wait).max(0.0) },
        "_sessiond": { "session": e.session.as_deref(), "outcome": e.outcome, "cookies_set": e.cookies_set },
    })
}

/// Headers a HAR never shows without `secrets`: credentials and cookies.
const SECRET_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
];

fn headers(map: Option<&HeaderMap>, secrets: bool, extra: &[HeaderName]) -> Vec<Value> {
    let Some(map) = map else { return Vec::new() };
    map.iter()
        .map(|(name, value)| {
            // Values marked sensitive (injected credentials, the merged Cookie) are hidden
            // whatever their name: a reload may have renamed or removed the credential
            // that put one there.
            let hidden = !secrets
                && (value.is_sensitive() || SECRET_HEADERS.contains(name) || extra.contains(name));
            let value = if hidden {
                "<redacted>".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            json!({ "name": name.as_str(), "value": value })
        })
        .collect()
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn rfc3339(t: SystemTime) -> String {
    let at = time::OffsetDateTime::from(t);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(session: &str) -> Exchange {
        Exchange {
            session: Some(Arc::from(session)),
            session_class: "dynamic",
            method: Method::GET,
            uri: Uri::from_static("http://example.test/path?token=secret"),
            version: Version::HTTP_11,
            status: 200,
            bytes: 10,
            started: SystemTime::now(),
            duration: Duration::from_millis(3),
            wait: Some(Duration::from_millis(2)),
            outcome: "complete",
            cookies_set: 0,
            request_headers: None,
            response_headers: None,
        }
    }

    /// Publishing never waits for a subscriber; one that falls behind is told and ended.
    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_dropped_with_a_notice() {
        let observer = Observer::new(0, Arc::default());
        let mut stream = observer.subscribe(None);
        // Nobody reads while far more than the buffers hold is published.
        for _ in 0..(EVENT_BUFFER * 3) {
            observer.publish(exchange("s"), None);
        }
        let mut text = String::new();
        while let Some(chunk) = stream.recv().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(text.contains("event: dropped"), "no notice");
        assert!(text.contains("too slow"));
        assert!(!text.contains("secret"), "an event showed a query value");
    }

    #[test]
    fn the_ring_keeps_the_most_recent() {
        let observer = Observer::new(2, Arc::default());
        let recent = Recent::default();
        for name in ["a", "b", "c"] {
            observer.publish(exchange(name), Some(&recent));
        }
        let kept: Vec<_> = recent
            .snapshot()
            .iter()
            .map(|e| e.session.as_deref().unwrap().to_string())
            .collect();
        assert_eq!(kept, ["b", "c"]);
    }
}
