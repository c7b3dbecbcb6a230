//! Upstream connections: one hyper-util pool per *connection identity* (everything that
//! makes one TCP connection unusable for another session: the parent proxy and its
//! credentials, the connect timeout), shared by every session with the same identity and
//! never by any other.
//!
//! The connector resolves names (pins from `upstream.resolve` first, then a small cache in
//! front of the system resolver), refuses to connect to the daemon's own listeners (a
//! loop), and applies the connect timeout. The daemon's environment (`HTTP_PROXY` and
//! friends) is never read: hyper-util's client does not, and neither does this file.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::{Upload, UploadTimeout};
use crate::config::{SessionSettings, Timeouts, UpstreamConfig, UpstreamProxy, UpstreamTls};
use crate::error::ProxyError;
use crate::live::Live;
use crate::metrics::{ConnectionCount, Metrics};

/// What must be equal for two sessions to share a pooled connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConnIdentity {
    parent: Option<UpstreamProxy>,
    connect_timeout: Duration,
    tls: UpstreamTls,
}

/// The TLS settings of a session could not be turned into a client configuration.
#[derive(Debug, thiserror::Error)]
#[error("TLS towards origins: {0}")]
pub struct TlsSetupError(String);

type HttpsConnector = hyper_rustls::HttpsConnector<Connector>;

/// The shared upstream side: the pools and the resolver.
pub struct Upstream {
    pools: DashMap<ConnIdentity, UpstreamClient>,
    resolver: Arc<Resolver>,
    own_addrs: OwnAddrs,
    idle_timeout: Duration,
    max_idle_per_host: usize,
    /// The system's trusted roots, read once.
    system_roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    metrics: Arc<Metrics>,
}

/// The daemon's bound listeners, shared by every connector: connecting to one is a loop.
/// Set once, after binding and before serving.
#[derive(Clone, Default)]
struct OwnAddrs(Arc<OnceLock<Box<[SocketAddr]>>>);

impl OwnAddrs {
    fn get(&self) -> &[SocketAddr] {
        self.0.get().map(|a| &a[..]).unwrap_or_default()
    }
}

impl Upstream {
    pub fn set_own_addrs(&self, addrs: Vec<SocketAddr>) {
        // A second call would mean a second set of listeners: keep the first.
        let _ = self.own_addrs.0.set(addrs.into_boxed_slice());
    }

    /// Ready to build clients; [`set_own_addrs`](Self::set_own_addrs) must follow once the
    /// listeners are bound (their ports are not known before).
    pub fn new(config: &UpstreamConfig, metrics: Arc<Metrics>) -> Upstream {
        Upstream {
            pools: DashMap::new(),
            resolver: Arc::new(Resolver {
                rules: Live::new(DnsRules::new(config)),
                cache: DashMap::new(),
            }),
            own_addrs: OwnAddrs::default(),
            metrics,
            idle_timeout: config.pool_idle_timeout,
            max_idle_per_host: config.pool_max_idle_per_host,
            system_roots: Arc::new(system_roots()),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// Applies a reloaded `[upstream]`: address pins and the DNS cache's lifetime (the
    /// cache starts over). The pool limits are fixed at start.
    pub fn reconfigure(&self, config: &UpstreamConfig) {
        self.resolver.rules.set(Arc::new(DnsRules::new(config)));
        self.resolver.cache.clear();
    }

    /// Forgets every client, so sessions configured from now on get new, empty pools.
    /// Clients in use keep theirs until they are dropped.
    pub fn new_pools(&self) {
        self.pools.clear();
    }

    /// The client for a session's settings, created on first use of that identity.
    pub fn client_for(&self, settings: &SessionSettings) -> Result<UpstreamClient, TlsSetupError> {
        let id = ConnIdentity {
            parent: settings.upstream_proxy.clone(),
            connect_timeout: settings.timeouts.connect,
            tls: settings.tls.clone(),
        };
        if let Some(c) = self.pools.get(&id) {
            return Ok(c.clone());
        }
        // Built outside the map's lock: reading roots and keys is not instant.
        let client = self.build_client(id.clone())?;
        Ok(self.pools.entry(id).or_insert(client).clone())
    }

    fn build_client(&self, id: ConnIdentity) -> Result<UpstreamClient, TlsSetupError> {
        let inner = Arc::new(ConnectorInner {
            resolver: Arc::clone(&self.resolver),
            parent: id.parent.clone(),
            connect_timeout: id.connect_timeout,
            own_addrs: self.own_addrs.clone(),
            metrics: Arc::clone(&self.metrics),
        });
        let tls = self.tls_config(&id.tls)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(Connector(Arc::clone(&inner)));
        let http1_connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(Connector(Arc::clone(&inner)));
        let client = self.client_builder().build(connector);
        let http1_client = self.client_builder().build(http1_connector);
        Ok(UpstreamClient {
            client,
            http1_client,
            parent_auth: id.parent.and_then(|p| p.authorization),
            connector: inner,
        })
    }

    fn client_builder(&self) -> hyper_util::client::legacy::Builder {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(self.idle_timeout)
            .pool_max_idle_per_host(self.max_idle_per_host)
            // Without a pool timer idle connections are only dropped when next touched;
            // with it a background task evicts them on time.
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // Host comes from the target URI: as a header on HTTP/1.1, as `:authority` on h2.
            .set_host(true)
            // Pings find a dead HTTP/2 connection before a request is sent on it.
            .http2_keep_alive_interval(Some(Duration::from_secs(30)))
            .http2_keep_alive_timeout(Duration::from_secs(20))
            .http2_keep_alive_while_idle(true);
        builder
    }

    /// The rustls client configuration for one identity: the system roots plus the
    /// configured bundles (or no verification at all with `verify = false`), and the
    /// client certificate if there is one.
    fn tls_config(&self, tls: &UpstreamTls) -> Result<ClientConfig, TlsSetupError> {
        let setup = |e: rustls::Error| TlsSetupError(e.to_string());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(setup)?;
        let builder = if tls.verify {
            let mut roots = (*self.system_roots).clone();
            for bundle in &tls.ca_bundles {
                for cert in bundle.certs.iter() {
                    roots
                        .add(cert.clone())
                        .map_err(|e| TlsSetupError(format!("{}: {e}", bundle.path.display())))?;
                }
            }
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(Arc::clone(
                    &self.provider,
                ))))
        };
        match &tls.client_identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.certs.to_vec(), id.key.clone_key())
                .map_err(|e| TlsSetupError(format!("client certificate {:?}: {e}", id.chain))),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// The system's trusted roots. Unreadable ones are logged and skipped: a machine with no
/// roots can still reach origins whose CA is in a configured bundle.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "could not read some system root certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system root certificates");
    // rustls-native-certs honours these as OpenSSL does, replacing the system store. Set in
    // the daemon's own environment by mistake (say, to sessiond's CA, meant for clients),
    // they would make every https origin fail.
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        if let Some(value) = std::env::var_os(var) {
            let level_warn = added <= 1;
            if level_warn {
                tracing::warn!(var, value = %value.to_string_lossy(), added, "the system roots come from this variable in sessiond's environment and hold almost nothing: origins will fail verification. Unset it for the daemon, or use upstream.ca_bundle");
            } else {
                tracing::debug!(var, value = %value.to_string_lossy(), added, "system roots come from this variable");
            }
        }
    }
    roots
}

/// `verify = false`: accepts any certificate, still checking the handshake signatures so
/// the connection is at least with the holder of the presented key.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A handle on one identity's pool; cheap to clone.
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpsConnector, Upload>,
    /// The same identity without h2 in ALPN, for protocol upgrades.
    http1_client: Client<HttpsConnector, Upload>,
    /// `Proxy-Authorization` for the parent proxy, if it has credentials.
    parent_auth: Option<HeaderValue>,
    /// The same connector the pool uses, for blind tunnels.
    connector: Arc<ConnectorInner>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// A raw TCP connection to `target` for a blind tunnel, made as the pool would make
    /// one (pins, loop check, connect timeout, CONNECT through the parent).
    pub async fn open_tunnel(&self, target: &Authority) -> Result<TcpStream, ProxyError> {
        let uri = Uri::builder()
            .scheme(http::uri::Scheme::HTTPS)
            .authority(target.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        match self.connector.connect(&uri).await {
            Ok(io) => Ok(io.io.into_inner()),
            Err(e) => Err(e.to_proxy_error()),
        }
    }

    /// Sends a request (absolute-form URI) and waits for its response head.
    ///
    /// `timeouts.response` counts from the moment the request body has been sent, so an
    /// upload of any length is not cut short; for a request without a body that is at
    /// once (and so includes connecting). Inside the request body, `timeouts.read` is the
    /// longest silence allowed from the client.
    /// An `upgrade` request goes over HTTP/1.1 even to an origin that offers h2: the
    /// protocol switch only exists there.
    pub async fn send(
        &self,
        req: Request<Incoming>,
        timeouts: &Timeouts,
        upgrade: bool,
    ) -> Result<Response<Incoming>, ProxyError> {
        let (parts, body) = req.into_parts();
        let (body, body_sent) = Upload::new(
            body,
            timeouts.read,
            self.connector.metrics.request_bytes.clone(),
        );
        self.send_upload(parts, body, body_sent, timeouts, upgrade)
            .await
    }

    /// Sends a request whose body is already in memory (small bodies kept for a replay,
    /// and the replay itself).
    pub async fn send_buffered(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        timeouts: &Timeouts,
    ) -> Result<Response<Incoming>, ProxyError> {
        self.send_upload(parts, Upload::buffered(body), None, timeouts, false)
            .await
    }

    async fn send_upload(
        &self,
        mut parts: http::request::Parts,
        body: Upload,
        body_sent: Option<tokio::sync::oneshot::Receiver<()>>,
        timeouts: &Timeouts,
        upgrade: bool,
    ) -> Result<Response<Incoming>, ProxyError> {
        // Through a parent, an http request carries the parent's credentials; an https
        // one travels in a CONNECT tunnel, and the credentials went with the CONNECT.
        if let Some(auth) = &self.parent_auth
            && parts.uri.scheme() != Some(&http::uri::Scheme::HTTPS)
        {
            parts
                .headers
                .insert(http::header::PROXY_AUTHORIZATION, auth.clone());
        }
        // Kept for an error message: cloning the authority shares its bytes, and the
        // `host:port` text is only made if something fails.
        let authority = parts.uri.authority().cloned();
        let target = || authority_of(authority.as_ref());
        let https = parts.uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let client = if upgrade {
            &self.http1_client
        } else {
            &self.client
        };
        let exchange = client.request(Request::from_parts(parts, body));
        tokio::pin!(exchange);
        if let Some(body_sent) = body_sent {
            // An origin may answer before reading the whole body (a 413, say).
            tokio::select! {
                r = &mut exchange => return r.map_err(|e| classify(&e, target(), https)),
                _ = body_sent => {}
            }
        }
        match tokio::time::timeout(timeouts.response, exchange).await {
            Err(_) => Err(ProxyError::ResponseTimeout {
                target: target(),
                after: timeouts.response,
            }),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(&e, target(), https)),
        }
    }
}

/// `host[:port]` for messages: never the user info an authority may carry.
fn authority_of(authority: Option<&http::uri::Authority>) -> String {
    match authority.map(|a| (a.host(), a.port_u16())) {
        Some((h, Some(p))) => format!("{h}:{p}"),
        Some((h, None)) => h.to_string(),
        None => String::new(),
    }
}

/// Maps a client error to what the user is told: our own connect errors come back as the
/// error's source.
fn classify(err: &hyper_util::client::legacy::Error, target: String, https: bool) -> ProxyError {
    let mut tls_failure = None;
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref::<ConnectError>() {
            return c.to_proxy_error();
        }
        if let Some(UploadTimeout(after)) = e.downcast_ref::<UploadTimeout>() {
            return ProxyError::UploadTimeout(*after);
        }
        if let Some(tls) = tls_error(e) {
            return ProxyError::Tls {
                target,
                reason: tls.to_string(),
                certificate: matches!(tls, rustls::Error::InvalidCertificate(_)),
            };
        }
        // After a TLS 1.3 handshake the origin may still refuse us (a client certificate it
        // wanted, say): rustls then reports the alert as plain `InvalidData` I/O errors.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            tls_failure = Some(io.to_string());
        }
        source = e.source();
    }
    if https && let Some(reason) = tls_failure {
        return ProxyError::Tls {
            target,
            reason,
            certificate: false,
        };
    }
    let reason = match std::error::Error::source(err) {
        Some(inner) => inner.to_string(),
        None => err.to_string(),
    };
    if err.is_connect() {
        ProxyError::ConnectFailed { target, reason }
    } else {
        ProxyError::BadGateway {
            target,
            reason: format!("bad or no response ({reason})"),
        }
    }
}

/// A rustls error, found directly or inside `io::Error`s (whose `source()` skips the error
/// they wrap, so the chain walk alone would miss it; hyper-rustls wraps tokio-rustls's
/// `io::Error` in another one).
fn tls_error<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// Why a connection could not be made. Travels through hyper-util as a boxed source.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("cannot resolve {host}: {reason}")]
    Dns { host: String, reason: String },
    #[error("connection to {0} refused")]
    Refused(SocketAddr),
    #[error("connecting to {target} timed out")]
    Timeout { target: String, after: Duration },
    #[error("{0} is one of this daemon's listeners")]
    Loop(SocketAddr),
    #[error("connecting to {target}: {reason}")]
    Other { target: String, reason: String },
}

impl ConnectError {
    fn to_proxy_error(&self) -> ProxyError {
        match self {
            ConnectError::Dns { host, reason } => ProxyError::Dns {
                host: host.clone(),
                reason: reason.clone(),
            },
            ConnectError::Refused(a) => ProxyError::ConnectRefused(*a),
            ConnectError::Timeout { target, after } => ProxyError::ConnectTimeout {
                target: target.clone(),
                after: *after,
            },
            ConnectError::Loop(a) => ProxyError::Loop(a.to_string()),
            ConnectError::Other { target, reason } => ProxyError::ConnectFailed {
                target: target.clone(),
                reason: reason.clone(),
            },
        }
    }
}

#[derive(Clone)]
struct Connector(Arc<ConnectorInner>);

struct ConnectorInner {
    resolver: Arc<Resolver>,
    /// Connect here instead of the target: a parent proxy.
    parent: Option<UpstreamProxy>,
    connect_timeout: Duration,
    own_addrs: OwnAddrs,
    metrics: Arc<Metrics>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamIo;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.connect(&uri).await })
    }
}

impl ConnectorInner {
    async fn connect(&self, uri: &Uri) -> Result<UpstreamIo, ConnectError> {
        let deadline = Instant::now() + self.connect_timeout;
        let Some(parent) = &self.parent else {
            let (host, port) = target_of(uri)?;
            let stream = self.tcp(&host, port, deadline).await?;
            return Ok(UpstreamIo::new(stream, false, &self.metrics));
        };
        let mut stream = self.tcp(&parent.host, parent.port, deadline).await?;
        if uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
            // Plain http goes to the parent in absolute form on this very connection.
            return Ok(UpstreamIo::new(stream, true, &self.metrics));
        }
        let (host, port) = target_of(uri)?;
        let tunnel = open_tunnel(&mut stream, &host, port, parent.authorization.as_ref());
        match tokio::time::timeout_at(deadline, tunnel).await {
            Ok(Ok(())) => Ok(UpstreamIo::new(stream, false, &self.metrics)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::Timeout {
                target: format!("{host}:{port} through the parent proxy"),
                after: self.connect_timeout,
            }),
        }
    }

    /// A TCP connection to `host:port`, trying each address before the deadline.
    async fn tcp(
        &self,
        host: &str,
        port: u16,
        deadline: Instant,
    ) -> Result<TcpStream, ConnectError> {
        let target = format!("{host}:{port}");
        let addrs = tokio::time::timeout_at(deadline, self.resolver.resolve(host, port))
            .await
            .map_err(|_| ConnectError::Timeout {
                target: target.clone(),
                after: self.connect_timeout,
            })??;
        if let Some(own) = addrs.iter().find(|a| self.is_own(a)) {
            return Err(ConnectError::Loop(*own));
        }
        let mut last = None;
        // Addresses in resolver order, each tried within what is left of the deadline.
        for addr in addrs.iter() {
            match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Err(_) => {
                    return Err(ConnectError::Timeout {
                        target,
                        after: self.connect_timeout,
                    });
                }
                Ok(Ok(stream)) => {
                    // Small request heads should not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    self.metrics.upstream_connections_opened.inc();
                    return Ok(stream);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Some(ConnectError::Refused(*addr));
                }
                Ok(Err(e)) => {
                    last = Some(ConnectError::Other {
                        target: addr.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Err(last.unwrap_or(ConnectError::Dns {
            host: host.to_string(),
            reason: "no addresses".into(),
        }))
    }

    /// Whether connecting to `addr` would reach one of the daemon's own listeners.
    /// `::ffff:127.0.0.1` is 127.0.0.1, and 0.0.0.0 (or ::) as a destination means this
    /// host, so both are unmapped before comparing.
    fn is_own(&self, addr: &SocketAddr) -> bool {
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr.ip()),
            v4 => v4,
        };
        let this_host = ip.is_loopback() || ip.is_unspecified();
        self.own_addrs.get().iter().any(|own| {
            let own_ip = own.ip();
            own.port() == addr.port()
                && (own_ip == ip
                    // A wildcard listener answers on every address of this host...
                    || (own_ip.is_unspecified() && this_host)
                    // ...and a wildcard destination is delivered to loopback.
                    || (ip.is_unspecified() && own_ip.is_loopback()))
        })
    }
}

fn target_of(uri: &Uri) -> Result<(String, u16), ConnectError> {
    let host = uri.host().ok_or_else(|| ConnectError::Other {
        target: String::new(),
        reason: "the URL has no host".into(),
    })?;
    let host = crate::hosts::unbracket(host).to_ascii_lowercase();
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    Ok((host, uri.port_u16().unwrap_or(default_port)))
}

/// Name resolution: pins, IP literals, then the system resolver behind a TTL cache.
struct Resolver {
    /// `upstream.resolve` and `upstream.dns_ttl`; a reload replaces them.
    rules: Live<DnsRules>,
    /// host → its addresses (port 0) and when they expire. Bounded by [`DNS_CACHE_MAX`].
    cache: DashMap<String, (Arc<[IpAddr]>, Instant)>,
}

struct DnsRules {
    /// `host:port` → address.
    pins: HashMap<String, SocketAddr>,
    ttl: Duration,
}

impl DnsRules {
    fn new(config: &UpstreamConfig) -> DnsRules {
        DnsRules {
            pins: config
                .resolve
                .iter()
                .map(|((h, p), a)| (format!("{h}:{p}"), *a))
                .collect(),
            ttl: config.dns_ttl,
        }
    }
}

/// Names kept in the DNS cache. Past it, expired entries are swept; if that is not
/// enough the cache starts over, so a client naming endless hosts cannot grow it.
const DNS_CACHE_MAX: usize = 4096;

impl Resolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Arc<[SocketAddr]>, ConnectError> {
        if let Some(pinned) = self.rules.get().pins.get(&format!("{host}:{port}")) {
            return Ok(Arc::from([*pinned]));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, port)]));
        }
        let ips = match self.cached(host) {
            Some(ips) => ips,
            None => self.lookup(host).await?,
        };
        Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
    }

    fn cached(&self, host: &str) -> Option<Arc<[IpAddr]>> {
        let hit = self.cache.get(host)?;
        (hit.1 > Instant::now()).then(|| Arc::clone(&hit.0))
    }

    async fn lookup(&self, host: &str) -> Result<Arc<[IpAddr]>, ConnectError> {
        let dns_error = |reason: String| ConnectError::Dns {
            host: host.to_string(),
            reason,
        };
        let found: Arc<[IpAddr]> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| dns_error(e.to_string()))?
            .map(|a| a.ip())
            .collect();
        if found.is_empty() {
            return Err(dns_error("no addresses".into()));
        }
        let ttl = self.rules.get().ttl;
        if !ttl.is_zero() {
            if self.cache.len() >= DNS_CACHE_MAX {
                let now = Instant::now();
                self.cache.retain(|_, (_, expires)| *expires > now);
                if self.cache.len() >= DNS_CACHE_MAX {
                    self.cache.clear();
                }
            }
            self.cache
                .insert(host.to_string(), (Arc::clone(&found), Instant::now() + ttl));
        }
        Ok(found)
    }
}

/// Asks a parent proxy for a tunnel to `host:port` and reads its answer head. Anything
/// but a 2xx is an error naming the parent's status line.
async fn open_tunnel(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
    authorization: Option<&HeaderValue>,
) -> Result<(), ConnectError> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
    if let Some(auth) = authorization {
        head.extend_from_slice(b"Proxy-Authorization: ");
        head.extend_from_slice(auth.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let failed = |reason: String| ConnectError::Other {
        target: format!("{authority} through the parent proxy"),
        reason,
    };
    stream
        .write_all(&head)
        .await
        .map_err(|e| failed(e.to_string()))?;
    // Read byte-wise up to the blank line: anything after it belongs to the tunnel. The
    // answer is a few dozen bytes, read once per new connection.
    let mut answer = Vec::with_capacity(128);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() > 8192 {
            return Err(failed("the parent's answer head is too long".into()));
        }
        let byte = stream.read_u8().await.map_err(|e| failed(e.to_string()))?;
        answer.push(byte);
    }
    let status_line = answer.split(|b| *b == b'\r').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(failed(format!("the parent answered {status_line:?}")))
    }
}

/// A TCP stream that tells the pool whether it leads to a parent proxy in plain http (so
/// requests on it stay in absolute form).
struct UpstreamIo {
    io: TokioIo<TcpStream>,
    proxied: bool,
    /// Counted in `upstream_connections` while the connection lives.
    _open: ConnectionCount,
}

impl UpstreamIo {
    fn new(stream: TcpStream, proxied: bool, metrics: &Metrics) -> UpstreamIo {
        UpstreamIo {
            io: TokioIo::new(stream),
            proxied,
            _open: ConnectionCount::new(&metrics.upstream_connections),
        }
    }
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.proxied)
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(ttl: Duration) -> Resolver {
        Resolver {
            rules: Live::new(DnsRules {
                pins: HashMap::from([(
                    "pinned.test:80".to_string(),
                    "127.0.0.9:8000".parse().unwrap(),
                )]),
                ttl,
            }),
            cache: DashMap::new(),
        }
    }

    #[tokio::test]
    async fn pins_and_literals_need_no_lookup() {
        let r = resolver(Duration::from_secs(60));
        assert_eq!(
            &*r.resolve("pinned.test", 80).await.unwrap(),
            ["127.0.0.9:8000".parse().unwrap()]
        );
        assert_eq!(
            &*r.resolve("::1", 81).await.unwrap(),
            ["[::1]:81".parse().unwrap()]
        );
        assert!(r.cache.is_empty());
    }

    #[tokio::test]
    async fn lookups_are_cached_per_host_for_the_ttl() {
        // "localhost" comes from the hosts file: no network involved.
        let r = resolver(Duration::from_secs(60));
        let on_80 = r.resolve("localhost", 80).await.unwrap();
        assert!(on_80.iter().all(|a| a.port() == 80 && a.ip().is_loopback()));
        let cached = r.cached("localhost").expect("the answer is cached");
        let on_81 = r.resolve("localhost", 81).await.unwrap();
        assert!(on_81.iter().all(|a| a.port() == 81));
        assert!(
            Arc::ptr_eq(&cached, &r.cached("localhost").unwrap()),
            "looked up again"
        );
        assert_eq!(r.cache.len(), 1);

        let uncached = resolver(Duration::ZERO);
        uncached.resolve("localhost", 80).await.unwrap();
        assert!(uncached.cache.is_empty());
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let r = resolver(Duration::from_secs(60));
        for i in 0..DNS_CACHE_MAX {
            r.cache.insert(
                format!("h{i}.test"),
                (Arc::from([]), Instant::now() + Duration::from_secs(60)),
            );
        }
        r.resolve("localhost", 80).await.unwrap();
        assert!(r.cache.len() <= DNS_CACHE_MAX);
        assert!(r.cached("localhost").is_some());
    }

    #[test]
    fn own_addresses_include_wildcard_listeners() {
        let c = ConnectorInner {
            resolver: Arc::new(resolver(Duration::ZERO)),
            parent: None,
            connect_timeout: Duration::from_secs(1),
            own_addrs: OwnAddrs::default(),
            metrics: Arc::default(),
        };
        let _ = c.own_addrs.0.set(Box::new([
            "0.0.0.0:8080".parse().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        ]));
        assert!(c.is_own(&"127.0.0.1:8080".parse().unwrap()));
        assert!(c.is_own(&"127.0.0.1:9000".parse().unwrap()));
        assert!(!c.is_own(&"127.0.0.2:9000".parse().unwrap()));
        assert!(!c.is_own(&"127.0.0.1:8081".parse().unwrap()));
        // Other spellings of this host reach the same listeners.
        assert!(c.is_own(&"[::ffff:127.0.0.1]:9000".parse().unwrap()));
        assert!(c.is_own(&"0.0.0.0:9000".parse().unwrap()));
        assert!(c.is_own(&"[::]:9000".parse().unwrap()));
        assert!(c.is_own(&"[::1]:8080".parse().unwrap()));
    }
}
