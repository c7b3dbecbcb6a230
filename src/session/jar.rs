//! A session's cookie jar: `cookie_store` for the RFC 6265 storage model (domain and path
//! matching, host-only cookies, expiry), wrapped with the RFC 6265bis rules it lacks:
//! Secure cookies only from https, `__Secure-`/`__Host-` prefixes, "leave secure cookies
//! alone", public suffixes (from the compiled-in list of the `psl` crate, so nothing is
//! downloaded), size and count limits with oldest-first eviction, and longest-path-first
//! ordering on the way out.
//!
//! No I/O happens here: the jar is plain data behind the session's mutex.

use std::collections::HashMap;
use std::fmt::Write as _;

use cookie_store::{CookieStore, RawCookie, StoreAction};
use http::HeaderValue;
use url::Url;

use crate::config::CookieLimits;

/// What happened to one `Set-Cookie` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Stored,
    Updated,
    /// The same cookie again (same value and attributes, expiry within
    /// [`EXPIRY_TOLERANCE`]): nothing to persist.
    Unchanged,
    /// An expired cookie deleted a stored one.
    Removed,
    /// The cookie was refused; the reason is for the debug log (never the value).
    Ignored(&'static str),
}

impl SetOutcome {
    pub fn changed(self) -> bool {
        !matches!(self, SetOutcome::Ignored(_) | SetOutcome::Unchanged)
    }
}

pub struct Jar {
    store: CookieStore,
    /// Creation order of every stored cookie, keyed by [`key`]: cookie_store keeps no
    /// creation time, and both eviction and send order need it.
    created: HashMap<String, u64>,
    next_seq: u64,
    limits: CookieLimits,
    /// What changed since the last [`Jar::take_changes`], for the durable store.
    changes: Vec<CookieChange>,
    /// The expiry last handed to the store per cookie: a refresh that moves it by less
    /// than [`EXPIRY_TOLERANCE`] is not a change worth a write.
    persisted_expiry: HashMap<String, Option<i64>>,
    /// `Cookie` headers already worked out for a request without cookies of its own,
    /// keyed by scheme, host and path. Emptied by every change to the jar; an entry also
    /// goes stale when the first of its cookies expires.
    sent: HashMap<String, Sent>,
    /// `Set-Cookie` headers (with the request they answered, see [`request_key`]) that
    /// changed nothing, and that carry no expiry: until the jar changes, the same header
    /// again changes nothing either, and is not parsed again.
    unchanged: std::collections::HashSet<String>,
}

/// A `Cookie` header the jar worked out, and until when it holds (unix seconds).
struct Sent {
    value: Option<HeaderValue>,
    until: Option<i64>,
}

/// Entries [`Jar::cookie_header`] keeps; past this the cache starts again empty, so a
/// client walking many paths costs memory no more than this.
const SENT_ENTRIES: usize = 64;

/// How far a re-sent cookie's expiry may move before it counts as a change. Servers
/// re-send `Max-Age` sessions on every response; writing each one would buy nothing.
pub const EXPIRY_TOLERANCE: i64 = 60;

/// A cookie as it is persisted and exported: every attribute, no library types. `Debug`
/// never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCookie {
    /// Without a leading dot.
    pub domain: String,
    /// Sent to `domain` only (no `Domain` attribute was given), not to its subdomains.
    pub host_only: bool,
    pub path: String,
    pub name: String,
    pub value: String,
    pub secure: bool,
    pub http_only: bool,
    /// `Strict`, `Lax` or `None`, as the server wrote it.
    pub same_site: Option<String>,
    /// Unix seconds; `None` for a cookie that lasts as long as the session (which, in
    /// sessiond, survives restarts).
    pub expires: Option<i64>,
    /// Creation order within the jar (older first).
    pub created: u64,
}

impl std::fmt::Debug for StoredCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCookie")
            .field("domain", &self.domain)
            .field("path", &self.path)
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// One change to a jar, as the store applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieChange {
    Put(StoredCookie),
    Delete {
        domain: String,
        path: String,
        name: String,
    },
}

impl std::fmt::Debug for Jar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Cookie values are secrets: show only the count.
        f.debug_struct("Jar")
            .field("cookies", &self.created.len())
            .finish()
    }
}

/// `domain \0 path \0 name`, the identity of a cookie in RFC 6265.
fn key(domain: &str, path: &str, name: &str) -> String {
    let mut k = String::with_capacity(domain.len() + path.len() + name.len() + 2);
    write_key(&mut k, domain, path, name);
    k
}

fn write_key(buf: &mut String, domain: &str, path: &str, name: &str) {
    // Writing to a String cannot fail.
    let _ = write!(buf, "{domain}\0{path}\0{name}");
}

fn cookie_key(c: &cookie_store::Cookie<'_>) -> String {
    key(domain_of(c), c.path.as_ref(), c.name())
}

/// The domain a cookie is stored under, borrowed (`String::from` would allocate).
fn domain_of<'a>(c: &'a cookie_store::Cookie<'_>) -> &'a str {
    match &c.domain {
        cookie_store::CookieDomain::HostOnly(d) | cookie_store::CookieDomain::Suffix(d) => d,
        cookie_store::CookieDomain::Empty | cookie_store::CookieDomain::NotPresent => "",
    }
}

impl Jar {
    pub fn new(limits: CookieLimits) -> Jar {
        Jar {
            store: CookieStore::new(),
            created: HashMap::new(),
            next_seq: 0,
            limits,
            changes: Vec::new(),
            persisted_expiry: HashMap::new(),
            sent: HashMap::new(),
            unchanged: std::collections::HashSet::new(),
        }
    }

    /// A jar holding cookies read back from the store. Expired ones are skipped; nothing
    /// counts as a change.
    pub fn restore(limits: CookieLimits, cookies: Vec<StoredCookie>) -> Jar {
        let mut jar = Jar::new(limits);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for c in cookies {
            if c.expires.is_some_and(|e| e <= now) {
                continue;
            }
            let Some(url) = origin_url(&c) else { continue };
            let raw = raw_cookie(&c);
            let Ok(cookie) = cookie_store::Cookie::try_from_raw_cookie(&raw, &url) else {
                continue;
            };
            let k = cookie_key(&cookie);
            if jar.store.insert(cookie.into_owned(), &url).is_ok() {
                jar.created.insert(k.clone(), c.created);
                jar.persisted_expiry.insert(k, c.expires);
                jar.next_seq = jar.next_seq.max(c.created.saturating_add(1));
            }
        }
        jar
    }

    /// Every unexpired cookie, oldest first.
    pub fn export(&self) -> Vec<StoredCookie> {
        let mut all: Vec<StoredCookie> = self
            .store
            .iter_unexpired()
            .map(|c| self.stored(c))
            .collect();
        all.sort_by_key(|c| c.created);
        all
    }

    /// Adds cookies from an import (merging: a cookie with the same domain, path and name
    /// is replaced), or with `replace` makes them the whole jar. Expired ones are skipped.
    /// Every change is recorded for the store. Returns how many cookies were taken.
    pub fn import(&mut self, cookies: Vec<StoredCookie>, replace: bool) -> usize {
        if replace {
            self.remove_matching(None, None);
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut taken = 0;
        for c in cookies {
            if c.expires.is_some_and(|e| e <= now) {
                continue;
            }
            let Some(url) = origin_url(&c) else { continue };
            let Ok(cookie) = cookie_store::Cookie::try_from_raw_cookie(&raw_cookie(&c), &url)
            else {
                continue;
            };
            let k = cookie_key(&cookie);
            self.forget_worked_out();
            if self.store.insert(cookie.into_owned(), &url).is_err() {
                continue;
            }
            if !self.created.contains_key(&k) {
                self.created.insert(k.clone(), self.next_seq);
                self.next_seq += 1;
            }
            self.persisted_expiry.remove(&k);
            self.record_put(&k, None);
            self.enforce_limits(&k);
            taken += 1;
        }
        taken
    }

    /// Removes every cookie, or those of one domain and/or name. Returns how many.
    pub fn remove_matching(&mut self, domain: Option<&str>, name: Option<&str>) -> usize {
        let doomed: Vec<String> = self
            .created
            .keys()
            .filter(|k| {
                split_key(k).is_some_and(|(d, _, n)| {
                    domain.is_none_or(|want| want.trim_start_matches('.').eq_ignore_ascii_case(d))
                        && name.is_none_or(|want| want == n)
                })
            })
            .cloned()
            .collect();
        for k in &doomed {
            self.remove_key(k);
        }
        doomed.len()
    }

    /// The changes since the last call, for the store.
    pub fn take_changes(&mut self) -> Vec<CookieChange> {
        std::mem::take(&mut self.changes)
    }

    fn stored(&self, c: &cookie_store::Cookie<'_>) -> StoredCookie {
        let host_only = matches!(c.domain, cookie_store::CookieDomain::HostOnly(_));
        StoredCookie {
            domain: domain_of(c).to_string(),
            host_only,
            path: c.path.as_ref().to_string(),
            name: c.name().to_string(),
            value: c.value().to_string(),
            secure: c.secure().unwrap_or(false),
            http_only: c.http_only().unwrap_or(false),
            same_site: c.same_site().map(|s| s.to_string()),
            expires: match &c.expires {
                cookie_store::CookieExpiration::AtUtc(at) => Some(at.unix_timestamp()),
                cookie_store::CookieExpiration::SessionEnd => None,
            },
            created: self
                .created
                .get(&cookie_key(c))
                .copied()
                .unwrap_or(u64::MAX),
        }
    }

    /// Records a put of the cookie stored under `k`, unless it only moved its expiry by
    /// less than the tolerance since it was last persisted.
    fn record_put(&mut self, k: &str, before: Option<StoredCookie>) -> bool {
        let Some((d, p, n)) = split_key(k) else {
            return false;
        };
        let Some(now) = self.store.get(d, p, n).map(|c| self.stored(c)) else {
            return false;
        };
        let persisted = self.persisted_expiry.get(k).copied().flatten();
        let same_attributes = before.as_ref().is_some_and(|b| {
            StoredCookie {
                expires: now.expires,
                ..b.clone()
            } == now
        });
        let close_expiry = match (persisted, now.expires) {
            (Some(a), Some(b)) => (a - b).abs() <= EXPIRY_TOLERANCE,
            (None, None) => true,
            _ => false,
        };
        if same_attributes && close_expiry {
            return false;
        }
        self.persisted_expiry.insert(k.to_string(), now.expires);
        self.changes.push(CookieChange::Put(now));
        true
    }

    /// Number of stored, unexpired cookies.
    pub fn len(&self) -> usize {
        self.store.iter_unexpired().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The jar changed: what was worked out from it before no longer holds.
    fn forget_worked_out(&mut self) {
        self.sent.clear();
        self.unchanged.clear();
    }

    /// Records one `Set-Cookie` header received in a response to `url`.
    pub fn set_cookie(&mut self, header: &[u8], url: &Url) -> SetOutcome {
        let Ok(text) = std::str::from_utf8(header) else {
            return SetOutcome::Ignored("not UTF-8");
        };
        // A header with an expiry means something else as time passes; one without
        // does not, so if it changed nothing before, it changes nothing now.
        let timeless =
            !contains_ignore_case(text, "max-age") && !contains_ignore_case(text, "expires");
        let key = timeless.then(|| request_key(url, text));
        if let Some(key) = &key
            && self.unchanged.contains(key)
        {
            return SetOutcome::Unchanged;
        }
        let outcome = self.store_set_cookie(text, url);
        if outcome == SetOutcome::Unchanged
            && let Some(key) = key
        {
            if self.unchanged.len() >= SENT_ENTRIES {
                self.unchanged.clear();
            }
            self.unchanged.insert(key);
        }
        outcome
    }

    fn store_set_cookie(&mut self, text: &str, url: &Url) -> SetOutcome {
        let Ok(mut raw) = RawCookie::parse(text) else {
            return SetOutcome::Ignored("not a cookie");
        };
        if raw.name().len() + raw.value().len() > self.limits.max_bytes {
            return SetOutcome::Ignored("name and value exceed max_cookie_bytes");
        }
        if let Err(reason) = check_security(&raw, url) {
            return SetOutcome::Ignored(reason);
        }
        if let Some(domain) = raw.domain() {
            let domain = domain.trim_start_matches('.').to_ascii_lowercase();
            if is_public_suffix(&domain) {
                if url.host_str() == Some(domain.as_str()) {
                    raw.unset_domain();
                } else {
                    return SetOutcome::Ignored("Domain is a public suffix");
                }
            }
        }
        let cookie = match cookie_store::Cookie::try_from_raw_cookie(&raw, url) {
            Ok(c) => c.into_owned(),
            Err(_) => return SetOutcome::Ignored("Domain does not match the host"),
        };
        // Servers re-send the same cookie on every response: when the jar already holds
        // it, nothing is stored, ordered or persisted. Checked before the "leave secure
        // cookies alone" scan, which walks the whole jar: an identical cookie is already
        // there, so refusing it or not leaves the jar as it is.
        if self
            .store
            .get(domain_of(&cookie), cookie.path.as_ref(), cookie.name())
            .is_some_and(|old| same_cookie(old, &cookie))
        {
            return SetOutcome::Unchanged;
        }
        if !cookie.secure().unwrap_or(false)
            && url.scheme() != "https"
            && self.shadows_secure(&cookie)
        {
            return SetOutcome::Ignored("would overwrite a Secure cookie from plain http");
        }
        self.forget_worked_out();
        let k = cookie_key(&cookie);
        let before = self
            .store
            .get(domain_of(&cookie), cookie.path.as_ref(), cookie.name())
            .map(|c| self.stored(c));
        match self.store.insert(cookie, url) {
            Ok(StoreAction::Inserted) => {
                self.created.insert(k.clone(), self.next_seq);
                self.next_seq += 1;
                self.record_put(&k, None);
                self.enforce_limits(&k);
                SetOutcome::Stored
            }
            Ok(StoreAction::UpdatedExisting) => {
                // RFC 6265 §5.3 step 11.3: a replaced cookie keeps its creation time.
                if !self.created.contains_key(&k) {
                    self.created.insert(k.clone(), self.next_seq);
                    self.next_seq += 1;
                }
                if self.record_put(&k, before) {
                    SetOutcome::Updated
                } else {
                    SetOutcome::Unchanged
                }
            }
            Ok(StoreAction::ExpiredExisting) => {
                self.remove_key(&k);
                SetOutcome::Removed
            }
            Err(_) => SetOutcome::Ignored("expired or not storable"),
        }
    }

    /// The `Cookie` header for a request to `url`: the client's own cookies first (the
    /// client wins on a name clash), then the jar's, longest path first and, for equal
    /// paths, oldest first. `None` when there is nothing to send.
    pub fn cookie_header(
        &mut self,
        url: &Url,
        client: Option<&HeaderValue>,
    ) -> Option<HeaderValue> {
        if client.is_some() {
            return self.work_out_header(url, client).0;
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let key = request_key(url, "");
        if let Some(sent) = self.sent.get(&key)
            && sent.until.is_none_or(|until| now < until)
        {
            return sent.value.clone();
        }
        let (value, until) = self.work_out_header(url, None);
        if self.sent.len() >= SENT_ENTRIES {
            self.forget_worked_out();
        }
        self.sent.insert(
            key,
            Sent {
                value: value.clone(),
                until,
            },
        );
        value
    }

    /// The header [`cookie_header`](Self::cookie_header) sends, and when the first of the
    /// jar's cookies in it expires.
    fn work_out_header(
        &self,
        url: &Url,
        client: Option<&HeaderValue>,
    ) -> (Option<HeaderValue>, Option<i64>) {
        let mut matched: Vec<_> = self.store.matches(url);
        let until = matched
            .iter()
            .filter_map(|c| match &c.expires {
                cookie_store::CookieExpiration::AtUtc(at) => Some(at.unix_timestamp()),
                cookie_store::CookieExpiration::SessionEnd => None,
            })
            .min();
        if matched.is_empty() {
            return (client.cloned(), until);
        }
        let mut buf = String::new();
        let mut ordered: Vec<(usize, u64, &cookie_store::Cookie<'static>)> = matched
            .drain(..)
            .map(|c| {
                buf.clear();
                write_key(&mut buf, domain_of(c), c.path.as_ref(), c.name());
                let seq = self.created.get(buf.as_str()).copied().unwrap_or(u64::MAX);
                (c.path.as_ref().len(), seq, c)
            })
            .collect();
        ordered.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));

        // The client's bytes go out as they came: `to_str` would refuse a non-ASCII value
        // (e.g. UTF-8) and silently drop the client's cookies. Only the names are compared.
        let client_bytes = client.map_or(&b""[..], HeaderValue::as_bytes);
        let client_text = String::from_utf8_lossy(client_bytes);
        let client_names: Vec<&str> = client_text
            .split(';')
            .filter_map(|pair| pair.split_once('=').map(|(n, _)| n.trim()))
            .collect();
        let mut out = client_bytes.trim_ascii().to_vec();
        while out.last() == Some(&b';') {
            out.pop();
        }
        for (_, _, c) in ordered {
            if client_names.contains(&c.name()) {
                continue;
            }
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(c.name().as_bytes());
            out.push(b'=');
            out.extend_from_slice(c.value().as_bytes());
        }
        if out.is_empty() {
            return (None, until);
        }
        // Values came from headers we parsed, so they are valid header text; if not, the
        // client's header goes through alone rather than failing the request.
        let value = HeaderValue::from_bytes(&out)
            .ok()
            .or_else(|| client.cloned())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        (value, until)
    }

    /// Every stored cookie, for inspection (the admin API and tests).
    pub fn iter(&self) -> impl Iterator<Item = &cookie_store::Cookie<'static>> {
        self.store.iter_unexpired()
    }

    /// Whether a non-Secure cookie from plain http would shadow a stored Secure cookie of
    /// the same name (RFC 6265bis §5.7 step 15, "leave secure cookies alone").
    fn shadows_secure(&self, new: &cookie_store::Cookie<'_>) -> bool {
        let new_domain = domain_of(new);
        self.store.iter_unexpired().any(|old| {
            if old.name() != new.name() || !old.secure().unwrap_or(false) {
                return false;
            }
            let old_domain = domain_of(old);
            (domain_match(new_domain, old_domain) || domain_match(old_domain, new_domain))
                && path_match(new.path.as_ref(), old.path.as_ref())
        })
    }

    fn remove_key(&mut self, k: &str) {
        self.forget_worked_out();
        if let Some((d, p, n)) = split_key(k) {
            self.store.remove(d, p, n);
            self.changes.push(CookieChange::Delete {
                domain: d.to_string(),
                path: p.to_string(),
                name: n.to_string(),
            });
        }
        self.created.remove(k);
        self.persisted_expiry.remove(k);
    }

    /// Drops expired cookies, then the oldest of the domain over its limit, then the
    /// oldest of the jar over its limit.
    fn enforce_limits(&mut self, just_added: &str) {
        let expired: Vec<String> = self
            .store
            .iter_any()
            .filter(|c| c.is_expired())
            .map(cookie_key)
            .collect();
        for k in &expired {
            self.remove_key(k);
        }
        let domain = just_added
            .split('\0')
            .next()
            .unwrap_or_default()
            .to_string();
        let prefix = format!("{domain}\0");
        loop {
            let in_domain = self.created.iter().filter(|(k, _)| k.starts_with(&prefix));
            if in_domain.clone().count() <= self.limits.max_per_domain {
                break;
            }
            let oldest = in_domain
                .min_by_key(|(_, seq)| **seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.remove_key(&k),
                None => break,
            }
        }
        while self.created.len() > self.limits.max_per_session {
            let oldest = self
                .created
                .iter()
                .min_by_key(|(_, seq)| **seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.remove_key(&k),
                None => break,
            }
        }
    }
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `scheme:host/path` of a request, then `extra`: what decides which cookies a request
/// is sent, and (with the header as `extra`) what a `Set-Cookie` it gets stores.
fn request_key(url: &Url, extra: &str) -> String {
    let host = url.host_str().unwrap_or("");
    let mut key =
        String::with_capacity(url.scheme().len() + host.len() + url.path().len() + extra.len() + 2);
    key.push_str(url.scheme());
    key.push(':');
    key.push_str(host);
    key.push_str(url.path());
    key.push('\0');
    key.push_str(extra);
    key
}

/// Whether `new` says exactly what `old` (stored under the same domain, path and name)
/// says. An expiry that moved by less than a second counts as the same: a `Max-Age`
/// re-sent on every response would otherwise make every response an update, and a
/// cookie that expires up to a second early is what a second-granular `Expires` gives.
fn same_cookie(old: &cookie_store::Cookie<'_>, new: &cookie_store::Cookie<'_>) -> bool {
    use cookie_store::CookieExpiration::{AtUtc, SessionEnd};
    let expiry_same = match (&old.expires, &new.expires) {
        (SessionEnd, SessionEnd) => true,
        (AtUtc(a), AtUtc(b)) => (*a - *b).abs() < time::Duration::SECOND,
        _ => false,
    };
    expiry_same
        && old.value() == new.value()
        && old.domain == new.domain
        && old.secure() == new.secure()
        && old.http_only() == new.http_only()
        && old.same_site() == new.same_site()
}

fn split_key(k: &str) -> Option<(&str, &str, &str)> {
    let mut parts = k.splitn(3, '\0');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// A URL from which a stored cookie could have been set, for re-inserting it.
fn origin_url(c: &StoredCookie) -> Option<Url> {
    let scheme = if c.secure { "https" } else { "http" };
    // cookie_store keeps an IPv6 host in brackets (`[::1]`); an imported one may lack them.
    let host = if c.domain.contains(':') && !c.domain.starts_with('[') {
        format!("[{}]", c.domain)
    } else {
        c.domain.clone()
    };
    Url::parse(&format!("{scheme}://{host}{}", c.path)).ok()
}

/// The `Set-Cookie` a stored cookie stands for.
fn raw_cookie(c: &StoredCookie) -> RawCookie<'static> {
    let mut raw = RawCookie::new(c.name.clone(), c.value.clone());
    raw.set_path(c.path.clone());
    if !c.host_only {
        raw.set_domain(c.domain.clone());
    }
    raw.set_secure(c.secure);
    raw.set_http_only(c.http_only);
    if let Some(same_site) = c.same_site.as_deref() {
        raw.set_same_site(match same_site.to_ascii_lowercase().as_str() {
            "strict" => Some(cookie::SameSite::Strict),
            "lax" => Some(cookie::SameSite::Lax),
            "none" => Some(cookie::SameSite::None),
            _ => None,
        });
    }
    if let Some(at) = c
        .expires
        .and_then(|e| time::OffsetDateTime::from_unix_timestamp(e).ok())
    {
        raw.set_expires(at);
    }
    raw
}

/// Secure-origin rules of RFC 6265bis §5.7: the Secure attribute and the name prefixes.
fn check_security(raw: &RawCookie<'_>, url: &Url) -> Result<(), &'static str> {
    let secure_origin = url.scheme() == "https";
    let secure = raw.secure().unwrap_or(false);
    if secure && !secure_origin {
        return Err("Secure cookie set over plain http");
    }
    let name = raw.name().as_bytes();
    let has_prefix = |p: &[u8]| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p);
    if has_prefix(b"__Secure-") && !(secure && secure_origin) {
        return Err("__Secure- cookie without Secure from https");
    }
    if has_prefix(b"__Host-")
        && !(secure && secure_origin && raw.domain().is_none() && raw.path() == Some("/"))
    {
        return Err("__Host- cookie without Secure, https, Path=/ and no Domain");
    }
    Ok(())
}

fn is_public_suffix(domain: &str) -> bool {
    psl::suffix_str(domain) == Some(domain)
}

/// RFC 6265 §5.1.3: `host` domain-matches `domain`.
fn domain_match(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// RFC 6265 §5.1.4: `request_path` path-matches `cookie_path`.
fn path_match(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

#[cfg(test)]
mod tests;
