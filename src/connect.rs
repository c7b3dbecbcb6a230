//! CONNECT tunnels. The proxy answers `200`, takes the connection over, and tells what
//! the client speaks by its first bytes:
//!
//! - a TLS ClientHello for a host that `tls.intercept` covers (and `tls.passthrough` does
//!   not): decrypted with a leaf certificate minted by the local CA, and every request
//!   inside goes through [`Proxy::handle`], exactly like a plain one;
//! - plaintext HTTP (old clients do `CONNECT host:80` then cleartext): served the same way;
//! - anything else, a passthrough host, or a client that waits for the server to speak
//!   first: a blind byte copy to the target.
//!
//! Every request in a tunnel goes to the CONNECT target, whatever its own `Host` says.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::uri::{Authority, Scheme};
use http::{Request, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use crate::certs::Minter;
use crate::error::ProxyError;
use crate::proxy::record::ExchangeLog;
use crate::proxy::{ConnInfo, Proxy, TunnelInfo};
use crate::server::{self, Activity, Prefixed};
use crate::session::Session;

/// Most a ClientHello may take before the tunnel is treated as opaque.
const MAX_HELLO: usize = 64 * 1024;

/// What tunnels need besides the pipeline.
pub struct Tunnels {
    pub builder: Arc<auto::Builder<TokioExecutor>>,
    pub head_timeout: Duration,
    pub minter: Arc<Minter>,
}

/// The `host:port` of a CONNECT request (authority form; the port is required).
pub fn connect_target(uri: &Uri) -> Result<Authority, ProxyError> {
    let bad = || {
        ProxyError::BadRequest("CONNECT needs a host:port target (CONNECT example.com:443)".into())
    };
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.port_u16().is_none()
        || authority.host().is_empty()
        || authority.as_str().contains('@')
    {
        return Err(bad());
    }
    Ok(authority.clone())
}

/// The host of an authority as patterns see it: lower case, IPv6 without brackets.
pub fn bare_host(authority: &Authority) -> String {
    crate::hosts::unbracket(authority.host()).to_ascii_lowercase()
}

/// What the first bytes of a tunnel say.
enum Sniffed {
    Tls { sni: Option<String> },
    PlainHttp,
    Opaque,
}

impl Tunnels {
    /// Runs one tunnel to its end. `log` is the CONNECT's access line, written when the
    /// tunnel closes.
    pub async fn run(
        self: Arc<Self>,
        proxy: Arc<Proxy>,
        upgraded: Upgraded,
        target: Authority,
        conn: Arc<ConnInfo>,
        session: Arc<Session>,
        mut log: ExchangeLog,
    ) {
        let mut client = TokioIo::new(upgraded);
        let mut first = BytesMut::with_capacity(4096);
        let sniffed = sniff(&mut client, &mut first, self.head_timeout).await;
        let host = bare_host(&target);
        let client = Prefixed::new(first.split().freeze(), client);
        match sniffed {
            Sniffed::Tls { sni } => {
                let name = sni.unwrap_or_else(|| host.clone());
                // The policy as it is when the tunnel's first bytes arrive.
                let tls = &proxy.policy().tls;
                if tls.intercepts(&name) && !tls.passthrough.matches(&host) {
                    log.set_outcome("tunnel: intercepted");
                    self.intercept(proxy, client, name, target, conn, session)
                        .await;
                } else {
                    log.set_outcome("tunnel: passthrough");
                    blind(client, &target, &session, &mut log).await;
                }
            }
            Sniffed::PlainHttp => {
                log.set_outcome("tunnel: plain http");
                self.serve_inside(proxy, client, Scheme::HTTP, target, conn, session)
                    .await;
            }
            Sniffed::Opaque => {
                log.set_outcome("tunnel: opaque");
                blind(client, &target, &session, &mut log).await;
            }
        }
    }

    /// Terminates the client's TLS with a leaf for `name`, then serves HTTP inside.
    async fn intercept<I>(
        &self,
        proxy: Arc<Proxy>,
        client: I,
        name: String,
        target: Authority,
        conn: Arc<ConnInfo>,
        session: Arc<Session>,
    ) where
        I: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // Minting is a millisecond of CPU, and a second tunnel to the same new host waits
        // for the first mint: both belong on the blocking pool, not a runtime worker. A
        // leaf already minted is taken at once: the hop to the pool and back would cost
        // more than the lookup.
        let minted = match self.minter.cached(&name) {
            Some(config) => Ok(Ok(config)),
            None => {
                let minter = Arc::clone(&self.minter);
                let host = name.clone();
                tokio::task::spawn_blocking(move || minter.server_config(&host)).await
            }
        };
        let config = match minted {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!(host = %name, error = %e, "cannot mint a certificate; closing the tunnel");
                return;
            }
            Err(e) => {
                tracing::error!(host = %name, error = %e, "minting a certificate failed");
                return;
            }
        };
        let accept = tokio_rustls::TlsAcceptor::from(config).accept(client);
        let tls = match tokio::time::timeout(self.head_timeout, accept).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::warn!(
                    host = %name,
                    error = %e,
                    "the client refused the certificate sessiond made for this host; \
                     trust the sessiond CA (`sessiond ca` prints it; curl --cacert, \
                     REQUESTS_CA_BUNDLE, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS) or list the host \
                     in tls.passthrough"
                );
                return;
            }
            Err(_) => {
                tracing::debug!(host = %name, "TLS handshake inside the tunnel timed out");
                return;
            }
        };
        self.serve_inside(proxy, tls, Scheme::HTTPS, target, conn, session)
            .await;
    }

    /// Serves the requests of a tunnel through the pipeline, each sent to the target.
    async fn serve_inside<I>(
        &self,
        proxy: Arc<Proxy>,
        io: I,
        scheme: Scheme,
        target: Authority,
        conn: Arc<ConnInfo>,
        session: Arc<Session>,
    ) where
        I: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let inner = Arc::new(ConnInfo {
            peer: conn.peer,
            listener_session: conn.listener_session.clone(),
            gate: conn.gate.clone(),
            tunnel: Some(TunnelInfo {
                session: Arc::clone(session.name()),
                scheme,
                authority: target,
            }),
            activity: Arc::clone(&activity),
            slot: Arc::clone(&conn.slot),
            shutdown: conn.shutdown.clone(),
        });
        let service = service_fn(move |req: Request<Incoming>| {
            let proxy = Arc::clone(&proxy);
            let inner = Arc::clone(&inner);
            async move { Ok::<_, Infallible>(proxy.handle(req, &inner).await) }
        });
        server::serve(
            io,
            &self.builder,
            self.head_timeout,
            &activity,
            service,
            conn.shutdown.clone(),
        )
        .await;
    }
}

/// The absolute URI a request inside a tunnel is sent to: the tunnel's scheme and
/// target, the request's path.
pub fn tunnel_uri(tunnel: &TunnelInfo, uri: &Uri) -> Result<Uri, ProxyError> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Uri::builder()
        .scheme(tunnel.scheme.clone())
        .authority(tunnel.authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| ProxyError::BadRequest(format!("bad request target in the tunnel: {e}")))
}

/// Copies bytes both ways between the client and the target until either side closes.
async fn blind<I>(mut client: I, target: &Authority, session: &Session, log: &mut ExchangeLog)
where
    I: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut upstream = match session
        .profile()
        .configured
        .upstream
        .open_tunnel(target)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(target = %target, error = %e, "cannot open a blind tunnel");
            log.set_outcome("tunnel: upstream failed");
            let _ = client.shutdown().await;
            return;
        }
    };
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((_, to_client)) => log.add_bytes(to_client as usize),
        Err(e) => tracing::debug!(target = %target, error = %e, "blind tunnel ended with an error"),
    }
}

/// Reads the first bytes of a tunnel: enough to see a whole ClientHello, or an HTTP method
/// and its space. Silence until the head timeout means the server is to speak first.
async fn sniff<I: AsyncRead + Unpin>(io: &mut I, buf: &mut BytesMut, timeout: Duration) -> Sniffed {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut hello = rustls::server::Acceptor::default();
    let mut fed = 0;
    loop {
        if !buf.is_empty() {
            if buf[0] == 0x16 {
                // Feed what is new to a throw-away rustls acceptor: it says when the
                // ClientHello is complete and what it names. The bytes stay in `buf` to be
                // replayed to the real handshake or the origin.
                while fed < buf.len() {
                    match hello.read_tls(&mut &buf[fed..]) {
                        Ok(0) | Err(_) => return Sniffed::Opaque,
                        Ok(n) => fed += n,
                    }
                }
                match hello.accept() {
                    Ok(Some(accepted)) => {
                        let sni = accepted
                            .client_hello()
                            .server_name()
                            .map(str::to_ascii_lowercase);
                        return Sniffed::Tls { sni };
                    }
                    Ok(None) => {}
                    Err(_) => return Sniffed::Opaque,
                }
            } else if let Some(verdict) = http_method(buf) {
                return if verdict {
                    Sniffed::PlainHttp
                } else {
                    Sniffed::Opaque
                };
            }
            if buf.len() >= MAX_HELLO {
                return Sniffed::Opaque;
            }
        }
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Sniffed::Opaque,
        }
    }
}

/// `Some(true)` when `buf` starts with an HTTP method token and a space, `Some(false)` when
/// it cannot, `None` when more bytes are needed to tell.
fn http_method(buf: &[u8]) -> Option<bool> {
    const LONGEST: usize = 16;
    for (i, b) in buf.iter().enumerate().take(LONGEST) {
        match b {
            b'A'..=b'Z' | b'-' | b'_' => {}
            b' ' => return Some(i > 0),
            _ => return Some(false),
        }
    }
    if buf.len() >= LONGEST {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_detection() {
        assert_eq!(http_method(b"GET / HTTP/1.1"), Some(true));
        assert_eq!(http_method(b"PRI * HTTP/2.0"), Some(true));
        assert_eq!(http_method(b"POS"), None);
        assert_eq!(http_method(b"\x16\x03\x01"), Some(false));
        assert_eq!(http_method(b" GET"), Some(false));
        assert_eq!(http_method(b"SSH-2.0-OpenSSH"), Some(false));
    }

    #[test]
    fn connect_targets_need_a_port() {
        let ok: Uri = "example.com:443".parse().unwrap();
        assert_eq!(connect_target(&ok).unwrap().as_str(), "example.com:443");
        for bad in ["example.com", "/path", "http://example.com/"] {
            let uri: Uri = bad.parse().unwrap();
            assert!(connect_target(&uri).is_err(), "{bad}");
        }
    }
}
