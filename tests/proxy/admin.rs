//! The admin API (SPEC §7): sessions and their cookies, read and edited from outside.

use serde_json::{Value, json};

use crate::support::*;

/// A request to the admin API (origin form), with an optional bearer token.
fn call(method: &str, path: &str, token: Option<&str>) -> http::request::Builder {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b
}

async fn admin(proxy: &sessiond::Daemon, req: http::request::Builder) -> Reply {
    send(proxy.admin_addr(), req).await
}

async fn admin_body(proxy: &sessiond::Daemon, req: http::request::Builder, body: &str) -> Reply {
    send_body(
        proxy.admin_addr(),
        req,
        Full::new(bytes::Bytes::from(body.to_string())).boxed(),
    )
    .await
}

#[tokio::test]
async fn the_token_is_enforced_on_every_call() {
    let proxy = start("[admin]\ntoken = \"t0k3n\"\n").await;
    let none = admin(&proxy, call("GET", "/healthz", None)).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.headers["www-authenticate"],
        "Bearer realm=\"sessiond\""
    );
    assert!(none.json()["error"].as_str().unwrap().contains("Bearer"));
    let wrong = admin(&proxy, call("GET", "/sessions", Some("nope"))).await;
    assert_eq!(wrong.status, 401);
    let right = admin(&proxy, call("GET", "/sessions", Some("t0k3n"))).await;
    assert_eq!(right.status, 200);
}

#[tokio::test]
async fn sessions_are_listed_shown_and_deleted() {
    let origin = Origin::start().await;
    let proxy = start(
        "[sessions.conf]\nsecret = \"s\"\nheaders = { \"X-A\" = \"1\" }\n[[sessions.conf.auth]]\nscheme = \"bearer\"\ntoken = \"never-shown\"\nhosts = [\"api.test\"]\n",
    )
    .await;
    send(
        proxy.proxy_addr(),
        get(&origin.url("/cookies/set/k/v")).header("x-session", "dyn"),
    )
    .await;

    let list = admin(&proxy, call("GET", "/sessions", None)).await.json();
    let names: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["conf", "default", "dyn"]);

    let shown = admin(&proxy, call("GET", "/sessions/conf", None)).await;
    assert_eq!(shown.status, 200);
    let shown_text = shown.text();
    assert!(
        !shown_text.contains("never-shown"),
        "a credential leaked: {shown_text}"
    );
    let shown = shown.json();
    assert_eq!(shown["has_secret"], true);
    assert_eq!(shown["headers"]["x-a"], "1");
    assert_eq!(shown["credentials"][0]["header"], "authorization");
    assert_eq!(
        admin(&proxy, call("GET", "/sessions/nobody", None))
            .await
            .status,
        404
    );
    assert_eq!(
        admin(&proxy, call("GET", "/sessions/bad%20name", None))
            .await
            .status,
        400
    );

    assert_eq!(
        admin(&proxy, call("DELETE", "/sessions/dyn", None))
            .await
            .status,
        204
    );
    assert_eq!(
        admin(&proxy, call("GET", "/sessions/dyn", None))
            .await
            .status,
        404
    );
    let again = send(
        proxy.proxy_addr(),
        get(&origin.url("/cookies")).header("x-session", "dyn"),
    )
    .await;
    assert!(
        again.cookies().is_empty(),
        "a deleted session kept its cookies"
    );
}

#[tokio::test]
async fn cookies_export_import_and_clear() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    send(proxy.proxy_addr(), get(&origin.url("/cookies/set/seen/1"))).await;

    let json = admin(&proxy, call("GET", "/sessions/default/cookies", None))
        .await
        .json();
    assert_eq!(json[0]["name"], "seen");
    assert_eq!(json[0]["value"], "1");
    let txt = admin(
        &proxy,
        call("GET", "/sessions/default/cookies?format=netscape", None),
    )
    .await
    .text();
    assert!(txt.starts_with("# Netscape HTTP Cookie File"), "{txt}");
    assert!(txt.contains("\tseen\t1"), "{txt}");

    // Merge a cookies.txt line in, then replace everything with JSON.
    let line = "127.0.0.1\tFALSE\t/\tFALSE\t0\tmerged\tyes\n";
    let merged = admin_body(
        &proxy,
        call("POST", "/sessions/default/cookies", None),
        line,
    )
    .await;
    assert_eq!(merged.status, 200, "{}", merged.text());
    let cookies = send(proxy.proxy_addr(), get(&origin.url("/cookies")))
        .await
        .cookies();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert_eq!(cookies["merged"], "yes");

    let replacement = r#"[{"domain":"127.0.0.1","host_only":true,"path":"/","name":"only","value":"this","secure":false,"http_only":false,"same_site":null,"expires":null}]"#;
    let replaced = admin_body(
        &proxy,
        call("PUT", "/sessions/default/cookies", None).header("content-type", "application/json"),
        replacement,
    )
    .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    let cookies = send(proxy.proxy_addr(), get(&origin.url("/cookies")))
        .await
        .cookies();
    assert_eq!(cookies.keys().collect::<Vec<_>>(), ["only"]);

    // A malformed file is refused whole, naming the line, and changes nothing.
    let bad = "127.0.0.1\tFALSE\t/\tFALSE\t0\tgood\t1\nbroken line\n";
    let refused = admin_body(&proxy, call("POST", "/sessions/default/cookies", None), bad).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["error"].as_str().unwrap().contains("line 2"),
        "{}",
        refused.text()
    );
    let cookies = send(proxy.proxy_addr(), get(&origin.url("/cookies")))
        .await
        .cookies();
    assert_eq!(cookies.keys().collect::<Vec<_>>(), ["only"]);

    let cleared = admin(
        &proxy,
        call("DELETE", "/sessions/default/cookies?name=only", None),
    )
    .await;
    assert_eq!(cleared.json()["removed"], 1);
    let cookies = send(proxy.proxy_addr(), get(&origin.url("/cookies")))
        .await
        .cookies();
    assert!(cookies.is_empty());
}

#[tokio::test]
async fn the_ca_certificate_is_served() {
    let proxy = start("").await;
    let pem = admin(&proxy, call("GET", "/ca.pem", None)).await;
    assert_eq!(pem.status, 200);
    assert_eq!(pem.text(), proxy.ca().cert_pem());
}

/// Runs curl (installed by .ci/run) with the given arguments and returns its stdout.
async fn curl(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .arg("-s")
            .args(&args)
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// An export is a cookie file curl sends; a jar curl wrote is an import the proxy sends.
#[tokio::test]
async fn cookie_files_round_trip_with_curl() {
    let origin = Origin::start().await;
    let proxy = start("").await;

    send(
        proxy.proxy_addr(),
        get(&origin.url("/cookies/set/from_proxy/1")),
    )
    .await;
    let exported = admin(
        &proxy,
        call("GET", "/sessions/default/cookies?format=netscape", None),
    )
    .await
    .text();
    let file = temp_path("exported.txt");
    std::fs::write(&file, exported).unwrap();
    let seen = curl(vec![
        "-b".into(),
        file.display().to_string(),
        origin.url("/cookies"),
    ])
    .await;
    assert!(seen.contains("\"from_proxy\":\"1\""), "{seen}");

    let jar = temp_path("curl-jar.txt");
    curl(vec![
        "-c".into(),
        jar.display().to_string(),
        origin.url("/cookies/set/from_curl/2"),
    ])
    .await;
    let text = std::fs::read_to_string(&jar).unwrap();
    let imported = admin_body(&proxy, call("POST", "/sessions/fresh/cookies", None), &text).await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    let cookies = send(
        proxy.proxy_addr(),
        get(&origin.url("/cookies")).header("x-session", "fresh"),
    )
    .await
    .cookies();
    assert_eq!(cookies["from_curl"], "2");
}

/// `PATCH /sessions/NAME` with a JSON body.
async fn patch(proxy: &sessiond::Daemon, name: &str, body: &str) -> Reply {
    admin_body(
        proxy,
        call("PATCH", &format!("/sessions/{name}"), None)
            .header("content-type", "application/json"),
        body,
    )
    .await
}

/// Each given list replaces the session's, at once for the next request and after a
/// restart; the configured lists not given stay.
#[tokio::test]
async fn patched_headers_apply_at_once_and_after_a_restart() {
    let origin = Origin::start().await;
    let state = temp_path("patch-restart");
    let toml = "[template]\nheaders = { \"X-Conf\" = \"c\" }\n";
    let echo = || {
        get(&origin.url("/echo"))
            .header("x-forced", "client")
            .header("x-drop", "client")
    };
    let first = start_in(toml, &state).await;
    let before = send(first.proxy_addr(), echo()).await;
    assert_eq!(before.seen("x-forced"), ["client"]);
    assert_eq!(before.seen("x-drop"), ["client"]);

    let patched = patch(
        &first,
        "default",
        r#"{"override_headers":{"X-Forced":"ours"},"remove_headers":["X-Drop"]}"#,
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let shown = patched.json();
    assert_eq!(shown["override_headers"]["x-forced"], "ours");
    assert_eq!(shown["remove_headers"], json!(["x-drop"]));
    assert_eq!(shown["headers"]["x-conf"], "c", "a list not given stays");

    let after = send(first.proxy_addr(), echo()).await;
    assert_eq!(after.seen("x-forced"), ["ours"]);
    assert!(after.seen("x-drop").is_empty());
    assert_eq!(after.seen("x-conf"), ["c"]);

    // A second patch replaces only what it gives: an empty object clears `headers`.
    let cleared = patch(&first, "default", r#"{"headers":{"X-New":"n"}}"#).await;
    assert_eq!(cleared.status, 200, "{}", cleared.text());
    let after = send(first.proxy_addr(), echo()).await;
    assert!(after.seen("x-conf").is_empty());
    assert_eq!(after.seen("x-new"), ["n"]);
    assert_eq!(after.seen("x-forced"), ["ours"]);
    first.shutdown().await;

    let second = start_in(toml, &state).await;
    let restarted = send(second.proxy_addr(), echo()).await;
    assert_eq!(restarted.seen("x-forced"), ["ours"]);
    assert!(restarted.seen("x-drop").is_empty());
    assert!(restarted.seen("x-conf").is_empty());
    assert_eq!(restarted.seen("x-new"), ["n"]);
    let shown = admin(&second, call("GET", "/sessions/default", None))
        .await
        .json();
    assert_eq!(shown["headers"], json!({ "x-new": "n" }));
    assert_eq!(shown["override_headers"], json!({ "x-forced": "ours" }));
}

/// A patch to a session that does not exist makes it from the template; it lasts, and
/// a credential it sets is sent but never shown.
#[tokio::test]
async fn a_patch_creates_a_dynamic_session() {
    let origin = Origin::start().await;
    let state = temp_path("patch-create");
    let first = start_in("", &state).await;
    let made = patch(
        &first,
        "fresh",
        r#"{"headers":{"X-Fresh":"1"},"override_headers":{"Authorization":"Bearer sekrit"}}"#,
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());
    assert!(!made.text().contains("sekrit"), "{}", made.text());
    let made = made.json();
    assert_eq!(made["name"], "fresh");
    assert_eq!(made["configured"], false);
    assert_eq!(made["override_headers"]["authorization"], "<redacted>");

    let list = admin(&first, call("GET", "/sessions", None)).await.json();
    assert!(
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "fresh"),
        "{list}"
    );
    let echo = send(
        first.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "fresh"),
    )
    .await;
    assert_eq!(echo.seen("x-fresh"), ["1"]);
    assert_eq!(echo.seen("authorization"), ["Bearer sekrit"]);
    first.shutdown().await;

    // Known to the store, so it is loaded with its settings after a restart.
    let second = start_in("[proxy]\ndynamic_sessions = false\n", &state).await;
    let echo = send(
        second.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "fresh"),
    )
    .await;
    assert_eq!(echo.status, 200, "{}", echo.text());
    assert_eq!(echo.seen("x-fresh"), ["1"]);

    // Deleting it forgets its settings too.
    let deleted = admin(&second, call("DELETE", "/sessions/fresh", None)).await;
    assert_eq!(deleted.status, 204);
    let remade = patch(&second, "fresh", "{}").await.json();
    assert_eq!(remade["headers"], json!({}));
}

/// A bad body is refused whole, naming the field and the header, and changes nothing.
#[tokio::test]
async fn bad_patches_change_nothing() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let ok = patch(&proxy, "default", r#"{"headers":{"X-A":"1"}}"#).await;
    assert_eq!(ok.status, 200, "{}", ok.text());

    let refusals = [
        (r#"{"headers":{"X-B":"2"},"cookies":{}}"#, "cookies"),
        (r#"{"headers":{"Bad Name":"2"}}"#, r#"headers."Bad Name""#),
        (
            r#"{"override_headers":{"Connection":"close"}}"#,
            r#"override_headers."Connection""#,
        ),
        (
            r#"{"remove_headers":["x-ok","connection"]}"#,
            "remove_headers[1]",
        ),
        (
            r#"{"headers":{"X-B":"bad\u0001value"}}"#,
            r#"headers."X-B""#,
        ),
        (r#"{"headers":["X-B"]}"#, "headers"),
        ("[]", "object"),
        ("", "JSON"),
    ];
    for (body, named) in refusals {
        let refused = patch(&proxy, "default", body).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text());
        let error = refused.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(named), "{body}: {error}");
    }
    let hop = patch(&proxy, "default", r#"{"headers":{"connection":"close"}}"#).await;
    assert!(hop.text().contains("hop-by-hop"), "{}", hop.text());

    // Nothing changed, and a refused patch made no session.
    let shown = admin(&proxy, call("GET", "/sessions/default", None))
        .await
        .json();
    assert_eq!(shown["headers"], json!({ "x-a": "1" }));
    assert_eq!(shown["remove_headers"], json!([]));
    let echo = send(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(echo.seen("x-a"), ["1"]);
    assert!(echo.seen("x-b").is_empty());
    assert_eq!(patch(&proxy, "ghost", r#"{"nope":1}"#).await.status, 400);
    assert_eq!(
        admin(&proxy, call("GET", "/sessions/ghost", None))
            .await
            .status,
        404
    );
}

/// `GET /sessions/NAME` counts the session's requests (not admin calls), when it was last
/// used, and its cookies.
#[tokio::test]
async fn the_counters_move_with_traffic() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let show = || async {
        admin(&proxy, call("GET", "/sessions/default", None))
            .await
            .json()
    };
    let idle = show().await;
    assert_eq!(idle["requests"], 0);
    assert_eq!(idle["last_used"], Value::Null);
    assert_eq!(idle["cookies"], 0);
    assert_eq!(show().await["requests"], 0, "admin calls are not requests");

    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    send(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    send(proxy.proxy_addr(), get(&origin.url("/cookies/set/k/v"))).await;
    let busy = show().await;
    assert_eq!(busy["requests"], 2);
    assert_eq!(busy["cookies"], 1);
    let last = busy["last_used"].as_u64().unwrap();
    assert!(last >= start && last <= start + 60, "{last} vs {start}");
}
