//! The client side of the admin API: `sessiond sessions`, `cookies` and `health` send one
//! HTTP/1.1 request to the `admin.listen` of a configuration (with its `admin.token`) and
//! turn the answer into output for stdout, or an [`Error`] whose text is the admin API's
//! own `{"error": ...}` message and status. `sessiond events` keeps its request open and
//! prints the live exchanges of `GET /events` as they arrive.

use std::io::{Read as _, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tokio::net::TcpStream;

use crate::config::{AdminConfig, Secret};

/// How long to wait for the admin API to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for the whole answer once connected: a daemon that accepts but never
/// answers must not hang a health check forever.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `sessiond events` waits for anything from the daemon, which sends a keep-alive
/// comment every 15 seconds.
pub const EVENTS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a path segment may hold unescaped: the characters of a valid session name. Anything
/// else is escaped, so a bad name reaches the daemon as one segment and is refused there.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// The two cookie formats of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieFormat {
    Netscape,
    Json,
}

/// One CLI command that talks to the admin API.
#[derive(Debug, Clone)]
pub enum Action {
    /// `GET /healthz`: no output; an error unless it answers 200.
    Health,
    /// `GET /sessions`: one line per session, or the JSON as it came.
    SessionsList { json: bool },
    /// `GET /sessions/NAME`, pretty-printed.
    SessionsShow { name: String },
    /// `DELETE /sessions/NAME`: no output.
    SessionsDelete { name: String },
    /// `GET /sessions/NAME/cookies[?format=netscape]`: the body exactly.
    CookiesExport { name: String, format: CookieFormat },
    /// `POST` (merge) or `PUT` (replace) `/sessions/NAME/cookies` with the file's bytes as
    /// they are; `-` reads stdin.
    CookiesImport {
        name: String,
        file: PathBuf,
        replace: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "admin.listen is {0}: the CLI needs the admin API's port, and port 0 is only chosen when the daemon starts"
    )]
    NoPort(SocketAddr),
    #[error("admin.token has characters that cannot be sent in a header")]
    BadToken,
    #[error(
        "nothing listens on the admin API at {0} (connection refused); is sessiond running with this configuration?"
    )]
    Refused(SocketAddr),
    #[error("cannot connect to the admin API at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no connection to the admin API at {0} within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout(SocketAddr),
    #[error("the admin API at {0} did not answer within {RESPONSE_TIMEOUT:?}")]
    ResponseTimeout(SocketAddr),
    #[error("the request to the admin API at {addr} failed: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
    /// The admin API answered with an error status; `message` is its `error` field.
    #[error("{}", api_message(*status, message.as_deref()))]
    Api {
        status: StatusCode,
        message: Option<String>,
    },
    #[error("the admin API answered {status} with a body that is not the expected JSON")]
    Unexpected { status: StatusCode },
    #[error("the event stream from {0} went silent for {EVENTS_IDLE_TIMEOUT:?}")]
    EventsIdle(SocketAddr),
    #[error("{}", dropped_message(*missed))]
    Dropped { missed: Option<u64> },
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    #[error("cannot read {path}: {source}")]
    Input {
        path: String,
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the configuration is at fault (exit 64) rather than the daemon (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(self, Error::NoPort(_) | Error::BadToken)
    }
}

fn dropped_message(missed: Option<u64>) -> String {
    let missed = missed.map_or(String::new(), |n| format!(" after missing {n} events"));
    format!("the daemon dropped this subscriber for reading too slowly{missed}")
}

fn api_message(status: StatusCode, message: Option<&str>) -> String {
    match message {
        Some(m) => format!("{m} ({})", status.as_u16()),
        None => format!("the admin API answered {status}"),
    }
}

/// A response: its status and whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Where to reach the admin API of `admin`: its `listen` address, with a wildcard address
/// (`0.0.0.0`, `::`) replaced by loopback of the same family.
pub fn target(admin: &AdminConfig) -> Result<SocketAddr, Error> {
    let listen = admin.listen;
    if listen.port() == 0 {
        return Err(Error::NoPort(listen));
    }
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, listen.port()))
}

/// Sends one HTTP/1.1 request to `addr` and reads the whole answer, whatever its status.
/// `path` is in origin form (`/sessions?x=y`).
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&Secret>,
    body: Bytes,
) -> Result<Reply, Error> {
    let req = build_request(addr, method, path, token, body)?;
    let exchange = async {
        let resp = send(addr, req).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|source| Error::Http { addr, source })?
            .to_bytes();
        Ok(Reply { status, body })
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| Error::ResponseTimeout(addr))?
}

fn build_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&Secret>,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, Error> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(
            header::USER_AGENT,
            concat!("sessiond/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .expect("a method, an origin-form path and fixed headers make a valid request");
    if let Some(token) = token {
        let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| Error::BadToken)?;
        value.set_sensitive(true);
        req.headers_mut().insert(header::AUTHORIZATION, value);
    }
    Ok(req)
}

/// Connects to `addr` (within [`CONNECT_TIMEOUT`]), sends `req` and returns the response
/// head with its body still to be read.
async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, Error> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Err(Error::ConnectTimeout(addr)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(Error::Refused(addr));
        }
        Ok(Err(source)) => return Err(Error::Connect { addr, source }),
        Ok(Ok(s)) => s,
    };
    let http = |source| Error::Http { addr, source };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    // Errors on the connection also fail `send_request` or the body, which report them.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(http)
}

/// `sessiond events`: streams `GET /events[?session=NAME]` and writes one line per
/// exchange to `out` (flushed per line): human-readable, or with `json` the event's JSON
/// as the daemon sent it. Returns when the daemon ends the stream; [`Error::Dropped`]
/// when it dropped this subscriber for reading too slowly.
pub async fn events(
    admin: &AdminConfig,
    session: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let addr = target(admin)?;
    let path = match session {
        Some(name) => format!("/events?session={}", utf8_percent_encode(name, SEGMENT)),
        None => "/events".to_string(),
    };
    let req = build_request(addr, Method::GET, &path, admin.token.as_ref(), Bytes::new())?;
    let resp = tokio::time::timeout(RESPONSE_TIMEOUT, send(addr, req))
        .await
        .map_err(|_| Error::ResponseTimeout(addr))??;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let body = tokio::time::timeout(RESPONSE_TIMEOUT, body.collect())
            .await
            .map_err(|_| Error::ResponseTimeout(addr))?
            .map_err(|source| Error::Http { addr, source })?
            .to_bytes();
        return Err(api_error(&Reply { status, body }));
    }
    let mut parser = SseParser::default();
    loop {
        // The daemon sends a keep-alive comment every 15 seconds: silence for longer than
        // this means it is gone.
        let frame = match tokio::time::timeout(EVENTS_IDLE_TIMEOUT, body.frame()).await {
            Err(_) => return Err(Error::EventsIdle(addr)),
            Ok(None) => return Ok(()),
            // A daemon that stops closes the connection in the middle of the chunked body:
            // that too is the end of the stream, not a failure.
            Ok(Some(Err(source))) if closed_by_peer(&source) => return Ok(()),
            Ok(Some(frame)) => frame.map_err(|source| Error::Http { addr, source })?,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for event in parser.push(&data) {
            match event.kind.as_str() {
                "exchange" => {
                    let line = if json {
                        event.data
                    } else {
                        match serde_json::from_str::<Value>(&event.data) {
                            Ok(value) => event_line(&value),
                            Err(_) => return Err(Error::Unexpected { status }),
                        }
                    };
                    match writeln!(out, "{line}").and_then(|()| out.flush()) {
                        Ok(()) => {}
                        // A reader that went away (`| head`) ends the tail quietly.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                        Err(source) => return Err(Error::Output(source)),
                    }
                }
                "dropped" => {
                    let missed = serde_json::from_str::<Value>(&event.data)
                        .ok()
                        .and_then(|v| v["missed"].as_u64());
                    return Err(Error::Dropped { missed });
                }
                _ => {}
            }
        }
    }
}

/// Whether reading a body failed because the other side closed the connection.
fn closed_by_peer(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            );
        }
        source = err.source();
    }
    e.is_incomplete_message()
}

/// One server-sent event: its `event:` type (`message` when it has none) and its `data:`
/// lines joined with newlines.
#[derive(Debug, PartialEq, Eq)]
struct SseEvent {
    kind: String,
    data: String,
}

/// Splits a `text/event-stream` body, arriving in chunks of any size, into events.
#[derive(Debug, Default)]
struct SseParser {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    kind: Option<String>,
    data: Option<String>,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.partial.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(end) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let raw = &self.partial[start..start + end];
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = String::from_utf8_lossy(raw).into_owned();
            start += end + 1;
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    events.push(SseEvent {
                        kind: self.kind.take().unwrap_or_else(|| "message".into()),
                        data,
                    });
                }
                self.kind = None;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "event" => self.kind = Some(value.to_string()),
                "data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                },
                _ => {}
            }
        }
        self.partial.drain(..start);
        events
    }
}

/// `STARTED SESSION METHOD URL STATUS BYTESB DURATIONms OUTCOME`, plus how many cookies
/// the response set when it set any.
fn event_line(e: &Value) -> String {
    let started = e["started"].as_str().unwrap_or("-");
    // Whole seconds are enough to read; the JSON has the rest.
    let started = match (started.find('.'), started.rfind(['Z', '+', '-'])) {
        (Some(dot), Some(zone)) if zone > dot => format!("{}{}", &started[..dot], &started[zone..]),
        _ => started.to_string(),
    };
    let text = |key: &str| e[key].as_str().unwrap_or("-").to_string();
    let mut line = format!(
        "{started} {} {} {} {} {}B {:.1}ms {}",
        text("session"),
        text("method"),
        text("url"),
        e["status"].as_u64().unwrap_or(0),
        e["bytes"].as_u64().unwrap_or(0),
        e["duration_ms"].as_f64().unwrap_or(0.0),
        text("outcome"),
    );
    match e["cookies_set"].as_u64() {
        Some(0) | None => {}
        Some(1) => line.push_str(" (set 1 cookie)"),
        Some(n) => line.push_str(&format!(" (set {n} cookies)")),
    }
    line
}

/// Runs `action` against the admin API of `admin` and returns what goes to stdout.
pub async fn execute(admin: &AdminConfig, action: &Action) -> Result<Vec<u8>, Error> {
    let addr = target(admin)?;
    let token = admin.token.as_ref();
    let call = |method: Method, path: String, body: Bytes| async move {
        let reply = request(addr, method, &path, token, body).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(api_error(&reply))
        }
    };
    match action {
        Action::Health => {
            // Only a 200 counts: the health endpoint answers nothing else when it is well.
            let reply = request(addr, Method::GET, "/healthz", token, Bytes::new()).await?;
            if reply.status == StatusCode::OK {
                Ok(Vec::new())
            } else {
                Err(api_error(&reply))
            }
        }
        Action::SessionsList { json } => {
            let reply = call(Method::GET, "/sessions".into(), Bytes::new()).await?;
            if *json {
                return Ok(with_newline(reply.body.to_vec()));
            }
            let value = parse_json(&reply)?;
            let sessions = value["sessions"].as_array().ok_or(Error::Unexpected {
                status: reply.status,
            })?;
            Ok(list_lines(sessions).into_bytes())
        }
        Action::SessionsShow { name } => {
            let reply = call(Method::GET, session_path(name, ""), Bytes::new()).await?;
            let value = parse_json(&reply)?;
            let pretty =
                serde_json::to_string_pretty(&value).expect("a JSON value always serializes");
            Ok(with_newline(pretty.into_bytes()))
        }
        Action::SessionsDelete { name } => {
            call(Method::DELETE, session_path(name, ""), Bytes::new()).await?;
            Ok(Vec::new())
        }
        Action::CookiesExport { name, format } => {
            let query = match format {
                CookieFormat::Netscape => "?format=netscape",
                CookieFormat::Json => "?format=json",
            };
            let path = format!("{}{query}", session_path(name, "/cookies"));
            let reply = call(Method::GET, path, Bytes::new()).await?;
            Ok(reply.body.to_vec())
        }
        Action::CookiesImport {
            name,
            file,
            replace,
        } => {
            let body = read_input(file)?;
            let method = if *replace { Method::PUT } else { Method::POST };
            let reply = call(method, session_path(name, "/cookies"), body.into()).await?;
            let value = parse_json(&reply)?;
            let n = value["imported"].as_u64().ok_or(Error::Unexpected {
                status: reply.status,
            })?;
            let cookies = if n == 1 { "cookie" } else { "cookies" };
            let line = if *replace {
                format!("replaced the cookies of session {name:?} with {n} {cookies}\n")
            } else {
                format!("imported {n} {cookies} into session {name:?}\n")
            };
            Ok(line.into_bytes())
        }
    }
}

/// `/sessions/NAME` + `rest`, the name escaped as one segment.
fn session_path(name: &str, rest: &str) -> String {
    format!("/sessions/{}{rest}", utf8_percent_encode(name, SEGMENT))
}

/// The error of an answer with an error status: its `error` field when it has one.
fn api_error(reply: &Reply) -> Error {
    let message = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    Error::Api {
        status: reply.status,
        message,
    }
}

fn parse_json(reply: &Reply) -> Result<Value, Error> {
    serde_json::from_slice(&reply.body).map_err(|_| Error::Unexpected {
        status: reply.status,
    })
}

fn with_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() != Some(&b'\n') {
        bytes.push(b'\n');
    }
    bytes
}

/// `name  flags` per session, names padded to one column.
fn list_lines(sessions: &[Value]) -> String {
    let rows: Vec<(&str, String)> = sessions
        .iter()
        .map(|s| {
            let mut flags = Vec::new();
            if s["configured"] == true {
                flags.push("configured");
            }
            flags.push(if s["in_memory"] == true {
                "in memory"
            } else {
                "in store only"
            });
            (s["name"].as_str().unwrap_or("?"), flags.join(", "))
        })
        .collect();
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(name, flags)| format!("{name:<width$}  {flags}\n"))
        .collect()
}

fn read_input(file: &std::path::Path) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut body).map(|_| ())
    } else {
        std::fs::read(file).map(|b| body = b)
    };
    read.map_err(|source| Error::Input {
        path: if file.as_os_str() == "-" {
            "stdin".into()
        } else {
            file.display().to_string()
        },
        source,
    })?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(listen: &str) -> AdminConfig {
        AdminConfig {
            listen: listen.parse().unwrap(),
            token: None,
        }
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        assert_eq!(
            target(&admin("0.0.0.0:8081")).unwrap(),
            "127.0.0.1:8081".parse().unwrap()
        );
        assert_eq!(
            target(&admin("[::]:9000")).unwrap(),
            "[::1]:9000".parse().unwrap()
        );
        assert_eq!(
            target(&admin("192.0.2.7:8081")).unwrap(),
            "192.0.2.7:8081".parse().unwrap()
        );
        assert!(matches!(
            target(&admin("127.0.0.1:0")),
            Err(Error::NoPort(_))
        ));
    }

    #[test]
    fn names_are_one_escaped_segment() {
        assert_eq!(
            session_path("a.b-c_d", "/cookies"),
            "/sessions/a.b-c_d/cookies"
        );
        assert_eq!(session_path("a/b c", ""), "/sessions/a%2Fb%20c");
    }

    #[test]
    fn api_errors_quote_the_message_and_status() {
        let reply = Reply {
            status: StatusCode::NOT_FOUND,
            body: Bytes::from_static(br#"{"error":"no session \"x\""}"#),
        };
        assert_eq!(api_error(&reply).to_string(), "no session \"x\" (404)");
        let reply = Reply {
            status: StatusCode::BAD_GATEWAY,
            body: Bytes::from_static(b"<html>"),
        };
        assert_eq!(
            api_error(&reply).to_string(),
            "the admin API answered 502 Bad Gateway"
        );
    }

    #[test]
    fn server_sent_events_are_split_across_any_chunking() {
        let stream = b": sessiond events\n\nevent: exchange\ndata: {\"a\":1}\n\n: keep-alive\n\n\
                       event: dropped\r\ndata: {\"missed\":3}\r\n\r\ndata: x\ndata: y\n\n";
        let want = vec![
            SseEvent {
                kind: "exchange".into(),
                data: "{\"a\":1}".into(),
            },
            SseEvent {
                kind: "dropped".into(),
                data: "{\"missed\":3}".into(),
            },
            SseEvent {
                kind: "message".into(),
                data: "x\ny".into(),
            },
        ];
        for size in [1, 3, 7, stream.len()] {
            let mut parser = SseParser::default();
            let got: Vec<SseEvent> = stream.chunks(size).flat_map(|c| parser.push(c)).collect();
            assert_eq!(got, want, "chunks of {size}");
        }
    }

    #[test]
    fn an_exchange_is_one_readable_line() {
        let event = serde_json::json!({
            "session": "alice", "method": "GET", "url": "https://api.example.com/x?token=…",
            "status": 200, "bytes": 1234, "started": "2026-11-24T01:02:03.456789Z",
            "duration_ms": 12.34, "wait_ms": 10.0, "outcome": "complete", "cookies_set": 0,
        });
        assert_eq!(
            event_line(&event),
            "2026-11-24T01:02:03Z alice GET https://api.example.com/x?token=… 200 1234B 12.3ms complete"
        );
        let event = serde_json::json!({
            "session": null, "method": "CONNECT", "url": "example.com:443", "status": 200,
            "bytes": 0, "started": "2026-11-24T01:02:03Z", "duration_ms": 1.0,
            "outcome": "tunnel: intercepted", "cookies_set": 2,
        });
        assert_eq!(
            event_line(&event),
            "2026-11-24T01:02:03Z - CONNECT example.com:443 200 0B 1.0ms tunnel: intercepted (set 2 cookies)"
        );
    }

    #[test]
    fn the_list_has_one_aligned_line_per_session() {
        let sessions: Value = serde_json::json!([
            { "name": "default", "configured": true, "in_memory": true },
            { "name": "dyn", "configured": false, "in_memory": false },
        ]);
        assert_eq!(
            list_lines(sessions.as_array().unwrap()),
            "default  configured, in memory\ndyn      in store only\n"
        );
    }
}
