//! How a request finds its session (SPEC §2), and the gate in front of secret sessions.

use crate::support::*;

/// Each session adds a header naming itself, so the origin's echo tells which one ran.
const NAMED: &str = r#"
[template]
headers = { "X-Which" = "template" }
[sessions.default]
headers = { "X-Which" = "default" }
[sessions.vault]
secret = "s3cret"
headers = { "X-Which" = "vault" }
[sessions.svc]
listen = "127.0.0.1:0"
headers = { "X-Which" = "svc" }
"#;

async fn which(proxy: std::net::SocketAddr, req: http::request::Builder) -> Reply {
    send(proxy, req).await
}

#[tokio::test]
async fn x_session_selects_and_is_not_forwarded() {
    let origin = Origin::start().await;
    let proxy = start(NAMED).await;
    let r = which(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "svc"),
    )
    .await;
    assert_eq!(r.seen("x-which"), ["svc"]);
    assert!(r.seen("x-session").is_empty());
}

#[tokio::test]
async fn proxy_authorization_user_selects_and_is_not_forwarded() {
    let origin = Origin::start().await;
    let proxy = start(NAMED).await;
    let r = which(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("proxy-authorization", proxy_auth("svc", "anything")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen("x-which"), ["svc"]);
    assert!(r.seen("proxy-authorization").is_empty());
}

#[tokio::test]
async fn x_session_comes_before_proxy_authorization() {
    let origin = Origin::start().await;
    let proxy = start(NAMED).await;
    let r = which(
        proxy.proxy_addr(),
        get(&origin.url("/echo"))
            .header("x-session", "svc")
            .header("proxy-authorization", proxy_auth("other", "x")),
    )
    .await;
    assert_eq!(r.seen("x-which"), ["svc"]);
}

#[tokio::test]
async fn a_sessions_own_listener_selects_it() {
    let origin = Origin::start().await;
    let proxy = start(NAMED).await;
    let svc = proxy.session_addrs("svc")[0];
    let r = which(svc, get(&origin.url("/echo"))).await;
    assert_eq!(r.seen("x-which"), ["svc"]);
    // The shared listener is not svc's.
    let r = which(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(r.seen("x-which"), ["default"]);
}

#[tokio::test]
async fn client_address_selects_via_clients_table() {
    let origin = Origin::start().await;
    let proxy = start(&format!(
        "{NAMED}\n[[clients]]\naddr = \"127.0.0.0/8\"\nsession = \"svc\"\n"
    ))
    .await;
    let r = which(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(r.seen("x-which"), ["svc"]);
}

#[tokio::test]
async fn unnamed_requests_use_default_and_new_names_use_the_template() {
    let origin = Origin::start().await;
    let proxy = start(NAMED).await;
    let r = which(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(r.seen("x-which"), ["default"]);
    let r = which(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "fresh"),
    )
    .await;
    assert_eq!(r.seen("x-which"), ["template"]);
    assert!(proxy.registry().get("fresh").is_some());
}

#[tokio::test]
async fn secret_session_needs_its_secret() {
    let origin = Origin::start().await;
    let proxy = start(NAMED).await;
    let url = origin.url("/echo");

    let named_only = which(proxy.proxy_addr(), get(&url).header("x-session", "vault")).await;
    assert_eq!(named_only.status, 407);
    assert_eq!(
        named_only.headers["proxy-authenticate"],
        "Basic realm=\"sessiond\""
    );
    assert!(named_only.text().contains("secret"));

    let wrong = which(
        proxy.proxy_addr(),
        get(&url).header("proxy-authorization", proxy_auth("vault", "guess")),
    )
    .await;
    assert_eq!(wrong.status, 407);
    assert!(!wrong.text().contains("s3cret"));

    let right = which(
        proxy.proxy_addr(),
        get(&url).header("proxy-authorization", proxy_auth("vault", "s3cret")),
    )
    .await;
    assert_eq!(right.status, 200);
    assert_eq!(right.seen("x-which"), ["vault"]);

    let with_header = which(
        proxy.proxy_addr(),
        get(&url)
            .header("x-session", "vault")
            .header("proxy-authorization", proxy_auth("vault", "s3cret")),
    )
    .await;
    assert_eq!(with_header.seen("x-which"), ["vault"]);
}

#[tokio::test]
async fn secret_session_is_open_through_its_listener_and_clients_match() {
    let origin = Origin::start().await;
    let toml = r#"
[sessions.vault]
secret = "s3cret"
listen = "127.0.0.1:0"
headers = { "X-Which" = "vault" }
[[clients]]
addr = "127.0.0.1"
session = "vault"
"#;
    let proxy = start(toml).await;
    let own = which(proxy.session_addrs("vault")[0], get(&origin.url("/echo"))).await;
    assert_eq!(own.seen("x-which"), ["vault"]);
    let by_addr = which(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(by_addr.status, 200);
    assert_eq!(by_addr.seen("x-which"), ["vault"]);
}

#[tokio::test]
async fn require_auth_refuses_everything_without_a_valid_secret() {
    let origin = Origin::start().await;
    let proxy = start(&format!("[proxy]\nrequire_auth = true\n{NAMED}")).await;
    let url = origin.url("/echo");
    let before = proxy.registry().len();

    assert_eq!(which(proxy.proxy_addr(), get(&url)).await.status, 407);
    let unknown = which(
        proxy.proxy_addr(),
        get(&url).header("x-session", "newcomer"),
    )
    .await;
    assert_eq!(unknown.status, 407);
    let no_secret = which(
        proxy.proxy_addr(),
        get(&url).header("proxy-authorization", proxy_auth("svc", "whatever")),
    )
    .await;
    assert_eq!(no_secret.status, 407);
    assert_eq!(
        proxy.registry().len(),
        before,
        "a refused request created a session"
    );

    let ok = which(
        proxy.proxy_addr(),
        get(&url).header("proxy-authorization", proxy_auth("vault", "s3cret")),
    )
    .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn unknown_name_is_407_when_dynamic_sessions_are_off() {
    let origin = Origin::start().await;
    let proxy = start(&format!("[proxy]\ndynamic_sessions = false\n{NAMED}")).await;
    let r = which(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "nobody"),
    )
    .await;
    assert_eq!(r.status, 407);
    assert!(proxy.registry().get("nobody").is_none());
    let known = which(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "svc"),
    )
    .await;
    assert_eq!(known.seen("x-which"), ["svc"]);
}

#[tokio::test]
async fn invalid_session_names_are_400() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    for bad in ["has space", "slash/y", &"x".repeat(65)] {
        let r = which(
            proxy.proxy_addr(),
            get(&origin.url("/echo")).header("x-session", bad),
        )
        .await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.text().contains("invalid session name"), "{}", r.text());
    }
    let r = which(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("proxy-authorization", "Basic !!!notbase64"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Proxy-Authorization"));
}

/// Over `max_sessions`, the least recently used idle session made on demand goes; a busy
/// one stays even if it is older.
#[tokio::test]
async fn max_sessions_evicts_the_least_recently_used_idle_session() {
    let origin = Origin::start().await;
    // `default` counts: room for two more.
    let proxy = start("[proxy]\nmax_sessions = 3\n").await;
    let addr = proxy.proxy_addr();
    let as_session = |name: &str, path: &str| get(&origin.url(path)).header("x-session", name);

    send(addr, as_session("old", "/cookies/set/k/old")).await;
    send(addr, as_session("newer", "/cookies/set/k/newer")).await;
    // "old" is busy: its response body is still streaming.
    let mut busy = Conn::open(addr).await;
    let stalled = busy
        .response(
            as_session("old", "/stall"),
            http_body_util::Empty::new().map_err(|e| match e {}).boxed(),
        )
        .await;
    assert_eq!(stalled.status(), 200);

    send(addr, as_session("third", "/echo")).await;
    let registry = proxy.registry();
    assert!(registry.get("old").is_some(), "a busy session was evicted");
    assert!(registry.get("newer").is_none(), "the idle session was kept");
    assert!(
        registry.get("default").is_some(),
        "a configured session was evicted"
    );
    assert_eq!(registry.len(), 3);

    let old = send(addr, as_session("old", "/cookies")).await;
    assert_eq!(old.cookies()["k"], "old", "the busy session lost its jar");
    drop(stalled);
    drop(busy);
    // "newer" left memory, not the store: it comes back with its cookies.
    let again = send(addr, as_session("newer", "/cookies")).await;
    assert_eq!(again.cookies()["k"], "newer");
}

/// New sessions made at the same moment by many clients still keep `max_sessions`:
/// eviction frees a batch, not the one oldest session each of them would pick, so the
/// count cannot creep up past the cap one race at a time.
#[tokio::test]
async fn sessions_made_concurrently_keep_max_sessions() {
    let proxy = start("[proxy]\nmax_sessions = 50\n").await;
    let registry = proxy.registry();
    std::thread::scope(|scope| {
        for t in 0..8 {
            scope.spawn(move || {
                for i in 0..200 {
                    drop(registry.enter_or_create(&format!("t{t}-{i}")).unwrap());
                }
            });
        }
    });
    drop(registry.enter_or_create("last").unwrap());
    assert!(
        registry.len() <= 50,
        "{} sessions in memory over a cap of 50",
        registry.len()
    );
    assert!(
        registry.get("last").is_some(),
        "the newest session was evicted"
    );
}
