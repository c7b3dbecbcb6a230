//! Reloading the configuration into a running daemon (`SIGHUP`; tests/service.rs drives
//! the signal itself): what changes, what stays, and that a bad configuration changes
//! nothing.

use sessiond::Daemon;

use crate::support::*;

/// Reloads `toml` into `daemon` with the same state directory and CA (the test config
/// gives each parse a new one); returns the keys that need a restart.
fn reload(daemon: &mut Daemon, toml: &str) -> Result<Vec<String>, String> {
    let mut next = config(toml);
    let running = daemon.config();
    next.proxy.state_dir = running.proxy.state_dir.clone();
    next.tls.ca_cert = running.tls.ca_cert.clone();
    next.tls.ca_key = running.tls.ca_key.clone();
    daemon.reload(next).map_err(|e| e.to_string())
}

fn reloaded(daemon: &mut Daemon, toml: &str) {
    let restart = reload(daemon, toml).expect("the reload applies");
    assert_eq!(
        restart,
        Vec::<String>::new(),
        "nothing should need a restart"
    );
}

const BEFORE: &str = r#"
[template]
headers = { "X-Which" = "template-1" }
[sessions.vault]
secret = "old"
headers = { "X-Which" = "vault-1" }
[sessions.gone]
headers = { "X-Which" = "gone" }
"#;

const AFTER: &str = r#"
[template]
headers = { "X-Which" = "template-2" }
[sessions.vault]
secret = "new"
headers = { "X-Which" = "vault-2" }
[sessions.fresh]
headers = { "X-Which" = "fresh" }
"#;

#[tokio::test]
async fn secrets_headers_and_sessions_change_on_reload() {
    let origin = Origin::start().await;
    let mut proxy = start(BEFORE).await;
    let addr = proxy.proxy_addr();
    let echo = || get(&origin.url("/echo"));

    let before = send(
        addr,
        echo().header("proxy-authorization", proxy_auth("vault", "old")),
    )
    .await;
    assert_eq!(before.seen("x-which"), ["vault-1"]);
    // A session made on demand before the reload follows the new template after it.
    let dynamic = send(addr, echo().header("x-session", "made-early")).await;
    assert_eq!(dynamic.seen("x-which"), ["template-1"]);

    reloaded(&mut proxy, AFTER);

    let old_secret = send(
        addr,
        echo().header("proxy-authorization", proxy_auth("vault", "old")),
    )
    .await;
    assert_eq!(old_secret.status, 407, "the old secret no longer opens it");
    let new_secret = send(
        addr,
        echo().header("proxy-authorization", proxy_auth("vault", "new")),
    )
    .await;
    assert_eq!(new_secret.status, 200);
    assert_eq!(new_secret.seen("x-which"), ["vault-2"]);
    let fresh = send(addr, echo().header("x-session", "fresh")).await;
    assert_eq!(fresh.seen("x-which"), ["fresh"]);
    let dynamic = send(addr, echo().header("x-session", "made-early")).await;
    assert_eq!(dynamic.seen("x-which"), ["template-2"]);
    let gone = send(addr, echo().header("x-session", "gone")).await;
    assert_eq!(
        gone.seen("x-which"),
        ["template-2"],
        "a session taken out of the file is made from the template, as after a restart"
    );
}

#[tokio::test]
async fn a_reload_keeps_cookies_and_runtime_header_changes() {
    let origin = Origin::start().await;
    let mut proxy = start("[sessions.app]\nheaders = { \"X-Conf\" = \"1\" }\n").await;
    let addr = proxy.proxy_addr();
    let set = send(
        addr,
        get(&origin.url("/cookies/set/sid/abc")).header("x-session", "app"),
    )
    .await;
    assert!(set.status.as_u16() < 400, "{}", set.status);
    let admin = proxy.admin_addr();
    let patched = send_admin_patch(
        admin,
        "app",
        r#"{"override_headers": {"X-Runtime": "yes"}}"#,
    )
    .await;
    assert_eq!(patched, 200);

    reloaded(
        &mut proxy,
        "[sessions.app]\nheaders = { \"X-Conf\" = \"2\" }\n",
    );

    let after = send(addr, get(&origin.url("/echo")).header("x-session", "app")).await;
    assert_eq!(after.seen("x-conf"), ["2"]);
    assert_eq!(
        after.seen("x-runtime"),
        ["yes"],
        "PATCHed headers stay laid over"
    );
    assert!(
        after.seen("cookie").iter().any(|c| c.contains("sid=abc")),
        "the jar survives: {:?}",
        after.seen("cookie")
    );
}

async fn send_admin_patch(admin: std::net::SocketAddr, session: &str, body: &str) -> u16 {
    let req = http::Request::builder()
        .method("PATCH")
        .uri(format!("/sessions/{session}"))
        .header("host", admin.to_string())
        .header("content-type", "application/json");
    let body = http_body_util::Full::new(bytes::Bytes::from(body.to_string()));
    send_body(admin, req, http_body_util::BodyExt::boxed(body))
        .await
        .status
        .as_u16()
}

/// A certificate with the key of another: usable by nobody.
fn mismatched_identity() -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = temp_path("mismatch.pem");
    let key_path = temp_path("mismatch.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, other.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[tokio::test]
async fn an_unusable_configuration_changes_nothing() {
    let origin = Origin::start().await;
    let mut proxy = start("[sessions.app]\nheaders = { \"X-Conf\" = \"1\" }\n").await;
    let (cert, key) = mismatched_identity();
    let broken = format!(
        "[template]\nheaders = {{ \"X-Tmpl\" = \"new\" }}\n\
         [sessions.app]\nheaders = {{ \"X-Conf\" = \"2\" }}\n\
         [sessions.mtls]\nclient_cert = {:?}\nclient_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let err = reload(&mut proxy, &broken).expect_err("a key that does not match is refused");
    assert!(err.contains("mtls") || err.contains("key"), "{err}");

    let after = send(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "app"),
    )
    .await;
    assert_eq!(
        after.seen("x-conf"),
        ["1"],
        "the running configuration stays"
    );
    let dynamic = send(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "made-later"),
    )
    .await;
    assert_eq!(dynamic.status, 200);
    assert!(
        dynamic.seen("x-tmpl").is_empty(),
        "nothing of the refused file applies, not even its template"
    );
}

/// Passthrough is decided per tunnel, from the policy current when it opens.
#[tokio::test]
async fn which_tunnels_are_decrypted_changes_on_reload() {
    let origin = TlsOrigin::start().await;
    let mut proxy = start("[tls]\npassthrough = [\"localhost\"]\n").await;
    let authority = format!("localhost:{}", origin.addr.port());

    let (_, stream) = connect_tunnel(proxy.proxy_addr(), &authority, &[]).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let refused = tls_connector(&[proxy.ca().cert_der().clone()], &[b"http/1.1"])
        .connect(name, stream)
        .await;
    assert!(
        refused.is_err(),
        "a passthrough tunnel shows the origin's certificate, not one of ours"
    );

    reloaded(&mut proxy, "");
    let tls = intercepted(&proxy, &authority, "localhost", &[], &[b"http/1.1"]).await;
    let mut conn = Conn::over(tls).await;
    let r = conn.send(inside("/echo", &authority)).await;
    assert_eq!(
        r.status, 502,
        "decrypted now; the origin's own certificate is untrusted"
    );
}

#[tokio::test]
async fn the_admin_token_changes_on_reload() {
    let mut proxy = start("[admin]\ntoken = \"first\"\n").await;
    let admin = proxy.admin_addr();
    let healthz = |token: &'static str| async move {
        let req = http::Request::builder()
            .uri("/sessions")
            .header("host", admin.to_string())
            .header("authorization", format!("Bearer {token}"));
        Conn::open(admin).await.send(req).await.status
    };
    assert_eq!(healthz("first").await, 200);

    reloaded(&mut proxy, "[admin]\ntoken = \"second\"\n");
    assert_eq!(healthz("first").await, 401);
    assert_eq!(healthz("second").await, 200);
}

#[tokio::test]
async fn new_address_pins_apply_to_the_next_request() {
    let one = Origin::start().await;
    let two = Origin::start().await;
    let pin = |origin: &Origin| {
        format!(
            "[upstream]\nresolve = {{ \"pinned.test:80\" = \"{}\" }}\n",
            origin.addr
        )
    };
    let mut proxy = start(&pin(&one)).await;
    let first = send(proxy.proxy_addr(), get("http://pinned.test/echo")).await;
    assert_eq!(first.status, 200);
    assert_eq!(one.connections(), 1);

    reloaded(&mut proxy, &pin(&two));
    let second = send(proxy.proxy_addr(), get("http://pinned.test/echo")).await;
    assert_eq!(second.status, 200);
    assert_eq!(
        two.connections(),
        1,
        "the pooled connection to the old address is not reused"
    );
    assert_eq!(one.connections(), 1);
}

#[tokio::test]
async fn keys_fixed_at_start_are_reported_and_keep_running() {
    let mut proxy = start("").await;
    let restart = reload(
        &mut proxy,
        "[proxy]\nmax_header_bytes = 16384\nhar_entries = 3\n",
    )
    .expect("the rest of the file applies");
    assert_eq!(restart, ["proxy.max_header_bytes", "proxy.har_entries"]);
    assert_eq!(proxy.config().proxy.max_header_bytes, 64 * 1024);
}

/// The policy is asked per request: a connection opened before the reload gets the new
/// rules on its next request.
#[tokio::test]
async fn require_auth_applies_to_connections_opened_before_the_reload() {
    let origin = Origin::start().await;
    let vault = "[sessions.vault]\nsecret = \"pw\"\n";
    let mut proxy = start(vault).await;
    let mut conn = Conn::open(proxy.proxy_addr()).await;
    assert_eq!(conn.send(get(&origin.url("/echo"))).await.status, 200);

    reloaded(
        &mut proxy,
        &format!("[proxy]\nrequire_auth = true\n{vault}"),
    );
    assert_eq!(conn.send(get(&origin.url("/echo"))).await.status, 407);
    let with_secret = conn
        .send(get(&origin.url("/echo")).header("proxy-authorization", proxy_auth("vault", "pw")))
        .await;
    assert_eq!(with_secret.status, 200);
}

/// Listeners keep running through a reload, so the open-proxy rule is asked of them and
/// the new file together: dropping require_auth from a 0.0.0.0 daemon is refused.
#[tokio::test]
async fn a_reload_cannot_open_a_wildcard_listener() {
    let mut open = config("[proxy]\nrequire_auth = true\n");
    open.proxy.listen = vec![std::net::SocketAddr::from(([0, 0, 0, 0], 0))];
    let mut proxy = Daemon::start(open).await.expect("daemon starts");
    let err = reload(&mut proxy, "").expect_err("an open proxy is refused");
    assert!(err.contains("proxy.listen"), "{err}");
    assert!(proxy.config().proxy.require_auth, "the running rule stays");
}

/// A credential removed by a reload still does not show in the HAR of the exchanges it
/// was sent with.
#[tokio::test]
async fn har_keeps_hiding_a_credential_the_reload_removed() {
    let origin = Origin::start().await;
    let keyed = "[[sessions.app.auth]]\nscheme = \"header\"\nheader = \"X-Api-Key\"\n\
                 value = \"k3y-never-shown\"\nhosts = [\"127.0.0.1\"]\n";
    let mut proxy = start(keyed).await;
    let sent = send(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "app"),
    )
    .await;
    assert_eq!(sent.seen("x-api-key"), ["k3y-never-shown"]);

    reloaded(&mut proxy, "[sessions.app]\n");
    let admin = proxy.admin_addr();
    let req = http::Request::builder()
        .uri("/sessions/app/har")
        .header("host", admin.to_string());
    let har = Conn::open(admin).await.send(req).await;
    assert_eq!(har.status, 200);
    let text = har.text();
    assert!(text.contains("x-api-key"), "the header is listed: {text}");
    assert!(!text.contains("k3y-never-shown"), "{text}");
}
