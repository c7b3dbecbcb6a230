//! The request target as a [`Url`] (the jar and the host rules need its parts), without
//! parsing the scheme and authority again on every request.
//!
//! `Url::parse` spends most of its time on the host (IDNA mapping, IP address forms).
//! Each worker thread keeps the URLs of the last few origins it saw, with path and query
//! cleared; a request to one of them clones that URL and sets its own path and query,
//! which the `url` crate parses exactly as a whole-URL parse would.

use std::cell::RefCell;

use http::Uri;
use url::Url;

/// Origins remembered per worker thread; a proxy's clients talk to few at a time.
const ORIGINS: usize = 8;

thread_local! {
    /// `(scheme://authority, that URL with path "/" and no query)`, most recent last.
    static ORIGIN_URLS: RefCell<Vec<(Box<str>, Url)>> = const { RefCell::new(Vec::new()) };
}

/// `uri` (absolute form, with a scheme and an authority) as a `Url`.
pub fn target_url(uri: &Uri) -> Result<Url, url::ParseError> {
    let scheme = uri.scheme_str().unwrap_or("http");
    let authority = uri.authority().map_or("", |a| a.as_str());
    let path = uri.path();
    let query = uri.query();
    ORIGIN_URLS.with_borrow_mut(|origins| {
        let known = origins.iter().position(|(key, _)| {
            key.len() == scheme.len() + 3 + authority.len()
                && key.starts_with(scheme)
                && key[scheme.len()..].starts_with("://")
                && key.ends_with(authority)
        });
        if let Some(i) = known {
            let mut url = origins[i].1.clone();
            url.set_path(path);
            url.set_query(query);
            return Ok(url);
        }
        let key = format!("{scheme}://{authority}");
        let mut origin = Url::parse(&key)?;
        origin.set_path("/");
        origin.set_query(None);
        let mut url = origin.clone();
        url.set_path(path);
        url.set_query(query);
        if origins.len() >= ORIGINS {
            origins.remove(0);
        }
        origins.push((key.into_boxed_str(), origin));
        Ok(url)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the cache holds, the answer is what parsing the whole URI gives.
    #[test]
    fn matches_a_whole_parse_first_and_from_the_cache() {
        let targets = [
            "http://example.com/",
            "http://example.com/a/b?x=1&y=%20z",
            "http://EXAMPLE.com:80/a/../b/./c",
            "http://example.com/caf%C3%A9?q=caf%C3%A9",
            "https://example.com:8443/p?",
            "http://127.0.0.1:8080/1k",
            "http://[::1]:9000/x?y",
            "http://xn--bcher-kva.example/",
            "http://example.com/a%2fb/%2e%2e/c",
            "http://example.com/with%7Btemplate%7D/",
            "https://example.com",
            "http://example.com:0/",
        ];
        for round in 0..2 {
            for t in targets {
                let uri: Uri = t.parse().unwrap();
                let whole = Url::parse(&uri.to_string()).unwrap();
                let ours = target_url(&uri).unwrap();
                assert_eq!(ours.as_str(), whole.as_str(), "{t} (round {round})");
            }
        }
    }

    #[test]
    fn an_origin_is_not_mistaken_for_another() {
        let a = target_url(&"http://a.example:8080/x".parse().unwrap()).unwrap();
        let b = target_url(&"https://a.example:8080/x".parse().unwrap()).unwrap();
        let c = target_url(&"http://b.a.example:8080/x".parse().unwrap()).unwrap();
        assert_eq!(a.scheme(), "http");
        assert_eq!(b.scheme(), "https");
        assert_eq!(c.host_str(), Some("b.a.example"));
    }

    #[test]
    fn a_bad_host_is_an_error_every_time() {
        for _ in 0..2 {
            for bad in ["http://999.1.1.1/", "http://1.2.3.4.5/x"] {
                let uri: Uri = bad.parse().unwrap();
                assert!(Url::parse(bad).is_err(), "{bad}");
                assert!(target_url(&uri).is_err(), "{bad}");
            }
        }
    }
}
