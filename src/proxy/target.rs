//! The request target as a [`Url`] (the jar and the host rules need its parts), without
//! parsing the scheme and authority again on every request.
//!
//! `Url::parse` spends most of its time on the host (IDNA mapping, IP address forms).
//! Each worker thread keeps the URLs of the last few origins it saw (`scheme://authority`,
//! whose path is `/`); a request to one of them clones that URL and sets its own path and query,
//! which the `url` crate parses exactly as a whole-URL parse would.

use std::cell::RefCell;

use http::Uri;
use url::Url;

/// Origins remembered per worker thread; a proxy's clients talk to few at a time.
const ORIGINS: usize = 8;

/// An origin as the request names it, and its URL (`scheme://authority/`).
struct Known {
    scheme: Box<str>,
    authority: Box<str>,
    url: Url,
}

thread_local! {
    /// Most recent last.
    static ORIGIN_URLS: RefCell<Vec<Known>> = const { RefCell::new(Vec::new()) };
}

/// `uri` (absolute form, with a scheme and an authority) as a `Url`.
pub fn target_url(uri: &Uri) -> Result<Url, url::ParseError> {
    let scheme = uri.scheme_str().unwrap_or("http");
    let authority = uri.authority().map_or("", |a| a.as_str());
    let path = uri.path();
    let query = uri.query();
    ORIGIN_URLS.with_borrow_mut(|origins| {
        let known = origins
            .iter()
            .position(|k| *k.scheme == *scheme && *k.authority == *authority);
        let i = match known {
            Some(i) => i,
            None => {
                let origin = Url::parse(&format!("{scheme}://{authority}"))?;
                if origins.len() >= ORIGINS {
                    origins.remove(0);
                }
                origins.push(Known {
                    scheme: scheme.into(),
                    authority: authority.into(),
                    url: origin,
                });
                origins.len() - 1
            }
        };
        let mut url = origins[i].url.clone();
        url.set_path(path);
        url.set_query(query);
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
