//! The request pipeline, one stage per file, in the order a request meets them:
//!
//! 1. [`identify`] — request → session (or 400/403/407).
//! 2. target — the absolute-form URL, the session's `allow_hosts`/`deny_hosts` (403).
//! 3. [`rewrite`] — hop-by-hop out, `Via` and `Host`, session headers, credentials, cookies.
//! 4. [`upstream`] — the shared pool for the session's connection identity; timeouts.
//! 5. [`record`] — `Set-Cookie` into the jar, the access-log line.
//! 6. [`body`] — the response body streams back with the read timeout.
//!
//! [`Proxy::handle`] takes any `Request<Incoming>` whose URI is absolute, so a request
//! decrypted from a CONNECT tunnel can enter at the same point as a plain one.

pub mod body;
pub mod hooks;
pub mod identify;
pub mod record;
pub mod rewrite;
mod target;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use url::Url;

use body::{ProxyBody, Tracked};
use identify::Identifier;
use record::ExchangeLog;

use crate::config::{ClientRule, Config, HookEvent, SessionSettings, TlsConfig};
use crate::connect::{self, Tunnels};
use crate::error::ProxyError;
use crate::hosts;
use crate::live::Live;
use crate::observe::Observer;
use crate::server::Activity;
use crate::session::Session;
use tokio::sync::{OwnedSemaphorePermit, watch};

/// Where a request came from: fixed for the life of a client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address, IPv4-mapped IPv6 already unmapped.
    pub peer: SocketAddr,
    /// Set when the connection arrived on a session's own listener.
    pub listener_session: Option<Arc<str>>,
    /// Who may use the listener the connection came in on (asked per request).
    pub gate: identify::ClientGate,
    /// Set on the connections decrypted (or read in plain) inside a CONNECT tunnel.
    pub tunnel: Option<TunnelInfo>,
    /// The connection's activity, for its idle timeout.
    pub activity: Arc<Activity>,
    /// The connection's place under `proxy.max_connections`, shared with its tunnel.
    pub slot: Arc<OwnedSemaphorePermit>,
    /// Becomes true when the daemon shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// What a request inside a tunnel inherits from its CONNECT.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    /// The session the CONNECT was admitted to (its secret, if any, already checked).
    pub session: Arc<str>,
    /// `https` for a decrypted tunnel, `http` for plaintext inside CONNECT.
    pub scheme: http::uri::Scheme,
    /// The CONNECT target: every request in the tunnel goes there, whatever its Host says.
    pub authority: http::uri::Authority,
}

/// What the pipeline reads from the configuration besides the sessions: replaced whole by
/// a reload, taken once per exchange (or per tunnel).
#[derive(Debug)]
pub struct Policy {
    /// `[[clients]]`.
    pub clients: Vec<ClientRule>,
    pub require_auth: bool,
    /// Which tunnels are decrypted.
    pub tls: TlsConfig,
}

impl Policy {
    pub fn new(config: &Config) -> Policy {
        Policy {
            clients: config.clients.clone(),
            require_auth: config.proxy.require_auth,
            tls: config.tls.clone(),
        }
    }
}

/// The pipeline's shared state.
pub struct Proxy {
    identifier: Identifier,
    policy: Live<Policy>,
    tunnels: Arc<Tunnels>,
    observer: Arc<Observer>,
}

impl Proxy {
    pub fn new(
        identifier: Identifier,
        policy: Policy,
        tunnels: Tunnels,
        observer: Observer,
    ) -> Proxy {
        Proxy {
            identifier,
            policy: Live::new(policy),
            tunnels: Arc::new(tunnels),
            observer: Arc::new(observer),
        }
    }

    /// The current policy; hold it for one exchange.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.get()
    }

    /// Makes `policy` current for exchanges that start from now on.
    pub fn set_policy(&self, policy: Policy) {
        self.policy.set(Arc::new(policy));
    }

    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    pub fn registry(&self) -> &crate::session::Registry {
        &self.identifier.registry
    }

    /// Runs one exchange. Never fails: errors become the proxy's own responses.
    pub async fn handle(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        conn: &Arc<ConnInfo>,
    ) -> Response<ProxyBody> {
        // Inside a tunnel the target is the CONNECT's, whatever the request says; it is
        // fixed first so the access line shows where the request really went.
        let tunnel_target = conn
            .tunnel
            .as_ref()
            .map(|tunnel| connect::tunnel_uri(tunnel, req.uri()));
        if let Some(Ok(uri)) = &tunnel_target {
            *req.uri_mut() = uri.clone();
        }
        let mut log = ExchangeLog::new(req.method().clone(), req.uri().clone(), &self.observer);
        log.set_connection(conn.activity.begin());
        if let Some(Err(err)) = tunnel_target {
            return self.refuse(err, conn, log);
        }
        if req.method() == Method::CONNECT && conn.tunnel.is_none() {
            return self.connect(req, conn, log);
        }
        match self.exchange(req, conn, &mut log).await {
            Ok((head, body, read_timeout)) => {
                log.set_status(head.status.as_u16());
                let body = Tracked::new(body, read_timeout, log);
                Response::from_parts(head, ProxyBody::Upstream(Box::new(body)))
            }
            Err(err) => self.refuse(err, conn, log),
        }
    }

    /// The request again, with the session's current treatment (the refresh may have
    /// changed its cookies or headers).
    async fn replay(
        &self,
        session: &Session,
        replay: Replay,
        url: &Url,
        timeouts: &crate::config::Timeouts,
    ) -> Result<Response<Incoming>, ProxyError> {
        let Replay {
            method,
            uri,
            mut headers,
            body,
        } = replay;
        let profile = session.profile();
        rewrite::apply_session(&mut headers, session, &profile.settings, url);
        let mut req = Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let (parts, ()) = req.into_parts();
        profile
            .configured
            .upstream
            .send_buffered(parts, body, timeouts)
            .await
    }

    /// CONNECT: identify the session, check the target, answer `200` and hand the
    /// upgraded connection to a tunnel task, which owns the access line from then on.
    fn connect(
        self: &Arc<Self>,
        req: Request<Incoming>,
        conn: &Arc<ConnInfo>,
        mut log: ExchangeLog,
    ) -> Response<ProxyBody> {
        let admitted = self
            .identifier
            .identify(&self.policy(), req.headers(), conn)
            .and_then(|(guard, profile)| {
                let target = connect::connect_target(req.uri())?;
                check_host(
                    guard.session(),
                    &profile.settings,
                    &connect::bare_host(&target),
                )?;
                Ok((guard, profile.configured.origin, target))
            });
        let (guard, origin, target) = match admitted {
            Ok(ok) => ok,
            Err(err) => return self.refuse(err, conn, log),
        };
        let session = Arc::clone(guard.session());
        log.set_session(guard, origin);
        log.set_status(200);
        let proxy = Arc::clone(self);
        let tunnels = Arc::clone(&self.tunnels);
        let conn = Arc::clone(conn);
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    tunnels
                        .run(proxy, upgraded, target, conn, session, log)
                        .await
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT was not upgraded"),
            }
        });
        Response::new(ProxyBody::empty())
    }

    /// The proxy's own answer to a failed exchange, with its log lines.
    fn refuse(
        &self,
        err: ProxyError,
        conn: &ConnInfo,
        mut log: ExchangeLog,
    ) -> Response<ProxyBody> {
        let resp = err.to_response();
        log.set_status(resp.status().as_u16());
        log.set_outcome("proxy error");
        tracing::warn!(peer = %conn.peer, error = %err, "request failed");
        resp
    }

    /// The stages, in order. Returns the response head and body ready for the client.
    async fn exchange(
        &self,
        mut req: Request<Incoming>,
        conn: &ConnInfo,
        log: &mut ExchangeLog,
    ) -> Result<(http::response::Parts, Incoming, Duration), ProxyError> {
        let (guard, profile) = self
            .identifier
            .identify(&self.policy(), req.headers(), conn)?;
        let session = Arc::clone(guard.session());
        log.set_session(guard, profile.configured.origin);
        // One snapshot of the configuration for the whole exchange: a PATCH or a reload
        // applies to the next one.
        let settings = &profile.settings;
        let url = target_url(&req)?;
        check_host(&session, settings, hosts::url_host(&url))?;

        // A real upgrade (WebSocket and the like) over HTTP/1.1: the client's side of the
        // switch is taken out of the request before it is forwarded.
        let upgrade =
            rewrite::upgrade_of(req.headers()).filter(|_| req.version() == Version::HTTP_11);
        let client_side = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        rewrite::strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade {
            rewrite::keep_upgrade(&mut parts.headers, protocol);
        }
        parts.headers.remove(rewrite::X_SESSION);
        rewrite::add_via(&mut parts.headers, parts.version);
        // The client's Host goes; the upstream client derives it from the target: a `Host`
        // header for HTTP/1.1, the `:authority` alone for h2 (origins reject both at once).
        parts.headers.remove(http::header::HOST);
        // A retry hook replays the request after refreshing the session: keep what the
        // client sent (before the session's treatment, which the replay redoes) when the
        // request is replayable: no body, or a small one (read into memory, bounded).
        let host = hosts::url_host(&url).to_string();
        let replayable = settings.hooks.iter().any(|h| h.retry)
            && client_side.is_none()
            && hyper::body::Body::size_hint(&body)
                .exact()
                .is_some_and(|n| n <= MAX_REPLAY_BODY);
        let (body, replay) = if replayable {
            let bytes = read_small_body(body, settings.timeouts.read).await?;
            let kept = Replay {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
                body: bytes.clone(),
            };
            (Outgoing::Buffered(bytes), Some(kept))
        } else {
            (Outgoing::Stream(body), None)
        };
        let generation = session.generation();
        rewrite::apply_session(&mut parts.headers, &session, settings, &url);
        log.set_request(parts.version, &parts.headers);
        // The client's protocol (HTTP/1.0, h2c) says nothing about the origin's.
        parts.version = Version::HTTP_11;
        // What notification hooks are told; taken only when the session has hooks.
        let hook_target =
            (!settings.hooks.is_empty()).then(|| (parts.method.clone(), parts.uri.clone()));
        if let Some((method, uri)) = &hook_target {
            let json = hooks::exchange_json(HookEvent::Request, session.name(), method, uri, None);
            hooks::notify(
                &settings.hooks,
                HookEvent::Request,
                0,
                &host,
                session.name(),
                json,
                self.observer.metrics(),
            );
        }

        let timeouts = settings.timeouts;
        let upstream = &profile.configured.upstream;
        let mut resp = match body {
            Outgoing::Stream(body) => {
                upstream
                    .send(
                        Request::from_parts(parts, body),
                        &timeouts,
                        client_side.is_some(),
                    )
                    .await?
            }
            Outgoing::Buffered(bytes) => upstream.send_buffered(parts, bytes, &timeouts).await?,
        };

        let stale_hook = settings
            .hooks
            .iter()
            .find(|h| h.retry && h.matches(HookEvent::Response, resp.status().as_u16(), &host));
        if let (Some(hook), Some(replay)) = (stale_hook, replay) {
            // The stale answer's cookies count too (a 401 may clear a session cookie).
            let changes =
                record::store_cookies(&session, &url, resp.headers(), self.observer.metrics());
            record::persist(
                &session,
                &**self.registry().store(),
                changes,
                self.observer.metrics(),
            )
            .await;
            let json = hooks::exchange_json(
                HookEvent::Response,
                session.name(),
                &replay.method,
                &replay.uri,
                Some(resp.status().as_u16()),
            );
            let refreshed = session
                .refresh(generation, async {
                    match hooks::run(hook, session.name(), &json, self.observer.metrics()).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(session = %session.name(), error = %e, "refresh hook failed; the original response stands");
                            false
                        }
                    }
                })
                .await;
            if refreshed {
                resp = self.replay(&session, replay, &url, &timeouts).await?;
                log.set_outcome("replayed after refresh");
            }
        }

        let switched = match client_side {
            Some(client_side) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let protocol = rewrite::upgrade_of(resp.headers());
                splice_upgrade(
                    client_side,
                    hyper::upgrade::on(&mut resp),
                    Arc::clone(&conn.slot),
                );
                log.set_outcome("upgraded");
                protocol
            }
            _ => None,
        };
        let (mut head, body) = resp.into_parts();
        let metrics = self.observer.metrics();
        let changes = record::store_cookies(&session, &url, &head.headers, metrics);
        let cookies_set = changes
            .iter()
            .filter(|c| matches!(c, crate::session::jar::CookieChange::Put(_)))
            .count();
        log.set_response(&head.headers, cookies_set);
        if let Some((method, uri)) = &hook_target {
            let status = head.status.as_u16();
            let json = hooks::exchange_json(
                HookEvent::Response,
                session.name(),
                method,
                uri,
                Some(status),
            );
            hooks::notify(
                &settings.hooks,
                HookEvent::Response,
                status,
                &host,
                session.name(),
                json.clone(),
                metrics,
            );
            if cookies_set > 0 {
                hooks::notify(
                    &settings.hooks,
                    HookEvent::Cookie,
                    status,
                    &host,
                    session.name(),
                    json,
                    metrics,
                );
            }
        }
        record::persist(&session, &**self.registry().store(), changes, metrics).await;
        rewrite::strip_hop_by_hop(&mut head.headers);
        if let Some(protocol) = switched {
            rewrite::keep_upgrade(&mut head.headers, protocol);
        }
        rewrite::add_via(&mut head.headers, head.version);
        head.version = Version::HTTP_11;
        Ok((head, body, timeouts.read))
    }
}

/// The largest request body kept in memory so that a refresh hook can replay it.
const MAX_REPLAY_BODY: u64 = 64 * 1024;

/// What a replay needs: the request as the client sent it (before the session's
/// treatment, which the replay applies afresh) and its small body.
struct Replay {
    method: Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

/// A request body as it goes upstream: streamed, or (kept for a replay) in memory.
enum Outgoing {
    Stream(Incoming),
    Buffered(bytes::Bytes),
}

/// Reads a body known to be at most [`MAX_REPLAY_BODY`], with the read timeout as the
/// longest silence allowed for the whole of it.
async fn read_small_body(
    body: Incoming,
    read_timeout: Duration,
) -> Result<bytes::Bytes, ProxyError> {
    use http_body_util::BodyExt as _;
    let limited = http_body_util::Limited::new(body, MAX_REPLAY_BODY as usize);
    match tokio::time::timeout(read_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(ProxyError::BadRequest(format!(
            "cannot read the request body: {e}"
        ))),
        Err(_) => Err(ProxyError::UploadTimeout(read_timeout)),
    }
}

/// Once both sides have switched protocols, copies bytes between them until either ends.
/// The copy keeps the client connection's slot: an upgraded connection still counts
/// against `proxy.max_connections` (and a shutdown waits for it within the grace period).
fn splice_upgrade(
    client: hyper::upgrade::OnUpgrade,
    origin: hyper::upgrade::OnUpgrade,
    slot: Arc<OwnedSemaphorePermit>,
) {
    tokio::spawn(async move {
        let _slot = slot;
        match tokio::try_join!(client, origin) {
            Ok((client, origin)) => {
                let mut client = TokioIo::new(client);
                let mut origin = TokioIo::new(origin);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut origin).await {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
            }
            Err(e) => tracing::debug!(error = %e, "protocol switch did not complete"),
        }
    });
}

/// The absolute-form target as a URL (the jar and host rules need its parts).
fn target_url(req: &Request<Incoming>) -> Result<Url, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT inside a tunnel".into()));
    }
    let uri = req.uri();
    match uri.scheme_str() {
        // `GET https://…` in absolute form is rare but valid: the proxy speaks TLS upstream.
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(ProxyError::BadRequest(format!(
                "unsupported scheme {other:?}"
            )));
        }
        None => {
            return Err(ProxyError::BadRequest(
                "sessiond is a forward proxy: send absolute-form requests \
                 (GET http://host/path), e.g. by setting HTTP_PROXY"
                    .into(),
            ));
        }
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if uri.host().is_none_or(str::is_empty) {
        return Err(ProxyError::BadRequest("the target URL has no host".into()));
    }
    // RFC 9110 §4.2.4: user info in an http URI is to be treated as an error. It would
    // also carry a password into places (error bodies, logs) where secrets never go, so
    // the message does not quote it.
    if authority.contains('@') {
        return Err(ProxyError::BadRequest(
            "the target URL carries user:password@; send credentials in headers instead".into(),
        ));
    }
    target::target_url(uri)
        .map_err(|e| ProxyError::BadRequest(format!("the target URL is not valid: {e}")))
}

/// The session's egress rules: `deny_hosts` always wins; with `allow_hosts`, only those.
fn check_host(session: &Session, settings: &SessionSettings, host: &str) -> Result<(), ProxyError> {
    let allowed = !settings.deny_hosts.matches(host)
        && settings
            .allow_hosts
            .as_ref()
            .is_none_or(|a| a.matches(host));
    if allowed {
        Ok(())
    } else {
        Err(ProxyError::HostDenied {
            host: host.to_string(),
            session: session.name().to_string(),
        })
    }
}
