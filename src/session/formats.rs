//! Cookie import and export formats over [`StoredCookie`]: Netscape `cookies.txt` (as curl
//! `-c` writes it and `-b` reads it; also what wget and yt-dlp write) and a JSON form with
//! every attribute. Pure functions on strings and values; the callers do the I/O.
//!
//! Imports are all or nothing: the first bad line or item is reported and no cookie is
//! returned, so a broken file never half-replaces a jar.
//!
//! # cookies.txt
//!
//! One cookie per line, seven TAB-separated fields:
//!
//! ```text
//! #HttpOnly_.example.com  TRUE  /  FALSE  1795484703  sid  abc123
//! www.example.com         FALSE /  TRUE   0           theme dark
//! ```
//!
//! domain (a leading dot and `TRUE` in the next field mean "and its subdomains"; the
//! `#HttpOnly_` prefix marks an HttpOnly cookie), include-subdomains flag, path, Secure,
//! expiry in unix seconds (`0` for a session cookie), name, value. Lines starting with `#`
//! (other than `#HttpOnly_`) and blank lines are skipped. When reading, these are also
//! accepted because other tools write them: a missing value field (an empty value whose
//! trailing TAB was trimmed), an empty expiry for a session cookie (Python's
//! `MozillaCookieJar`, yt-dlp), `TRUE`/`FALSE` in any case, and wget's `host:port` domain
//! for a host-only cookie from a non-default port (the port is dropped: cookies do not
//! depend on ports). SameSite has no field in this format, so it is lost on export.
//!
//! # JSON
//!
//! An array of objects, one per cookie:
//!
//! ```json
//! [{"domain": "example.com", "host_only": false, "path": "/", "name": "sid",
//!   "value": "abc123", "secure": true, "http_only": true, "same_site": "Lax",
//!   "expires": 1795484703, "created": 0}]
//! ```
//!
//! `domain` has no leading dot (`host_only: false` is what sends a cookie to subdomains);
//! `same_site` is `null`, `"Strict"`, `"Lax"` or `"None"`; `expires` is unix seconds or
//! `null` for a session cookie; `created` orders cookies (older first). On input
//! `same_site`, `expires` and `created` may be left out (`created` then defaults to the
//! position in the array); every other field is required and unknown fields are refused.

use serde::Deserialize;
use serde_json::{Value, json};

use super::jar::StoredCookie;

/// The first line of every cookies.txt curl writes; some readers insist on it.
const NETSCAPE_MAGIC: &str = "# Netscape HTTP Cookie File";
const HTTP_ONLY_PREFIX: &str = "#HttpOnly_";

/// Why an import was refused, and where. When an import fails nothing is imported.
///
/// The reason never contains a cookie value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", location(*.line, *.item))]
pub struct FormatError {
    /// cookies.txt: the 1-based line. JSON: the 1-based line of a syntax error, else 0.
    pub line: usize,
    /// JSON only: the 0-based index in the array of the cookie that is wrong.
    pub item: Option<usize>,
    pub reason: String,
}

/// `line 3: `, `item 2: `, or nothing when the error is about the whole document.
fn location(line: usize, item: Option<usize>) -> String {
    match (item, line) {
        (Some(item), _) => format!("item {item}: "),
        (None, 0) => String::new(),
        (None, line) => format!("line {line}: "),
    }
}

impl FormatError {
    fn at_line(line: usize, reason: impl Into<String>) -> FormatError {
        FormatError {
            line,
            item: None,
            reason: reason.into(),
        }
    }

    fn at_item(item: usize, reason: impl Into<String>) -> FormatError {
        FormatError {
            line: 0,
            item: Some(item),
            reason: reason.into(),
        }
    }
}

// ---- cookies.txt ----

/// The cookies as curl writes a cookies.txt, in the order given.
///
/// A cookie whose domain, path, name or value holds a TAB, CR or LF cannot be written in
/// this format (the line would not read back) and is left out.
pub fn to_netscape(cookies: &[StoredCookie]) -> String {
    let mut out = format!("{NETSCAPE_MAGIC}\n# Written by sessiond\n\n");
    for c in cookies {
        let fields = [&c.domain, &c.path, &c.name, &c.value];
        if fields.iter().any(|f| f.contains(['\t', '\r', '\n'])) {
            continue;
        }
        let flag = |b: bool| if b { "TRUE" } else { "FALSE" };
        // Expiry 0 means "session cookie" to every reader, so an (already expired) cookie
        // dated at or before the epoch is written as 1 to stay expired.
        let expires = c.expires.map_or(0, |e| e.max(1));
        out.push_str(&format!(
            "{}{}{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            if c.http_only { HTTP_ONLY_PREFIX } else { "" },
            if c.host_only { "" } else { "." },
            c.domain,
            flag(!c.host_only),
            c.path,
            flag(c.secure),
            expires,
            c.name,
            c.value,
        ));
    }
    out
}

/// Reads a cookies.txt (curl, wget, yt-dlp, browser export extensions). `created` follows
/// the order of the lines.
pub fn from_netscape(text: &str) -> Result<Vec<StoredCookie>, FormatError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut cookies = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let created = cookies.len() as u64;
        let parsed = netscape_line(line, created).map_err(|r| FormatError::at_line(i + 1, r))?;
        cookies.extend(parsed);
    }
    Ok(cookies)
}

/// One line: `Ok(None)` for a comment or blank line.
fn netscape_line(line: &str, created: u64) -> Result<Option<StoredCookie>, String> {
    let (http_only, line) = match line.strip_prefix(HTTP_ONLY_PREFIX) {
        Some(rest) => (true, rest),
        None if line.starts_with('#') || line.trim().is_empty() => return Ok(None),
        None => (false, line),
    };
    let mut fields: Vec<&str> = line.split('\t').collect();
    // curl writes `name<TAB>` for an empty value; an editor may trim that last TAB.
    if fields.len() == 6 {
        fields.push("");
    }
    let [domain, subdomains, path, secure, expires, name, value] = fields[..] else {
        return Err(format!(
            "expected 7 TAB-separated fields, found {}",
            fields.len()
        ));
    };
    let (leading_dot, domain) = match domain.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, domain),
    };
    let cookie = StoredCookie {
        domain: without_port(domain).to_string(),
        host_only: !(leading_dot || netscape_bool(subdomains, "include-subdomains flag")?),
        path: path.to_string(),
        name: name.to_string(),
        value: value.to_string(),
        secure: netscape_bool(secure, "secure flag")?,
        http_only,
        same_site: None,
        expires: netscape_expiry(expires)?,
        created,
    };
    check(&cookie)?;
    Ok(Some(cookie))
}

fn netscape_bool(field: &str, what: &str) -> Result<bool, String> {
    if field.eq_ignore_ascii_case("TRUE") {
        Ok(true)
    } else if field.eq_ignore_ascii_case("FALSE") {
        Ok(false)
    } else {
        Err(format!("{what} must be TRUE or FALSE, not {field:?}"))
    }
}

/// `0` (curl, wget) or empty (Python's cookiejar) is a session cookie.
fn netscape_expiry(field: &str) -> Result<Option<i64>, String> {
    if field.is_empty() {
        return Ok(None);
    }
    match field.parse::<i64>() {
        Ok(0) => Ok(None),
        Ok(e) if e > 0 => Ok(Some(e)),
        _ => Err(format!(
            "expiry must be unix seconds (an integer, 0 for a session cookie), not {field:?}"
        )),
    }
}

/// wget writes `host:port` for a host-only cookie set from a non-default port. An IPv6
/// address has more than one colon and is left alone.
fn without_port(domain: &str) -> &str {
    match domain.split_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !host.contains(':') =>
        {
            host
        }
        _ => domain,
    }
}

// ---- JSON ----

/// The cookies in the JSON form described at the top of this file, in the order given.
pub fn to_json(cookies: &[StoredCookie]) -> Value {
    Value::Array(
        cookies
            .iter()
            .map(|c| {
                json!({
                    "domain": c.domain,
                    "host_only": c.host_only,
                    "path": c.path,
                    "name": c.name,
                    "value": c.value,
                    "secure": c.secure,
                    "http_only": c.http_only,
                    "same_site": c.same_site,
                    "expires": c.expires,
                    "created": c.created,
                })
            })
            .collect(),
    )
}

/// Parses JSON text, then reads it as [`from_json`] does.
pub fn from_json_str(text: &str) -> Result<Vec<StoredCookie>, FormatError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json ends its message with the position; the line goes in its own field.
        let message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let reason = message.strip_suffix(&suffix).unwrap_or(&message);
        FormatError::at_line(e.line(), format!("{reason} (column {})", e.column()))
    })?;
    from_json(&value)
}

/// Reads the JSON form: an array of cookie objects.
pub fn from_json(value: &Value) -> Result<Vec<StoredCookie>, FormatError> {
    let Value::Array(items) = value else {
        return Err(FormatError::at_line(0, "expected a JSON array of cookies"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| json_item(item, i).map_err(|r| FormatError::at_item(i, r)))
        .collect()
}

/// A cookie as the JSON form spells it; see the top of this file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCookie {
    domain: String,
    host_only: bool,
    path: String,
    name: String,
    value: String,
    secure: bool,
    http_only: bool,
    #[serde(default)]
    same_site: Option<String>,
    #[serde(default)]
    expires: Option<i64>,
    #[serde(default)]
    created: Option<u64>,
}

fn json_item(item: &Value, index: usize) -> Result<StoredCookie, String> {
    if !item.is_object() {
        return Err("expected a cookie object".to_string());
    }
    let c: JsonCookie = serde_path_to_error::deserialize(item).map_err(|e| {
        let field = format!("`{}`", e.path());
        let message = e.into_inner().to_string();
        if field == "`value`" {
            // serde quotes the unexpected input, which here would be the cookie's value.
            "`value` must be a string".to_string()
        } else if field == "`.`" || message.contains(&field) {
            message
        } else {
            format!("{field}: {message}")
        }
    })?;
    if let Some(s) = c.same_site.as_deref()
        && !matches!(s, "Strict" | "Lax" | "None")
    {
        return Err("`same_site` must be null, \"Strict\", \"Lax\" or \"None\"".to_string());
    }
    if c.expires.is_some_and(|e| e < 0) {
        return Err("`expires` must be unix seconds (≥ 0) or null".to_string());
    }
    if c.domain.starts_with('.') {
        return Err(
            "`domain` is written without a leading dot (host_only: false sends it to subdomains)"
                .to_string(),
        );
    }
    let cookie = StoredCookie {
        domain: c.domain,
        host_only: c.host_only,
        path: c.path,
        name: c.name,
        value: c.value,
        secure: c.secure,
        http_only: c.http_only,
        same_site: c.same_site,
        expires: c.expires,
        created: c.created.unwrap_or(index as u64),
    };
    check(&cookie)?;
    Ok(cookie)
}

// ---- both ----

/// What both formats require of a cookie, so that what is imported is what a server could
/// have set and the jar can send back. Reasons never quote the value.
fn check(c: &StoredCookie) -> Result<(), String> {
    let bad_char =
        |s: &str, also: &[char]| s.chars().any(|ch| ch.is_control() || also.contains(&ch));
    if c.domain.is_empty() {
        return Err("empty domain".to_string());
    }
    if bad_char(&c.domain, &[' ', '/', ';']) {
        return Err(format!("domain {:?} is not a host name", c.domain));
    }
    if !c.path.starts_with('/') || bad_char(&c.path, &[';']) {
        return Err(format!(
            "path {:?} must start with / and hold no ';' or control characters",
            c.path
        ));
    }
    if c.name.is_empty() {
        return Err("empty cookie name".to_string());
    }
    if bad_char(&c.name, &['=', ';']) {
        return Err(format!(
            "cookie name {:?} holds '=', ';' or a control character",
            c.name
        ));
    }
    // A TAB is valid in a header value; nothing else below 0x20 is.
    if c.value
        .chars()
        .any(|ch| ch == ';' || (ch.is_control() && ch != '\t'))
    {
        return Err(format!(
            "the value of cookie {:?} holds ';' or a control character",
            c.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
