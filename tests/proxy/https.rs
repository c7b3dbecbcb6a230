//! HTTPS: TLS to origins, CONNECT tunnels and interception (SPEC §4).

use crate::support::*;

fn trusting(origin: &TlsOrigin) -> String {
    format!("[upstream]\nca_bundle = \"{}\"\n", origin.ca_file.display())
}

/// An absolute-form `GET https://…` reaches a TLS origin, and Secure cookies set over
/// https are kept and sent back over https.
#[tokio::test]
async fn absolute_form_https_gets_the_session_treatment() {
    let origin = TlsOrigin::start().await;
    let proxy = start(&trusting(&origin)).await;
    let set = send(
        proxy.proxy_addr(),
        get(&origin.url("/x")).header("x-set-cookie", "sid=s3; Secure; Path=/"),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let seen = send(proxy.proxy_addr(), get(&origin.url("/cookies"))).await;
    assert_eq!(seen.cookies()["sid"], "s3");
}

/// The origin offers h2 and gets it.
#[tokio::test]
async fn origins_that_offer_h2_get_h2() {
    let origin = TlsOrigin::start().await;
    let proxy = start(&trusting(&origin)).await;
    let r = send(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(r.json()["version"], "HTTP/2.0");
}

/// An origin whose certificate the proxy does not trust is a 502 naming the reason.
#[tokio::test]
async fn an_untrusted_origin_certificate_is_502() {
    let origin = TlsOrigin::start().await;
    let proxy = start("").await;
    let r = send(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("certificate"), "{}", r.text());
    assert_eq!(
        r.headers["proxy-status"],
        "sessiond; error=tls_certificate_error"
    );
}

/// `verify = false` reaches the same origin anyway.
#[tokio::test]
async fn verify_false_skips_certificate_checks() {
    let origin = TlsOrigin::start().await;
    let proxy = start("[sessions.default]\nverify = false\n").await;
    let r = send(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
}
