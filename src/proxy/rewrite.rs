//! Rewriting a request for its origin and a response for its client: hop-by-hop headers
//! out (both ways), `Via` in, `Host` rebuilt, then the session's treatment: its header
//! rules, its credentials for this host only, and its cookies.

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::config::SessionSettings;
use crate::session::Session;

/// Chooses the session; never forwarded.
pub const X_SESSION: HeaderName = HeaderName::from_static("x-session");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the
/// proxy-only ones. `Upgrade` is among them, and put back for a real upgrade.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    // By text: a match on strings compares lengths first, cheaper than comparing with
    // nine names (two of them not standard ones) in turn.
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes `Connection`, every header it names, and the fixed hop-by-hop set
/// ([`is_hop_by_hop`]).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names, then only those present are removed: most messages carry
    // one or none, and each removal hashes a name and probes the map.
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k))
        .cloned()
        .collect();
    if present.is_empty() {
        return;
    }
    // Names listed in Connection are collected first: removing while iterating the
    // header's values is not possible, and the list is short.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named.into_iter().chain(present) {
        headers.remove(name);
    }
}

/// The protocol a message asks to switch to: its `Upgrade` value when `Connection` lists
/// `upgrade`. Call before [`strip_hop_by_hop`], and restore with [`keep_upgrade`].
pub fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Puts a real upgrade back after the hop-by-hop headers were removed.
pub fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::UPGRADE, protocol);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// Appends this proxy to `Via` (RFC 9110 §7.6.3) for a message received as `version`.
pub fn add_via(headers: &mut HeaderMap, version: Version) {
    let ours = match version {
        Version::HTTP_09 => "0.9 sessiond",
        Version::HTTP_10 => "1.0 sessiond",
        Version::HTTP_2 => "2 sessiond",
        Version::HTTP_3 => "3 sessiond",
        _ => "1.1 sessiond",
    };
    headers.append(header::VIA, HeaderValue::from_static(ours));
}

/// Applies the session's header rules, credentials and cookies for a request to `url`.
pub fn apply_session(
    headers: &mut HeaderMap,
    session: &Session,
    settings: &SessionSettings,
    url: &Url,
) {
    for name in &settings.remove_headers {
        headers.remove(name);
    }
    for (name, value) in &settings.headers {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    for (name, value) in &settings.override_headers {
        headers.insert(name.clone(), value.clone());
    }

    let host = crate::hosts::url_host(url);
    // The first matching credential for a header wins; later ones for the same header
    // do not replace what a credential already set.
    let mut set_by_us: Vec<&HeaderName> = Vec::new();
    for cred in &settings.auth {
        if !cred.hosts.matches(host) || set_by_us.contains(&&cred.header) {
            continue;
        }
        if headers.contains_key(&cred.header) && !cred.override_client {
            continue;
        }
        headers.insert(cred.header.clone(), cred.value.clone());
        set_by_us.push(&cred.header);
    }

    apply_cookies(headers, session, url);
}

/// Merges the jar's cookies into the client's `Cookie` header.
fn apply_cookies(headers: &mut HeaderMap, session: &Session, url: &Url) {
    // HTTP/2 clients may split cookies over several headers; fold them first.
    let client = match headers.get_all(header::COOKIE).iter().count() {
        0 => None,
        1 => headers.get(header::COOKIE).cloned(),
        _ => {
            let joined = headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join("; ");
            HeaderValue::from_str(&joined).ok()
        }
    };
    let merged = session.jar().cookie_header(url, client.as_ref());
    headers.remove(header::COOKIE);
    if let Some(v) = merged {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn the_hop_by_hop_set_is_exactly_rfc_9110s_and_the_proxy_ones() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "proxy-authenticate",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ] {
            let upper = name.to_ascii_uppercase();
            assert!(
                is_hop_by_hop(&HeaderName::from_bytes(upper.as_bytes()).unwrap()),
                "{name}"
            );
        }
        for name in [
            "cookie",
            "host",
            "content-length",
            "x-session",
            "authorization",
            "trailers",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn via_is_appended_not_replaced() {
        let mut h = HeaderMap::new();
        h.insert(header::VIA, HeaderValue::from_static("1.1 other"));
        add_via(&mut h, Version::HTTP_11);
        let all: Vec<_> = h.get_all(header::VIA).iter().collect();
        assert_eq!(all, ["1.1 other", "1.1 sessiond"]);
    }
}
