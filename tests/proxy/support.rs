//! Test support: a small origin server written for these tests, a daemon started from a
//! TOML snippet on 127.0.0.1:0, and a client that speaks to the proxy the way curl does
//! (absolute-form requests, one fresh connection per request unless told otherwise).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
pub use http::{HeaderMap, Method, Request, Response, StatusCode};
pub use http_body_util::{BodyExt, Full, StreamBody};
pub use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sessiond::{Config, Daemon};
use tokio::net::{TcpListener, TcpStream};

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The origin: answers by path.
///
/// - `/cookies/set/NAME/VALUE` — 302 to `/cookies` with `Set-Cookie: NAME=VALUE; Path=/`
/// - `/cookies` — `{"cookies": {name: value}}` from the request's `Cookie`
/// - `/delay/MS` — answers after MS milliseconds
/// - `/stall` — sends the head and 5 bytes, then nothing for a minute
/// - `/bytes/N` — N bytes, generated in 64 KiB chunks (never held in memory)
/// - `/upload` — reads the body, answers `{"received": N}`
/// - `/status/N` — status N
/// - `/hop` — a response with hop-by-hop headers the proxy must remove
/// - anything else — a JSON echo of the request: method, uri, headers
///
/// Every response also carries each `X-Set-Cookie` request header as a `Set-Cookie`.
pub struct Origin {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Origin {
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(origin_handler))
                        .with_upgrades()
                        .await;
                });
            }
        });
        Origin { addr, connections }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// `/ws`: a WebSocket handshake (RFC 6455 accept key), then every byte echoed back.
fn websocket_echo(req: &mut Request<Incoming>) -> Response<BoxBody> {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &[key.as_slice(), GUID.as_bytes()].concat(),
    );
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let mut r = text(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("connection", "Upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    r
}

async fn origin_handler(mut req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    if req.uri().path() == "/ws" {
        return Ok(websocket_echo(&mut req));
    }
    let path = req.uri().path().to_string();
    let set_cookies: Vec<_> = req
        .headers()
        .get_all("x-set-cookie")
        .iter()
        .cloned()
        .collect();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut resp = match segments.as_slice() {
        ["cookies", "set", name, value] => {
            let mut r = text(StatusCode::FOUND, "");
            r.headers_mut()
                .insert("location", "/cookies".parse().unwrap());
            r.headers_mut().append(
                "set-cookie",
                format!("{name}={value}; Path=/").parse().unwrap(),
            );
            r
        }
        ["cookies"] => {
            let cookies: BTreeMap<String, String> = req
                .headers()
                .get_all("cookie")
                .iter()
                .flat_map(|v| v.to_str().unwrap().split(';'))
                .filter_map(|p| p.trim().split_once('='))
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            json_response(json!({ "cookies": cookies }))
        }
        ["delay", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            text(StatusCode::OK, "late")
        }
        ["stall"] => {
            let stream =
                futures_stream(vec![Bytes::from_static(b"first")], Duration::from_secs(60));
            Response::new(stream)
        }
        ["bytes", n] => {
            let total: u64 = n.parse().unwrap();
            let mut r = Response::new(zeros(total));
            r.headers_mut().insert("content-length", total.into());
            r
        }
        ["upload"] => {
            let mut body = req.into_body();
            let mut received = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    received += data.len() as u64;
                }
            }
            json_response(json!({ "received": received }))
        }
        ["status", code] => text(
            StatusCode::from_u16(code.parse().unwrap()).unwrap(),
            "status",
        ),
        ["protected"] => {
            let authed = req
                .headers()
                .get_all("cookie")
                .iter()
                .any(|v| v.to_str().unwrap_or("").contains("auth=ok"));
            if authed {
                // The body's length too, so a replayed upload can be told complete.
                let received = req.into_body().collect().await.unwrap().to_bytes().len();
                let answer = match received {
                    0 => "welcome".to_string(),
                    n => format!("welcome {n}"),
                };
                let mut r = Response::new(Full::new(Bytes::from(answer)).boxed());
                *r.status_mut() = StatusCode::OK;
                r
            } else {
                text(StatusCode::UNAUTHORIZED, "log in first")
            }
        }
        ["hop"] => {
            let mut r = text(StatusCode::OK, "hop");
            let h = r.headers_mut();
            h.insert("connection", "x-hop-secret".parse().unwrap());
            h.insert("x-hop-secret", "1".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert(
                "proxy-authenticate",
                "Basic realm=\"origin\"".parse().unwrap(),
            );
            h.insert("x-end-to-end", "kept".parse().unwrap());
            r
        }
        _ => {
            let headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("<bin>").to_string()))
                .collect();
            json_response(json!({
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "version": format!("{:?}", req.version()),
                "headers": headers,
            }))
        }
    };
    for c in set_cookies {
        resp.headers_mut().append("set-cookie", c);
    }
    Ok(resp)
}

/// An HTTPS origin with its own self-signed certificate (for `localhost` and 127.0.0.1),
/// offering h2 and http/1.1, answering like [`Origin`].
pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// The origin's certificate as a PEM file, for `ca_bundle`.
    pub ca_file: std::path::PathBuf,
}

impl TlsOrigin {
    pub async fn start() -> TlsOrigin {
        TlsOrigin::start_with(|b| b.with_no_client_auth()).await
    }

    /// With a custom client-auth step (mTLS tests).
    pub async fn start_with(
        client_auth: impl FnOnce(
            rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>,
        ) -> rustls::ConfigBuilder<
            rustls::ServerConfig,
            rustls::server::WantsServerCert,
        >,
    ) -> TlsOrigin {
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        let ca_file = temp_path("origin-ca.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap();
        let mut config = client_auth(builder)
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection_with_upgrades(TokioIo::new(tls), service_fn(origin_handler))
                    .await;
                });
            }
        });
        TlsOrigin { addr, ca_file }
    }

    /// `https://localhost:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), path)
    }
}

/// A unique path in the temp directory.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "sessiond-test-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ))
}

fn text(status: StatusCode, body: &'static str) -> Response<BoxBody> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *r.status_mut() = status;
    r
}

fn json_response(v: Value) -> Response<BoxBody> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// A body of `total` zero bytes produced chunk by chunk as the reader asks for them.
fn zeros(total: u64) -> BoxBody {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![0u8; CHUNK as usize]);
    let stream = futures_util::stream::unfold(total, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(CHUNK);
            Some((Ok(Frame::data(chunk.slice(..n as usize))), left - n))
        }
    });
    StreamBody::new(stream).boxed()
}

/// Some chunks, then silence for `stall` before the end.
fn futures_stream(chunks: Vec<Bytes>, stall: Duration) -> BoxBody {
    let stream = futures_util::stream::unfold((chunks, 0usize), move |(chunks, i)| async move {
        if i < chunks.len() {
            let c = chunks[i].clone();
            return Some((Ok(Frame::data(c)), (chunks, i + 1)));
        }
        tokio::time::sleep(stall).await;
        None
    });
    StreamBody::new(stream).boxed()
}

/// Parses a config snippet and moves every listener to 127.0.0.1:0 so tests run in
/// parallel. Session listeners named in the snippet are moved too (one per session).
pub fn config(toml: &str) -> Config {
    let mut config = Config::from_toml(toml).unwrap_or_else(|e| panic!("test config: {e}"));
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    config.proxy.listen = vec![any];
    config.admin.listen = any;
    // Each daemon gets its own state (CA, session store), never the working directory's.
    let dir = temp_path("state");
    config.proxy.state_dir = dir.clone();
    config.tls.ca_cert = dir.join("ca.pem");
    config.tls.ca_key = dir.join("ca.key");
    config.tls.ca_configured = false;
    for s in &mut config.sessions {
        for a in &mut s.listen {
            *a = any;
        }
    }
    config
}

pub async fn start(toml: &str) -> Daemon {
    Daemon::start(config(toml)).await.expect("daemon starts")
}

/// As [`start`], with its state (CA, store) in `dir`, to start again on it.
pub async fn start_in(toml: &str, dir: &std::path::Path) -> Daemon {
    let mut config = config(toml);
    config.proxy.state_dir = dir.to_path_buf();
    config.tls.ca_cert = dir.join("ca.pem");
    config.tls.ca_key = dir.join("ca.key");
    Daemon::start(config).await.expect("daemon starts")
}

/// What a client got back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// For an echo response: the values the origin received for `name`.
    pub fn seen(&self, name: &str) -> Vec<String> {
        self.json()["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|pair| pair[1].as_str().unwrap().to_string())
            .collect()
    }

    /// For a `/cookies` response: the cookies the origin received.
    pub fn cookies(&self) -> BTreeMap<String, String> {
        serde_json::from_value(self.json()["cookies"].clone()).unwrap()
    }
}

/// A request to send through the proxy: absolute-form, like curl with `-x`.
pub fn get(url: &str) -> http::request::Builder {
    Request::builder().method(Method::GET).uri(url)
}

/// `Proxy-Authorization: Basic` for `user:password`.
pub fn proxy_auth(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// Sends one request on a fresh connection to `proxy` and reads the whole reply.
pub async fn send(proxy: SocketAddr, req: http::request::Builder) -> Reply {
    send_body(proxy, req, Full::new(Bytes::new()).boxed()).await
}

pub async fn send_body(proxy: SocketAddr, req: http::request::Builder, body: BoxBody) -> Reply {
    let mut conn = Conn::open(proxy).await;
    conn.send_body(req, body).await
}

/// One client connection to the proxy, for tests about connection reuse.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<BoxBody>,
}

impl Conn {
    pub async fn open(proxy: SocketAddr) -> Conn {
        let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
        Conn::over(stream).await
    }

    /// HTTP/1.1 over any stream (a tunnel, a TLS session inside one).
    pub async fn over<I>(io: I) -> Conn
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn { sender }
    }

    pub async fn send(&mut self, req: http::request::Builder) -> Reply {
        self.send_body(req, Full::new(Bytes::new()).boxed()).await
    }

    pub async fn send_body(&mut self, req: http::request::Builder, body: BoxBody) -> Reply {
        let resp = self.response(req, body).await;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("reply body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// The response with its body still streaming.
    pub async fn response(
        &mut self,
        req: http::request::Builder,
        body: BoxBody,
    ) -> Response<Incoming> {
        self.sender.ready().await.expect("connection ready");
        self.sender
            .send_request(req.body(body).unwrap())
            .await
            .expect("proxy answers")
    }
}

/// Opens a CONNECT tunnel to `authority` through the proxy with extra request headers, and
/// returns the proxy's status and, on 200, the stream.
pub async fn connect_tunnel(
    proxy: SocketAddr,
    authority: &str,
    headers: &[(&str, &str)],
) -> (u16, TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        answer.push(
            stream
                .read_u8()
                .await
                .expect("the proxy answers the CONNECT"),
        );
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, stream)
}

/// A TLS client trusting only `roots`, offering `alpn`.
pub fn tls_connector(
    roots: &[rustls::pki_types::CertificateDer<'static>],
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// TLS to `server_name` over a CONNECT tunnel, trusting only the daemon's CA.
pub async fn intercepted(
    proxy: &Daemon,
    authority: &str,
    server_name: &str,
    headers: &[(&str, &str)],
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (status, stream) = connect_tunnel(proxy.proxy_addr(), authority, headers).await;
    assert_eq!(status, 200, "CONNECT {authority}");
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    tls_connector(&[proxy.ca().cert_der().clone()], alpn)
        .connect(name, stream)
        .await
        .expect("the client trusts the certificate sessiond made")
}

/// A request inside a tunnel: origin form, with its Host.
pub fn inside(path: &str, host: &str) -> http::request::Builder {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", host)
}

/// Sends a WebSocket handshake on `io` (a tunnel, TLS inside one, or a proxy connection
/// with an absolute-form target), checks the 101, then checks that bytes come back.
pub async fn websocket_roundtrip<I>(
    mut io: I,
    target: &str,
    host: &str,
    extra: &[(&str, &str)],
) -> String
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    io.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        answer.push(io.read_u8().await.expect("an answer to the handshake"));
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    // RFC 6455's example key gives this accept value.
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{answer}"
    );
    // A masked text frame "hi" goes out; the origin echoes the bytes.
    let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    io.write_all(&frame).await.unwrap();
    let mut echoed = [0u8; 8];
    io.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, frame);
    answer
}

/// An HTTP/2 client (prior knowledge, or after ALPN) over any stream.
pub async fn h2<I>(io: I) -> hyper::client::conn::http2::SendRequest<Full<Bytes>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(io),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    sender
}
