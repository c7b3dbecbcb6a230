//! The CA's files (modes, no overwrite, loading what was created) and the leaves it mints,
//! checked by real rustls clients that trust only the CA.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConnection};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use super::*;
use crate::hosts::HostList;

/// A fresh directory under the system temp dir, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sessiond-certs-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&path).expect("create a temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tls_config(cert: PathBuf, key: PathBuf, configured: bool) -> TlsConfig {
    TlsConfig {
        intercept: HostList::parse(&["*".to_string()]).expect("a valid pattern"),
        passthrough: HostList::parse(&[]).expect("an empty list"),
        ca_cert: cert,
        ca_key: key,
        ca_configured: configured,
    }
}

/// The default CA files in `state` (`ca.pem`, `ca.key`), as config.rs names them.
fn state_tls(state: &Path) -> TlsConfig {
    tls_config(state.join("ca.pem"), state.join("ca.key"), false)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn parse(der: &[u8]) -> x509_parser::certificate::X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der)
        .expect("a valid certificate")
        .1
}

/// Certificates hold whole seconds, and the test takes a moment: a few seconds either way.
fn assert_about(actual: Duration, expected: Duration) {
    assert!(
        (actual - expected).abs() < Duration::seconds(5),
        "{actual} is not about {expected}"
    );
}

fn client_config(ca: &CertAuthority, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.cert_der().clone())
        .expect("the CA is a trust anchor");
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What a client saw in a completed handshake.
#[derive(Debug)]
struct Handshake {
    chain: Vec<CertificateDer<'static>>,
    alpn: Option<Vec<u8>>,
}

/// A whole TLS handshake in memory between `server` and a client that trusts only `ca`
/// and asks for `name`. Errors are the client's verdict (or the server's).
fn handshake(
    ca: &CertAuthority,
    server: Arc<ServerConfig>,
    name: ServerName<'static>,
    alpn: &[&[u8]],
) -> Result<Handshake, rustls::Error> {
    let mut client = Connection::from(ClientConnection::new(client_config(ca, alpn), name)?);
    let mut server = Connection::from(ServerConnection::new(server)?);
    // A TLS 1.3 handshake takes two round trips; a few more rounds cost nothing.
    for _ in 0..8 {
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        transfer(&mut client, &mut server)?;
        transfer(&mut server, &mut client)?;
    }
    assert!(!client.is_handshaking(), "the handshake did not finish");
    Ok(Handshake {
        chain: client.peer_certificates().expect("a server chain").to_vec(),
        alpn: client.alpn_protocol().map(<[u8]>::to_vec),
    })
}

/// Moves everything `from` has to send into `to`, and lets `to` process it.
fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).expect("write to a Vec");
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).expect("read from a slice");
        to.process_new_packets()?;
    }
    Ok(())
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).expect("a DNS name")
}

fn ip(addr: &str) -> ServerName<'static> {
    ServerName::IpAddress(addr.parse::<IpAddr>().expect("an IP address").into())
}

fn generated() -> Arc<CertAuthority> {
    Arc::new(CertAuthority::generate().expect("generate a CA"))
}

// --- the CA's files -------------------------------------------------------------------

#[test]
fn first_start_creates_the_ca_with_private_modes() {
    let tmp = TempDir::new("create");
    let state = tmp.0.join("state");
    let tls = state_tls(&state);

    let ca = CertAuthority::load_or_create(&tls).expect("create the CA");

    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(fs::read_to_string(&tls.ca_cert).unwrap(), ca.cert_pem());
    assert_eq!(mode(&state), 0o700, "a state dir we create is private");
    assert_eq!(mode(&tls.ca_key), 0o600);
    assert_eq!(mode(&tls.ca_cert), 0o644);
    let key = fs::read_to_string(&tls.ca_key).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    let leftovers: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "ca.pem" && n != "ca.key")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn the_created_ca_is_a_p256_ca_valid_for_ten_years() {
    let ca = generated();
    let x509 = parse(ca.cert_der());
    assert!(x509.is_ca());
    let constraints = x509.basic_constraints().unwrap().unwrap().value;
    assert_eq!(constraints.path_len_constraint, Some(0));
    let usage = x509.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign() && usage.digital_signature());
    assert_eq!(
        x509.subject().iter_common_name().next().unwrap().as_str(),
        Ok("sessiond local CA")
    );
    assert_eq!(
        x509.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let now = OffsetDateTime::now_utc();
    let validity = x509.validity();
    assert_about(now - validity.not_before.to_datetime(), Duration::days(1));
    assert_about(validity.not_after.to_datetime() - now, Duration::days(3650));
}

#[test]
fn a_second_start_loads_the_ca_it_created() {
    let tmp = TempDir::new("reload");
    let tls = state_tls(&tmp.0);
    let first = CertAuthority::load_or_create(&tls).expect("create");
    let key = fs::read(&tls.ca_key).unwrap();

    let second = CertAuthority::load_or_create(&tls).expect("load");

    assert_eq!(first.cert_pem(), second.cert_pem());
    assert_eq!(
        fs::read(&tls.ca_key).unwrap(),
        key,
        "the key is not rewritten"
    );
    // The loaded CA signs leaves that clients of the first one trust.
    let minter = Minter::new(Arc::new(second));
    let config = minter.server_config("api.example.test").unwrap();
    handshake(&first, config, dns("api.example.test"), &[]).expect("trusted");
}

#[test]
fn processes_creating_the_ca_at_once_all_end_up_with_the_same_one() {
    let tmp = TempDir::new("race");
    let tls = Arc::new(state_tls(&tmp.0.join("state")));
    let barrier = Arc::new(std::sync::Barrier::new(6));
    let pems: Vec<String> = (0..6)
        .map(|_| {
            let (tls, barrier) = (tls.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let ca = CertAuthority::load_or_create(&tls).expect("create or load");
                ca.cert_pem().to_owned()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let on_disk = fs::read_to_string(&tls.ca_cert).unwrap();
    assert!(
        pems.iter().all(|p| *p == on_disk),
        "every caller uses the CA on disk"
    );
}

#[test]
fn a_missing_key_is_an_error_and_nothing_is_overwritten() {
    let tmp = TempDir::new("nokey");
    let tls = state_tls(&tmp.0);
    CertAuthority::load_or_create(&tls).expect("create");
    let cert = fs::read(&tls.ca_cert).unwrap();
    fs::remove_file(&tls.ca_key).unwrap();

    let err = CertAuthority::load_or_create(&tls).expect_err("half a CA");

    assert!(matches!(err, CertError::Incomplete { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&tls.ca_key.display().to_string()),
        "{message}"
    );
    assert_eq!(
        fs::read(&tls.ca_cert).unwrap(),
        cert,
        "the certificate is untouched"
    );
    assert!(!tls.ca_key.exists(), "no key was made up");
}

#[test]
fn a_missing_certificate_is_an_error_and_nothing_is_overwritten() {
    let tmp = TempDir::new("nocert");
    let tls = state_tls(&tmp.0);
    CertAuthority::load_or_create(&tls).expect("create");
    let key = fs::read(&tls.ca_key).unwrap();
    fs::remove_file(&tls.ca_cert).unwrap();

    let err = CertAuthority::load_or_create(&tls).expect_err("half a CA");

    let message = err.to_string();
    assert!(
        message.contains(&tls.ca_cert.display().to_string()),
        "{message}"
    );
    assert_eq!(fs::read(&tls.ca_key).unwrap(), key, "the key is untouched");
    assert!(!tls.ca_cert.exists());
}

#[test]
fn configured_files_that_do_not_exist_are_an_error_and_nothing_is_created() {
    let tmp = TempDir::new("configured-missing");
    let dir = tmp.0.join("mine");
    let tls = tls_config(dir.join("ca.crt"), dir.join("ca.key"), true);

    let err = CertAuthority::load_or_create(&tls).expect_err("no files");

    assert!(matches!(err, CertError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.crt"), "{err}");
    assert!(!dir.exists(), "nothing is created for a configured CA");
}

#[test]
fn configured_files_are_loaded() {
    let tmp = TempDir::new("configured");
    let made = CertAuthority::load_or_create(&state_tls(&tmp.0)).expect("create");
    let tls = tls_config(tmp.0.join("ca.pem"), tmp.0.join("ca.key"), true);

    let loaded = CertAuthority::load_or_create(&tls).expect("load");

    assert_eq!(loaded.cert_pem(), made.cert_pem());
}

#[test]
fn a_key_from_another_ca_is_refused_without_showing_it() {
    let tmp = TempDir::new("mismatch");
    let (a, b) = (tmp.0.join("a"), tmp.0.join("b"));
    CertAuthority::load_or_create(&state_tls(&a)).expect("create a");
    CertAuthority::load_or_create(&state_tls(&b)).expect("create b");
    let tls = tls_config(a.join("ca.pem"), b.join("ca.key"), true);

    let err = CertAuthority::load_or_create(&tls).expect_err("mismatched pair");

    let message = err.to_string();
    assert!(message.contains("does not belong"), "{message}");
    assert!(
        message.contains(&b.join("ca.key").display().to_string()),
        "{message}"
    );
    assert_no_key_material(&message, &b.join("ca.key"));
}

#[test]
fn unusable_key_files_are_explained_without_their_contents() {
    let tmp = TempDir::new("badkey");
    CertAuthority::load_or_create(&state_tls(&tmp.0)).expect("create");
    let key = tmp.0.join("ca.key");
    let tls = tls_config(tmp.0.join("ca.pem"), key.clone(), true);
    let cases = [
        ("not pem at all\n", "no unencrypted private key"),
        (
            // A SEC1 ("EC PRIVATE KEY") file, as `openssl ecparam -genkey` writes.
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKEYMATERIALKEYMATERIALKEYMATERIAL\n-----END EC PRIVATE KEY-----\n",
            "PKCS#8",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nS0VZTUFURVJJQUxLRVlNQVRFUklBTA==\n-----END PRIVATE KEY-----\n",
            "unsupported private key",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nKEYMATERIAL!!\n-----END PRIVATE KEY-----\n",
            "not a valid PEM file",
        ),
    ];
    for (contents, expected) in cases {
        fs::write(&key, contents).unwrap();
        let message = CertAuthority::load_or_create(&tls)
            .expect_err(expected)
            .to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains(&key.display().to_string()), "{message}");
        assert!(!message.contains("KEYMATERIAL"), "{message}");
        assert!(!message.contains("S0VZ"), "{message}");
    }
}

#[test]
fn a_certificate_that_is_not_a_ca_is_refused() {
    let tmp = TempDir::new("notca");
    let ca = generated();
    let (chain, _) = ca.mint(&LeafName::Dns("leaf.example.test".into())).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["leaf.example.test".to_string()]).unwrap();
    let self_signed = params.self_signed(&leaf_key).unwrap();
    for (n, der) in [chain[0].clone(), self_signed.der().clone()]
        .iter()
        .enumerate()
    {
        let cert = tmp.0.join(format!("leaf{n}.pem"));
        let key = tmp.0.join(format!("leaf{n}.key"));
        fs::write(&cert, pem_encode(der)).unwrap();
        fs::write(&key, leaf_key.serialize_pem()).unwrap();
        let err =
            CertAuthority::load_or_create(&tls_config(cert, key, true)).expect_err("not a CA");
        assert!(err.to_string().contains("not a CA certificate"), "{err}");
    }
}

fn assert_no_key_material(message: &str, key: &Path) {
    let pem = fs::read_to_string(key).unwrap();
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!message.contains(line), "the key leaked into: {message}");
    }
}

// --- leaves --------------------------------------------------------------------------

#[test]
fn a_leaf_verifies_for_its_host_and_for_no_other() {
    let ca = generated();
    let minter = Minter::new(ca.clone());
    let config = minter.server_config("api.example.test").unwrap();

    let seen = handshake(&ca, config.clone(), dns("api.example.test"), &[]).expect("trusted");
    assert_eq!(seen.chain.len(), 2, "leaf and CA");
    assert_eq!(&seen.chain[1], ca.cert_der());

    let err = handshake(&ca, config, dns("other.example.test"), &[]).expect_err("wrong name");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
                | rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext { .. }
                )
        ),
        "{err:?}"
    );
}

#[test]
fn a_leaf_is_not_trusted_by_a_client_of_another_ca() {
    let ca = generated();
    let other = generated();
    let config = Minter::new(ca).server_config("api.example.test").unwrap();
    let err = handshake(&other, config, dns("api.example.test"), &[]).expect_err("untrusted");
    // Both CAs have the same subject, so the client finds the other CA as the issuer and
    // rejects the signature; with different subjects it would be UnknownIssuer.
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature | rustls::CertificateError::UnknownIssuer
            )
        ),
        "{err:?}"
    );
}

#[test]
fn an_ip_literal_gets_an_ip_san() {
    let ca = generated();
    let minter = Minter::new(ca.clone());
    for (host, addr) in [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[2001:db8::1]", "2001:db8::1"),
    ] {
        let config = minter.server_config(host).unwrap();
        let seen = handshake(&ca, config, ip(addr), &[]).unwrap_or_else(|e| panic!("{host}: {e}"));
        let leaf = parse(&seen.chain[0]);
        let san = leaf.subject_alternative_name().unwrap().unwrap().value;
        let expected = match addr.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        assert_eq!(
            san.general_names,
            vec![GeneralName::IPAddress(&expected)],
            "{host}"
        );
    }
}

#[test]
fn a_leaf_has_the_fields_clients_require() {
    let ca = generated();
    let config = Minter::new(ca.clone())
        .server_config("API.Example.Test.")
        .unwrap();
    let seen = handshake(&ca, config, dns("api.example.test"), &[]).expect("trusted");
    let leaf = parse(&seen.chain[0]);

    let san = leaf.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        san.general_names,
        vec![GeneralName::DNSName("api.example.test")]
    );
    assert_eq!(
        leaf.subject().iter_common_name().next().unwrap().as_str(),
        Ok("api.example.test")
    );
    assert!(
        leaf.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .server_auth
    );
    assert!(!leaf.is_ca());
    assert_eq!(leaf.issuer(), parse(ca.cert_der()).subject());
    let serial = leaf.raw_serial();
    assert_eq!(serial.len(), 16, "16 bytes, positive, no padding");
    assert_eq!(serial[0] & 0x80, 0);

    let now = OffsetDateTime::now_utc();
    assert_about(
        now - leaf.validity().not_before.to_datetime(),
        Duration::days(1),
    );
    assert_about(
        leaf.validity().not_after.to_datetime() - now,
        Duration::days(30),
    );
    assert!(leaf.validity().not_after <= parse(ca.cert_der()).validity().not_after);
}

#[test]
fn a_long_host_name_goes_only_in_the_san() {
    let ca = generated();
    let host = format!("{}.example.test", "a".repeat(60));
    let config = Minter::new(ca.clone()).server_config(&host).unwrap();
    let seen = handshake(&ca, config, dns(&host), &[]).expect("trusted");
    let leaf = parse(&seen.chain[0]);
    assert_eq!(leaf.subject().iter_common_name().count(), 0);
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(
        san.critical,
        "RFC 5280: SAN is critical when the subject is empty"
    );
}

#[test]
fn two_minters_give_the_same_host_different_serials() {
    let ca = generated();
    let serial = |minter: &Minter| {
        let config = minter.server_config("api.example.test").unwrap();
        let seen = handshake(&ca, config, dns("api.example.test"), &[]).expect("trusted");
        parse(&seen.chain[0]).raw_serial().to_vec()
    };
    let first = serial(&Minter::new(ca.clone()));
    let second = serial(&Minter::new(ca.clone()));
    assert_ne!(first, second);
}

#[test]
fn the_cache_returns_one_config_per_host() {
    let minter = Minter::new(generated());
    let a = minter.server_config("api.example.test").unwrap();
    let b = minter.server_config("API.example.test.").unwrap();
    let other = minter.server_config("www.example.test").unwrap();
    assert!(Arc::ptr_eq(&a, &b), "one entry per normalised host");
    assert!(!Arc::ptr_eq(&a, &other));
    let v6 = minter.server_config("::1").unwrap();
    assert!(Arc::ptr_eq(&v6, &minter.server_config("[::1]").unwrap()));
}

#[test]
fn cached_answers_only_for_a_host_already_minted_and_never_mints() {
    let minter = Minter::new(generated());
    assert!(minter.cached("api.example.test").is_none());
    assert!(
        minter.cached("api.example.test").is_none(),
        "asking minted nothing"
    );
    let minted = minter.server_config("api.example.test").unwrap();
    let cached = minter
        .cached("API.example.test.")
        .expect("the same normalised host");
    assert!(Arc::ptr_eq(&minted, &cached));
    assert!(minter.cached("www.example.test").is_none());
    assert!(minter.cached("not a host").is_none());
}

#[test]
fn concurrent_first_requests_mint_once() {
    let minter = Arc::new(Minter::new(generated()));
    let configs: Vec<_> = (0..8)
        .map(|_| {
            let minter = minter.clone();
            std::thread::spawn(move || minter.server_config("api.example.test").unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])));
}

#[test]
fn hosts_that_are_not_names_are_refused() {
    let minter = Minter::new(generated());
    for host in [
        "",
        "foo bar",
        "*.example.test",
        "exa_mple..test",
        "[::1",
        "fe80::1%eth0",
    ] {
        let err = minter.server_config(host).expect_err(host);
        assert!(matches!(err, CertError::BadHost { .. }), "{host}: {err:?}");
    }
}

#[tokio::test]
async fn a_client_offering_h2_gets_h2_over_a_real_handshake() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let ca = generated();
    let minter = Minter::new(ca.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(minter.server_config("localhost").unwrap());
    let connector = tokio_rustls::TlsConnector::from(client_config(&ca, &[b"h2", b"http/1.1"]));
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);

    let server = tokio::spawn(async move {
        let mut tls = acceptor.accept(server_io).await.expect("server handshake");
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.expect("read");
        tls.write_all(&buf).await.expect("echo");
        tls.shutdown().await.expect("close");
        alpn
    });
    let mut tls = connector
        .connect(dns("localhost"), client_io)
        .await
        .expect("client handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tls.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    assert_eq!(server.await.unwrap().as_deref(), Some(&b"h2"[..]));
}

#[test]
fn a_client_offering_only_http11_gets_http11_and_tls12_works() {
    let ca = generated();
    let config = Minter::new(ca.clone()).server_config("localhost").unwrap();
    let seen = handshake(&ca, config.clone(), dns("localhost"), &[b"http/1.1"]).unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let seen = handshake(&ca, config.clone(), dns("localhost"), &[]).unwrap();
    assert_eq!(seen.alpn, None, "no ALPN offered, none chosen");

    // An older client that speaks only TLS 1.2.
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let tls12 =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let mut client =
        Connection::from(ClientConnection::new(Arc::new(tls12), dns("localhost")).unwrap());
    let mut server = Connection::from(ServerConnection::new(config).unwrap());
    for _ in 0..8 {
        transfer(&mut client, &mut server).unwrap();
        transfer(&mut server, &mut client).unwrap();
    }
    assert!(!client.is_handshaking());
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}
