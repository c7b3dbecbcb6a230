//! Hooks: a refresh hook turns a stale session's 401 into a 200 (issue 5).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;

/// A webhook that logs the session in through the admin API (a cookie `auth=ok`), after
/// `delay`, answering `status`. Counts its calls.
struct LoginHook {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
}

impl LoginHook {
    /// `admin` is filled in once the daemon (which needs this hook's address) is up.
    async fn start(
        admin: Arc<std::sync::OnceLock<SocketAddr>>,
        origin: SocketAddr,
        delay: Duration,
        status: u16,
    ) -> LoginHook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&calls);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let count = Arc::clone(&count);
                let admin = Arc::clone(&admin);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let count = Arc::clone(&count);
                        let admin = *admin.get().expect("the daemon is up");
                        async move {
                            count.fetch_add(1, Ordering::SeqCst);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let exchange: serde_json::Value =
                                serde_json::from_slice(&body).unwrap();
                            let session = exchange["session"].as_str().unwrap().to_string();
                            tokio::time::sleep(delay).await;
                            let line = format!("{}\tFALSE\t/\tFALSE\t0\tauth\tok\n", origin.ip());
                            let login = send_body(
                                admin,
                                Request::builder()
                                    .method("POST")
                                    .uri(format!("/sessions/{session}/cookies"))
                                    .header("host", "admin"),
                                Full::new(bytes::Bytes::from(line)).boxed(),
                            )
                            .await;
                            assert_eq!(login.status, 200, "{}", login.text());
                            let mut resp =
                                Response::new(Full::new(bytes::Bytes::from_static(b"done")));
                            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LoginHook { addr, calls }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A daemon whose `default` session has a retry hook on 401s, calling a login webhook.
async fn with_hook(
    origin: &Origin,
    delay: Duration,
    status: u16,
    timeout: &str,
) -> (sessiond::Daemon, LoginHook) {
    let admin = Arc::new(std::sync::OnceLock::new());
    let hook = LoginHook::start(Arc::clone(&admin), origin.addr, delay, status).await;
    let proxy = start(&format!(
        r#"
[[sessions.default.hooks]]
on = "response"
when = {{ status = [401] }}
webhook = "http://{}/relogin"
timeout = "{timeout}"
retry = true
"#,
        hook.addr
    ))
    .await;
    admin.set(proxy.admin_addr()).unwrap();
    (proxy, hook)
}

#[tokio::test]
async fn a_refresh_hook_turns_a_401_into_a_200() {
    let origin = Origin::start().await;
    let (proxy, hook) = with_hook(&origin, Duration::ZERO, 200, "5s").await;
    let r = send(proxy.proxy_addr(), get(&origin.url("/protected"))).await;
    assert_eq!(r.status, 200, "{} (hook calls: {})", r.text(), hook.calls());
    assert_eq!(r.text(), "welcome");
    assert_eq!(hook.calls(), 1);
    // The session stays logged in: no second refresh.
    assert_eq!(
        send(proxy.proxy_addr(), get(&origin.url("/protected")))
            .await
            .status,
        200
    );
    assert_eq!(hook.calls(), 1);
}

/// Many requests hitting the stale session at once wait for one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stale_requests_share_one_refresh() {
    let origin = Origin::start().await;
    let (proxy, hook) = with_hook(&origin, Duration::from_millis(200), 200, "5s").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (addr, url) = (proxy.proxy_addr(), origin.url("/protected"));
        tasks.spawn(async move { send(addr, get(&url)).await.status });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(hook.calls(), 1, "the hook ran more than once");
}

/// A hook that fails, or takes longer than its timeout, leaves the original response.
#[tokio::test]
async fn a_failing_or_slow_hook_leaves_the_original_response() {
    let origin = Origin::start().await;
    let (failing, _hook) = with_hook(&origin, Duration::ZERO, 500, "5s").await;
    let r = send(failing.proxy_addr(), get(&origin.url("/protected"))).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), "log in first");

    let (slow, _hook) = with_hook(&origin, Duration::from_secs(5), 200, "200ms").await;
    let r = send(slow.proxy_addr(), get(&origin.url("/protected"))).await;
    assert_eq!(r.status, 401);
}

/// An `exec` hook gets the exchange as JSON on stdin and `{session}` in its arguments.
#[tokio::test]
async fn an_exec_hook_logs_in_with_curl() {
    let origin = Origin::start().await;
    let dir = temp_path("exec-hook");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("cookie.txt"),
        format!("{}\tFALSE\t/\tFALSE\t0\tauth\tok\n", origin.addr.ip()),
    )
    .unwrap();
    let script = format!(
        "cat > {d}/exchange.json && curl -sf -X POST --data-binary @{d}/cookie.txt \"http://$(cat {d}/admin)/sessions/{{session}}/cookies\"",
        d = dir.display()
    );
    let proxy = start(&format!(
        r#"
[[sessions.default.hooks]]
on = "response"
when = {{ status = [401] }}
exec = ["sh", "-c", {script:?}]
retry = true
"#
    ))
    .await;
    std::fs::write(dir.join("admin"), proxy.admin_addr().to_string()).unwrap();
    let r = send(proxy.proxy_addr(), get(&origin.url("/protected?token=t"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let exchange: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("exchange.json")).unwrap()).unwrap();
    assert_eq!(exchange["session"], "default");
    assert_eq!(exchange["status"], 401);
    assert_eq!(exchange["url"], origin.url("/protected?token=…"));
}

/// A small request body is kept and sent again with the replay.
#[tokio::test]
async fn a_small_body_is_replayed_too() {
    let origin = Origin::start().await;
    let (proxy, hook) = with_hook(&origin, Duration::ZERO, 200, "5s").await;
    let r = send_body(
        proxy.proxy_addr(),
        get(&origin.url("/protected")).method("POST"),
        Full::new(bytes::Bytes::from_static(b"0123456789")).boxed(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "welcome 10");
    assert_eq!(hook.calls(), 1);
}
