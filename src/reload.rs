//! What a reload (`SIGHUP`) can change in a running daemon, and what needs a restart.
//!
//! A reload applies the new file as a whole or not at all: sessions (headers, credentials,
//! secrets, timeouts, egress rules, TLS trust and identity, hooks), the template,
//! `[[clients]]`, `require_auth`, `dynamic_sessions`, `max_sessions`, `[tls]` interception
//! lists, `upstream.resolve` and `dns_ttl`, `admin.token` and `proxy.shutdown_grace`.
//!
//! Keys that shape what was built at start (listeners, the state directory, the store's
//! durability, connection and header limits, cookie limits, the CA files, the pool) keep
//! their running value: each changed one is named in a log line saying a restart applies it.

use crate::config::{Config, ConfigError};
use crate::session::RegistryError;

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file with the running listeners would be refused (an open proxy).
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Keeps the running value of every key a reload cannot apply, in `new`, and returns the
/// keys that differed: after this, `new` describes the daemon as it will really run.
pub fn keep_fixed(running: &Config, new: &mut Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut keep = |key: &str, differs: bool| {
        if differs {
            changed.push(key.to_string());
        }
        differs
    };
    macro_rules! fixed {
        ($key:literal, $($field:ident).+) => {
            if keep($key, running.$($field).+ != new.$($field).+) {
                new.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    fixed!("proxy.listen", proxy.listen);
    fixed!("proxy.state_dir", proxy.state_dir);
    fixed!("proxy.max_connections", proxy.max_connections);
    fixed!("proxy.max_header_bytes", proxy.max_header_bytes);
    fixed!("proxy.request_head_timeout", proxy.request_head_timeout);
    fixed!("proxy.har_entries", proxy.har_entries);
    fixed!("proxy.max_cookies_per_domain", proxy.cookies.max_per_domain);
    fixed!(
        "proxy.max_cookies_per_session",
        proxy.cookies.max_per_session
    );
    fixed!("proxy.max_cookie_bytes", proxy.cookies.max_bytes);
    fixed!("admin.listen", admin.listen);
    fixed!("store.durability", durability);
    fixed!("tls.ca_cert", tls.ca_cert);
    fixed!("tls.ca_key", tls.ca_key);
    fixed!("upstream.pool_idle_timeout", upstream.pool_idle_timeout);
    fixed!(
        "upstream.pool_max_idle_per_host",
        upstream.pool_max_idle_per_host
    );
    new.tls.ca_configured = running.tls.ca_configured;

    // A session's own listeners: those of sessions that stay keep running; a new
    // session's listeners, or a removed session's, wait for a restart.
    let listeners = |config: &Config, name: &str| {
        config
            .sessions
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.listen.clone())
            .unwrap_or_default()
    };
    for s in &mut new.sessions {
        let was = listeners(running, &s.name);
        if s.listen != was {
            changed.push(format!("sessions.{}.listen", s.name));
            s.listen = was;
        }
    }
    for s in &running.sessions {
        if !s.listen.is_empty() && !new.sessions.iter().any(|n| n.name == s.name) {
            changed.push(format!("sessions.{}.listen", s.name));
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        Config::from_toml(toml).unwrap()
    }

    #[test]
    fn reloadable_keys_are_not_reported() {
        let running = config("");
        let mut new = config(
            r#"
            [proxy]
            require_auth = true
            max_sessions = 5
            shutdown_grace = "3s"
            [template]
            headers = { "X-A" = "1" }
            [sessions.api]
            secret = "s"
            headers = { "X-B" = "2" }
            [tls]
            passthrough = ["pinned.test"]
            "#,
        );
        assert_eq!(keep_fixed(&running, &mut new), Vec::<String>::new());
        assert!(
            new.proxy.require_auth,
            "reloadable values are left as given"
        );
    }

    #[test]
    fn fixed_keys_are_named_and_keep_their_running_value() {
        let running = config(
            r#"
            [proxy]
            listen = ["127.0.0.1:18080"]
            [store]
            durability = "full"
            [sessions.gone]
            listen = "127.0.0.1:18090"
            "#,
        );
        let mut new = config(
            r#"
            [proxy]
            listen = ["127.0.0.1:18081"]
            max_cookie_bytes = 1000
            [admin]
            listen = "127.0.0.1:18082"
            [store]
            durability = "batched"
            [sessions.fresh]
            listen = "127.0.0.1:18091"
            "#,
        );
        let changed = keep_fixed(&running, &mut new);
        assert_eq!(
            changed,
            [
                "proxy.listen",
                "proxy.max_cookie_bytes",
                "admin.listen",
                "store.durability",
                "sessions.fresh.listen",
                "sessions.gone.listen",
            ]
        );
        assert_eq!(new.proxy.listen, running.proxy.listen);
        assert_eq!(new.admin.listen, running.admin.listen);
        assert_eq!(new.durability, running.durability);
        assert_eq!(new.proxy.cookies, running.proxy.cookies);
        assert!(
            new.sessions[0].listen.is_empty(),
            "a new session's listener waits for a restart"
        );
    }
}
