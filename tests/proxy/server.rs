//! The server side: connection limit, request-head timeout, header size, graceful
//! shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test]
async fn connections_over_the_limit_wait_for_a_free_slot() {
    let origin = Origin::start().await;
    let proxy = start("[proxy]\nmax_connections = 2\n").await;
    // Two idle proxy connections use up the limit.
    let mut first = Conn::open(proxy.proxy_addr()).await;
    assert_eq!(first.send(get(&origin.url("/echo"))).await.status, 200);
    let mut second = Conn::open(proxy.proxy_addr()).await;
    assert_eq!(second.send(get(&origin.url("/echo"))).await.status, 200);

    let third = tokio::spawn({
        let url = origin.url("/echo");
        let addr = proxy.proxy_addr();
        async move { send(addr, get(&url)).await.status }
    });
    // Not served while both slots are taken...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served over the limit"
    );
    // ...and served as soon as one frees up.
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let proxy = start("[proxy]\nrequest_head_timeout = \"200ms\"\n").await;
    let mut stream = TcpStream::connect(proxy.proxy_addr()).await.unwrap();
    stream
        .write_all(b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let read = read.expect("the proxy closed the connection");
    assert!(read.is_ok());
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn oversized_request_head_is_refused() {
    let proxy = start("[proxy]\nmax_header_bytes = 8192\n").await;
    let mut stream = TcpStream::connect(proxy.proxy_addr()).await.unwrap();
    let big = "a".repeat(20_000);
    let head = format!("GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
}

#[tokio::test]
async fn malformed_request_is_400() {
    let proxy = start("").await;
    let mut stream = TcpStream::connect(proxy.proxy_addr()).await.unwrap();
    stream.write_all(b"THIS IS NOT HTTP\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 400"));
}

/// Shutdown lets the in-flight exchange finish, then stops accepting.
#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_exchanges() {
    let origin = Origin::start().await;
    let proxy = start("[proxy]\nshutdown_grace = \"10s\"\n").await;
    let addr = proxy.proxy_addr();
    let mut conn = Conn::open(addr).await;
    let in_flight = tokio::spawn({
        let url = origin.url("/delay/500");
        async move { conn.send(get(&url)).await }
    });
    // Wait until the origin has the request, so it is really in flight.
    while origin.connections() == 0 {
        tokio::task::yield_now().await;
    }
    let cut = proxy.shutdown().await;
    assert_eq!(cut, 0);
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "late");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// A client that connects and never sends a byte does not keep its slot.
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_head_timeout() {
    let proxy = start("[proxy]\nrequest_head_timeout = \"200ms\"\n").await;
    let mut stream = TcpStream::connect(proxy.proxy_addr()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the silent connection is still open");
    assert!(buf.is_empty());
}

/// HTTP/2 with prior knowledge (h2c) is served too, through the same pipeline.
#[tokio::test]
async fn h2c_clients_are_served() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let stream = TcpStream::connect(proxy.proxy_addr()).await.unwrap();
    let mut sender = h2(stream).await;
    let req = get(&origin.url("/cookies/set/h2/yes"))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 302);
    let again = send(proxy.proxy_addr(), get(&origin.url("/cookies"))).await;
    assert_eq!(again.cookies()["h2"], "yes");
}

/// An HTTP/2 client that opens a connection and then says nothing is closed after the
/// head timeout; one with a request in progress is not.
#[tokio::test]
async fn idle_h2_connections_are_closed_but_busy_ones_are_not() {
    let origin = Origin::start().await;
    let proxy = start("[proxy]\nrequest_head_timeout = \"300ms\"\n").await;
    // The connection future itself is needed here, to see the server close it.
    let open_h2 = || async {
        let stream = TcpStream::connect(proxy.proxy_addr()).await.unwrap();
        hyper::client::conn::http2::handshake::<_, _, Full<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap()
    };

    let (_idle_sender, idle_conn) = open_h2().await;
    tokio::time::timeout(Duration::from_secs(10), idle_conn)
        .await
        .expect("the server closed the idle HTTP/2 connection")
        .ok();

    let stream = TcpStream::connect(proxy.proxy_addr()).await.unwrap();
    let mut sender = h2(stream).await;
    let req = get(&origin.url("/delay/900"))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender
        .send_request(req)
        .await
        .expect("a slow exchange is not cut");
    assert_eq!(resp.status(), 200);
}

/// HTTP/2 clients may split cookies over several headers; an HTTP/1.1 origin gets one.
#[tokio::test]
async fn h2_cookie_headers_are_joined_for_http1_origins() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let stream = TcpStream::connect(proxy.proxy_addr()).await.unwrap();
    let mut sender = h2(stream).await;
    let req = get(&origin.url("/echo"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let cookies: Vec<_> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == "cookie")
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies, ["a=1; b=2"]);
}

/// An upgraded (WebSocket) connection keeps its place under the connection limit.
#[tokio::test]
async fn upgraded_connections_count_against_the_limit() {
    let origin = Origin::start().await;
    let proxy = start("[proxy]\nmax_connections = 1\n").await;
    let ws = TcpStream::connect(proxy.proxy_addr()).await.unwrap();
    let mut ws = ws;
    websocket_roundtrip(&mut ws, &origin.url("/ws"), &origin.addr.to_string(), &[]).await;

    let second = tokio::spawn({
        let url = origin.url("/echo");
        let addr = proxy.proxy_addr();
        async move { send(addr, get(&url)).await.status }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "served while the upgraded connection held the only slot"
    );
    drop(ws);
    let status = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("served once the upgraded connection closed")
        .unwrap();
    assert_eq!(status, 200);
}
