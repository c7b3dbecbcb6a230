//! The session's cookie jar as a client sees it.

use std::sync::Arc;

use crate::support::*;

/// The seed's flow: a cookie set on one connection is sent on another.
#[tokio::test]
async fn cookie_set_on_one_connection_is_sent_on_the_next() {
    let origin = Origin::start().await;
    let proxy = start("").await;

    let set = send(
        proxy.proxy_addr(),
        get(&origin.url("/cookies/set/session_id/1234")),
    )
    .await;
    assert_eq!(set.status, 302);
    let seen = send(proxy.proxy_addr(), get(&origin.url("/cookies"))).await;
    assert_eq!(
        seen.cookies().get("session_id").map(String::as_str),
        Some("1234")
    );
}

/// Python `requests` without a `requests.Session`: the second call sees the first's cookie.
#[tokio::test]
async fn python_requests_without_a_session_keeps_cookies() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let script = r#"
import sys, requests
proxies = {"http": sys.argv[1]}
requests.get(sys.argv[2] + "/cookies/set/session_id/1234", proxies=proxies)
print(requests.get(sys.argv[2] + "/cookies", proxies=proxies).json()["cookies"].get("session_id"))
"#;
    let proxy_url = format!("http://{}", proxy.proxy_addr());
    let origin_url = origin.url("");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", script, &proxy_url, &origin_url])
            // requests would bypass the proxy for hosts listed in NO_PROXY.
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .expect("python3 runs (requests is installed by .ci/run)")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1234");
}

#[tokio::test]
async fn client_cookie_wins_and_jar_cookies_are_merged() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    send(proxy.proxy_addr(), get(&origin.url("/cookies/set/a/jar"))).await;
    send(proxy.proxy_addr(), get(&origin.url("/cookies/set/b/jar"))).await;

    let seen = send(
        proxy.proxy_addr(),
        get(&origin.url("/cookies")).header("cookie", "a=client; c=client"),
    )
    .await;
    let cookies = seen.cookies();
    assert_eq!(cookies["a"], "client");
    assert_eq!(cookies["b"], "jar");
    assert_eq!(cookies["c"], "client");
    assert_eq!(cookies.len(), 3);
}

#[tokio::test]
async fn cookies_from_error_responses_are_recorded() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let err = send(
        proxy.proxy_addr(),
        get(&origin.url("/status/500")).header("x-set-cookie", "from_error=1; Path=/"),
    )
    .await;
    assert_eq!(err.status, 500);
    let seen = send(proxy.proxy_addr(), get(&origin.url("/cookies"))).await;
    assert_eq!(seen.cookies()["from_error"], "1");
}

#[tokio::test]
async fn secure_cookie_over_plain_http_is_not_stored() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    send(
        proxy.proxy_addr(),
        get(&origin.url("/x"))
            .header("x-set-cookie", "secure_one=1; Secure; Path=/")
            .header("x-set-cookie", "plain_one=1; Path=/"),
    )
    .await;
    let cookies = send(proxy.proxy_addr(), get(&origin.url("/cookies")))
        .await
        .cookies();
    assert!(!cookies.contains_key("secure_one"), "{cookies:?}");
    assert_eq!(cookies["plain_one"], "1");
}

/// Host-only cookies stay with their host; Domain cookies reach sibling hosts.
#[tokio::test]
async fn cookies_follow_domain_rules() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let toml = format!(
        r#"[upstream.resolve]
"x.site.test:{port}" = "{a}"
"y.site.test:{port}" = "{a}"
"#,
        a = origin.addr
    );
    let proxy = start(&toml).await;
    let x = |p: &str| format!("http://x.site.test:{port}{p}");
    let y = |p: &str| format!("http://y.site.test:{port}{p}");
    send(
        proxy.proxy_addr(),
        get(&x("/set"))
            .header("x-set-cookie", "host_only=1; Path=/")
            .header("x-set-cookie", "shared=1; Domain=site.test; Path=/")
            .header("x-set-cookie", "to_tld=1; Domain=test; Path=/"),
    )
    .await;
    let on_x = send(proxy.proxy_addr(), get(&x("/cookies")))
        .await
        .cookies();
    let on_y = send(proxy.proxy_addr(), get(&y("/cookies")))
        .await
        .cookies();
    assert_eq!(on_x.keys().collect::<Vec<_>>(), ["host_only", "shared"]);
    assert_eq!(on_y.keys().collect::<Vec<_>>(), ["shared"]);
}

/// 300 concurrent exchanges over 10 sessions: each only ever sees its own cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sessions_never_see_each_others_cookies() {
    let origin = Arc::new(Origin::start().await);
    let proxy = start("").await;
    let addr = proxy.proxy_addr();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let origin = Arc::clone(&origin);
        tasks.spawn(async move {
            let session = format!("s{}", i % 10);
            send(
                addr,
                get(&origin.url("/x"))
                    .header("x-session", &session)
                    .header("x-set-cookie", format!("who={session}; Path=/")),
            )
            .await;
            let cookies = send(
                addr,
                get(&origin.url("/cookies")).header("x-session", &session),
            )
            .await
            .cookies();
            assert_eq!(cookies.len(), 1, "{session} saw {cookies:?}");
            assert_eq!(cookies["who"], session);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}
