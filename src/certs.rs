//! The local CA and the per-host leaf certificates it signs: the only code that touches
//! CA keys.
//!
//! [`CertAuthority`] is the CA, read from `tls.ca_cert`/`tls.ca_key` or created on first
//! start as `STATE/ca.pem` + `STATE/ca.key`. [`Minter`] turns the host of an intercepted
//! tunnel into a rustls [`ServerConfig`] presenting a leaf for that host, and caches it.
//!
//! Rules kept here:
//!
//! - Key material never reaches a log line or an error message: errors name the file and
//!   give a reason written here, never text taken from a key file.
//! - An existing CA file is never overwritten, not even when two processes create the CA
//!   at the same moment (`sessiond ca` run while the daemon starts): files are published
//!   with `link(2)`, which fails when the name exists, where `rename(2)` would replace it.
//! - The one crypto provider is ring, passed explicitly to everything built here; nothing
//!   depends on a process-wide default provider.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use base64::Engine as _;
use moka::sync::Cache;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{RootCertStore, ServerConfig};
use time::{Duration, OffsetDateTime};

use crate::config::TlsConfig;

/// How long a CA we create is valid. Long, because every client that trusts it would have
/// to be set up again for its successor.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How far back certificates are dated, for clients whose clocks run behind ours.
const BACKDATE: Duration = Duration::days(1);
/// How long a leaf is valid (cut short by the CA's own expiry).
const LEAF_VALIDITY: Duration = Duration::days(30);
/// How long a minted leaf is served from the cache. Much shorter than [`LEAF_VALIDITY`], so
/// a cached config never presents an expired certificate.
const LEAF_CACHE_TTL: StdDuration = StdDuration::from_secs(24 * 60 * 60);
/// At most this many hosts keep a leaf in memory; the least used are dropped first.
const LEAF_CACHE_HOSTS: u64 = 10_000;
/// Serial numbers are this many random bytes. Firefox rejects a certificate whose issuer and
/// serial it has seen on a different certificate, so every leaf needs its own.
const SERIAL_BYTES: usize = 16;
/// RFC 5280's upper bound for a CommonName; a longer host name goes only in the SAN.
const MAX_COMMON_NAME: usize = 64;
/// ALPN protocols offered to clients inside a tunnel, in order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// How long a process that lost the race to create the CA waits for the winner's
/// certificate file to appear.
const CREATE_RACE_WAIT: StdDuration = StdDuration::from_secs(2);

/// Why the CA could not be loaded or created, or a leaf could not be made.
///
/// Cloneable because one failed mint is reported to every request that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    /// A CA file exists but is unusable. `reason` is text written here (or from a
    /// certificate parser), never the contents of a key file.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// One of the two CA files is missing. Creating a new CA would replace the one clients
    /// already trust, so the user decides.
    #[error(
        "{} exists but {} does not: restore it, or remove {} to have a new CA created \
         (clients will then have to trust the new one)",
        present.display(),
        missing.display(),
        present.display()
    )]
    Incomplete { present: PathBuf, missing: PathBuf },
    #[error("cannot create a CA: {reason}")]
    Generate { reason: String },
    /// The host is neither a DNS name nor an IP address.
    #[error("cannot make a certificate for {host:?}: not a DNS name or an IP address")]
    BadHost { host: String },
    #[error("cannot make a certificate for {host}: {reason}")]
    Mint { host: String, reason: String },
}

impl CertError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> CertError {
        CertError::Io {
            action,
            path: path.to_owned(),
            source: Arc::new(source),
        }
    }

    fn invalid(path: &Path, reason: impl Into<String>) -> CertError {
        CertError::Invalid {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The local certificate authority: its certificate, and the key that signs leaves.
pub struct CertAuthority {
    /// The CA's name, key identifier and signing key, as rcgen signs leaves with them.
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for CertAuthority {
    /// Only public facts: the key is not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuthority")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// The CA the configuration names. Files given in `[tls]` are only read. The default
    /// files in the state directory are created when both are absent; when only one of them
    /// exists that is an error, and nothing is written.
    ///
    /// Blocking file I/O and a key generation: call it at start, not on a busy runtime.
    /// What `sessiond check` does with the CA: loads and verifies it if it exists (or is
    /// configured), and says nothing more when it would be created at the first start.
    /// Never writes.
    pub fn check(tls: &TlsConfig) -> Result<(), CertError> {
        match existing_files(tls)? {
            Some((cert, key)) => CertAuthority::load(cert, key).map(|_| ()),
            None => Ok(()),
        }
    }

    pub fn load_or_create(tls: &TlsConfig) -> Result<CertAuthority, CertError> {
        match existing_files(tls) {
            Ok(Some((cert, key))) => CertAuthority::load(cert, key),
            Ok(None) => CertAuthority::create(&tls.ca_cert, &tls.ca_key),
            // A key without its certificate may be another process creating the CA right
            // now (the key is published first): give it a moment before calling it broken.
            Err(CertError::Incomplete { present, .. }) if present == tls.ca_key => {
                CertAuthority::wait_for_winner(&tls.ca_cert, &tls.ca_key)
            }
            Err(e) => Err(e),
        }
    }

    /// A new CA that exists only in memory (for tests and tools: nothing is written).
    pub fn generate() -> Result<CertAuthority, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert_der, key) = new_ca(&provider)?;
        let label = Path::new("(generated CA)");
        CertAuthority::from_parts(cert_der, key, provider, label, label)
    }

    /// The CA certificate in PEM, for users to add to their clients' trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER, for a `RootCertStore`.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<CertAuthority, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert_der = read_cert(cert_path)?;
        let key = read_key(key_path)?;
        CertAuthority::from_parts(cert_der, key, provider, cert_path, key_path)
    }

    fn create(cert_path: &Path, key_path: &Path) -> Result<CertAuthority, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert_der, key) = new_ca(&provider)?;
        for path in [cert_path, key_path] {
            if let Some(dir) = path.parent() {
                create_private_dir(dir)?;
            }
        }
        // The key goes first: a process that finds the key but not yet the certificate
        // knows a CA is being made (see `wait_for_winner`).
        match publish(key_path, key.serialize_pem().as_bytes(), 0o600) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return CertAuthority::wait_for_winner(cert_path, key_path);
            }
            Err(e) => return Err(CertError::io("write", key_path, e)),
        }
        if let Err(e) = publish(cert_path, pem_encode(&cert_der).as_bytes(), 0o644) {
            // Nobody can trust a CA whose certificate was never written: take its key back,
            // so the next start creates a whole CA rather than finding half of one.
            let _ = fs::remove_file(key_path);
            return Err(CertError::io("write", cert_path, e));
        }
        tracing::info!(
            cert = %cert_path.display(),
            key = %key_path.display(),
            "created a local CA; clients must trust its certificate (`sessiond ca` prints it)"
        );
        CertAuthority::from_parts(cert_der, key, provider, cert_path, key_path)
    }

    /// Another process published its key between our check and our own publish, and
    /// publishes its certificate right after: use that CA, not ours.
    fn wait_for_winner(cert_path: &Path, key_path: &Path) -> Result<CertAuthority, CertError> {
        let deadline = Instant::now() + CREATE_RACE_WAIT;
        while !present(cert_path)? {
            if Instant::now() >= deadline {
                // The other process stopped half way; the user decides what to keep.
                return Err(CertError::Incomplete {
                    present: key_path.to_owned(),
                    missing: cert_path.to_owned(),
                });
            }
            std::thread::sleep(StdDuration::from_millis(20));
        }
        CertAuthority::load(cert_path, key_path)
    }

    /// Checks that the certificate and key make a working CA, so that a bad pair fails the
    /// start with a reason rather than every client's handshake later.
    fn from_parts(
        cert_der: CertificateDer<'static>,
        key: KeyPair,
        provider: Arc<CryptoProvider>,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<CertAuthority, CertError> {
        let (not_before, not_after) = check_ca_cert(&cert_der, &key, cert_path, key_path)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| {
            CertError::invalid(cert_path, format!("cannot sign with this certificate: {e}"))
        })?;
        let ca = CertAuthority {
            issuer,
            cert_pem: pem_encode(&cert_der),
            cert_der,
            not_before,
            not_after,
            provider,
        };
        ca.self_check(cert_path)?;
        Ok(ca)
    }

    /// Mints one leaf and verifies it the way a client would. This catches what the
    /// checks on the parts cannot: a subject that rcgen would re-encode differently (the
    /// leaf's issuer must match it byte for byte), or a CA whose validity has not begun.
    fn self_check(&self, cert_path: &Path) -> Result<(), CertError> {
        const NAME: &str = "self-check.sessiond.invalid";
        let name = LeafName::Dns(NAME.to_owned());
        let (chain, _key) = self.mint(&name)?;
        let mut roots = RootCertStore::empty();
        roots.add(self.cert_der.clone()).map_err(|e| {
            CertError::invalid(cert_path, format!("not usable as a trust anchor: {e}"))
        })?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| mint_error(&name, e))?;
        let server_name = ServerName::try_from(NAME).map_err(|e| mint_error(&name, e))?;
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
            .map_err(|e| {
                CertError::invalid(
                    cert_path,
                    format!("certificates signed by this CA do not verify: {e}"),
                )
            })?;
        Ok(())
    }

    /// A new leaf for `name`: the chain (leaf, CA) and the leaf's key.
    fn mint(
        &self,
        name: &LeafName,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CertError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| mint_error(name, e))?;
        let now = OffsetDateTime::now_utc();
        let host = name.to_string();
        let mut params = CertificateParams::default();
        // Inside the CA's validity, so no client finds the leaf outliving its issuer.
        params.not_before = (now - BACKDATE).max(self.not_before);
        params.not_after = (now + LEAF_VALIDITY).min(self.not_after);
        params.serial_number =
            Some(random_serial(&self.provider).map_err(|e| mint_error(name, e))?);
        params.distinguished_name = DistinguishedName::new();
        if host.len() <= MAX_COMMON_NAME {
            params
                .distinguished_name
                .push(DnType::CommonName, host.as_str());
        }
        // Clients match the SAN only; the CommonName is for people reading the certificate.
        params.subject_alt_names = vec![match name {
            LeafName::Dns(dns) => {
                SanType::DnsName(dns.as_str().try_into().map_err(|e| mint_error(name, e))?)
            }
            LeafName::Ip(ip) => SanType::IpAddress(*ip),
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| mint_error(name, e))?;
        let chain = vec![cert.der().clone(), self.cert_der.clone()];
        Ok((chain, PrivateKeyDer::from(key)))
    }

    /// A rustls server config presenting a new leaf for `name`.
    fn server_config(&self, name: &LeafName) -> Result<ServerConfig, CertError> {
        let (chain, key) = self.mint(name)?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|e| mint_error(name, e))?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Leaf server configs per host, minted on first use and kept for [`LEAF_CACHE_TTL`].
pub struct Minter {
    ca: Arc<CertAuthority>,
    cache: Cache<String, Arc<ServerConfig>>,
    minted: Option<prometheus_client::metrics::counter::Counter>,
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minter")
            .field("ca", &self.ca)
            .field("cached_hosts", &self.cache.entry_count())
            .finish()
    }
}

impl Minter {
    pub fn new(ca: Arc<CertAuthority>) -> Minter {
        Minter {
            ca,
            cache: Cache::builder()
                .max_capacity(LEAF_CACHE_HOSTS)
                .time_to_live(LEAF_CACHE_TTL)
                .build(),
            minted: None,
        }
    }

    pub fn ca(&self) -> &Arc<CertAuthority> {
        &self.ca
    }

    /// The server config for a tunnel to `host`: a DNS name, or an IP address (IPv6 with or
    /// without brackets). Concurrent first requests for one host mint once; the others wait
    /// for that result. Minting takes about a millisecond of CPU, and waiting blocks the
    /// thread, so async callers may prefer `spawn_blocking`.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CertError> {
        let name = LeafName::parse(host)?;
        self.cache
            .try_get_with(name.to_string(), || {
                let config = self.ca.server_config(&name)?;
                tracing::debug!(host = %name, "minted a leaf certificate");
                if let Some(minted) = &self.minted {
                    minted.inc();
                }
                Ok(Arc::new(config))
            })
            .map_err(Arc::unwrap_or_clone)
    }

    /// The server config for `host` if one is already minted: never blocks, so an async
    /// caller can skip the blocking pool for every tunnel but the first to a host.
    pub fn cached(&self, host: &str) -> Option<Arc<ServerConfig>> {
        let name = LeafName::parse(host).ok()?;
        self.cache.get(&name.to_string())
    }

    /// Counts every leaf minted in `counter` (every other `server_config` is a cache hit).
    pub fn counting_mints(
        mut self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Minter {
        self.minted = Some(counter);
        self
    }
}

/// What a leaf is for, normalised so that one host has one cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LeafName {
    /// Lower case, without a trailing dot.
    Dns(String),
    Ip(IpAddr),
}

impl LeafName {
    fn parse(host: &str) -> Result<LeafName, CertError> {
        let bare = crate::hosts::unbracket(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(LeafName::Ip(ip));
        }
        let dns = bare.strip_suffix('.').unwrap_or(bare).to_ascii_lowercase();
        // rustls's own parser: a name it accepts here is one a client can ask for.
        match ServerName::try_from(dns.as_str()) {
            Ok(ServerName::DnsName(_)) => Ok(LeafName::Dns(dns)),
            _ => Err(CertError::BadHost {
                host: host.to_owned(),
            }),
        }
    }
}

impl fmt::Display for LeafName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeafName::Dns(name) => f.write_str(name),
            LeafName::Ip(ip) => ip.fmt(f),
        }
    }
}

fn mint_error(name: &LeafName, e: impl fmt::Display) -> CertError {
    CertError::Mint {
        host: name.to_string(),
        reason: e.to_string(),
    }
}

/// A new self-signed CA certificate and its key.
fn new_ca(provider: &CryptoProvider) -> Result<(CertificateDer<'static>, KeyPair), CertError> {
    let generate = |e: &dyn fmt::Display| CertError::Generate {
        reason: e.to_string(),
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| generate(&e))?;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "sessiond local CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "sessiond");
    // Every install's CA gets its own name, so two of them in one trust store (or a client
    // trusting the wrong one) can be told apart by people and by chain building.
    let serial = random_serial(provider).map_err(|e| generate(&e))?;
    let id: String = serial.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, format!("install {id}"));
    // Path length 0: this CA signs leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(serial);
    let cert = params.self_signed(&key).map_err(|e| generate(&e))?;
    Ok((cert.der().clone(), key))
}

/// A random positive serial of exactly [`SERIAL_BYTES`] bytes, from the provider's RNG.
fn random_serial(provider: &CryptoProvider) -> Result<SerialNumber, &'static str> {
    let mut bytes = [0u8; SERIAL_BYTES];
    provider
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| "the system's random number generator failed")?;
    // DER integers are signed and minimal: a set top bit would make the serial negative (or
    // cost a 17th byte), and a zero first byte would be dropped. Clearing the top bit and
    // setting the next keeps 126 random bits in exactly 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Checks the parts of a CA and returns its validity period.
fn check_ca_cert(
    der: &CertificateDer<'_>,
    key: &KeyPair,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        CertError::invalid(cert_path, format!("not a valid X.509 certificate: {e}"))
    })?;
    if !x509.is_ca() {
        return Err(CertError::invalid(
            cert_path,
            "not a CA certificate (basicConstraints CA:TRUE is missing)",
        ));
    }
    if let Ok(Some(usage)) = x509.key_usage()
        && !usage.value.key_cert_sign()
    {
        return Err(CertError::invalid(
            cert_path,
            "its key usage does not allow signing certificates (keyCertSign)",
        ));
    }
    if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(CertError::invalid(
            key_path,
            format!(
                "this key does not belong to the certificate in {}",
                cert_path.display()
            ),
        ));
    }
    let not_before = x509.validity().not_before.to_datetime();
    let not_after = x509.validity().not_after.to_datetime();
    let now = OffsetDateTime::now_utc();
    if not_after <= now {
        return Err(CertError::invalid(
            cert_path,
            format!("the CA certificate expired on {}", not_after.date()),
        ));
    }
    if not_after - now < LEAF_VALIDITY {
        tracing::warn!(
            cert = %cert_path.display(),
            expires = %not_after.date(),
            "the CA certificate expires soon; leaves will be cut short"
        );
    }
    Ok((not_before, not_after))
}

/// The first certificate in a PEM file.
fn read_cert(path: &Path) -> Result<CertificateDer<'static>, CertError> {
    let bytes = fs::read(path).map_err(|e| CertError::io("read", path, e))?;
    CertificateDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => CertError::invalid(
            path,
            "no certificate found (expected -----BEGIN CERTIFICATE-----)",
        ),
        other => CertError::invalid(path, format!("not a valid PEM file: {other}")),
    })
}

/// The key in a PEM file. Every reason given is a fixed text: the PEM parser's messages
/// can quote the file, and this file is a secret.
fn read_key(path: &Path) -> Result<KeyPair, CertError> {
    let bytes = fs::read(path).map_err(|e| CertError::io("read", path, e))?;
    if let Ok(meta) = fs::metadata(path)
        && meta.mode() & 0o077 != 0
    {
        tracing::warn!(key = %path.display(), "the CA key is readable by other users; chmod 600 it");
    }
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => CertError::invalid(
            path,
            "no unencrypted private key found (expected -----BEGIN PRIVATE KEY-----)",
        ),
        _ => CertError::invalid(path, "not a valid PEM file"),
    })?;
    if !matches!(der, PrivateKeyDer::Pkcs8(_)) {
        return Err(CertError::invalid(
            path,
            "the key must be in PKCS#8 form (-----BEGIN PRIVATE KEY-----); convert it with \
             `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`",
        ));
    }
    KeyPair::try_from(&der).map_err(|_| {
        CertError::invalid(
            path,
            "unsupported private key (use ECDSA P-256 or P-384, Ed25519, or RSA)",
        )
    })
}

/// Whether anything is at `path`. A dangling symlink counts, so it is reported when read
/// rather than replaced.
/// The CA files to load, or `None` when neither exists yet and the CA may be created.
/// Configured files are always loaded (never created); exactly one present file is an
/// error, since creating a new CA would replace the one clients trust.
fn existing_files(tls: &TlsConfig) -> Result<Option<(&Path, &Path)>, CertError> {
    let (cert, key) = (tls.ca_cert.as_path(), tls.ca_key.as_path());
    if tls.ca_configured {
        return Ok(Some((cert, key)));
    }
    match (present(cert)?, present(key)?) {
        (true, true) => Ok(Some((cert, key))),
        (false, false) => Ok(None),
        (true, false) => Err(CertError::Incomplete {
            present: cert.to_owned(),
            missing: key.to_owned(),
        }),
        (false, true) => Err(CertError::Incomplete {
            present: key.to_owned(),
            missing: cert.to_owned(),
        }),
    }
}

fn present(path: &Path) -> Result<bool, CertError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CertError::io("read", path, e)),
    }
}

/// Creates `dir` (and missing parents) with mode 0700. An existing directory is the user's
/// and is left as it is.
fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    // A bare file name has an empty parent: the current directory, which exists.
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CertError::io("create the directory", dir, e))
}

/// Writes `contents` to `path`, which must not exist, so that a reader sees either no file
/// or the whole file. The data goes to a temporary file in the same directory, created
/// with `mode` so a key is never readable by others, even for a moment; it is synced, then
/// linked to `path` (failing with `AlreadyExists` if something is there), and the directory
/// is synced so the new name survives a crash.
fn publish(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    let tmp = dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    // The temporary name goes whether or not the link was made; a failure to remove it
    // leaves a stray file of the same mode, not a wrong CA.
    let _ = fs::remove_file(&tmp);
    written?;
    fs::File::open(dir)?.sync_all()
}

/// A certificate as PEM, 64 base64 characters per line.
fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            pem.push('\n');
        }
        pem.push(c);
    }
    pem.push_str("\n-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests;
