//! Watching traffic: live events and HAR (issue 5).

use std::time::Duration;

use crate::support::*;

fn admin_get(path: &str, token: Option<&str>) -> http::request::Builder {
    let mut b = Request::builder().uri(path).header("host", "admin");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b
}

/// Reads server-sent events until one satisfies `want`, with a deadline.
async fn next_event(
    body: &mut Incoming,
    buf: &mut String,
    want: impl Fn(&str, &str) -> bool,
) -> (String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = "message".to_string();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if want(&event, &data) {
                return (event, data);
            }
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

#[tokio::test]
async fn a_subscriber_receives_the_exchange_it_caused() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let mut conn = Conn::open(proxy.admin_addr()).await;
    let resp = conn
        .response(
            admin_get("/events?session=watched", None),
            Full::new(bytes::Bytes::new()).boxed(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut buf = String::new();
    // The stream is open once its first comment arrives.
    next_event(&mut body, &mut buf, |_, _| true).await;

    send(proxy.proxy_addr(), get(&origin.url("/echo?ignored=1"))).await;
    send(
        proxy.proxy_addr(),
        get(&origin.url("/cookies/set/w/1?token=hunter2")).header("x-session", "watched"),
    )
    .await;
    let (_, data) = next_event(&mut body, &mut buf, |e, _| e == "exchange").await;
    let event: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(event["session"], "watched", "{event}");
    assert_eq!(event["method"], "GET");
    assert_eq!(event["status"], 302);
    assert_eq!(event["cookies_set"], 1);
    assert_eq!(event["url"], origin.url("/cookies/set/w/1?token=…"));
    assert!(!data.contains("hunter2"));
}

#[tokio::test]
async fn har_has_the_1_2_structure_and_no_secrets_by_default() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let proxy = start(&format!(
        r#"
[admin]
token = "adm"
[upstream.resolve]
"api.test:{port}" = "{a}"
[[sessions.default.auth]]
scheme = "header"
header = "X-Api-Key"
value = "key-secret-1"
hosts = ["api.test"]
"#,
        a = origin.addr
    ))
    .await;
    let base = format!("http://api.test:{port}");
    send(
        proxy.proxy_addr(),
        get(&format!("{base}/set")).header("x-set-cookie", "sid=cookie-secret-2; Path=/"),
    )
    .await;
    send(
        proxy.proxy_addr(),
        get(&format!("{base}/echo?q=query-secret-3")),
    )
    .await;

    let har = send(
        proxy.admin_addr(),
        admin_get("/sessions/default/har", Some("adm")),
    )
    .await;
    assert_eq!(har.status, 200);
    let text = har.text();
    // (The test origin's own x-set-cookie request header carries the cookie in the clear;
    // only the real Set-Cookie and Cookie headers are the proxy's business.)
    for secret in ["key-secret-1", "query-secret-3"] {
        assert!(!text.contains(secret), "{secret} in the HAR: {text}");
    }
    let har = har.json();
    assert_eq!(har["log"]["version"], "1.2");
    assert_eq!(har["log"]["creator"]["name"], "sessiond");
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert!(e["startedDateTime"].is_string() && e["time"].is_number());
        for part in ["request", "response"] {
            for field in [
                "httpVersion",
                "cookies",
                "headers",
                "headersSize",
                "bodySize",
            ] {
                assert!(!e[part][field].is_null(), "{part}.{field} missing in {e}");
            }
        }
        for field in ["method", "url", "queryString"] {
            assert!(!e["request"][field].is_null(), "request.{field}");
        }
        for field in ["status", "statusText", "content", "redirectURL"] {
            assert!(!e["response"][field].is_null(), "response.{field}");
        }
        assert!(
            e["response"]["content"]["size"].is_number()
                && e["response"]["content"]["mimeType"].is_string()
        );
        for t in ["send", "wait", "receive"] {
            assert!(e["timings"][t].is_number(), "timings.{t}");
        }
        assert!(e["cache"].is_object());
    }
    let header = |e: &serde_json::Value, part: &str, name: &str| {
        e[part]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .map(|h| h["value"].as_str().unwrap().to_string())
    };
    assert_eq!(
        header(&entries[0], "response", "set-cookie").as_deref(),
        Some("<redacted>")
    );
    assert_eq!(
        header(&entries[1], "request", "cookie").as_deref(),
        Some("<redacted>")
    );
    assert_eq!(entries[0]["response"]["status"], 200);
    assert_eq!(entries[0]["_sessiond"]["cookies_set"], 1);

    let revealed = send(
        proxy.admin_addr(),
        admin_get("/sessions/default/har?secrets=true", Some("adm")),
    )
    .await
    .text();
    assert!(revealed.contains("key-secret-1") && revealed.contains("query-secret-3"));
    assert!(
        revealed.contains("sid=cookie-secret-2"),
        "the Cookie header is shown with secrets=true"
    );
}

#[tokio::test]
async fn har_secrets_need_a_token() {
    let proxy = start("").await;
    let r = send(
        proxy.admin_addr(),
        admin_get("/sessions/default/har?secrets=true", None),
    )
    .await;
    assert_eq!(r.status, 403);
}

/// The value of one sample in Prometheus text, or 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_and_move_with_traffic() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let before = send(proxy.admin_addr(), admin_get("/metrics", None))
        .await
        .text();
    for _ in 0..3 {
        send(proxy.proxy_addr(), get(&origin.url("/cookies/set/m/1"))).await;
    }
    send(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "a-private-session-name"),
    )
    .await;
    send_body(
        proxy.proxy_addr(),
        get(&origin.url("/upload")).method("POST"),
        Full::new(bytes::Bytes::from_static(b"0123456789")).boxed(),
    )
    .await;
    let after = send(proxy.admin_addr(), admin_get("/metrics", None))
        .await
        .text();

    // Well-formed exposition: every line a comment or `series value`, ending in # EOF.
    assert!(after.ends_with("# EOF\n"), "{after}");
    for line in after.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        moved("sessiond_requests_total{session=\"configured\",status=\"3xx\"}"),
        3.0
    );
    assert_eq!(
        moved("sessiond_requests_total{session=\"dynamic\",status=\"2xx\"}"),
        1.0
    );
    assert!(moved("sessiond_cookies_total{outcome=\"stored\"}") >= 1.0);
    assert!(moved("sessiond_upstream_wait_seconds_count") >= 4.0);
    assert!(sample(&after, "sessiond_upstream_connections_opened_total") >= 1.0);
    assert_eq!(moved("sessiond_request_bytes_total"), 10.0);
    // The pooled connection is still open (idle in the pool).
    assert!(sample(&after, "sessiond_upstream_connections") >= 1.0);
    assert!(
        !after.contains("a-private-session-name"),
        "a session name became a label"
    );
}
