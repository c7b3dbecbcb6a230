//! Unit tests for the two-phase configuration: raw TOML → validated [`Config`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// Parses and validates with an injected environment, so no test touches the real one.
fn load_with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    super::validate(super::raw::parse(text)?, &|name| vars.get(name).cloned())
}

fn load(text: &str) -> Result<Config, ConfigError> {
    load_with_env(text, &[])
}

fn ok(text: &str) -> Config {
    load(text).unwrap_or_else(|e| panic!("expected a valid config, got: {e}"))
}

/// The `(key, reason)` of the refusal; panics if the config was accepted or unreadable.
fn refusal(result: Result<Config, ConfigError>) -> (String, String) {
    match result {
        Ok(_) => panic!("expected the config to be refused"),
        Err(ConfigError::Invalid { key, reason }) => (key, reason),
        Err(other) => panic!("expected an Invalid error, got: {other}"),
    }
}

fn err_key(text: &str) -> String {
    refusal(load(text)).0
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The settings of the declared session `name`.
fn session<'a>(config: &'a Config, name: &str) -> &'a SessionSettings {
    &config
        .sessions
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no session {name}"))
        .settings
}

/// A file under the temp dir, removed on drop; the name is unique per process and call.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "sessiond-config-test-{}-{n}.secret",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// ---- defaults ----

#[test]
fn defaults_without_a_file() {
    let c = Config::defaults();
    assert_eq!(c.proxy.listen, vec![addr("127.0.0.1:8080")]);
    assert_eq!(c.admin.listen, addr("127.0.0.1:8081"));
    assert!(c.proxy.dynamic_sessions);
    assert!(!c.proxy.require_auth);
    assert_eq!(c.proxy.max_sessions, 10_000);
    assert_eq!(
        c.proxy.cookies,
        CookieLimits {
            max_per_domain: 50,
            max_per_session: 3000,
            max_bytes: 4096,
        }
    );
    assert_eq!(
        c.template.timeouts,
        Timeouts {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(60),
            read: Duration::from_secs(60),
        }
    );
    assert!(c.sessions.is_empty());
    assert!(c.clients.is_empty());
    assert!(c.template.upstream_proxy.is_none());
}

#[test]
fn empty_tables_mean_defaults() {
    let c = ok("[proxy]\n[admin]\n[upstream]\n[template]\n");
    assert_eq!(c.proxy.listen, vec![addr("127.0.0.1:8080")]);
    assert_eq!(c.admin.listen, addr("127.0.0.1:8081"));
    assert_eq!(c.template.timeouts, Config::defaults().template.timeouts);
}

#[test]
fn own_addresses_lists_every_listener() {
    let c = ok(r#"
        [proxy]
        listen = ["127.0.0.1:9000", "127.0.0.1:9001"]
        [admin]
        listen = "127.0.0.1:9100"
        [sessions.ci]
        listen = "127.0.0.1:9200"
    "#);
    let mut own = c.own_addresses();
    own.sort();
    let expected = [
        "127.0.0.1:9000",
        "127.0.0.1:9001",
        "127.0.0.1:9100",
        "127.0.0.1:9200",
    ];
    assert_eq!(own, expected.map(addr).to_vec());
}

// ---- errors name the key ----

#[test]
fn error_display_is_key_colon_reason() {
    let e = ConfigError::invalid("proxy.listen", "needs at least one address");
    assert_eq!(e.to_string(), "proxy.listen: needs at least one address");
    let e = load("[proxy]\nmax_sessions = 0").unwrap_err();
    assert_eq!(e.to_string(), "proxy.max_sessions: must be at least 1");
}

#[test]
fn unknown_top_level_key_is_named() {
    assert_eq!(err_key("bogus = 1"), "bogus");
}

#[test]
fn unknown_proxy_key_is_named() {
    assert_eq!(err_key("[proxy]\nlistn = \"127.0.0.1:1\""), "proxy.listn");
}

#[test]
fn unknown_session_key_is_named() {
    assert_eq!(err_key("[sessions.x]\nbogus = true"), "sessions.x.bogus");
}

#[test]
fn unknown_credential_key_is_named() {
    let text = r#"
        [[sessions.x.auth]]
        scheme = "bearer"
        tokn = "abc"
        hosts = ["api.test"]
    "#;
    assert_eq!(err_key(text), "sessions.x.auth[0].tokn");
}

#[test]
fn unknown_client_key_is_named() {
    let text = "[[clients]]\naddr = \"10.0.0.1\"\nsession = \"ci\"\nname = \"x\"";
    assert_eq!(err_key(text), "clients[0].name");
}

#[test]
fn toml_syntax_error_is_about_the_file() {
    assert_eq!(err_key("[proxy\nlisten = 1"), "(file)");
}

#[test]
fn wrong_type_names_the_key() {
    assert_eq!(
        err_key("[proxy]\nrequire_auth = \"yes\""),
        "proxy.require_auth"
    );
}

// ---- durations ----

#[test]
fn durations_are_humane() {
    let c = ok(r#"
        [upstream]
        connect_timeout = "250ms"
        timeout = "5m"
        read_timeout = "1h 30s"
    "#);
    assert_eq!(
        c.template.timeouts,
        Timeouts {
            connect: Duration::from_millis(250),
            response: Duration::from_secs(300),
            read: Duration::from_secs(3630),
        }
    );
}

#[test]
fn bad_duration_names_its_key() {
    assert_eq!(
        err_key("[upstream]\ntimeout = \"soon\""),
        "upstream.timeout"
    );
    assert_eq!(
        err_key("[sessions.x]\nread_timeout = \"5 parsecs\""),
        "sessions.x.read_timeout"
    );
    assert_eq!(
        err_key("[proxy]\nrequest_head_timeout = 30"),
        "proxy.request_head_timeout"
    );
}

#[test]
fn zero_durations_are_refused() {
    for (text, key) in [
        (
            "[upstream]\nconnect_timeout = \"0s\"",
            "upstream.connect_timeout",
        ),
        ("[upstream]\ntimeout = \"0ms\"", "upstream.timeout"),
        ("[upstream]\nread_timeout = \"0s\"", "upstream.read_timeout"),
        (
            "[upstream]\npool_idle_timeout = \"0s\"",
            "upstream.pool_idle_timeout",
        ),
        (
            "[proxy]\nrequest_head_timeout = \"0s\"",
            "proxy.request_head_timeout",
        ),
        ("[sessions.x]\ntimeout = \"0s\"", "sessions.x.timeout"),
        (
            "[template]\nconnect_timeout = \"0s\"",
            "template.connect_timeout",
        ),
    ] {
        let (k, reason) = refusal(load(text));
        assert_eq!(k, key, "{text}");
        assert!(reason.contains("zero"), "{reason}");
    }
}

// ---- limits ----

#[test]
fn zero_limits_are_refused() {
    for key in [
        "max_sessions",
        "max_connections",
        "max_header_bytes",
        "max_cookies_per_domain",
        "max_cookies_per_session",
        "max_cookie_bytes",
    ] {
        let text = format!("[proxy]\n{key} = 0");
        assert_eq!(err_key(&text), format!("proxy.{key}"));
    }
}

#[test]
fn tiny_max_header_bytes_is_refused() {
    assert_eq!(
        err_key("[proxy]\nmax_header_bytes = 100"),
        "proxy.max_header_bytes"
    );
}

#[test]
fn limits_are_configurable() {
    let c = ok(r#"
        [proxy]
        max_sessions = 5
        max_cookies_per_domain = 7
        max_cookies_per_session = 70
        max_cookie_bytes = 1000
        dynamic_sessions = false
        require_auth = true
    "#);
    assert_eq!(c.proxy.max_sessions, 5);
    assert_eq!(
        c.proxy.cookies,
        CookieLimits {
            max_per_domain: 7,
            max_per_session: 70,
            max_bytes: 1000,
        }
    );
    assert!(!c.proxy.dynamic_sessions);
    assert!(c.proxy.require_auth);
}

// ---- timeouts per session ----

#[test]
fn session_timeouts_override_upstream_ones() {
    let c = ok(r#"
        [upstream]
        connect_timeout = "3s"
        timeout = "40s"
        read_timeout = "50s"
        [sessions.x]
        connect_timeout = "1s"
        timeout = "2s"
        read_timeout = "3s"
    "#);
    assert_eq!(
        session(&c, "x").timeouts,
        Timeouts {
            connect: Duration::from_secs(1),
            response: Duration::from_secs(2),
            read: Duration::from_secs(3),
        }
    );
}

#[test]
fn session_inherits_upstream_timeouts_it_does_not_set() {
    let c = ok(r#"
        [upstream]
        connect_timeout = "3s"
        timeout = "40s"
        read_timeout = "50s"
        [sessions.x]
        timeout = "2s"
    "#);
    let expected = Timeouts {
        connect: Duration::from_secs(3),
        response: Duration::from_secs(2),
        read: Duration::from_secs(50),
    };
    assert_eq!(session(&c, "x").timeouts, expected);
    // The template inherits too.
    assert_eq!(c.template.timeouts.response, Duration::from_secs(40));
}

// ---- upstream_proxy ----

#[test]
fn upstream_proxy_is_inherited_by_sessions_and_the_template() {
    let c = ok(r#"
        [upstream]
        upstream_proxy = "http://parent.test:3128"
        [sessions.x]
    "#);
    for settings in [session(&c, "x"), &*c.template] {
        let p = settings.upstream_proxy.as_ref().expect("inherited");
        assert_eq!((p.host.as_str(), p.port), ("parent.test", 3128));
        assert!(p.authorization.is_none());
    }
}

#[test]
fn upstream_proxy_is_overridden_per_session() {
    let c = ok(r#"
        [upstream]
        upstream_proxy = "http://parent.test:3128"
        [sessions.x]
        upstream_proxy = "http://other.test:9999"
        [sessions.y]
    "#);
    assert_eq!(
        session(&c, "x").upstream_proxy.as_ref().unwrap().host,
        "other.test"
    );
    assert_eq!(
        session(&c, "y").upstream_proxy.as_ref().unwrap().host,
        "parent.test"
    );
}

#[test]
fn upstream_proxy_defaults_to_port_8080_and_lowercases_the_host() {
    let c = ok("[upstream]\nupstream_proxy = \"http://Parent.TEST\"");
    let p = c.template.upstream_proxy.as_ref().unwrap();
    assert_eq!((p.host.as_str(), p.port), ("parent.test", 8080));
}

#[test]
fn upstream_proxy_ipv6_host_loses_its_brackets() {
    let c = ok("[upstream]\nupstream_proxy = \"http://[::1]:3128\"");
    assert_eq!(c.template.upstream_proxy.as_ref().unwrap().host, "::1");
}

#[test]
fn upstream_proxy_credentials_become_a_basic_header() {
    let c = ok("[upstream]\nupstream_proxy = \"http://bob:p%40ss@parent.test:3128\"");
    let auth = c
        .template
        .upstream_proxy
        .as_ref()
        .unwrap()
        .authorization
        .clone();
    let auth = auth.expect("user info gives a Proxy-Authorization");
    assert_eq!(auth, format!("Basic {}", B64.encode("bob:p@ss")).as_str());
    assert!(auth.is_sensitive());
}

#[test]
fn upstream_proxy_password_never_shows_in_debug() {
    let c = ok(r#"
        [upstream]
        upstream_proxy = "http://bob:hunter2@parent.test:3128"
        [sessions.x]
        upstream_proxy = "http://eve:swordfish@other.test:3128"
    "#);
    let debug = format!("{c:?}");
    for secret in ["hunter2", "swordfish"] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
    assert!(!debug.contains(&B64.encode("bob:hunter2")), "{debug}");
    assert!(
        debug.contains("parent.test"),
        "the proxy is still shown: {debug}"
    );
}

#[test]
fn bad_upstream_proxy_is_refused_without_echoing_it() {
    for (text, key) in [
        (
            "[upstream]\nupstream_proxy = \"https://u:hunter2@p.test\"",
            "upstream.upstream_proxy",
        ),
        (
            "[upstream]\nupstream_proxy = \"http://u:hunter2@p.test/path\"",
            "upstream.upstream_proxy",
        ),
        (
            "[upstream]\nupstream_proxy = \"u:hunter2 not a url\"",
            "upstream.upstream_proxy",
        ),
        (
            "[sessions.x]\nupstream_proxy = \"socks5://u:hunter2@p.test\"",
            "sessions.x.upstream_proxy",
        ),
    ] {
        let (k, reason) = refusal(load(text));
        assert_eq!(k, key, "{text}");
        assert!(!reason.contains("hunter2"), "{reason}");
    }
}

// ---- credentials ----

fn one_credential(c: &Config) -> &Credential {
    let auth = &session(c, "x").auth;
    assert_eq!(auth.len(), 1);
    &auth[0]
}

#[test]
fn basic_credential_builds_an_authorization_header() {
    let c = ok(r#"
        [[sessions.x.auth]]
        scheme = "basic"
        username = "alice"
        password = "wonder land"
        hosts = ["api.test", "*.files.test"]
    "#);
    let cred = one_credential(&c);
    assert_eq!(cred.header, http::header::AUTHORIZATION);
    let expected = format!("Basic {}", B64.encode("alice:wonder land"));
    assert_eq!(cred.value, expected.as_str());
    assert!(cred.hosts.matches("api.test"));
    assert!(cred.hosts.matches("a.files.test"));
    assert!(!cred.hosts.matches("other.test"));
    assert!(!cred.override_client);
}

#[test]
fn bearer_credential_and_override() {
    let c = ok(r#"
        [[sessions.x.auth]]
        scheme = "bearer"
        token = "tok123"
        hosts = ["api.test"]
        override = true
    "#);
    let cred = one_credential(&c);
    assert_eq!(cred.header, http::header::AUTHORIZATION);
    assert_eq!(cred.value, "Bearer tok123");
    assert!(cred.override_client);
}

#[test]
fn header_credential_uses_its_header_and_is_sensitive() {
    let c = ok(r#"
        [[sessions.x.auth]]
        scheme = "header"
        header = "X-Api-Key"
        value = "k-42"
        hosts = ["api.test"]
    "#);
    let cred = one_credential(&c);
    assert_eq!(cred.header, "x-api-key");
    assert_eq!(cred.value, "k-42");
    assert!(cred.value.is_sensitive());
}

#[test]
fn every_credential_value_is_sensitive() {
    let c = ok(r#"
        [[sessions.x.auth]]
        scheme = "basic"
        username = "a"
        password = "b"
        hosts = ["a.test"]
        [[sessions.x.auth]]
        scheme = "bearer"
        token = "t"
        hosts = ["a.test"]
    "#);
    let auth = &session(&c, "x").auth;
    assert_eq!(auth.len(), 2);
    assert!(auth.iter().all(|a| a.value.is_sensitive()));
}

#[test]
fn credential_secrets_never_show_in_debug() {
    let c = ok(r#"
        [sessions.x]
        secret = "hunter2"
        [[sessions.x.auth]]
        scheme = "bearer"
        token = "swordfish"
        hosts = ["api.test"]
    "#);
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains("swordfish"), "{debug}");
}

#[test]
fn env_secret_is_read_from_the_environment() {
    let text = r#"
        [[sessions.x.auth]]
        scheme = "bearer"
        token_env = "MY_TOKEN"
        hosts = ["api.test"]
    "#;
    let c = load_with_env(text, &[("MY_TOKEN", "from-env")]).unwrap();
    assert_eq!(one_credential(&c).value, "Bearer from-env");
}

#[test]
fn missing_env_variable_names_the_key_and_the_variable() {
    let text = r#"
        [[sessions.x.auth]]
        scheme = "header"
        header = "X-Key"
        value_env = "NOT_SET_HERE"
        hosts = ["api.test"]
    "#;
    let (key, reason) = refusal(load_with_env(text, &[("OTHER", "x")]));
    assert_eq!(key, "sessions.x.auth[0].value_env");
    assert!(reason.contains("NOT_SET_HERE"), "{reason}");
}

#[test]
fn from_toml_reads_the_process_environment() {
    // A name nobody sets: from_toml must consult the real environment and say so.
    let text = r#"
        [[sessions.x.auth]]
        scheme = "bearer"
        token_env = "SESSIOND_UNIT_TEST_SURELY_UNSET_7f3a9c"
        hosts = ["api.test"]
    "#;
    let (key, reason) = refusal(Config::from_toml(text));
    assert_eq!(key, "sessions.x.auth[0].token_env");
    assert!(
        reason.contains("SESSIOND_UNIT_TEST_SURELY_UNSET_7f3a9c"),
        "{reason}"
    );
}

#[test]
fn file_secret_is_read_and_trimmed() {
    let file = TempFile::new("  file-token\n\n");
    let text = format!(
        "[[sessions.x.auth]]\nscheme = \"bearer\"\ntoken_file = '{}'\nhosts = [\"api.test\"]",
        file.path()
    );
    let c = ok(&text);
    assert_eq!(one_credential(&c).value, "Bearer file-token");
}

#[test]
fn unreadable_secret_file_names_the_key_and_the_path() {
    let path = std::env::temp_dir().join("sessiond-config-test-does-not-exist.secret");
    let text = format!(
        "[[sessions.x.auth]]\nscheme = \"basic\"\nusername = \"u\"\npassword_file = '{}'\nhosts = [\"api.test\"]",
        path.display()
    );
    let (key, reason) = refusal(load(&text));
    assert_eq!(key, "sessions.x.auth[0].password_file");
    assert!(reason.contains(&path.display().to_string()), "{reason}");
}

#[test]
fn empty_secret_is_refused() {
    let file = TempFile::new(" \n");
    let text = format!(
        "[[sessions.x.auth]]\nscheme = \"bearer\"\ntoken_file = '{}'\nhosts = [\"api.test\"]",
        file.path()
    );
    assert_eq!(err_key(&text), "sessions.x.auth[0].token_file");
    let literal = "[[sessions.x.auth]]\nscheme = \"bearer\"\ntoken = \"\"\nhosts = [\"a.test\"]";
    assert_eq!(err_key(literal), "sessions.x.auth[0].token");
}

#[test]
fn missing_secret_names_the_credential() {
    let text = "[[sessions.x.auth]]\nscheme = \"bearer\"\nhosts = [\"api.test\"]";
    let (key, reason) = refusal(load(text));
    assert_eq!(key, "sessions.x.auth[0]");
    assert!(reason.contains("token_env"), "{reason}");
}

#[test]
fn two_secret_sources_are_refused() {
    let text = r#"
        [[sessions.x.auth]]
        scheme = "bearer"
        token = "hunter2"
        token_env = "TOKEN"
        hosts = ["api.test"]
    "#;
    let (key, reason) = refusal(load_with_env(text, &[("TOKEN", "x")]));
    assert_eq!(key, "sessions.x.auth[0].token_env");
    assert!(reason.contains("only one"), "{reason}");
}

#[test]
fn secret_key_of_another_scheme_is_refused() {
    let text = r#"
        [[sessions.x.auth]]
        scheme = "bearer"
        password = "hunter2"
        hosts = ["api.test"]
    "#;
    let (key, reason) = refusal(load(text));
    assert_eq!(key, "sessions.x.auth[0].password");
    assert!(reason.contains("token"), "{reason}");
}

#[test]
fn credential_without_hosts_is_refused() {
    let text = "[[sessions.x.auth]]\nscheme = \"bearer\"\ntoken = \"t\"\nhosts = []";
    assert_eq!(err_key(text), "sessions.x.auth[0].hosts");
    let absent = "[[sessions.x.auth]]\nscheme = \"bearer\"\ntoken = \"t\"";
    assert_eq!(err_key(absent), "sessions.x.auth[0].hosts");
}

#[test]
fn bad_host_pattern_names_its_index() {
    let text = "[[sessions.x.auth]]\nscheme = \"bearer\"\ntoken = \"t\"\nhosts = [\"a.test\", \"https://b.test\"]";
    assert_eq!(err_key(text), "sessions.x.auth[0].hosts[1]");
}

#[test]
fn unknown_scheme_is_refused() {
    let text = "[[sessions.x.auth]]\nscheme = \"digest\"\ntoken = \"t\"\nhosts = [\"a.test\"]";
    let (key, reason) = refusal(load(text));
    assert_eq!(key, "sessions.x.auth[0].scheme");
    assert!(reason.contains("digest"), "{reason}");
}

#[test]
fn basic_needs_a_username_without_colon() {
    let no_user = "[[sessions.x.auth]]\nscheme = \"basic\"\npassword = \"p\"\nhosts = [\"a.test\"]";
    assert_eq!(err_key(no_user), "sessions.x.auth[0].username");
    let colon = "[[sessions.x.auth]]\nscheme = \"basic\"\nusername = \"a:b\"\npassword = \"p\"\nhosts = [\"a.test\"]";
    assert_eq!(err_key(colon), "sessions.x.auth[0].username");
}

#[test]
fn scheme_specific_keys_are_refused_elsewhere() {
    let user = "[[sessions.x.auth]]\nscheme = \"bearer\"\nusername = \"u\"\ntoken = \"t\"\nhosts = [\"a.test\"]";
    assert_eq!(err_key(user), "sessions.x.auth[0].username");
    let header = "[[sessions.x.auth]]\nscheme = \"bearer\"\nheader = \"X-K\"\ntoken = \"t\"\nhosts = [\"a.test\"]";
    assert_eq!(err_key(header), "sessions.x.auth[0].header");
}

#[test]
fn header_scheme_needs_a_valid_header_name() {
    let missing = "[[sessions.x.auth]]\nscheme = \"header\"\nvalue = \"v\"\nhosts = [\"a.test\"]";
    assert_eq!(err_key(missing), "sessions.x.auth[0].header");
    let bad = "[[sessions.x.auth]]\nscheme = \"header\"\nheader = \"X Key\"\nvalue = \"v\"\nhosts = [\"a.test\"]";
    assert_eq!(err_key(bad), "sessions.x.auth[0].header");
}

#[test]
fn credential_index_counts_from_zero() {
    let text = r#"
        [[sessions.x.auth]]
        scheme = "bearer"
        token = "t"
        hosts = ["a.test"]
        [[sessions.x.auth]]
        scheme = "bearer"
        hosts = ["a.test"]
    "#;
    assert_eq!(err_key(text), "sessions.x.auth[1]");
}

#[test]
fn no_credential_error_quotes_the_secret() {
    let file = TempFile::new("hunter2\u{7}");
    let cases = [
        // Two sources.
        "scheme = \"bearer\"\ntoken = \"hunter2\"\ntoken_file = \"/nonexistent\"".to_string(),
        // Wrong scheme's key.
        "scheme = \"header\"\nheader = \"X-K\"\ntoken = \"hunter2\"".to_string(),
        // Characters not allowed in a header, literal and from a file.
        "scheme = \"bearer\"\ntoken = \"hunter2\\nInjected: yes\"".to_string(),
        format!("scheme = \"bearer\"\ntoken_file = '{}'", file.path()),
        // Missing username.
        "scheme = \"basic\"\npassword = \"hunter2\"".to_string(),
        // Bad scheme.
        "scheme = \"digest\"\npassword = \"hunter2\"".to_string(),
    ];
    for body in cases {
        let text = format!("[[sessions.x.auth]]\nhosts = [\"a.test\"]\n{body}");
        let e = load(&text).expect_err(&body);
        let message = e.to_string();
        assert!(message.starts_with("sessions.x.auth[0]"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}

// ---- headers ----

#[test]
fn session_headers_are_parsed() {
    let c = ok(r#"
        [sessions.x]
        headers = { "User-Agent" = "sessiond-test", "Accept" = "text/plain" }
        override_headers = { "X-Env" = "ci" }
        remove_headers = ["X-Debug"]
    "#);
    let s = session(&c, "x");
    assert_eq!(s.headers.len(), 2);
    assert!(
        s.headers
            .iter()
            .any(|(n, v)| n == "user-agent" && v == "sessiond-test")
    );
    assert_eq!(s.override_headers.len(), 1);
    assert_eq!(s.override_headers[0].0, "x-env");
    assert_eq!(s.remove_headers, vec![HeaderName::from_static("x-debug")]);
}

#[test]
fn invalid_header_names_are_refused() {
    assert_eq!(
        err_key("[sessions.x]\nheaders = { \"Bad Name\" = \"v\" }"),
        "sessions.x.headers.\"Bad Name\""
    );
    assert_eq!(
        err_key("[template]\noverride_headers = { \"a:b\" = \"v\" }"),
        "template.override_headers.\"a:b\""
    );
    assert_eq!(
        err_key("[sessions.x]\nremove_headers = [\"X-Ok\", \"not ok\"]"),
        "sessions.x.remove_headers[1]"
    );
}

#[test]
fn invalid_header_value_is_refused() {
    assert_eq!(
        err_key("[sessions.x]\nheaders = { \"X-A\" = \"line\\nbreak\" }"),
        "sessions.x.headers.\"X-A\""
    );
}

#[test]
fn hop_by_hop_headers_are_refused() {
    for name in [
        "Connection",
        "Transfer-Encoding",
        "Proxy-Authorization",
        "Upgrade",
    ] {
        let text = format!("[sessions.x]\nheaders = {{ \"{name}\" = \"v\" }}");
        let (key, reason) = refusal(load(&text));
        assert_eq!(key, format!("sessions.x.headers.\"{name}\""));
        assert!(reason.contains("hop-by-hop"), "{reason}");
    }
}

// ---- sessions and clients ----

#[test]
fn sessions_are_in_name_order_with_secrets() {
    let c = ok("[sessions.b]\nsecret = \"s3cret\"\n[sessions.a]\n");
    let names: Vec<_> = c.sessions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(c.sessions[0].secret.is_none());
    assert!(c.sessions[1].secret.as_ref().unwrap().matches("s3cret"));
}

#[test]
fn bad_session_names_are_refused() {
    assert_eq!(err_key("[sessions.\"a b\"]"), "sessions.a b");
    let long = "n".repeat(65);
    assert_eq!(
        err_key(&format!("[sessions.{long}]")),
        format!("sessions.{long}")
    );
}

#[test]
fn empty_session_secret_is_refused() {
    assert_eq!(err_key("[sessions.x]\nsecret = \"\""), "sessions.x.secret");
}

#[test]
fn secret_debug_is_redacted() {
    assert_eq!(
        format!("{:?}", Secret::new("hunter2")),
        "Secret(<redacted>)"
    );
}

#[test]
fn secret_matches_only_the_exact_value() {
    let s = Secret::new("s3cret");
    assert!(s.matches("s3cret"));
    assert!(!s.matches("s3cre"));
    assert!(!s.matches("s3cret!"));
    assert!(!s.matches("S3cret"));
    assert!(!s.matches(""));
    assert!(Secret::new("").matches(""));
}

#[test]
fn clients_accept_an_address_or_a_cidr_block() {
    let c = ok(r#"
        [[clients]]
        addr = "10.0.0.0/24"
        session = "ci"
        [[clients]]
        addr = "192.168.1.5"
        session = "laptop"
        [[clients]]
        addr = "fd00::/8"
        session = "v6"
    "#);
    let hit = |ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        c.clients
            .iter()
            .find(|r| r.net.contains(&ip))
            .map(|r| r.session.as_str())
    };
    assert_eq!(hit("10.0.0.7"), Some("ci"));
    assert_eq!(hit("10.0.1.7"), None);
    assert_eq!(hit("192.168.1.5"), Some("laptop"));
    assert_eq!(hit("192.168.1.6"), None);
    assert_eq!(hit("fd12::1"), Some("v6"));
}

#[test]
fn bad_client_entries_are_refused() {
    for bad in ["10.0.0.0/33", "not-an-ip", "10.0.0.1:80", ""] {
        let text = format!("[[clients]]\naddr = \"{bad}\"\nsession = \"ci\"");
        assert_eq!(err_key(&text), "clients[0].addr", "{bad}");
    }
    let text = "[[clients]]\naddr = \"10.0.0.1\"\nsession = \"c i\"";
    assert_eq!(err_key(text), "clients[0].session");
}

#[test]
fn template_cannot_have_a_secret_or_a_listener() {
    assert_eq!(err_key("[template]\nsecret = \"x\""), "template.secret");
    assert_eq!(
        err_key("[template]\nlisten = \"127.0.0.1:9000\""),
        "template.listen"
    );
    assert_eq!(
        err_key("[template]\nlisten = [\"127.0.0.1:9000\"]"),
        "template.listen"
    );
}

#[test]
fn host_lists_are_parsed() {
    let c = ok(r#"
        [sessions.x]
        allow_hosts = ["api.github.com", "*.githubusercontent.com"]
        deny_hosts = ["evil.test"]
    "#);
    let s = session(&c, "x");
    let allow = s.allow_hosts.as_ref().unwrap();
    assert!(allow.matches("raw.githubusercontent.com"));
    assert!(!allow.matches("github.com"));
    assert!(s.deny_hosts.matches("evil.test"));
    assert!(c.template.allow_hosts.is_none());
    assert_eq!(
        err_key("[sessions.x]\ndeny_hosts = [\"a:80\"]"),
        "sessions.x.deny_hosts[0]"
    );
}

// ---- listeners ----

#[test]
fn listen_takes_a_string_or_a_list() {
    let one = ok("[proxy]\nlisten = \"127.0.0.1:9000\"");
    assert_eq!(one.proxy.listen, vec![addr("127.0.0.1:9000")]);
    let two = ok("[proxy]\nlisten = [\"127.0.0.1:9000\", \"[::1]:9000\"]");
    assert_eq!(
        two.proxy.listen,
        vec![addr("127.0.0.1:9000"), addr("[::1]:9000")]
    );
}

#[test]
fn bad_or_empty_listen_is_refused() {
    assert_eq!(
        err_key("[proxy]\nlisten = [\"127.0.0.1:9000\", \"localhost:9000\"]"),
        "proxy.listen[1]"
    );
    assert_eq!(err_key("[proxy]\nlisten = []"), "proxy.listen");
    assert_eq!(err_key("[admin]\nlisten = \"8081\""), "admin.listen");
    assert_eq!(
        err_key("[sessions.x]\nlisten = \"nowhere\""),
        "sessions.x.listen[0]"
    );
}

#[test]
fn non_loopback_proxy_listen_is_refused_when_open() {
    for listen in ["0.0.0.0:8080", "192.168.1.10:8080", "[::]:8080"] {
        let (key, reason) = refusal(load(&format!("[proxy]\nlisten = \"{listen}\"")));
        assert_eq!(key, "proxy.listen", "{listen}");
        assert!(reason.contains("require_auth"), "{reason}");
    }
}

#[test]
fn non_loopback_listen_is_allowed_with_require_auth() {
    let c = ok("[proxy]\nlisten = \"0.0.0.0:8080\"\nrequire_auth = true");
    assert_eq!(c.proxy.listen, vec![addr("0.0.0.0:8080")]);
}

#[test]
fn non_loopback_listen_is_allowed_with_clients() {
    let c = ok(r#"
        [proxy]
        listen = "0.0.0.0:8080"
        [[clients]]
        addr = "10.0.0.0/8"
        session = "ci"
    "#);
    assert_eq!(c.proxy.listen, vec![addr("0.0.0.0:8080")]);
}

#[test]
fn non_loopback_session_listen_is_refused_when_open() {
    assert_eq!(
        err_key("[sessions.x]\nlisten = \"0.0.0.0:9000\""),
        "sessions.x.listen"
    );
    let c = ok("[proxy]\nrequire_auth = true\n[sessions.x]\nlisten = \"0.0.0.0:9000\"");
    assert_eq!(c.sessions[0].listen, vec![addr("0.0.0.0:9000")]);
}

#[test]
fn duplicate_listen_addresses_are_refused() {
    let (key, reason) = refusal(load(
        "[proxy]\nlisten = \"127.0.0.1:9000\"\n[sessions.x]\nlisten = \"127.0.0.1:9000\"",
    ));
    assert_eq!(key, "sessions.x.listen");
    assert!(reason.contains("proxy.listen"), "{reason}");
    assert_eq!(
        err_key("[proxy]\nlisten = [\"127.0.0.1:9000\", \"127.0.0.1:9000\"]"),
        "proxy.listen"
    );
    assert_eq!(
        err_key(
            "[sessions.a]\nlisten = \"127.0.0.1:9000\"\n[sessions.b]\nlisten = \"127.0.0.1:9000\""
        ),
        "sessions.b.listen"
    );
}

#[test]
fn admin_cannot_share_a_proxy_address() {
    assert_eq!(
        err_key("[admin]\nlisten = \"127.0.0.1:8080\""),
        "admin.listen"
    );
}

#[test]
fn port_zero_may_repeat() {
    let c = ok(r#"
        [proxy]
        listen = ["127.0.0.1:0", "127.0.0.1:0"]
        [admin]
        listen = "127.0.0.1:0"
    "#);
    assert_eq!(c.proxy.listen.len(), 2);
}

// ---- upstream.resolve ----

#[test]
fn resolve_pins_host_and_port() {
    let c = ok(r#"
        [upstream]
        resolve = { "HttpBin.test:80" = "127.0.0.1:8000", "[::1]:443" = "[::1]:8443" }
    "#);
    let r = &c.upstream.resolve;
    assert_eq!(r.len(), 2);
    assert_eq!(r[&("httpbin.test".to_string(), 80)], addr("127.0.0.1:8000"));
    assert_eq!(r[&("::1".to_string(), 443)], addr("[::1]:8443"));
}

#[test]
fn bad_resolve_key_or_value_names_the_key() {
    assert_eq!(
        err_key("[upstream]\nresolve = { \"httpbin.test\" = \"127.0.0.1:8000\" }"),
        "upstream.resolve.\"httpbin.test\""
    );
    assert_eq!(
        err_key("[upstream]\nresolve = { \"a.test:99999\" = \"127.0.0.1:8000\" }"),
        "upstream.resolve.\"a.test:99999\""
    );
    let (key, reason) = refusal(load(
        "[upstream]\nresolve = { \"a.test:80\" = \"localhost:8000\" }",
    ));
    assert_eq!(key, "upstream.resolve.\"a.test:80\"");
    assert!(reason.contains("localhost:8000"), "{reason}");
}

#[test]
fn split_host_port_handles_names_ips_and_bad_input() {
    assert_eq!(
        split_host_port("Example.COM:443"),
        Some(("example.com".into(), 443))
    );
    assert_eq!(
        split_host_port("10.0.0.1:80"),
        Some(("10.0.0.1".into(), 80))
    );
    assert_eq!(split_host_port("[::1]:8080"), Some(("::1".into(), 8080)));
    for bad in [
        "example.com",
        ":80",
        "[]:80",
        "a.test:",
        "a.test:http",
        "a.test:65536",
    ] {
        assert_eq!(split_host_port(bad), None, "{bad}");
    }
}

// ---- files ----

#[test]
fn from_file_reads_a_file() {
    let file = TempFile::new("[proxy]\nlisten = \"127.0.0.1:9000\"\n");
    let c = Config::from_file(file.0.as_path()).unwrap();
    assert_eq!(c.proxy.listen, vec![addr("127.0.0.1:9000")]);
}

#[test]
fn missing_file_is_a_read_error_naming_the_path() {
    let path = std::env::temp_dir().join("sessiond-config-test-no-such-file.toml");
    let e = Config::from_file(&path).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

#[test]
fn a_wildcard_listener_overlaps_every_address_on_its_port() {
    let (key, reason) = refusal(load(
        "[proxy]\nrequire_auth = true\nlisten = [\"127.0.0.1:9000\", \"0.0.0.0:9000\"]",
    ));
    assert_eq!(key, "proxy.listen");
    assert!(reason.contains("overlaps"), "{reason}");
    assert_eq!(
        err_key(
            "[proxy]\nrequire_auth = true\nlisten = \"0.0.0.0:9000\"\n[admin]\nlisten = \"127.0.0.1:9000\""
        ),
        "admin.listen"
    );
    ok("[proxy]\nrequire_auth = true\nlisten = [\"127.0.0.1:9000\", \"0.0.0.0:9001\"]");
}

#[test]
fn admin_may_listen_beyond_loopback() {
    // The admin API refuses non-loopback clients itself; the open-proxy rule is for proxies.
    ok("[admin]\nlisten = \"0.0.0.0:9002\"");
}

#[test]
fn absurdly_long_durations_are_refused() {
    // `now + duration` must not overflow anywhere in the daemon.
    for key in ["read_timeout", "timeout", "connect_timeout", "dns_ttl"] {
        let (k, reason) = refusal(load(&format!("[upstream]\n{key} = \"100years\"")));
        assert_eq!(k, format!("upstream.{key}"));
        assert!(reason.contains("at most"), "{reason}");
    }
    assert_eq!(
        err_key("[proxy]\nshutdown_grace = \"30days\""),
        "proxy.shutdown_grace"
    );
    assert_eq!(
        err_key("[sessions.a]\nread_timeout = \"1000years\""),
        "sessions.a.read_timeout"
    );
    ok("[upstream]\ntimeout = \"7days\"");
}

#[test]
fn tls_defaults_intercept_everything_with_the_ca_in_the_state_dir() {
    let c = ok("[proxy]\nstate_dir = \"/var/lib/sd\"");
    assert!(c.tls.intercepts("api.example.com"));
    assert_eq!(c.tls.ca_cert, PathBuf::from("/var/lib/sd/ca.pem"));
    assert_eq!(c.tls.ca_key, PathBuf::from("/var/lib/sd/ca.key"));
    assert!(!c.tls.ca_configured);
}

#[test]
fn tls_passthrough_wins_over_intercept() {
    let c = ok("[tls]\nintercept = [\"*.example.com\"]\npassthrough = [\"pinned.example.com\"]");
    assert!(c.tls.intercepts("api.example.com"));
    assert!(!c.tls.intercepts("pinned.example.com"));
    assert!(!c.tls.intercepts("other.test"));
}

#[test]
fn tls_ca_files_come_in_pairs() {
    assert_eq!(err_key("[tls]\nca_cert = \"/x/ca.pem\""), "tls.ca_key");
    assert_eq!(err_key("[tls]\nca_key = \"/x/ca.key\""), "tls.ca_cert");
    let c = ok("[tls]\nca_cert = \"/x/ca.pem\"\nca_key = \"/x/ca.key\"");
    assert!(c.tls.ca_configured);
    assert_eq!(
        err_key("[tls]\nintercept = [\"http://x\"]"),
        "tls.intercept[0]"
    );
}

#[test]
fn hooks_are_validated_and_global_ones_follow_the_sessions() {
    assert_eq!(
        err_key("[[hooks]]\non = \"later\"\nexec = [\"x\"]"),
        "hooks[0].on"
    );
    assert_eq!(
        err_key("[[hooks]]\non = \"response\"\nexec = [\"x\"]\nwebhook = \"http://127.0.0.1:1/\""),
        "hooks[0]"
    );
    assert_eq!(
        err_key("[[sessions.a.hooks]]\non = \"request\"\nexec = [\"x\"]\nretry = true"),
        "sessions.a.hooks[0].retry"
    );
    assert_eq!(
        err_key("[[hooks]]\non = \"response\"\nwebhook = \"https://example.test/\""),
        "hooks[0].webhook"
    );
    let c = ok(
        "[[hooks]]\non = \"cookie\"\nexec = [\"global\"]\n[[sessions.a.hooks]]\non = \"response\"\nwhen = { status = [401] }\nexec = [\"own\"]\nretry = true",
    );
    let hooks = &session(&c, "a").hooks;
    assert_eq!(hooks.len(), 2);
    assert!(hooks[0].retry && hooks[0].matches(HookEvent::Response, 401, "any.test"));
    assert!(!hooks[0].matches(HookEvent::Response, 200, "any.test"));
    assert_eq!(hooks[1].on, HookEvent::Cookie);
    assert_eq!(
        c.template.hooks.len(),
        1,
        "the template gets the global hooks"
    );
}

#[test]
fn the_state_dir_comes_from_systemd_when_the_file_names_none() {
    let under_systemd = |vars: &[(&str, &str)], text: &str| {
        load_with_env(text, vars)
            .map(|c| c.proxy.state_dir)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(under_systemd(&[], ""), PathBuf::from("state"));
    assert_eq!(
        under_systemd(&[("STATE_DIRECTORY", "/var/lib/sessiond")], ""),
        PathBuf::from("/var/lib/sessiond")
    );
    assert_eq!(
        under_systemd(
            &[("STATE_DIRECTORY", "/var/lib/sessiond:/var/lib/other")],
            ""
        ),
        PathBuf::from("/var/lib/sessiond"),
        "several directories: the first"
    );
    assert_eq!(
        under_systemd(
            &[("STATE_DIRECTORY", "/var/lib/sessiond")],
            "[proxy]\nstate_dir = \"/srv/s\"\n"
        ),
        PathBuf::from("/srv/s"),
        "the file wins"
    );
}
