//! Configuration in two phases: the TOML as the user wrote it (`raw`), then a validated
//! [`Config`] of real types. Every error names the key it is about.
//!
//! Loading takes a string so tests need no files; the binary reads the file and calls
//! [`Config::from_toml`]. Nothing here binds a port or touches the network, so a bad file
//! is rejected before the daemon does anything.

mod raw;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::hosts::HostList;
use crate::session::name::valid_session_name;
use crate::store::Durability;

/// Why a configuration was refused. `key` is the dotted path of the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub upstream: UpstreamConfig,
    pub tls: TlsConfig,
    /// `store.durability`.
    pub durability: Durability,
    /// What a session created on demand (or named only by `[[clients]]`) starts with.
    pub template: Arc<SessionSettings>,
    /// Sessions declared in `[sessions.NAME]`, in name order.
    pub sessions: Vec<SessionConfig>,
    pub clients: Vec<ClientRule>,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: Vec<SocketAddr>,
    pub state_dir: PathBuf,
    pub dynamic_sessions: bool,
    pub require_auth: bool,
    pub max_sessions: usize,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub request_head_timeout: Duration,
    pub shutdown_grace: Duration,
    pub cookies: CookieLimits,
    /// Recent exchanges each session keeps for `GET /sessions/NAME/har` (0: none).
    pub har_entries: usize,
}

/// The RFC 6265bis storage limits, per session jar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieLimits {
    pub max_per_domain: usize,
    pub max_per_session: usize,
    pub max_bytes: usize,
}

impl Default for CookieLimits {
    fn default() -> Self {
        CookieLimits {
            max_per_domain: 50,
            max_per_session: 3000,
            max_bytes: 4096,
        }
    }
}

/// `[tls]`: which CONNECT tunnels are decrypted, and the local CA.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Hosts whose tunnels are intercepted (default: every host).
    pub intercept: HostList,
    /// Hosts whose tunnels are passed through untouched; wins over `intercept`.
    pub passthrough: HostList,
    /// Where the CA lives: both files given in `[tls]`, or `STATE/ca.pem` + `STATE/ca.key`
    /// (created on first start).
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// True when the files come from `tls.ca_cert`/`tls.ca_key`: never created, only read.
    pub ca_configured: bool,
}

impl TlsConfig {
    /// Whether a tunnel to `host` is decrypted.
    pub fn intercepts(&self, host: &str) -> bool {
        self.intercept.matches(host) && !self.passthrough.matches(host)
    }
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// `admin.token` or the contents of `admin.token_file`: every call then needs
    /// `Authorization: Bearer TOKEN`. Without one only loopback clients are answered.
    pub token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `host:port` → address pins, like curl `--resolve`. Keys are lower-case hosts.
    pub resolve: HashMap<(String, u16), SocketAddr>,
    pub dns_ttl: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

/// The three upstream timeouts; global in `[upstream]`, overridable per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to receiving the response head.
    pub response: Duration,
    /// Longest silence inside a response body.
    pub read: Duration,
}

/// A `[sessions.NAME]` table.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub name: String,
    pub secret: Option<Secret>,
    pub listen: Vec<SocketAddr>,
    pub settings: Arc<SessionSettings>,
}

/// What a session does to the traffic that passes through it.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub override_headers: Vec<(HeaderName, HeaderValue)>,
    pub remove_headers: Vec<HeaderName>,
    pub auth: Vec<Credential>,
    pub timeouts: Timeouts,
    /// When set, only these hosts may be reached.
    pub allow_hosts: Option<HostList>,
    pub deny_hosts: HostList,
    pub upstream_proxy: Option<UpstreamProxy>,
    pub tls: UpstreamTls,
    /// The session's hooks, then the global ones.
    pub hooks: Arc<[Hook]>,
}

/// When a hook fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    Request,
    Response,
    /// A response changed the session's jar.
    Cookie,
}

/// What a hook runs.
#[derive(Debug, Clone)]
pub enum HookAction {
    /// A program and its arguments; `{session}` is replaced by the session's name.
    Exec(Vec<String>),
    /// An `http://` URL that gets the exchange as a POST.
    Webhook(http::Uri),
}

/// A `[[hooks]]` / `[[sessions.NAME.hooks]]` entry.
#[derive(Debug, Clone)]
pub struct Hook {
    pub on: HookEvent,
    /// Only these statuses (any when empty).
    pub statuses: Vec<u16>,
    /// Only these hosts (any when `None`).
    pub hosts: Option<HostList>,
    pub action: HookAction,
    pub timeout: Duration,
    /// `on = "response"` only: replay the request once after the hook succeeds.
    pub retry: bool,
}

impl Hook {
    pub fn matches(&self, on: HookEvent, status: u16, host: &str) -> bool {
        self.on == on
            && (self.statuses.is_empty() || self.statuses.contains(&status))
            && self.hosts.as_ref().is_none_or(|h| h.matches(host))
    }
}

/// Trust and identity for TLS to origins. Part of a connection's identity: two sessions
/// share pooled connections only if this is equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// Roots trusted besides the system's: `upstream.ca_bundle`, then the session's.
    pub ca_bundles: Vec<PemCerts>,
    /// A client certificate for origins that ask for one (mTLS).
    pub client_identity: Option<ClientIdentity>,
    /// `verify = false` turns certificate verification off (logged loudly at start).
    pub verify: bool,
}

/// Certificates read from a PEM file; equal when read from the same file.
#[derive(Clone)]
pub struct PemCerts {
    pub path: PathBuf,
    pub certs: Arc<Vec<CertificateDer<'static>>>,
}

impl PartialEq for PemCerts {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}
impl Eq for PemCerts {}
impl std::hash::Hash for PemCerts {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.path.hash(state);
    }
}
impl std::fmt::Debug for PemCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} certificates)",
            self.path.display(),
            self.certs.len()
        )
    }
}

/// A client certificate chain and its private key; `Debug` shows the paths only.
#[derive(Clone)]
pub struct ClientIdentity {
    pub chain: PemCerts,
    pub key_path: PathBuf,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl PartialEq for ClientIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.chain == other.chain && self.key_path == other.key_path
    }
}
impl Eq for ClientIdentity {}
impl std::hash::Hash for ClientIdentity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.chain.hash(state);
        self.key_path.hash(state);
    }
}
impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cert {:?}, key {} (<redacted>)",
            self.chain,
            self.key_path.display()
        )
    }
}

/// A credential added to requests for its hosts.
#[derive(Debug, Clone)]
pub struct Credential {
    pub hosts: HostList,
    /// The header it sets: `Authorization`, or the name given for `scheme = "header"`.
    pub header: HeaderName,
    /// The complete header value, marked sensitive.
    pub value: HeaderValue,
    /// Replace a header of the same name sent by the client.
    pub override_client: bool,
}

/// A parent proxy for plain-http targets.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UpstreamProxy {
    pub host: String,
    pub port: u16,
    /// `Basic …` built from the URL's user info; never logged.
    pub authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for UpstreamProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = if self.authorization.is_some() {
            "<redacted>@"
        } else {
            ""
        };
        write!(f, "http://{auth}{}:{}", self.host, self.port)
    }
}

/// A session secret; its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's text, for the one place that must send it (a header). Never log or
    /// format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A `[[clients]]` entry: source addresses that belong to a session.
#[derive(Debug, Clone)]
pub struct ClientRule {
    pub net: IpNet,
    pub session: String,
}

impl Config {
    /// Reads and validates a file; the path appears in read errors, never its content.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw = raw::parse(text)?;
        validate(raw, &|name| std::env::var(name).ok())
    }

    /// The built-in defaults, as with an empty file.
    pub fn defaults() -> Config {
        // An empty document is valid: every key has a default. The expect states it.
        Config::from_toml("").expect("the built-in defaults are a valid configuration")
    }

    /// Every address the daemon listens on (proxy, session listeners, admin): a request
    /// addressed to any of them is a loop.
    pub fn own_addresses(&self) -> Vec<SocketAddr> {
        let mut all = self.proxy.listen.clone();
        all.extend(self.sessions.iter().flat_map(|s| s.listen.iter().copied()));
        all.push(self.admin.listen);
        all
    }
}

/// Looks up environment variables; injected so tests do not touch the process environment.
type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn validate(mut raw: raw::RawConfig, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    let proxy = validate_proxy(raw.proxy, env)?;
    let token = match (raw.admin.token.take(), raw.admin.token_file.take()) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "admin.token_file",
                "give admin.token or admin.token_file, not both",
            ));
        }
        (Some(t), None) => Some(read_secret("admin.token", "token", &t, env)?),
        (None, Some(path)) => Some(read_secret(
            "admin.token_file",
            "token_file",
            &path.to_string_lossy(),
            env,
        )?),
        (None, None) => None,
    };
    let admin = AdminConfig {
        listen: match raw.admin.listen.as_deref() {
            Some(s) => parse_addr("admin.listen", s)?,
            None => SocketAddr::from(([127, 0, 0, 1], 8081)),
        },
        token: token.map(Secret::new),
    };
    let global_bundle = raw
        .upstream
        .ca_bundle
        .take()
        .map(|path| read_certs("upstream.ca_bundle", path))
        .transpose()?;
    let (upstream, global_timeouts, global_proxy) = validate_upstream(raw.upstream)?;
    let tls = validate_tls(raw.tls, &proxy.state_dir)?;
    let durability = match raw.store.durability.as_deref() {
        None | Some("full") => Durability::Full,
        Some("batched") => Durability::Batched,
        Some(other) => {
            return Err(ConfigError::invalid(
                "store.durability",
                format!("{other:?} is not \"full\" or \"batched\""),
            ));
        }
    };
    let global_hooks = validate_hooks("hooks", std::mem::take(&mut raw.hooks))?;
    let defaults = SessionDefaults {
        timeouts: global_timeouts,
        upstream_proxy: global_proxy,
        ca_bundle: global_bundle,
        hooks: global_hooks,
    };
    if raw.template.secret.is_some() {
        return Err(ConfigError::invalid(
            "template.secret",
            "sessions created on demand cannot have a secret; declare the session in [sessions.NAME]",
        ));
    }
    if !raw.template.listen.is_empty() {
        return Err(ConfigError::invalid(
            "template.listen",
            "sessions created on demand cannot own a listener; declare the session in [sessions.NAME]",
        ));
    }
    let template = Arc::new(validate_settings("template", raw.template, &defaults, env)?);

    let mut sessions = Vec::with_capacity(raw.sessions.len());
    for (name, mut table) in raw.sessions {
        let key = format!("sessions.{name}");
        if !valid_session_name(&name) {
            return Err(ConfigError::invalid(
                key,
                "a session name is 1-64 characters of A-Z a-z 0-9 . _ -",
            ));
        }
        let secret = match table.secret.take() {
            Some(s) if s.is_empty() => {
                return Err(ConfigError::invalid(
                    format!("{key}.secret"),
                    "must not be empty",
                ));
            }
            s => s.map(Secret::new),
        };
        let listen = std::mem::take(&mut table.listen).into_vec();
        let listen = parse_addrs(&format!("{key}.listen"), listen)?;
        let settings = validate_settings(&key, table, &defaults, env)?;
        sessions.push(SessionConfig {
            name,
            secret,
            listen,
            settings: Arc::new(settings),
        });
    }

    let mut clients = Vec::with_capacity(raw.clients.len());
    for (i, c) in raw.clients.into_iter().enumerate() {
        let key = format!("clients[{i}]");
        let net = parse_net(&c.addr).ok_or_else(|| {
            ConfigError::invalid(
                format!("{key}.addr"),
                "not an IP address or CIDR block (e.g. 10.0.0.0/24)",
            )
        })?;
        if !valid_session_name(&c.session) {
            return Err(ConfigError::invalid(
                format!("{key}.session"),
                "a session name is 1-64 characters of A-Z a-z 0-9 . _ -",
            ));
        }
        clients.push(ClientRule {
            net,
            session: c.session,
        });
    }

    let config = Config {
        proxy,
        admin,
        upstream,
        tls,
        durability,
        template,
        sessions,
        clients,
    };
    check_listeners(&config)?;
    Ok(config)
}

/// Refuses duplicate listeners and any setup that would make an open proxy.
/// The open-proxy and overlap rules for every listener of `config`.
pub(crate) fn check_listeners(config: &Config) -> Result<(), ConfigError> {
    let restricted = config.proxy.require_auth || !config.clients.is_empty();
    let mut seen: Vec<(SocketAddr, String)> = Vec::new();
    let named = config
        .proxy
        .listen
        .iter()
        .map(|a| ("proxy.listen".to_string(), *a))
        .chain(config.sessions.iter().flat_map(|s| {
            s.listen
                .iter()
                .map(move |a| (format!("sessions.{}.listen", s.name), *a))
        }))
        .chain(std::iter::once((
            "admin.listen".to_string(),
            config.admin.listen,
        )));
    for (key, addr) in named {
        // The admin API guards itself (it refuses non-loopback clients); listeners that
        // proxy must not be open to everyone.
        if key != "admin.listen" && !addr.ip().is_loopback() && !restricted {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "{addr} is not a loopback address; anyone who can reach it could use the proxy. \
                     Set proxy.require_auth = true or add [[clients]] entries to say who may connect"
                ),
            ));
        }
        if let Some((_, other)) = seen.iter().find(|(a, _)| overlaps(*a, addr)) {
            return Err(ConfigError::invalid(
                key,
                format!("{addr} overlaps {other}, which is bound first"),
            ));
        }
        seen.push((addr, key));
    }
    Ok(())
}

/// Whether two listen addresses would fight over one port: the same address, or the same
/// port where one side is a wildcard (0.0.0.0 or ::). Port 0 never conflicts.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn validate_proxy(raw: raw::RawProxy, env: EnvLookup<'_>) -> Result<ProxyConfig, ConfigError> {
    let listen = match raw.listen {
        Some(list) => parse_addrs("proxy.listen", list.into_vec())?,
        None => vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
    };
    if listen.is_empty() {
        return Err(ConfigError::invalid(
            "proxy.listen",
            "needs at least one address",
        ));
    }
    // Under systemd, `StateDirectory=` hands over its path(s), colon-separated; the first
    // is ours.
    let state_dir = raw.state_dir.unwrap_or_else(|| {
        env("STATE_DIRECTORY")
            .and_then(|dirs| dirs.split(':').next().map(PathBuf::from))
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("state"))
    });
    let positive = |key: &str, v: Option<usize>, default: usize| match v {
        Some(0) => Err(ConfigError::invalid(key, "must be at least 1")),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let max_header_bytes = positive("proxy.max_header_bytes", raw.max_header_bytes, 64 * 1024)?;
    if max_header_bytes < 8192 {
        return Err(ConfigError::invalid(
            "proxy.max_header_bytes",
            "must be at least 8192",
        ));
    }
    let defaults = CookieLimits::default();
    Ok(ProxyConfig {
        listen,
        state_dir,
        dynamic_sessions: raw.dynamic_sessions.unwrap_or(true),
        require_auth: raw.require_auth.unwrap_or(false),
        max_sessions: positive("proxy.max_sessions", raw.max_sessions, 10_000)?,
        max_connections: positive("proxy.max_connections", raw.max_connections, 4096)?,
        max_header_bytes,
        request_head_timeout: nonzero(
            "proxy.request_head_timeout",
            raw.request_head_timeout,
            Duration::from_secs(30),
        )?,
        shutdown_grace: duration(
            "proxy.shutdown_grace",
            raw.shutdown_grace,
            Duration::from_secs(30),
        )?,
        har_entries: raw.har_entries.unwrap_or(50),
        cookies: CookieLimits {
            max_per_domain: positive(
                "proxy.max_cookies_per_domain",
                raw.max_cookies_per_domain,
                defaults.max_per_domain,
            )?,
            max_per_session: positive(
                "proxy.max_cookies_per_session",
                raw.max_cookies_per_session,
                defaults.max_per_session,
            )?,
            max_bytes: positive(
                "proxy.max_cookie_bytes",
                raw.max_cookie_bytes,
                defaults.max_bytes,
            )?,
        },
    })
}

fn validate_tls(raw: raw::RawTls, state_dir: &Path) -> Result<TlsConfig, ConfigError> {
    let intercept = match raw.intercept {
        Some(list) => host_list("tls.intercept", &list)?,
        None => host_list("tls.intercept", &["*".to_string()])?,
    };
    let passthrough = host_list("tls.passthrough", &raw.passthrough)?;
    let (ca_cert, ca_key, ca_configured) = match (raw.ca_cert, raw.ca_key) {
        (Some(cert), Some(key)) => (cert, key, true),
        (None, None) => (state_dir.join("ca.pem"), state_dir.join("ca.key"), false),
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "tls.ca_key",
                "tls.ca_cert is set, so tls.ca_key must be too",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "tls.ca_cert",
                "tls.ca_key is set, so tls.ca_cert must be too",
            ));
        }
    };
    Ok(TlsConfig {
        intercept,
        passthrough,
        ca_cert,
        ca_key,
        ca_configured,
    })
}

/// What a session inherits from `[upstream]` when its own table is silent.
struct SessionDefaults {
    timeouts: Timeouts,
    upstream_proxy: Option<UpstreamProxy>,
    ca_bundle: Option<PemCerts>,
    hooks: Vec<Hook>,
}

fn validate_upstream(
    raw: raw::RawUpstream,
) -> Result<(UpstreamConfig, Timeouts, Option<UpstreamProxy>), ConfigError> {
    let timeouts = Timeouts {
        connect: nonzero(
            "upstream.connect_timeout",
            raw.connect_timeout,
            Duration::from_secs(10),
        )?,
        response: nonzero("upstream.timeout", raw.timeout, Duration::from_secs(60))?,
        read: nonzero(
            "upstream.read_timeout",
            raw.read_timeout,
            Duration::from_secs(60),
        )?,
    };
    let mut resolve = HashMap::with_capacity(raw.resolve.len());
    for (from, to) in raw.resolve {
        let key = format!("upstream.resolve.\"{from}\"");
        let (host, port) = split_host_port(&from).ok_or_else(|| {
            ConfigError::invalid(&key, "the key must be host:port, e.g. \"example.com:443\"")
        })?;
        let addr: SocketAddr = to
            .parse()
            .map_err(|_| ConfigError::invalid(&key, format!("{to:?} is not an ip:port address")))?;
        resolve.insert((host, port), addr);
    }
    let upstream_proxy = raw
        .upstream_proxy
        .as_deref()
        .map(|url| parse_upstream_proxy("upstream.upstream_proxy", url))
        .transpose()?;
    let config = UpstreamConfig {
        resolve,
        dns_ttl: duration("upstream.dns_ttl", raw.dns_ttl, Duration::from_secs(60))?,
        pool_idle_timeout: nonzero(
            "upstream.pool_idle_timeout",
            raw.pool_idle_timeout,
            Duration::from_secs(90),
        )?,
        pool_max_idle_per_host: raw.pool_max_idle_per_host.unwrap_or(32),
    };
    Ok((config, timeouts, upstream_proxy))
}

fn validate_settings(
    key: &str,
    mut raw: raw::RawSettings,
    defaults: &SessionDefaults,
    env: EnvLookup<'_>,
) -> Result<SessionSettings, ConfigError> {
    let tls = validate_upstream_tls(key, &mut raw, defaults)?;
    let mut hooks = validate_hooks(&format!("{key}.hooks"), std::mem::take(&mut raw.hooks))?;
    hooks.extend(defaults.hooks.iter().cloned());
    let headers = header_pairs(&format!("{key}.headers"), raw.headers)?;
    let override_headers = header_pairs(&format!("{key}.override_headers"), raw.override_headers)?;
    let remove_headers = raw
        .remove_headers
        .iter()
        .enumerate()
        .map(|(i, name)| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::invalid(
                    format!("{key}.remove_headers[{i}]"),
                    format!("{name:?} is not a valid header name"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let auth = raw
        .auth
        .into_iter()
        .enumerate()
        .map(|(i, a)| validate_credential(&format!("{key}.auth[{i}]"), a, env))
        .collect::<Result<Vec<_>, _>>()?;
    let timeouts = Timeouts {
        connect: nonzero(
            &format!("{key}.connect_timeout"),
            raw.connect_timeout,
            defaults.timeouts.connect,
        )?,
        response: nonzero(
            &format!("{key}.timeout"),
            raw.timeout,
            defaults.timeouts.response,
        )?,
        read: nonzero(
            &format!("{key}.read_timeout"),
            raw.read_timeout,
            defaults.timeouts.read,
        )?,
    };
    let allow_hosts = raw
        .allow_hosts
        .map(|list| host_list(&format!("{key}.allow_hosts"), &list))
        .transpose()?;
    let deny_hosts = host_list(&format!("{key}.deny_hosts"), &raw.deny_hosts)?;
    let upstream_proxy = match raw.upstream_proxy.as_deref() {
        Some(url) => Some(parse_upstream_proxy(&format!("{key}.upstream_proxy"), url)?),
        None => defaults.upstream_proxy.clone(),
    };
    Ok(SessionSettings {
        headers,
        override_headers,
        remove_headers,
        auth,
        timeouts,
        allow_hosts,
        deny_hosts,
        upstream_proxy,
        tls,
        hooks: hooks.into(),
    })
}

fn validate_hooks(key: &str, raw: Vec<raw::RawHook>) -> Result<Vec<Hook>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, h)| {
            let key = format!("{key}[{i}]");
            let on = match h.on.as_str() {
                "request" => HookEvent::Request,
                "response" => HookEvent::Response,
                "cookie" => HookEvent::Cookie,
                other => {
                    return Err(ConfigError::invalid(
                        format!("{key}.on"),
                        format!("{other:?} is not \"request\", \"response\" or \"cookie\""),
                    ));
                }
            };
            let action = match (h.exec, h.webhook) {
                (Some(argv), None) if !argv.is_empty() => HookAction::Exec(argv),
                (Some(_), None) => {
                    return Err(ConfigError::invalid(
                        format!("{key}.exec"),
                        "needs a program",
                    ));
                }
                (None, Some(url)) => {
                    let uri: http::Uri = url
                        .parse()
                        .map_err(|_| ConfigError::invalid(format!("{key}.webhook"), "not a URL"))?;
                    if uri.scheme_str() != Some("http") || uri.host().is_none() {
                        return Err(ConfigError::invalid(
                            format!("{key}.webhook"),
                            "must be an http:// URL with a host",
                        ));
                    }
                    HookAction::Webhook(uri)
                }
                _ => {
                    return Err(ConfigError::invalid(
                        key,
                        "give exactly one of exec or webhook",
                    ));
                }
            };
            if h.retry && on != HookEvent::Response {
                return Err(ConfigError::invalid(
                    format!("{key}.retry"),
                    "only a response hook can replay the request",
                ));
            }
            let hosts = h
                .when
                .hosts
                .map(|list| host_list(&format!("{key}.when.hosts"), &list))
                .transpose()?;
            Ok(Hook {
                on,
                statuses: h.when.status.unwrap_or_default(),
                hosts,
                action,
                timeout: nonzero(
                    &format!("{key}.timeout"),
                    h.timeout,
                    Duration::from_secs(10),
                )?,
                retry: h.retry,
            })
        })
        .collect()
}

/// The session's TLS trust and identity towards origins.
fn validate_upstream_tls(
    key: &str,
    raw: &mut raw::RawSettings,
    defaults: &SessionDefaults,
) -> Result<UpstreamTls, ConfigError> {
    let mut ca_bundles: Vec<PemCerts> = defaults.ca_bundle.iter().cloned().collect();
    if let Some(path) = raw.ca_bundle.take() {
        ca_bundles.push(read_certs(&format!("{key}.ca_bundle"), path)?);
    }
    let client_identity = match (raw.client_cert.take(), raw.client_key.take()) {
        (Some(cert), Some(key_path)) => {
            let chain = read_certs(&format!("{key}.client_cert"), cert)?;
            let pem_key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
                // The reason from the PEM reader never includes key material.
                ConfigError::invalid(
                    format!("{key}.client_key"),
                    format!("cannot read a private key from {}: {e}", key_path.display()),
                )
            })?;
            Some(ClientIdentity {
                chain,
                key_path,
                key: Arc::new(pem_key),
            })
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                format!("{key}.client_key"),
                "client_cert is set, so client_key must be too",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{key}.client_cert"),
                "client_key is set, so client_cert must be too",
            ));
        }
    };
    Ok(UpstreamTls {
        ca_bundles,
        client_identity,
        verify: raw.verify.unwrap_or(true),
    })
}

/// Reads every certificate of a PEM file; at least one must be there.
fn read_certs(key: &str, path: PathBuf) -> Result<PemCerts, ConfigError> {
    let bad = |reason: String| ConfigError::invalid(key, format!("{}: {reason}", path.display()));
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificates in the file".into()));
    }
    Ok(PemCerts {
        path,
        certs: Arc::new(certs),
    })
}

fn validate_credential(
    key: &str,
    raw: raw::RawCredential,
    env: EnvLookup<'_>,
) -> Result<Credential, ConfigError> {
    if raw.hosts.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.hosts"),
            "must list at least one host: a credential is only ever sent to its hosts",
        ));
    }
    let hosts = host_list(&format!("{key}.hosts"), &raw.hosts)?;
    let scheme = raw.scheme.as_str();
    // Each scheme reads its secret from exactly one of three keys; every other secret key
    // is a mistake worth reporting rather than silently ignoring.
    let (field, allowed): (&str, [&str; 3]) = match scheme {
        "basic" => ("password", ["password", "password_env", "password_file"]),
        "bearer" => ("token", ["token", "token_env", "token_file"]),
        "header" => ("value", ["value", "value_env", "value_file"]),
        other => {
            return Err(ConfigError::invalid(
                format!("{key}.scheme"),
                format!("{other:?} is not one of \"basic\", \"bearer\", \"header\""),
            ));
        }
    };
    let sources = raw.secret_sources();
    if let Some((name, _)) = sources
        .iter()
        .find(|(n, v)| v.is_some() && !allowed.contains(n))
    {
        return Err(ConfigError::invalid(
            format!("{key}.{name}"),
            format!(
                "does not apply to scheme {scheme:?} (use {field}, {field}_env or {field}_file)"
            ),
        ));
    }
    let given: Vec<_> = sources
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect();
    let secret = match given.as_slice() {
        [(name, v)] => read_secret(&format!("{key}.{name}"), name, v, env)?,
        [] => {
            return Err(ConfigError::invalid(
                key,
                format!("scheme {scheme:?} needs one of {field}, {field}_env, {field}_file"),
            ));
        }
        [_, (second, _), ..] => {
            return Err(ConfigError::invalid(
                format!("{key}.{second}"),
                format!("give only one of {field}, {field}_env, {field}_file"),
            ));
        }
    };
    if scheme != "basic" && raw.username.is_some() {
        return Err(ConfigError::invalid(
            format!("{key}.username"),
            "only applies to scheme \"basic\"",
        ));
    }
    if scheme != "header" && raw.header.is_some() {
        return Err(ConfigError::invalid(
            format!("{key}.header"),
            "only applies to scheme \"header\"",
        ));
    }
    let (header, value) = match scheme {
        "basic" => {
            let user = raw.username.ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}.username"),
                    "scheme \"basic\" needs a username",
                )
            })?;
            if user.contains(':') {
                return Err(ConfigError::invalid(
                    format!("{key}.username"),
                    "must not contain ':'",
                ));
            }
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
            (http::header::AUTHORIZATION, format!("Basic {encoded}"))
        }
        "bearer" => (http::header::AUTHORIZATION, format!("Bearer {secret}")),
        _ => {
            let name = raw.header.ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}.header"),
                    "scheme \"header\" needs a header name",
                )
            })?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::invalid(
                    format!("{key}.header"),
                    format!("{name:?} is not a valid header name"),
                )
            })?;
            (name, secret)
        }
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        // The reason must not quote the value: it is a secret.
        ConfigError::invalid(
            key,
            "the secret contains characters not allowed in a header",
        )
    })?;
    value.set_sensitive(true);
    Ok(Credential {
        hosts,
        header,
        value,
        override_client: raw.override_client,
    })
}

/// Resolves a literal, `*_env` or `*_file` secret. Error messages name the variable or
/// file, never the secret.
fn read_secret(key: &str, field: &str, v: &str, env: EnvLookup<'_>) -> Result<String, ConfigError> {
    let value = if field.ends_with("_env") {
        env(v).ok_or_else(|| {
            ConfigError::invalid(key, format!("environment variable {v} is not set"))
        })?
    } else if field.ends_with("_file") {
        std::fs::read_to_string(v)
            .map_err(|e| ConfigError::invalid(key, format!("cannot read {v}: {e}")))?
            .trim()
            .to_string()
    } else {
        v.to_string()
    };
    if value.is_empty() {
        return Err(ConfigError::invalid(key, "the secret is empty"));
    }
    Ok(value)
}

fn header_pairs(
    key: &str,
    table: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    table
        .into_iter()
        .map(|(name, value)| {
            let k = format!("{key}.\"{name}\"");
            let n = settable_header_name(&name).map_err(|r| ConfigError::invalid(&k, r))?;
            let v = header_value(&value).map_err(|r| ConfigError::invalid(&k, r))?;
            Ok((n, v))
        })
        .collect()
}

/// A header name a session may set (config `headers`, `override_headers`, and the admin
/// API's `PATCH`): valid, and not hop-by-hop. The error is the reason, without the name.
pub(crate) fn settable_header_name(name: &str) -> Result<HeaderName, &'static str> {
    let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| "not a valid header name")?;
    if crate::proxy::rewrite::is_hop_by_hop(&n) {
        return Err("is a hop-by-hop header; the proxy manages it");
    }
    Ok(n)
}

/// A header value a session may set. The error is the reason, never quoting the value.
pub(crate) fn header_value(value: &str) -> Result<HeaderValue, &'static str> {
    HeaderValue::from_str(value).map_err(|_| "the value has characters not allowed in a header")
}

fn host_list(key: &str, patterns: &[String]) -> Result<HostList, ConfigError> {
    HostList::parse(patterns)
        .map_err(|(i, reason)| ConfigError::invalid(format!("{key}[{i}]"), reason))
}

/// The longest duration any key accepts. Deadlines are computed as `now + duration`,
/// which must not overflow; no timeout needs to be longer than this.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A duration that may be zero, at most [`MAX_DURATION`].
fn duration(key: &str, v: Option<Duration>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        Some(d) if d > MAX_DURATION => Err(ConfigError::invalid(key, "must be at most 7 days")),
        Some(d) => Ok(d),
        None => Ok(default),
    }
}

/// A duration longer than zero, at most [`MAX_DURATION`].
fn nonzero(key: &str, v: Option<Duration>, default: Duration) -> Result<Duration, ConfigError> {
    match duration(key, v, default)? {
        d if d.is_zero() => Err(ConfigError::invalid(key, "must be longer than zero")),
        d => Ok(d),
    }
}

fn parse_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{s:?} is not an ip:port address (e.g. \"127.0.0.1:8080\")"),
        )
    })
}

fn parse_addrs(key: &str, list: Vec<String>) -> Result<Vec<SocketAddr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| parse_addr(&format!("{key}[{i}]"), s))
        .collect()
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Splits `host:port` (with `[v6]:port`), lower-casing the host.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = crate::hosts::unbracket(host);
    if host.is_empty() {
        return None;
    }
    Some((host.to_ascii_lowercase(), port.parse().ok()?))
}

fn parse_upstream_proxy(key: &str, s: &str) -> Result<UpstreamProxy, ConfigError> {
    // The message never echoes the URL: it may carry a password.
    let url =
        url::Url::parse(s).map_err(|e| ConfigError::invalid(key, format!("not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(ConfigError::invalid(
            key,
            "only http:// parent proxies are supported",
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| ConfigError::invalid(key, "the URL has no host"))?;
    let host = crate::hosts::unbracket(host).to_ascii_lowercase();
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Err(ConfigError::invalid(
            key,
            "a proxy URL has no path or query",
        ));
    }
    let authorization = if url.username().is_empty() {
        None
    } else {
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| ConfigError::invalid(key, "bad percent-encoding in the user info"))
        };
        let user = decode(url.username())?;
        let pass = decode(url.password().unwrap_or(""))?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let mut v = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| ConfigError::invalid(key, "the user info is not usable in a header"))?;
        v.set_sensitive(true);
        Some(v)
    };
    Ok(UpstreamProxy {
        host,
        port: url.port().unwrap_or(8080),
        authorization,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests;
