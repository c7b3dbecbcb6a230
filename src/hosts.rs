//! Host patterns as users write them in `hosts`, `allow_hosts` and `deny_hosts`:
//! `api.example.com` (exactly that host), `*.example.com` (any host below it, at any depth,
//! but not `example.com` itself) and `*` (every host). Matching ignores case and a trailing dot.

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// Stored with its leading dot (`.example.com`) so a match is one `ends_with`.
    Below(String),
}

/// An ordered list of host patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostList(Vec<HostPattern>);

impl HostList {
    /// Parses patterns; on error returns the index of the bad one and why.
    pub fn parse(patterns: &[String]) -> Result<HostList, (usize, String)> {
        patterns
            .iter()
            .enumerate()
            .map(|(i, p)| parse_pattern(p).map_err(|reason| (i, reason)))
            .collect::<Result<Vec<_>, _>>()
            .map(HostList)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `host` (as it appears in a URL: lower-case, IPv6 without brackets) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        self.0.iter().any(|p| match p {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Below(suffix) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        })
    }
}

/// A host as patterns, resolvers and certificates see it: an IPv6 literal without its
/// brackets (`[::1]` → `::1`); anything else unchanged.
pub fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A URL's host as patterns see it: IPv6 without its brackets.
pub fn url_host(url: &url::Url) -> &str {
    unbracket(url.host_str().unwrap_or_default())
}

fn parse_pattern(p: &str) -> Result<HostPattern, String> {
    let p = p.trim().to_ascii_lowercase();
    if p == "*" {
        return Ok(HostPattern::Any);
    }
    let (below, name) = match p.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, p.as_str()),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let name = unbracket(name);
    let ok = !name.is_empty()
        && (name.parse::<std::net::IpAddr>().is_ok()
            || name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }));
    if !ok {
        return Err(format!(
            "{p:?} is not a host pattern (use \"host.example\", \"*.example\" or \"*\"; no scheme, port or path)"
        ));
    }
    Ok(if below {
        HostPattern::Below(format!(".{name}"))
    } else {
        HostPattern::Exact(name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> HostList {
        HostList::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_matches_only_that_host() {
        let l = list(&["api.example.com"]);
        assert!(l.matches("api.example.com"));
        assert!(l.matches("API.Example.com."));
        assert!(!l.matches("example.com"));
        assert!(!l.matches("x.api.example.com"));
        assert!(!l.matches("evilapi.example.com"));
    }

    #[test]
    fn wildcard_matches_below_not_apex() {
        let l = list(&["*.example.com"]);
        assert!(l.matches("a.example.com"));
        assert!(l.matches("a.b.example.com"));
        assert!(!l.matches("example.com"));
        assert!(!l.matches("badexample.com"));
    }

    #[test]
    fn star_matches_all_and_empty_matches_none() {
        assert!(list(&["*"]).matches("anything.test"));
        assert!(!HostList::default().matches("anything.test"));
    }

    #[test]
    fn ip_literals() {
        let l = list(&["127.0.0.1", "[::1]"]);
        assert!(l.matches("127.0.0.1"));
        assert!(l.matches("::1"));
    }

    #[test]
    fn rejects_urls_and_ports() {
        for bad in ["http://a.com", "a.com:80", "a.com/x", "", "*.", "a..b"] {
            let err = HostList::parse(&[bad.to_string()]).unwrap_err();
            assert_eq!(err.0, 0, "{bad}");
        }
    }
}
