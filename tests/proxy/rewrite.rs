//! What the proxy does to requests and responses on the way through (SPEC §3).

use crate::support::*;

#[tokio::test]
async fn request_goes_out_in_origin_form_with_host_rebuilt_and_via() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let r = send(
        proxy.proxy_addr(),
        get(&origin.url("/echo?x=1")).header("host", "wrong.example"),
    )
    .await;
    assert_eq!(r.json()["uri"], "/echo?x=1");
    assert_eq!(r.seen("host"), [origin.addr.to_string()]);
    assert_eq!(r.seen("via"), ["1.1 sessiond"]);
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_removed() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let r = send(
        proxy.proxy_addr(),
        get(&origin.url("/echo"))
            .header("connection", "keep-alive, X-Private")
            .header("x-private", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("te", "trailers")
            .header("upgrade", "websocket")
            .header("x-end-to-end", "kept"),
    )
    .await;
    for gone in [
        "x-private",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "x-session",
    ] {
        assert!(r.seen(gone).is_empty(), "{gone} was forwarded");
    }
    assert_eq!(r.seen("x-end-to-end"), ["kept"]);
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let r = send(proxy.proxy_addr(), get(&origin.url("/hop"))).await;
    for gone in ["x-hop-secret", "keep-alive", "proxy-authenticate"] {
        assert!(!r.headers.contains_key(gone), "{gone} reached the client");
    }
    assert_eq!(r.headers["x-end-to-end"], "kept");
    assert_eq!(r.headers["via"], "1.1 sessiond");
}

#[tokio::test]
async fn session_header_rules() {
    let origin = Origin::start().await;
    let proxy = start(
        r#"
[sessions.default]
headers = { "User-Agent" = "SessionAgent", "X-Default" = "d" }
override_headers = { "X-Forced" = "f" }
remove_headers = ["X-Debug"]
"#,
    )
    .await;
    let r = send(
        proxy.proxy_addr(),
        get(&origin.url("/echo"))
            .header("user-agent", "curl/8")
            .header("x-forced", "mine")
            .header("x-debug", "1"),
    )
    .await;
    assert_eq!(
        r.seen("user-agent"),
        ["curl/8"],
        "the client's header wins over `headers`"
    );
    assert_eq!(r.seen("x-default"), ["d"]);
    assert_eq!(
        r.seen("x-forced"),
        ["f"],
        "`override_headers` replaces the client's"
    );
    assert!(r.seen("x-debug").is_empty());

    let bare = send(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(bare.seen("user-agent"), ["SessionAgent"]);
}

/// A proxy with credentials scoped to `api.test` and `*.files.test`, all names pinned to
/// the origin.
async fn with_credentials(origin: &Origin, secret_file: &std::path::Path) -> sessiond::Daemon {
    let port = origin.addr.port();
    let a = origin.addr;
    let toml = format!(
        r#"
[upstream.resolve]
"api.test:{port}" = "{a}"
"other.test:{port}" = "{a}"
"cdn.files.test:{port}" = "{a}"
"files.test:{port}" = "{a}"

[[sessions.default.auth]]
scheme = "bearer"
token = "tok-123"
hosts = ["api.test"]

[[sessions.default.auth]]
scheme = "header"
header = "X-Api-Key"
value_file = "{file}"
hosts = ["*.files.test"]

[sessions.basic]
[[sessions.basic.auth]]
scheme = "basic"
username = "u"
password = "p"
hosts = ["api.test"]

[sessions.forced]
[[sessions.forced.auth]]
scheme = "bearer"
token = "forced-tok"
hosts = ["api.test"]
override = true
"#,
        file = secret_file.display()
    );
    start(&toml).await
}

fn secret_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("sessiond-test-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn credentials_go_only_to_their_hosts() {
    let origin = Origin::start().await;
    let file = secret_file("key", "  key-from-file\n");
    let proxy = with_credentials(&origin, &file).await;
    let port = origin.addr.port();
    let at = |host: &str| format!("http://{host}:{port}/echo");

    let api = send(proxy.proxy_addr(), get(&at("api.test"))).await;
    assert_eq!(api.seen("authorization"), ["Bearer tok-123"]);
    assert!(api.seen("x-api-key").is_empty());

    let cdn = send(proxy.proxy_addr(), get(&at("cdn.files.test"))).await;
    assert_eq!(cdn.seen("x-api-key"), ["key-from-file"]);
    assert!(cdn.seen("authorization").is_empty());

    for unscoped in ["other.test", "files.test"] {
        let r = send(proxy.proxy_addr(), get(&at(unscoped))).await;
        assert!(
            r.seen("authorization").is_empty(),
            "credential leaked to {unscoped}"
        );
        assert!(
            r.seen("x-api-key").is_empty(),
            "credential leaked to {unscoped}"
        );
    }
    let by_ip = send(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert!(by_ip.seen("authorization").is_empty());
}

#[tokio::test]
async fn the_clients_authorization_wins_unless_override() {
    let origin = Origin::start().await;
    let file = secret_file("key2", "k");
    let proxy = with_credentials(&origin, &file).await;
    let url = format!("http://api.test:{}/echo", origin.addr.port());

    let own = send(
        proxy.proxy_addr(),
        get(&url).header("authorization", "Bearer mine"),
    )
    .await;
    assert_eq!(own.seen("authorization"), ["Bearer mine"]);

    let forced = send(
        proxy.proxy_addr(),
        get(&url)
            .header("x-session", "forced")
            .header("authorization", "Bearer mine"),
    )
    .await;
    assert_eq!(forced.seen("authorization"), ["Bearer forced-tok"]);

    let basic = send(proxy.proxy_addr(), get(&url).header("x-session", "basic")).await;
    assert_eq!(basic.seen("authorization"), ["Basic dTpw"]);
}
