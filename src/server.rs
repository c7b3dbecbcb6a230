//! Listeners and connections: bind everything first (so a port conflict fails the start
//! before anything is served), accept under a connection limit, serve each connection with
//! hyper-util's auto builder (HTTP/1.1 with keep-alive, or h2c), and shut down gracefully:
//! stop accepting, ask every connection to finish its in-flight exchange, wait for them
//! within the grace period.
//!
//! The connection limit is a semaphore whose permits are held by connection tasks. The same
//! semaphore tells when draining is done: once every permit is back, no connection is left.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::admin;
use crate::certs::{CertAuthority, CertError, Minter};
use crate::config::Config;
use crate::connect::Tunnels;
use crate::metrics::{ConnectionCount, Metrics};
use crate::observe::Observer;
use crate::proxy::identify::{ClientGate, Identifier};
use crate::proxy::upstream::Upstream;
use crate::proxy::{ConnInfo, Policy, Proxy};
use crate::reload;
use crate::session::Registry;
use crate::store::StoreError;
use crate::store::sqlite::SqliteStore;

/// Connections the admin API serves at once.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read a bound listener's address: {0}")]
    LocalAddr(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::proxy::upstream::TlsSetupError),
    #[error("local CA: {0}")]
    Ca(#[from] CertError),
    #[error("session store: {0}")]
    Store(StoreError),
    #[error(transparent)]
    Registry(#[from] crate::session::RegistryError),
}

/// What `sessiond check` verifies beyond the file itself, without writing or binding
/// anything: an existing (or configured) CA loads, and every session's TLS settings (CA
/// bundles, client certificate and key) make a working client configuration.
pub fn check(config: &Config) -> Result<(), StartError> {
    CertAuthority::check(&config.tls)?;
    let upstream = Upstream::new(&config.upstream, Arc::default());
    upstream.client_for(&config.template)?;
    for s in &config.sessions {
        upstream.client_for(&s.settings)?;
    }
    Ok(())
}

/// A running daemon: its bound addresses and the handle to stop it.
pub struct Daemon {
    /// The configuration as it runs (after [`reload`](Self::reload), with the running
    /// values of the keys only a restart changes).
    config: Config,
    upstream: Upstream,
    admin: Arc<admin::Admin>,
    ca: Arc<CertAuthority>,
    proxy_addrs: Vec<SocketAddr>,
    session_addrs: Vec<(String, SocketAddr)>,
    admin_addr: SocketAddr,
    proxy: Arc<Proxy>,
    shutdown: watch::Sender<bool>,
    accept_loops: JoinSet<()>,
    permits: Arc<Semaphore>,
    max_connections: u32,
    grace: Duration,
}

/// One bound socket and what its connections are.
struct Bound {
    listener: TcpListener,
    session: Option<Arc<str>>,
}

impl Daemon {
    /// Binds every listener, then starts serving.
    pub async fn start(config: Config) -> Result<Daemon, StartError> {
        // Everything that reads files or can refuse the configuration comes before the
        // first bind: the CA, and every session's TLS settings.
        let ca = Arc::new(CertAuthority::load_or_create(&config.tls)?);
        let metrics = Arc::new(Metrics::default());
        let upstream = Upstream::new(&config.upstream, Arc::clone(&metrics));
        let store = SqliteStore::open(&config.proxy.state_dir, config.durability)
            .map_err(StartError::Store)?;
        let registry = Registry::new(&config, &upstream, Arc::new(store))?;

        let mut proxy_listeners = Vec::new();
        for addr in &config.proxy.listen {
            proxy_listeners.push(Bound {
                listener: bind("proxy.listen", *addr).await?,
                session: None,
            });
        }
        for s in &config.sessions {
            for addr in &s.listen {
                proxy_listeners.push(Bound {
                    listener: bind(&format!("sessions.{}.listen", s.name), *addr).await?,
                    session: Some(Arc::from(s.name.as_str())),
                });
            }
        }
        let admin_listener = bind("admin.listen", config.admin.listen).await?;

        let mut own = Vec::with_capacity(proxy_listeners.len() + 1);
        for b in &proxy_listeners {
            own.push(local_addr(&b.listener)?);
        }
        let admin_addr = local_addr(&admin_listener)?;
        own.push(admin_addr);

        upstream.set_own_addrs(own);
        let builder = Arc::new(server_builder(&config));
        let proxy = Arc::new(Proxy::new(
            Identifier { registry },
            Policy::new(&config),
            Tunnels {
                builder: Arc::clone(&builder),
                head_timeout: config.proxy.request_head_timeout,
                minter: Arc::new(
                    Minter::new(Arc::clone(&ca))
                        .counting_mints(metrics.leaf_certificates_minted.clone()),
                ),
            },
            Observer::new(config.proxy.har_entries, Arc::clone(&metrics)),
        ));

        let max_connections = u32::try_from(config.proxy.max_connections).unwrap_or(u32::MAX >> 3);
        let permits = Arc::new(Semaphore::new(max_connections as usize));
        let (shutdown, _) = watch::channel(false);
        let mut accept_loops = JoinSet::new();

        let mut proxy_addrs = Vec::new();
        let mut session_addrs = Vec::new();
        for bound in proxy_listeners {
            let addr = local_addr(&bound.listener)?;
            match &bound.session {
                Some(name) => session_addrs.push((name.to_string(), addr)),
                None => proxy_addrs.push(addr),
            }
            let gate = ClientGate {
                loopback: addr.ip().is_loopback(),
                session: bound.session.clone(),
            };
            let proxy = Arc::clone(&proxy);
            let session = bound.session;
            let gauge = metrics.client_connections.clone();
            let make = move |accepted: Accepted| {
                let proxy = Arc::clone(&proxy);
                // Counted while the connection's service lives.
                let counted = ConnectionCount::new(&gauge);
                let conn = Arc::new(ConnInfo {
                    peer: accepted.peer,
                    listener_session: session.clone(),
                    gate: gate.clone(),
                    tunnel: None,
                    activity: accepted.activity,
                    slot: accepted.slot,
                    shutdown: accepted.shutdown,
                });
                service_fn(move |req: Request<Incoming>| {
                    let _ = &counted;
                    let proxy = Arc::clone(&proxy);
                    let conn = Arc::clone(&conn);
                    async move { Ok::<_, Infallible>(proxy.handle(req, &conn).await) }
                })
            };
            accept_loops.spawn(accept_loop(
                bound.listener,
                config.proxy.request_head_timeout,
                Arc::clone(&permits),
                shutdown.subscribe(),
                Arc::clone(&builder),
                make,
            ));
        }

        let admin = Arc::new(admin::Admin::new(
            Arc::clone(&proxy),
            ca.cert_pem().to_string(),
            config.admin.token.clone(),
        ));
        let admin_state = Arc::clone(&admin);
        // The admin API has its own small limit so health checks still answer when the
        // proxy is saturated.
        accept_loops.spawn(accept_loop(
            admin_listener,
            config.proxy.request_head_timeout,
            Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS)),
            shutdown.subscribe(),
            Arc::clone(&builder),
            move |accepted: Accepted| {
                let admin = Arc::clone(&admin_state);
                service_fn(move |req| {
                    let admin = Arc::clone(&admin);
                    let busy = accepted.activity.begin();
                    let peer = accepted.peer;
                    async move {
                        let resp = admin.handle(req, peer).await;
                        drop(busy);
                        Ok::<_, Infallible>(resp)
                    }
                })
            },
        ));

        let grace = config.proxy.shutdown_grace;
        Ok(Daemon {
            config,
            upstream,
            admin,
            ca,
            proxy_addrs,
            session_addrs,
            admin_addr,
            proxy,
            shutdown,
            accept_loops,
            permits,
            max_connections,
            grace,
        })
    }

    /// Applies a new configuration to the running daemon, all of it or (on an error)
    /// none of it. Exchanges already running finish on the configuration they started
    /// with. Returns the changed keys that only a restart applies (see [`reload`]); they
    /// keep their running values.
    pub fn reload(&mut self, mut config: Config) -> Result<Vec<String>, reload::ReloadError> {
        let restart_needed = reload::keep_fixed(&self.config, &mut config);
        // The file passed the open-proxy rule with its own listeners; the daemon keeps
        // its running ones, so the rule is asked again of what will really run (a file
        // with a loopback listener must not drop `require_auth` from a 0.0.0.0 one).
        crate::config::check_listeners(&config)?;
        // Every reload starts new pools, so certificates, keys and bundles renewed in
        // place are read again and checked, and no connection made under old address
        // pins is reused. Exchanges in flight finish on the old pools, which then close.
        self.upstream.new_pools();
        // Everything that can fail (TLS settings, store reads) happens here, before any
        // change is made.
        let prepared = self.proxy.registry().prepare(&config, &self.upstream)?;
        self.upstream.reconfigure(&config.upstream);
        self.proxy.registry().apply(prepared);
        self.proxy.set_policy(Policy::new(&config));
        self.admin.set_token(config.admin.token.clone());
        self.grace = config.proxy.shutdown_grace;
        self.config = config;
        Ok(restart_needed)
    }

    /// The configuration as it runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The first proxy listener's address.
    pub fn proxy_addr(&self) -> SocketAddr {
        // Validation refuses an empty proxy.listen, and every entry was bound.
        self.proxy_addrs[0]
    }

    pub fn proxy_addrs(&self) -> &[SocketAddr] {
        &self.proxy_addrs
    }

    /// The addresses of a session's own listeners.
    pub fn session_addrs(&self, name: &str) -> Vec<SocketAddr> {
        self.session_addrs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .collect()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The local CA that signs the certificates of intercepted hosts.
    pub fn ca(&self) -> &CertAuthority {
        &self.ca
    }

    pub fn registry(&self) -> &Registry {
        self.proxy.registry()
    }

    /// Stops accepting, lets in-flight exchanges finish within the grace period, and
    /// returns how many connections had to be cut.
    pub async fn shutdown(mut self) -> usize {
        let _ = self.shutdown.send(true);
        while self.accept_loops.join_next().await.is_some() {}
        let store = Arc::clone(self.proxy.registry().store());
        let drained =
            tokio::time::timeout(self.grace, self.permits.acquire_many(self.max_connections)).await;
        let cut = match drained {
            Ok(_) => 0,
            Err(_) => {
                let left = self.max_connections as usize - self.permits.available_permits();
                tracing::warn!(connections = left, grace = ?self.grace, "grace period over; closing remaining connections");
                left
            }
        };
        // Batched changes still waiting for their second are committed before exit.
        if let Err(e) = store.flush().wait().await {
            tracing::error!(error = %e, "the last changes could not be committed");
        }
        cut
    }
}

/// What the accept loop hands to a connection's service.
pub struct Accepted {
    /// Canonical (see [`canonical`]).
    pub peer: SocketAddr,
    pub activity: Arc<Activity>,
    /// The connection's place under `proxy.max_connections`.
    pub slot: Arc<OwnedSemaphorePermit>,
    pub shutdown: watch::Receiver<bool>,
}

/// What one client connection is doing, for its idle timeout: exchanges in progress and
/// when the last one started or ended. hyper times out an idle HTTP/1.1 connection itself,
/// but HTTP/2 has no such limit: without this a client could hold a connection slot open
/// forever by saying nothing after the preface.
#[derive(Debug)]
pub struct Activity {
    active: AtomicUsize,
    /// Milliseconds since `born` of the last change.
    last_ms: AtomicU64,
    born: tokio::time::Instant,
}

impl Activity {
    /// Marks an exchange in progress until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.touch();
        ActiveGuard(Arc::clone(self))
    }

    fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once no exchange has been in progress for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let since_last = self
                .born
                .elapsed()
                .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
            let wait = if self.active.load(Ordering::Relaxed) > 0 {
                limit
            } else if since_last >= limit {
                return;
            } else {
                limit - since_last
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            active: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            born: tokio::time::Instant::now(),
        }
    }
}

/// Keeps a connection counted as busy; see [`Activity`].
#[derive(Debug)]
pub struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An IPv4 client on a dual-stack socket shows up as `::ffff:a.b.c.d`; rules are written
/// for `a.b.c.d`, so the address is unmapped once, at accept.
fn canonical(peer: SocketAddr) -> SocketAddr {
    match peer.ip() {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), peer.port()),
            None => peer,
        },
        _ => peer,
    }
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(StartError::LocalAddr)
}

async fn bind(key: &str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            key: key.to_string(),
            addr,
            source,
        })
}

fn server_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(config.proxy.request_head_timeout)
        .max_buf_size(config.proxy.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Pings find peers that vanished while a stream is open.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(u32::try_from(config.proxy.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Accepts connections until shutdown, each under a permit of the connection limit.
async fn accept_loop<M, S, B>(
    listener: TcpListener,
    head_timeout: Duration,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    make_service: M,
) where
    M: Fn(Accepted) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        // At the limit, this listener stops accepting until a connection ends: the one
        // connection in hand waits, the rest wait in the kernel's backlog. Taking the
        // permit after accepting means idle listeners reserve nothing.
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!(%peer, "connection limit reached; waiting for a free slot");
                tokio::select! {
                    p = Arc::clone(&permits).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = shutdown.changed() => return,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let service = make_service(Accepted {
            peer: canonical(peer),
            activity: Arc::clone(&activity),
            slot: Arc::new(permit),
            shutdown: shutdown.clone(),
        });
        let builder = Arc::clone(&builder);
        let shutdown = shutdown.clone();
        // The permit lives in the service (and in any tunnel made from the connection),
        // so a connection counts against the limit until its last use ends.
        tokio::spawn(async move {
            serve(stream, &builder, head_timeout, &activity, service, shutdown).await;
        });
    }
}

/// Serves HTTP (1.1 or 2, told apart by the preface) on one client connection, or on a
/// decrypted tunnel, until it ends, goes idle, or shutdown asks it to finish.
pub(crate) async fn serve<I, S, B>(
    stream: I,
    builder: &auto::Builder<TokioExecutor>,
    head_timeout: Duration,
    activity: &Activity,
    service: S,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // hyper-util's protocol sniffing has no timeout of its own: read the first bytes here,
    // under the head timeout, so a client that connects and says nothing cannot hold a
    // connection slot forever. hyper then reads them again from the prefix.
    let stream = tokio::select! {
        s = read_preface(stream, head_timeout) => match s {
            Some(s) => s,
            None => return,
        },
        _ = shutdown.wait_for(|stop| *stop) => return,
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    // `wait_for` yields a borrow of the channel value; `.is_ok()` drops it at once so
    // nothing un-Send is kept across the drain below.
    let finished = tokio::select! {
        r = conn.as_mut() => Some(r),
        stop = shutdown.wait_for(|stop| *stop) => { let _ = stop.is_ok(); None }
        _ = activity.idle_for(head_timeout) => {
            tracing::debug!("closing a connection idle for proxy.request_head_timeout");
            None
        }
    };
    let result = match finished {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the protocol is decided: the whole h2 preface, or a byte that rules it
/// out. `None` if the client closes, errs or stays silent past `timeout`.
async fn read_preface<I>(mut stream: I, timeout: Duration) -> Option<Prefixed<I>>
where
    I: AsyncRead + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut prefix = BytesMut::with_capacity(H2_PREFACE.len());
    while prefix.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&prefix) {
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut prefix)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) | Ok(Err(_)) => return None,
            Err(_) => {
                tracing::debug!("client sent no request within proxy.request_head_timeout");
                return None;
            }
        }
    }
    Some(Prefixed::new(prefix.freeze(), stream))
}

/// A stream whose first bytes were already read: they are served again before the rest.
pub(crate) struct Prefixed<I> {
    prefix: Bytes,
    stream: I,
}

impl<I> Prefixed<I> {
    pub(crate) fn new(prefix: Bytes, stream: I) -> Prefixed<I> {
        Prefixed { prefix, stream }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientRule;

    fn policy(require_auth: bool, rules: &[(&str, &str)]) -> Policy {
        let mut config = Config::defaults();
        config.proxy.require_auth = require_auth;
        config.clients = rules
            .iter()
            .map(|(net, session)| ClientRule {
                net: net.parse().unwrap(),
                session: session.to_string(),
            })
            .collect();
        Policy::new(&config)
    }

    fn gate(loopback: bool, session: Option<&str>) -> ClientGate {
        ClientGate {
            loopback,
            session: session.map(Arc::from),
        }
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn restricted_listener_admits_only_listed_clients_and_loopback() {
        let p = policy(false, &[("10.0.0.0/24", "s")]);
        let g = gate(false, None);
        assert!(g.admits(&p, peer("10.0.0.7:5000")));
        assert!(
            g.admits(&p, canonical(peer("[::ffff:10.0.0.7]:5000"))),
            "IPv4-mapped peers match IPv4 rules"
        );
        assert!(g.admits(&p, peer("127.0.0.1:5000")));
        assert!(!g.admits(&p, peer("10.0.1.7:5000")));
        assert!(!g.admits(&p, peer("[2001:db8::1]:5000")));
    }

    #[test]
    fn a_sessions_port_admits_only_that_sessions_clients() {
        let p = policy(false, &[("10.0.0.0/24", "a"), ("10.0.1.0/24", "b")]);
        let g = gate(false, Some("a"));
        assert!(g.admits(&p, peer("10.0.0.7:5000")));
        assert!(!g.admits(&p, peer("10.0.1.7:5000")));
    }

    #[test]
    fn open_listener_admits_everyone() {
        let anyone = peer("192.0.2.1:1");
        assert!(gate(true, None).admits(&policy(false, &[]), anyone));
        assert!(gate(false, None).admits(&policy(true, &[]), anyone));
    }
}
