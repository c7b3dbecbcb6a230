//! The admin API (SPEC §7): sessions and their cookies, read and edited from outside.

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
