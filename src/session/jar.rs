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
    /// An expired cookie deleted a stored one.
    Removed,
    /// The cookie was refused; the reason is for the debug log (never the value).
    Ignored(&'static str),
}

impl SetOutcome {
    pub fn changed(self) -> bool {
        !matches!(self, SetOutcome::Ignored(_))
    }
}

pub struct Jar {
    store: CookieStore,
    /// Creation order of every stored cookie, keyed by [`key`]: cookie_store keeps no
    /// creation time, and both eviction and send order need it.
    created: HashMap<String, u64>,
    next_seq: u64,
    limits: CookieLimits,
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
        }
    }

    /// Number of stored, unexpired cookies.
    pub fn len(&self) -> usize {
        self.store.iter_unexpired().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records one `Set-Cookie` header received in a response to `url`.
    pub fn set_cookie(&mut self, header: &[u8], url: &Url) -> SetOutcome {
        let Ok(text) = std::str::from_utf8(header) else {
            return SetOutcome::Ignored("not UTF-8");
        };
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
        if !cookie.secure().unwrap_or(false)
            && url.scheme() != "https"
            && self.shadows_secure(&cookie)
        {
            return SetOutcome::Ignored("would overwrite a Secure cookie from plain http");
        }
        let k = cookie_key(&cookie);
        match self.store.insert(cookie, url) {
            Ok(StoreAction::Inserted) => {
                self.created.insert(k.clone(), self.next_seq);
                self.next_seq += 1;
                self.enforce_limits(&k);
                SetOutcome::Stored
            }
            Ok(StoreAction::UpdatedExisting) => {
                // RFC 6265 §5.3 step 11.3: a replaced cookie keeps its creation time.
                if !self.created.contains_key(&k) {
                    self.created.insert(k, self.next_seq);
                    self.next_seq += 1;
                }
                SetOutcome::Updated
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
    pub fn cookie_header(&self, url: &Url, client: Option<&HeaderValue>) -> Option<HeaderValue> {
        let mut matched: Vec<_> = self.store.matches(url);
        if matched.is_empty() {
            return client.cloned();
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
            return None;
        }
        // Values came from headers we parsed, so they are valid header text; if not, the
        // client's header goes through alone rather than failing the request.
        let mut value = HeaderValue::from_bytes(&out)
            .ok()
            .or_else(|| client.cloned())?;
        value.set_sensitive(true);
        Some(value)
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
        let mut parts = k.splitn(3, '\0');
        if let (Some(d), Some(p), Some(n)) = (parts.next(), parts.next(), parts.next()) {
            self.store.remove(d, p, n);
        }
        self.created.remove(k);
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
