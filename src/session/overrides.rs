//! Runtime header settings: what `PATCH /sessions/NAME` changes in a session, kept in the
//! store as JSON and laid over the configured (or template) settings at every load.
//!
//! Each field that is given replaces that whole list; a field that is absent leaves the
//! list as it was. Only `headers`, `override_headers` and `remove_headers` change at run
//! time: credentials, timeouts, host rules and TLS stay as configured.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::{SessionSettings, header_value, settable_header_name};

/// The JSON form, as the admin API receives it and the store keeps it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    override_headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remove_headers: Option<Vec<String>>,
}

/// Validated header lists that replace a session's configured ones; `None` keeps those.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOverrides {
    pub headers: Option<Vec<(HeaderName, HeaderValue)>>,
    pub override_headers: Option<Vec<(HeaderName, HeaderValue)>>,
    pub remove_headers: Option<Vec<HeaderName>>,
}

impl HeaderOverrides {
    /// Parses and validates a JSON object. The error names the field and the header (never
    /// a header's value).
    pub fn from_json(text: &str) -> Result<HeaderOverrides, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("the body is not JSON: {e}"))?;
        if !value.is_object() {
            return Err("the body must be a JSON object".into());
        }
        let raw: Raw = serde_path_to_error::deserialize(value).map_err(|e| {
            match e.path().to_string().as_str() {
                "." => e.inner().to_string(),
                path => format!("{path}: {}", e.inner()),
            }
        })?;
        Ok(HeaderOverrides {
            headers: raw.headers.map(|t| pairs("headers", t)).transpose()?,
            override_headers: raw
                .override_headers
                .map(|t| pairs("override_headers", t))
                .transpose()?,
            remove_headers: raw
                .remove_headers
                .map(|names| {
                    names
                        .iter()
                        .enumerate()
                        .map(|(i, name)| {
                            settable_header_name(name)
                                .map_err(|r| format!("remove_headers[{i}] {name:?}: {r}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
        })
    }

    /// The JSON the store keeps; [`from_json`](Self::from_json) reads it back.
    pub fn to_json(&self) -> String {
        let table = |list: &[(HeaderName, HeaderValue)]| -> BTreeMap<String, String> {
            list.iter()
                .map(|(n, v)| {
                    // Validated values are visible ASCII, so `to_str` cannot fail.
                    (n.to_string(), v.to_str().unwrap_or_default().to_string())
                })
                .collect()
        };
        let raw = Raw {
            headers: self.headers.as_deref().map(table),
            override_headers: self.override_headers.as_deref().map(table),
            remove_headers: self
                .remove_headers
                .as_ref()
                .map(|l| l.iter().map(|n| n.to_string()).collect()),
        };
        serde_json::to_string(&raw).expect("string maps always serialize")
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_none() && self.override_headers.is_none() && self.remove_headers.is_none()
    }

    /// Lays `newer` over `self`: each field it gives replaces this one's.
    pub fn merge(&mut self, newer: HeaderOverrides) {
        if newer.headers.is_some() {
            self.headers = newer.headers;
        }
        if newer.override_headers.is_some() {
            self.override_headers = newer.override_headers;
        }
        if newer.remove_headers.is_some() {
            self.remove_headers = newer.remove_headers;
        }
    }

    /// `base` with these lists in place of its own.
    pub fn apply(&self, base: &SessionSettings) -> SessionSettings {
        let mut settings = base.clone();
        if let Some(h) = &self.headers {
            settings.headers = h.clone();
        }
        if let Some(h) = &self.override_headers {
            settings.override_headers = h.clone();
        }
        if let Some(h) = &self.remove_headers {
            settings.remove_headers = h.clone();
        }
        settings
    }
}

fn pairs(
    field: &str,
    table: BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    table
        .into_iter()
        .map(|(name, value)| {
            let n = settable_header_name(&name).map_err(|r| format!("{field}.{name:?}: {r}"))?;
            let v = header_value(&value).map_err(|r| format!("{field}.{name:?}: {r}"))?;
            Ok((n, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SessionSettings {
        let config = crate::config::Config::from_toml(
            "[template]\nheaders = { \"X-Base\" = \"1\" }\nremove_headers = [\"x-drop\"]\n",
        )
        .unwrap();
        (*config.template).clone()
    }

    #[test]
    fn parses_and_round_trips() {
        let o = HeaderOverrides::from_json(
            r#"{"headers":{"X-A":"1"},"override_headers":{},"remove_headers":["X-B"]}"#,
        )
        .unwrap();
        assert_eq!(
            o.headers,
            Some(vec![(
                HeaderName::from_static("x-a"),
                HeaderValue::from_static("1")
            )])
        );
        assert_eq!(o.override_headers, Some(vec![]));
        assert_eq!(o.remove_headers, Some(vec![HeaderName::from_static("x-b")]));
        assert_eq!(HeaderOverrides::from_json(&o.to_json()).unwrap(), o);
        let empty = HeaderOverrides::from_json("{}").unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.to_json(), "{}");
    }

    #[test]
    fn refuses_bad_bodies_naming_field_and_header() {
        let err = |text: &str| HeaderOverrides::from_json(text).unwrap_err();
        assert!(err(r#"{"cookies":{}}"#).contains("unknown field `cookies`"));
        assert!(err("[]").contains("JSON object"));
        assert!(err("not json").contains("not JSON"));
        let e = err(r#"{"headers":{"A":1}}"#);
        assert!(e.starts_with("headers.A: ") && e.contains("string"), "{e}");
        let e = err(r#"{"headers":{"Bad Name":"1"}}"#);
        assert!(
            e.contains("headers.\"Bad Name\"") && e.contains("not a valid"),
            "{e}"
        );
        let e = err(r#"{"override_headers":{"Connection":"close"}}"#);
        assert!(
            e.contains("override_headers.\"Connection\"") && e.contains("hop-by-hop"),
            "{e}"
        );
        let e = err(r#"{"headers":{"X-A":"line\nbreak"}}"#);
        assert!(e.contains("headers.\"X-A\"") && !e.contains("break"), "{e}");
        let e = err(r#"{"remove_headers":["ok","transfer-encoding"]}"#);
        assert!(
            e.contains("remove_headers[1]") && e.contains("hop-by-hop"),
            "{e}"
        );
    }

    #[test]
    fn given_fields_replace_absent_ones_stay() {
        let base = settings();
        let mut o = HeaderOverrides::from_json(r#"{"override_headers":{"X-O":"2"}}"#).unwrap();
        let applied = o.apply(&base);
        assert_eq!(applied.headers, base.headers);
        assert_eq!(applied.remove_headers, base.remove_headers);
        assert_eq!(applied.override_headers[0].0, "x-o");

        o.merge(HeaderOverrides::from_json(r#"{"headers":{}}"#).unwrap());
        let applied = o.apply(&base);
        assert!(
            applied.headers.is_empty(),
            "an empty object clears the list"
        );
        assert_eq!(
            applied.override_headers[0].0, "x-o",
            "kept from the first patch"
        );
        assert_eq!(applied.remove_headers, base.remove_headers);
    }
}
