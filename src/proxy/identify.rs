//! Which session a request belongs to. The first source that names one decides:
//! `X-Session`, the user of `Proxy-Authorization: Basic`, (inside a tunnel) the session its
//! CONNECT chose, the listener's own session, the client's address in `[[clients]]`, then
//! `default`. Then the gate: a session with a secret needs it (unless reached through its
//! own listener, a `[[clients]]` match, or a CONNECT already admitted to it), and
//! `require_auth` needs the selected session's secret on every request.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderMap, header};

use super::rewrite::X_SESSION;
use super::{ConnInfo, Policy};
use crate::config::ClientRule;
use crate::error::ProxyError;
use crate::session::{ExchangeGuard, Profile, Registry, RegistryError};

/// Whether a peer may use a listener. Loopback listeners and `require_auth` (checked per
/// request) are open; otherwise only `[[clients]]` may use it, and on a session's own
/// port only that session's entries count: a peer listed for another session must not
/// reach this one without its secret. Asked on every request, against the policy of that
/// moment, so a reload that narrows `[[clients]]` or drops `require_auth` applies to
/// connections (and tunnels) opened before it too.
#[derive(Debug, Clone)]
pub struct ClientGate {
    pub loopback: bool,
    /// The listener's own session, if it is one's.
    pub session: Option<Arc<str>>,
}

impl ClientGate {
    /// `peer` is canonical (IPv4-mapped addresses unmapped).
    pub fn admits(&self, policy: &Policy, peer: std::net::SocketAddr) -> bool {
        let ip = peer.ip();
        self.loopback
            || policy.require_auth
            || ip.is_loopback()
            || policy.clients.iter().any(|c| {
                self.session.as_deref().is_none_or(|s| s == c.session) && c.net.contains(&ip)
            })
    }
}

/// What identification needs besides the request.
pub struct Identifier {
    pub registry: Registry,
}

/// Credentials from `Proxy-Authorization: Basic`.
struct ProxyCredentials {
    user: String,
    password: String,
}

impl Identifier {
    /// The session the request belongs to, marked busy, and its configuration as the
    /// exchange will use it (the one its secret was checked against).
    pub fn identify(
        &self,
        policy: &Policy,
        headers: &HeaderMap,
        conn: &ConnInfo,
    ) -> Result<(ExchangeGuard, Arc<Profile>), ProxyError> {
        if !conn.gate.admits(policy, conn.peer) {
            return Err(ProxyError::ClientForbidden(conn.peer.ip()));
        }
        let creds = proxy_credentials(headers)?;
        let explicit = match headers.get(X_SESSION) {
            Some(v) => Some(v.to_str().map_err(|_| {
                ProxyError::BadRequest("X-Session is not a valid session name".into())
            })?),
            None => creds.as_ref().map(|c| c.user.as_str()),
        };
        let client_rule = client_rule(&policy.clients, conn.peer.ip());
        let tunnel_session = conn.tunnel.as_ref().map(|t| &*t.session);
        let name: &str = explicit
            .or(tunnel_session)
            .or(conn.listener_session.as_deref())
            .or(client_rule.map(|r| r.session.as_str()))
            .unwrap_or("default");

        let password = creds.as_ref().map(|c| c.password.as_str());
        let guard = match self.registry.enter(name) {
            Some(g) => g,
            // Under require_auth a new session could never authenticate (it has no
            // secret), so refuse before creating anything.
            None if policy.require_auth => return Err(auth_required()),
            None => self.registry.enter_or_create(name).map_err(|e| match e {
                RegistryError::InvalidName => ProxyError::BadRequest(format!(
                    "invalid session name {:?}: use 1-64 characters of A-Z a-z 0-9 . _ -",
                    truncate(name)
                )),
                RegistryError::Unknown => {
                    ProxyError::ProxyAuthRequired("unknown session (proxy.dynamic_sessions is off)")
                }
                RegistryError::Store(e) => ProxyError::Store(e.to_string()),
                RegistryError::Tls(e) => ProxyError::Store(e.to_string()),
            })?,
        };
        let profile = guard.session().profile();

        // Inside a tunnel, the session its CONNECT was admitted to needs no second proof.
        let admitted_by_connect = tunnel_session == Some(name);
        let secret_ok = admitted_by_connect
            || profile
                .configured
                .secret
                .as_ref()
                .is_some_and(|s| password.is_some_and(|p| s.matches(p)));
        if policy.require_auth && !secret_ok {
            return Err(auth_required());
        }
        if profile.configured.secret.is_some() && !secret_ok {
            let entitled = conn.listener_session.as_deref() == Some(name)
                || policy
                    .clients
                    .iter()
                    .any(|r| r.session == name && r.net.contains(&conn.peer.ip()));
            if !entitled {
                return Err(auth_required());
            }
        }
        Ok((guard, profile))
    }
}

fn client_rule(clients: &[ClientRule], ip: IpAddr) -> Option<&ClientRule> {
    clients.iter().find(|r| r.net.contains(&ip))
}

fn auth_required() -> ProxyError {
    ProxyError::ProxyAuthRequired(
        "this session needs its secret: send Proxy-Authorization (HTTP_PROXY=http://NAME:SECRET@host:port)",
    )
}

fn truncate(name: &str) -> String {
    name.chars().take(80).collect()
}

/// Parses `Proxy-Authorization: Basic base64(user:password)`. Other schemes are not ours
/// and are treated as absent.
fn proxy_credentials(headers: &HeaderMap) -> Result<Option<ProxyCredentials>, ProxyError> {
    let Some(value) = headers.get(header::PROXY_AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        ProxyError::BadRequest(
            "malformed Proxy-Authorization (expected Basic base64(user:password))".into(),
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    let Some((scheme, token)) = text.trim().split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    Ok(Some(ProxyCredentials {
        user: user.to_string(),
        password: password.to_string(),
    }))
}
