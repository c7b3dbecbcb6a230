//! What the proxy keeps from a response: its `Set-Cookie` headers go into the session's
//! jar (whatever the status, redirects and errors included), and every exchange leaves
//! one access-log line when it ends.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Method, Uri, Version, header};
use url::Url;

use crate::metrics::{Metrics, OutcomeLabels};
use crate::observe::{Exchange, Observer};
use crate::server::ActiveGuard;
use crate::session::jar::{CookieChange, SetOutcome};
use crate::session::{ExchangeGuard, Origin, Session};
use crate::store::{Durability, Store};

/// Stores every `Set-Cookie` of a response in the session's jar and returns what changed
/// there, for the durable store (nothing when every cookie was already known).
pub fn store_cookies(
    session: &Session,
    url: &Url,
    headers: &HeaderMap,
    metrics: &Metrics,
) -> Vec<CookieChange> {
    let mut values = headers.get_all(header::SET_COOKIE).iter().peekable();
    if values.peek().is_none() {
        return Vec::new();
    }
    let mut jar = session.jar();
    for value in values {
        let outcome = jar.set_cookie(value.as_bytes(), url);
        let label = match outcome {
            SetOutcome::Stored => "stored",
            SetOutcome::Updated => "updated",
            SetOutcome::Unchanged => "unchanged",
            SetOutcome::Removed => "removed",
            SetOutcome::Ignored(_) => "rejected",
        };
        metrics
            .cookies
            .get_or_create(&OutcomeLabels { outcome: label })
            .inc();
        if let SetOutcome::Ignored(reason) = outcome {
            // The reason only: the header carries the cookie's value.
            tracing::debug!(session = %session.name(), host = url.host_str().unwrap_or(""), reason, "Set-Cookie ignored");
        }
    }
    jar.take_changes()
}

/// Hands a response's jar changes to the store. With full durability the response waits
/// here until they are committed, so a client never sees a cookie a crash could lose. A
/// failed commit is logged (and shown by `/readyz`); the response still goes out.
pub async fn persist(
    session: &Session,
    store: &dyn Store,
    changes: Vec<CookieChange>,
    metrics: &Metrics,
) {
    if changes.is_empty() {
        return;
    }
    let commit = store.apply(session.name(), changes);
    if store.durability() == Durability::Full {
        let started = std::time::Instant::now();
        let committed = commit.wait().await;
        metrics
            .store_commit
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = committed {
            tracing::error!(session = %session.name(), error = %e, "the cookie change was not committed");
        }
    }
}

/// A copy of `headers` for the HAR ring whose values share one buffer of exactly their
/// size. A plain clone would share each value's bytes with the connection's read buffer
/// (that is how hyper parses them), and a session's recorded exchanges would keep those
/// whole buffers alive: kilobytes per exchange, for as long as the ring holds it.
fn detached(headers: &HeaderMap) -> HeaderMap {
    let mut bytes = BytesMut::with_capacity(headers.values().map(HeaderValue::len).sum());
    for value in headers.values() {
        bytes.extend_from_slice(value.as_bytes());
    }
    let bytes = bytes.freeze();
    // The clone keeps the map's layout (no name is hashed again); then each value is
    // pointed at its copy.
    let mut out = headers.clone();
    let mut at = 0;
    for value in out.values_mut() {
        let end = at + value.len();
        // The bytes were a valid value a moment ago, so this cannot fail; if it did, the
        // shared value would stay rather than be lost.
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(bytes.slice(at..end)) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
        at = end;
    }
    out
}

/// What the line says if nothing else was recorded: the body was dropped before it ended.
const NO_OUTCOME: &str = "client went away";

/// One exchange's access-log line, written when this is dropped: at the end of the
/// response body, or at once for a response the proxy made itself.
pub struct ExchangeLog {
    session: Option<Arc<str>>,
    method: Method,
    uri: Uri,
    status: u16,
    started: Instant,
    bytes: u64,
    outcome: &'static str,
    observer: Arc<Observer>,
    started_at: SystemTime,
    version: Version,
    wait: Option<std::time::Duration>,
    cookies_set: usize,
    request_headers: Option<HeaderMap>,
    response_headers: Option<HeaderMap>,
    /// Keeps the session marked busy until the body is done.
    _guard: Option<ExchangeGuard>,
    /// The session's origin in the profile the exchange ran with.
    origin: Option<Origin>,
    /// Keeps the client connection from counting as idle until the body is done.
    _connection: Option<ActiveGuard>,
}

impl ExchangeLog {
    pub fn new(method: Method, uri: Uri, observer: &Arc<Observer>) -> ExchangeLog {
        ExchangeLog {
            session: None,
            method,
            uri,
            status: 0,
            started: Instant::now(),
            bytes: 0,
            outcome: NO_OUTCOME,
            observer: Arc::clone(observer),
            started_at: SystemTime::now(),
            version: Version::HTTP_11,
            wait: None,
            cookies_set: 0,
            request_headers: None,
            response_headers: None,
            _guard: None,
            origin: None,
            _connection: None,
        }
    }

    pub fn set_connection(&mut self, guard: ActiveGuard) {
        self._connection = Some(guard);
    }

    /// The exchange's session, and its origin as the exchange's profile says.
    pub fn set_session(&mut self, guard: ExchangeGuard, origin: Origin) {
        self.session = Some(Arc::clone(guard.session().name()));
        self._guard = Some(guard);
        self.origin = Some(origin);
    }

    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// The request as sent upstream, kept for HAR when anyone keeps HAR.
    pub fn set_request(&mut self, version: Version, headers: &HeaderMap) {
        self.version = version;
        if self.observer.wants_details() {
            self.request_headers = Some(detached(headers));
        }
    }

    /// The response head arrived: its headers (for HAR) and how many cookies it set.
    pub fn set_response(&mut self, headers: &HeaderMap, cookies_set: usize) {
        self.wait = Some(self.started.elapsed());
        self.cookies_set = cookies_set;
        if self.observer.wants_details() {
            self.response_headers = Some(detached(headers));
        }
    }

    pub fn add_bytes(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    pub fn set_outcome(&mut self, outcome: &'static str) {
        self.outcome = outcome;
    }

    /// Sets the outcome only if none has been set yet.
    pub fn set_outcome_unless_set(&mut self, outcome: &'static str) {
        if self.outcome == NO_OUTCOME {
            self.outcome = outcome;
        }
    }
}

impl Drop for ExchangeLog {
    fn drop(&mut self) {
        tracing::info!(
            target: "sessiond::access",
            session = self.session.as_deref().unwrap_or("-"),
            method = %self.method,
            url = %RedactedUri(&self.uri),
            status = self.status,
            bytes = self.bytes,
            // Whole microseconds over 1000 print as short decimals (2.521, not 2.52100000003).
            duration_ms = self.started.elapsed().as_micros() as f64 / 1000.0,
            outcome = self.outcome,
        );
        let recent = self._guard.as_ref().map(|g| Arc::clone(g.session()));
        let session_class = match self.origin {
            Some(Origin::Configured) => "configured",
            Some(Origin::Dynamic) => "dynamic",
            None => "none",
        };
        self.observer.publish(
            Exchange {
                session: self.session.take(),
                session_class,
                method: std::mem::replace(&mut self.method, Method::GET),
                uri: std::mem::take(&mut self.uri),
                version: self.version,
                status: self.status,
                bytes: self.bytes,
                started: self.started_at,
                duration: self.started.elapsed(),
                wait: self.wait,
                outcome: self.outcome,
                cookies_set: self.cookies_set,
                request_headers: self.request_headers.take(),
                response_headers: self.response_headers.take(),
            },
            recent.as_deref().map(Session::recent),
        );
    }
}

/// Displays a URI without user info and with every query value replaced by `…`: query
/// strings routinely carry tokens.
pub struct RedactedUri<'a>(pub &'a Uri);

impl std::fmt::Display for RedactedUri<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uri = self.0;
        if let Some(scheme) = uri.scheme_str() {
            write!(f, "{scheme}://")?;
        }
        if let Some(host) = uri.host() {
            f.write_str(host)?;
            if let Some(port) = uri.port_u16() {
                write!(f, ":{port}")?;
            }
        }
        f.write_str(uri.path())?;
        if let Some(query) = uri.query() {
            f.write_str("?")?;
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    f.write_str("&")?;
                }
                match pair.split_once('=') {
                    Some((k, _)) => write!(f, "{k}=…")?,
                    None => f.write_str(pair)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_copy_has_every_value_in_order_and_keeps_sensitivity() {
        let mut h = HeaderMap::new();
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert("x-empty", HeaderValue::from_static(""));
        let mut secret = HeaderValue::from_static("Bearer t");
        secret.set_sensitive(true);
        h.insert(header::AUTHORIZATION, secret);
        let copy = detached(&h);
        assert_eq!(copy, h);
        let cookies: Vec<_> = copy.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(copy[header::AUTHORIZATION].is_sensitive());
        assert!(!copy[header::CONTENT_TYPE].is_sensitive());
    }

    /// What `detached` is for: values parsed by hyper are slices of the connection's read
    /// buffer, and the copy must not keep that buffer alive.
    #[test]
    fn a_detached_copy_shares_nothing_with_the_buffer_the_values_came_from() {
        let read = bytes::Bytes::from_static(b"text/plain; charset=utf-8 gzip");
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_maybe_shared(read.slice(0..25)).unwrap(),
        );
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_maybe_shared(read.slice(26..30)).unwrap(),
        );
        let copy = detached(&h);
        assert_eq!(copy, h);
        let buffer = read.as_ptr_range();
        for value in copy.values() {
            assert!(
                !buffer.contains(&value.as_bytes().as_ptr()),
                "{value:?} still points into the read buffer"
            );
        }
    }

    #[test]
    fn redaction_hides_query_values_and_user_info() {
        let uri: Uri = "http://user:pw@example.com:8080/a/b?token=abc&x=1&flag"
            .parse()
            .unwrap();
        let shown = RedactedUri(&uri).to_string();
        assert_eq!(shown, "http://example.com:8080/a/b?token=…&x=…&flag");
        assert!(!shown.contains("abc") && !shown.contains("pw"));
    }
}
