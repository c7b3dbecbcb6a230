//! The client side of the admin API: `sessiond sessions`, `cookies` and `health` send one
//! HTTP/1.1 request to the `admin.listen` of a configuration (with its `admin.token`) and
//! turn the answer into output for stdout, or an [`Error`] whose text is the admin API's
//! own `{"error": ...}` message and status.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
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

    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Err(Error::ConnectTimeout(addr)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(Error::Refused(addr));
        }
        Ok(Err(source)) => return Err(Error::Connect { addr, source }),
        Ok(Ok(s)) => s,
    };
    let http = |source| Error::Http { addr, source };
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        // Errors on the connection also fail `send_request`, which reports them.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(http)?.to_bytes();
        Ok(Reply { status, body })
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| Error::ResponseTimeout(addr))?
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
