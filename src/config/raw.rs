//! The configuration exactly as the user wrote it. Every table refuses unknown keys;
//! every field is optional so that defaults live in one place (the validation phase).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Parses TOML, reporting the dotted key path of the first problem.
pub fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Invalid {
        key: "(file)".into(),
        reason: one_line(&e.to_string()),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::Invalid {
            key: if path == "." { "(file)".into() } else { path },
            reason: one_line(&e.into_inner().to_string()),
        }
    })
}

/// toml's messages quote the offending line over several lines; keep the key reason
/// on one line and the location as a suffix.
fn one_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let head = lines.next().unwrap_or_default().to_string();
    let reason = message
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && !l.chars().next().is_some_and(|c| c.is_ascii_digit())
        })
        .unwrap_or_default()
        .to_string();
    if reason.is_empty() || reason == head {
        head
    } else {
        format!("{reason} ({})", head.trim_end_matches(':').to_lowercase())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub template: RawSettings,
    #[serde(default)]
    pub sessions: BTreeMap<String, RawSettings>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub hooks: Vec<RawHook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    pub on: String,
    #[serde(default)]
    pub when: RawWhen,
    pub exec: Option<Vec<String>>,
    pub webhook: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retry: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhen {
    pub status: Option<Vec<u16>>,
    pub hosts: Option<Vec<String>>,
}

/// A string or a list of strings (`listen = "a"` or `listen = ["a", "b"]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

impl OneOrMany {
    pub fn is_empty(&self) -> bool {
        match self {
            OneOrMany::One(_) => false,
            OneOrMany::Many(v) => v.is_empty(),
        }
    }
}

impl Default for OneOrMany {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub listen: Option<OneOrMany>,
    pub state_dir: Option<PathBuf>,
    pub dynamic_sessions: Option<bool>,
    pub require_auth: Option<bool>,
    pub max_sessions: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_header_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub request_head_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    pub max_cookies_per_domain: Option<usize>,
    pub max_cookies_per_session: Option<usize>,
    pub max_cookie_bytes: Option<usize>,
    pub har_entries: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub durability: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub intercept: Option<Vec<String>>,
    #[serde(default)]
    pub passthrough: Vec<String>,
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
    #[serde(default)]
    pub resolve: BTreeMap<String, String>,
    pub upstream_proxy: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub dns_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub pool_idle_timeout: Option<Duration>,
    pub pool_max_idle_per_host: Option<usize>,
}

/// A `[sessions.NAME]` table, and `[template]` (which may not have `secret` or `listen`).
/// Serde's `flatten` would be the natural way to share fields, but it silently disables
/// `deny_unknown_fields`, so the fields are spelled out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub secret: Option<String>,
    #[serde(default)]
    pub listen: OneOrMany,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub override_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub remove_headers: Vec<String>,
    #[serde(default)]
    pub auth: Vec<RawCredential>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
    pub allow_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub deny_hosts: Vec<String>,
    pub upstream_proxy: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub verify: Option<bool>,
    #[serde(default)]
    pub hooks: Vec<RawHook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub scheme: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default, rename = "override")]
    pub override_client: bool,
    pub username: Option<String>,
    pub header: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    pub value: Option<String>,
    pub value_env: Option<String>,
    pub value_file: Option<String>,
}

impl RawCredential {
    /// Every key that can hold a secret, with what was given for it.
    pub fn secret_sources(&self) -> [(&'static str, Option<&str>); 9] {
        [
            ("password", self.password.as_deref()),
            ("password_env", self.password_env.as_deref()),
            ("password_file", self.password_file.as_deref()),
            ("token", self.token.as_deref()),
            ("token_env", self.token_env.as_deref()),
            ("token_file", self.token_file.as_deref()),
            ("value", self.value.as_deref()),
            ("value_env", self.value_env.as_deref()),
            ("value_file", self.value_file.as_deref()),
        ]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub addr: String,
    pub session: String,
}
