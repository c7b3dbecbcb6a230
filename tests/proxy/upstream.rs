//! Upstream connections: pooling, parent proxies, pins, timeouts and the errors users see
//! (SPEC §5).

use std::time::Duration;

use crate::support::*;

/// 100 requests, each on a fresh client connection, reuse a handful of upstream ones.
#[tokio::test]
async fn fresh_client_connections_share_pooled_upstream_connections() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    for _ in 0..100 {
        let r = send(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
        assert_eq!(r.status, 200);
    }
    let used = origin.connections();
    assert!(used <= 4, "100 requests opened {used} upstream connections");
}

/// Sessions with different parent proxies never share a connection: requests through the
/// parent carry its mark, direct ones never do, however they interleave.
#[tokio::test]
async fn upstream_proxy_chains_and_keeps_identities_apart() {
    let origin = Origin::start().await;
    let parent = start(
        r#"
[sessions.viaparent]
secret = "parentpw"
headers = { "X-Through" = "parent" }
"#,
    )
    .await;
    let child = start(&format!(
        r#"
[sessions.chained]
upstream_proxy = "http://viaparent:parentpw@{}"
"#,
        parent.proxy_addr()
    ))
    .await;
    for _ in 0..5 {
        let chained = send(
            child.proxy_addr(),
            get(&origin.url("/echo")).header("x-session", "chained"),
        )
        .await;
        assert_eq!(chained.status, 200, "{}", chained.text());
        assert_eq!(chained.seen("x-through"), ["parent"]);
        assert_eq!(chained.seen("via"), ["1.1 sessiond", "1.1 sessiond"]);
        assert!(chained.seen("proxy-authorization").is_empty());

        let direct = send(child.proxy_addr(), get(&origin.url("/echo"))).await;
        assert!(
            direct.seen("x-through").is_empty(),
            "a direct request went through the parent"
        );
        assert_eq!(direct.seen("via"), ["1.1 sessiond"]);
    }
}

#[tokio::test]
async fn wrong_parent_credentials_surface_as_the_parents_407() {
    let origin = Origin::start().await;
    let parent = start("[sessions.p]\nsecret = \"right\"\n").await;
    let child = start(&format!(
        "[template]\nupstream_proxy = \"http://p:wrong@{}\"\n",
        parent.proxy_addr()
    ))
    .await;
    let r = send(
        child.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "t"),
    )
    .await;
    assert_eq!(r.status, 407);
}

#[tokio::test]
async fn resolve_pins_a_name_to_an_address() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let proxy = start(&format!(
        "[upstream.resolve]\n\"pinned.test:{port}\" = \"{}\"\n",
        origin.addr
    ))
    .await;
    let r = send(
        proxy.proxy_addr(),
        get(&format!("http://pinned.test:{port}/echo")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen("host"), [format!("pinned.test:{port}")]);
}

#[tokio::test]
async fn slow_response_is_504_within_the_sessions_timeout() {
    let origin = Origin::start().await;
    let proxy = start("[sessions.impatient]\ntimeout = \"200ms\"\n").await;
    let slow = send(
        proxy.proxy_addr(),
        get(&origin.url("/delay/3000")).header("x-session", "impatient"),
    )
    .await;
    assert_eq!(slow.status, 504);
    assert!(
        slow.text().contains("no response within 200ms"),
        "{}",
        slow.text()
    );
    assert_eq!(
        slow.headers["proxy-status"],
        "sessiond; error=http_response_timeout"
    );

    // Other sessions keep the global timeout.
    let patient = send(proxy.proxy_addr(), get(&origin.url("/delay/300"))).await;
    assert_eq!(patient.status, 200);
}

#[tokio::test]
async fn silence_inside_a_body_ends_it_after_read_timeout() {
    let origin = Origin::start().await;
    let proxy = start("[sessions.default]\nread_timeout = \"200ms\"\n").await;
    let mut conn = Conn::open(proxy.proxy_addr()).await;
    let resp = conn
        .response(
            get(&origin.url("/stall")),
            Full::new(bytes::Bytes::new()).boxed(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body
        .frame()
        .await
        .expect("a first frame")
        .expect("first chunk arrives");
    assert_eq!(first.into_data().unwrap(), "first");
    // The origin stalls for a minute; the proxy cuts the body long before.
    let next = tokio::time::timeout(Duration::from_secs(20), body.frame())
        .await
        .expect("the proxy ended the stalled body");
    assert!(
        !matches!(next, Some(Ok(_))),
        "expected the body to fail, got {next:?}"
    );
}

#[tokio::test]
async fn connect_timeout_is_504() {
    // A listener with a backlog of one that never accepts: once its queue is full the
    // kernel drops further SYNs, so a connect hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(1).unwrap();
    let addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let proxy = start("[upstream]\nconnect_timeout = \"300ms\"\n").await;
    let r = send(proxy.proxy_addr(), get(&format!("http://{addr}/"))).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("timed out after 300ms"), "{}", r.text());
}

#[tokio::test]
async fn refused_port_is_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let proxy = start("").await;
    let r = send(proxy.proxy_addr(), get(&format!("http://{addr}/"))).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.text(),
        format!("sessiond: connection to {addr} refused\n")
    );
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        r.headers["proxy-status"],
        "sessiond; error=connection_refused"
    );
}

#[tokio::test]
async fn request_to_the_proxy_itself_is_a_loop() {
    let proxy = start("[sessions.svc]\nlisten = \"127.0.0.1:0\"\n").await;
    let own = [
        proxy.proxy_addr(),
        proxy.admin_addr(),
        proxy.session_addrs("svc")[0],
    ];
    for addr in own {
        let r = send(proxy.proxy_addr(), get(&format!("http://{addr}/x"))).await;
        assert_eq!(r.status, 508, "{addr}: {}", r.text());
        assert!(r.text().contains("loop"));
    }
}

#[tokio::test]
async fn denied_and_unlisted_hosts_are_403() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let a = origin.addr;
    let proxy = start(&format!(
        r#"
[upstream.resolve]
"ok.test:{port}" = "{a}"
"bad.ok.test:{port}" = "{a}"
"elsewhere.test:{port}" = "{a}"
[sessions.default]
allow_hosts = ["ok.test", "*.ok.test"]
deny_hosts = ["bad.ok.test"]
"#
    ))
    .await;
    let at = |h: &str| format!("http://{h}:{port}/echo");
    assert_eq!(
        send(proxy.proxy_addr(), get(&at("ok.test"))).await.status,
        200
    );
    for refused in ["bad.ok.test", "elsewhere.test"] {
        let r = send(proxy.proxy_addr(), get(&at(refused))).await;
        assert_eq!(r.status, 403, "{refused}");
        assert!(r.text().contains(refused));
    }
    assert_eq!(
        origin.connections(),
        1,
        "a refused request reached the origin"
    );
}

#[tokio::test]
async fn non_forward_proxy_requests_are_clear_errors() {
    let proxy = start("").await;
    let origin_form = send(proxy.proxy_addr(), Request::builder().uri("/just/a/path")).await;
    assert_eq!(origin_form.status, 400);
    assert!(
        origin_form.text().contains("absolute-form"),
        "{}",
        origin_form.text()
    );

    // CONNECT needs host:port.
    let (status, _) = connect_tunnel(proxy.proxy_addr(), "example.test", &[]).await;
    assert_eq!(status, 400);
}

/// User info in the target is refused, and the password never appears in the answer.
#[tokio::test]
async fn user_info_in_the_target_is_refused_without_echoing_it() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let url = format!("http://user:hunter2@{}/echo", origin.addr);
    let r = send(proxy.proxy_addr(), get(&url)).await;
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("hunter2"), "{}", r.text());
    assert_eq!(origin.connections(), 0);
}

/// A body whose chunks arrive `gap` apart, then (optionally) a long stall.
fn trickle(chunks: usize, gap: Duration, stall_after: bool) -> BoxBody {
    let stream = futures_util::stream::unfold(0usize, move |i| async move {
        if i == chunks {
            if stall_after {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            return None;
        }
        tokio::time::sleep(gap).await;
        let frame = hyper::body::Frame::data(bytes::Bytes::from_static(b"0123456789"));
        Some((Ok(frame), i + 1))
    });
    StreamBody::new(stream).boxed()
}

/// The response timeout starts once the upload is done: an upload longer than it
/// succeeds.
#[tokio::test]
async fn a_slow_upload_is_not_cut_by_the_response_timeout() {
    let origin = Origin::start().await;
    let proxy = start("[sessions.default]\ntimeout = \"300ms\"\n").await;
    let r = send_body(
        proxy.proxy_addr(),
        get(&origin.url("/upload")).method("POST"),
        trickle(6, Duration::from_millis(150), false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["received"], 60);
}

/// A client that goes silent inside its upload for longer than `read_timeout` gets 408.
#[tokio::test]
async fn a_stalled_upload_is_408_after_read_timeout() {
    let origin = Origin::start().await;
    let proxy = start("[sessions.default]\nread_timeout = \"200ms\"\n").await;
    let r = send_body(
        proxy.proxy_addr(),
        get(&origin.url("/upload")).method("POST"),
        trickle(1, Duration::ZERO, true),
    )
    .await;
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.text().contains("sent nothing"), "{}", r.text());
}

/// Other spellings of the daemon's own address are loops too, so the admin API can never
/// be reached through the proxy.
#[tokio::test]
async fn other_spellings_of_the_proxy_itself_are_loops() {
    let proxy = start("").await;
    let port = proxy.admin_addr().port();
    for host in ["[::ffff:127.0.0.1]", "0.0.0.0", "[::ffff:7f00:1]"] {
        let r = send(
            proxy.proxy_addr(),
            get(&format!("http://{host}:{port}/healthz")),
        )
        .await;
        assert_eq!(r.status, 508, "{host}: {}", r.text());
    }
}
