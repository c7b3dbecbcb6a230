//! HTTPS: TLS to origins, CONNECT tunnels and interception (SPEC §4).

use std::sync::Arc;

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
    let r = send(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("host", "other.test"),
    )
    .await;
    assert_eq!(r.json()["version"], "HTTP/2.0");
    // h2 carries the target in :authority; a Host header too is a duplicate some origins
    // (nginx) refuse with 400.
    assert!(r.seen("host").is_empty(), "{:?}", r.seen("host"));
    assert_eq!(
        r.json()["uri"],
        format!("https://localhost:{}/echo", origin.addr.port())
    );
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

/// The seed's flow over HTTPS: a cookie set in one intercepted tunnel is sent in the next.
#[tokio::test]
async fn cookie_flow_through_intercepted_tunnels() {
    let origin = TlsOrigin::start().await;
    let proxy = start(&trusting(&origin)).await;
    let authority = format!("localhost:{}", origin.addr.port());

    let tls = intercepted(&proxy, &authority, "localhost", &[], &[b"http/1.1"]).await;
    let mut conn = Conn::over(tls).await;
    let set = conn
        .send(inside("/cookies/set/session_id/1234", &authority))
        .await;
    assert_eq!(set.status, 302);

    let tls = intercepted(&proxy, &authority, "localhost", &[], &[b"http/1.1"]).await;
    let mut conn = Conn::over(tls).await;
    let seen = conn.send(inside("/cookies", &authority)).await;
    assert_eq!(seen.cookies()["session_id"], "1234");
}

/// Proxy-Authorization on the CONNECT picks the session for everything in the tunnel,
/// and that session's headers and credentials are injected inside it.
#[tokio::test]
async fn the_connect_chooses_the_session_and_its_treatment_applies_inside() {
    let origin = TlsOrigin::start().await;
    let proxy = start(&format!(
        r#"{}
[sessions.vault]
secret = "s3cret"
headers = {{ "X-Which" = "vault" }}
[[sessions.vault.auth]]
scheme = "bearer"
token = "inside-token"
hosts = ["localhost"]
"#,
        trusting(&origin)
    ))
    .await;
    let authority = format!("localhost:{}", origin.addr.port());

    let (refused, _) =
        connect_tunnel(proxy.proxy_addr(), &authority, &[("X-Session", "vault")]).await;
    assert_eq!(refused, 407);

    let auth = proxy_auth("vault", "s3cret");
    let tls = intercepted(
        &proxy,
        &authority,
        "localhost",
        &[("Proxy-Authorization", &auth)],
        &[],
    )
    .await;
    let mut conn = Conn::over(tls).await;
    let r = conn.send(inside("/echo", &authority)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.seen("x-which"), ["vault"]);
    assert_eq!(r.seen("authorization"), ["Bearer inside-token"]);
    assert!(r.seen("proxy-authorization").is_empty());
    assert_eq!(r.seen("via"), ["1.1 sessiond"]);
}

/// `X-Session` inside a tunnel overrides the CONNECT's session, under the secret rule.
#[tokio::test]
async fn x_session_inside_a_tunnel_overrides_with_the_secret_rule() {
    let origin = TlsOrigin::start().await;
    let proxy = start(&format!(
        "{}\n[sessions.other]\nheaders = {{ \"X-Which\" = \"other\" }}\n[sessions.vault]\nsecret = \"pw\"\n",
        trusting(&origin)
    ))
    .await;
    let authority = format!("localhost:{}", origin.addr.port());
    let tls = intercepted(&proxy, &authority, "localhost", &[], &[]).await;
    let mut conn = Conn::over(tls).await;
    let other = conn
        .send(inside("/echo", &authority).header("x-session", "other"))
        .await;
    assert_eq!(other.seen("x-which"), ["other"]);
    let vault = conn
        .send(inside("/echo", &authority).header("x-session", "vault"))
        .await;
    assert_eq!(vault.status, 407);
}

/// A client that offers h2 gets h2 from sessiond, and the origin gets h2 from sessiond.
#[tokio::test]
async fn h2_inside_the_tunnel_and_to_the_origin() {
    let origin = TlsOrigin::start().await;
    let proxy = start(&trusting(&origin)).await;
    let authority = format!("localhost:{}", origin.addr.port());
    let tls = intercepted(&proxy, &authority, "localhost", &[], &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = h2(tls).await;
    let req = Request::builder()
        .uri(format!("https://{authority}/echo"))
        .header("cookie", "a=1")
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["version"], "HTTP/2.0");
}

/// A passthrough host is a blind tunnel: the client sees the origin's own certificate.
#[tokio::test]
async fn passthrough_hosts_are_not_decrypted() {
    let origin = TlsOrigin::start().await;
    let proxy = start("[tls]\npassthrough = [\"localhost\"]\n").await;
    let authority = format!("localhost:{}", origin.addr.port());
    let (status, stream) = connect_tunnel(proxy.proxy_addr(), &authority, &[]).await;
    assert_eq!(status, 200);
    let origin_cert = std::fs::read(&origin.ca_file).unwrap();
    let origin_cert = rustls::pki_types::pem::PemObject::from_pem_slice(&origin_cert).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tls_connector(&[origin_cert], &[b"http/1.1"])
        .connect(name, stream)
        .await
        .expect("the origin's own certificate comes through");
    let mut conn = Conn::over(tls).await;
    let r = conn.send(inside("/echo", &authority)).await;
    assert!(
        r.seen("via").is_empty(),
        "a passthrough request was rewritten"
    );
}

/// Plain HTTP inside CONNECT (old Node clients) gets the session treatment too.
#[tokio::test]
async fn plaintext_http_inside_connect() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let authority = origin.addr.to_string();
    let (status, stream) = connect_tunnel(proxy.proxy_addr(), &authority, &[]).await;
    assert_eq!(status, 200);
    let mut conn = Conn::over(stream).await;
    let set = conn
        .send(inside("/cookies/set/plain/yes", &authority))
        .await;
    assert_eq!(set.status, 302);
    let seen = send(proxy.proxy_addr(), get(&origin.url("/cookies"))).await;
    assert_eq!(seen.cookies()["plain"], "yes");
}

/// A client that does not trust the CA fails its handshake; the daemon serves on.
#[tokio::test]
async fn an_untrusting_client_does_not_stop_the_daemon() {
    let origin = TlsOrigin::start().await;
    let proxy = start(&trusting(&origin)).await;
    let authority = format!("localhost:{}", origin.addr.port());
    let (status, stream) = connect_tunnel(proxy.proxy_addr(), &authority, &[]).await;
    assert_eq!(status, 200);
    // This client trusts only the origin's certificate, not sessiond's CA.
    let origin_cert = std::fs::read(&origin.ca_file).unwrap();
    let origin_cert = rustls::pki_types::pem::PemObject::from_pem_slice(&origin_cert).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let refused = tls_connector(&[origin_cert], &[])
        .connect(name, stream)
        .await;
    assert!(
        refused.is_err(),
        "a client that does not trust the CA completed the handshake"
    );

    let tls = intercepted(&proxy, &authority, "localhost", &[], &[]).await;
    let mut conn = Conn::over(tls).await;
    assert_eq!(conn.send(inside("/echo", &authority)).await.status, 200);
}

/// Inside a tunnel, an origin certificate sessiond does not trust is a 502 naming why.
#[tokio::test]
async fn a_bad_origin_certificate_inside_a_tunnel_is_502() {
    let origin = TlsOrigin::start().await;
    let proxy = start("").await;
    let authority = format!("localhost:{}", origin.addr.port());
    let tls = intercepted(&proxy, &authority, "localhost", &[], &[]).await;
    let mut conn = Conn::over(tls).await;
    let r = conn.send(inside("/echo", &authority)).await;
    assert_eq!(r.status, 502);
    assert!(r.text().contains("certificate"), "{}", r.text());
}

/// A WebSocket through an intercepted tunnel: the handshake gets the session's treatment,
/// then bytes flow both ways.
#[tokio::test]
async fn websocket_through_an_intercepted_tunnel() {
    let origin = TlsOrigin::start().await;
    let proxy = start(&trusting(&origin)).await;
    let authority = format!("localhost:{}", origin.addr.port());
    let tls = intercepted(&proxy, &authority, "localhost", &[], &[b"http/1.1"]).await;
    websocket_roundtrip(tls, "/ws", &authority, &[]).await;
}

/// And through a plain absolute-form request.
#[tokio::test]
async fn websocket_through_a_plain_request() {
    let origin = Origin::start().await;
    let proxy = start("").await;
    let stream = tokio::net::TcpStream::connect(proxy.proxy_addr())
        .await
        .unwrap();
    let answer =
        websocket_roundtrip(stream, &origin.url("/ws"), &origin.addr.to_string(), &[]).await;
    assert!(
        answer.to_ascii_lowercase().contains("via: 1.1 sessiond"),
        "{answer}"
    );
}

/// A client CA and a certificate it signed, as PEM files: (CA certificate DER, cert path,
/// key path).
fn client_identity() -> (
    rustls::pki_types::CertificateDer<'static>,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client.test".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let cert_path = temp_path("client.pem");
    let key_path = temp_path("client.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_cert.der().clone(), cert_path, key_path)
}

/// A session with `client_cert`/`client_key` reaches an origin that requires one; a
/// session without gets a 502.
#[tokio::test]
async fn mutual_tls_to_an_origin_that_requires_a_client_certificate() {
    let (client_ca, cert, key) = client_identity();
    let origin = TlsOrigin::start_with(move |builder| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(client_ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    })
    .await;
    let proxy = start(&format!(
        "{}\n[sessions.mtls]\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        trusting(&origin),
        cert.display(),
        key.display()
    ))
    .await;
    let with = send(
        proxy.proxy_addr(),
        get(&origin.url("/echo")).header("x-session", "mtls"),
    )
    .await;
    assert_eq!(with.status, 200, "{}", with.text());
    // The default session has no certificate: it must not reuse the pooled connection
    // the mtls session just made (connection identity includes the client certificate).
    let without = send(proxy.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(without.status, 502, "{}", without.text());
    assert_eq!(
        without.headers["proxy-status"],
        "sessiond; error=tls_protocol_error",
        "{}",
        without.text()
    );
}

/// `upstream_proxy` reaches an https origin with CONNECT through the parent: the parent
/// sees a tunnel, the origin sees only the child's treatment.
#[tokio::test]
async fn https_through_a_parent_proxy_uses_connect() {
    let origin = TlsOrigin::start().await;
    let parent = start("[sessions.p]\nsecret = \"ppw\"\n[tls]\npassthrough = [\"*\"]\n").await;
    let child = start(&format!(
        "{}\n[sessions.default]\nupstream_proxy = \"http://p:ppw@{}\"\nheaders = {{ \"X-From\" = \"child\" }}\n",
        trusting(&origin),
        parent.proxy_addr()
    ))
    .await;
    let r = send(child.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.seen("x-from"), ["child"]);
    // The parent only relayed bytes: one Via, the child's; no proxy credentials leaked.
    assert_eq!(r.seen("via"), ["1.1 sessiond"]);
    assert!(r.seen("proxy-authorization").is_empty());

    let wrong = start(&format!(
        "{}\n[sessions.default]\nupstream_proxy = \"http://p:nope@{}\"\n",
        trusting(&origin),
        parent.proxy_addr()
    ))
    .await;
    let refused = send(wrong.proxy_addr(), get(&origin.url("/echo"))).await;
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert!(refused.text().contains("407"), "{}", refused.text());
}

/// A tunnel to an IP address (no SNI) is intercepted with a leaf for that IP.
#[tokio::test]
async fn a_tunnel_to_an_ip_literal_gets_an_ip_certificate() {
    let origin = TlsOrigin::start().await;
    let proxy = start(&trusting(&origin)).await;
    let authority = origin.addr.to_string();
    let tls = intercepted(&proxy, &authority, "127.0.0.1", &[], &[]).await;
    let mut conn = Conn::over(tls).await;
    let r = conn.send(inside("/echo", &authority)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.seen("via"), ["1.1 sessiond"]);
}

/// Bytes that are neither TLS nor HTTP are copied blindly, both ways.
#[tokio::test]
async fn opaque_bytes_are_tunnelled_blindly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let proxy = start("").await;
    let (status, mut stream) =
        connect_tunnel(proxy.proxy_addr(), &echo_addr.to_string(), &[]).await;
    assert_eq!(status, 200);
    stream.write_all(b"\x00opaque protocol\n").await.unwrap();
    let mut back = [0u8; 17];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"\x00opaque protocol\n");
}
