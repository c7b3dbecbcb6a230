//! The admin API, on `admin.listen`. With `admin.token` (or `admin.token_file`) every call
//! needs `Authorization: Bearer TOKEN`; without one only loopback clients are answered.
//! Errors are JSON objects `{"error": "..."}` with a fitting status.
//!
//! | endpoint                                   | what                                      |
//! |--------------------------------------------|-------------------------------------------|
//! | `GET /healthz`                             | `200 ok` while the process serves         |
//! | `GET /readyz`                              | `200`; `503` while store commits fail     |
//! | `GET /metrics`                             | Prometheus (OpenMetrics) text             |
//! | `GET /sessions`                            | every session, in memory or in the store  |
//! | `GET /sessions/NAME`                       | one session's settings (no secrets)       |
//! | `DELETE /sessions/NAME`                    | forget it (a configured one: its cookies) |
//! | `PATCH /sessions/NAME`                     | replace header lists at run time (stored) |
//! | `GET /sessions/NAME/cookies[?format=netscape]` | the jar, JSON or cookies.txt          |
//! | `PUT /sessions/NAME/cookies`               | replace the jar (JSON or cookies.txt)     |
//! | `POST /sessions/NAME/cookies`              | merge into the jar                        |
//! | `DELETE /sessions/NAME/cookies[?domain=D&name=N]` | clear all, or matching ones        |
//! | `GET /sessions/NAME/har[?secrets=true]`    | recent exchanges as HAR 1.2               |
//! | `GET /events[?session=NAME]`               | live exchanges, server-sent events        |
//! | `GET /ca.pem`                              | the local CA certificate                  |

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::config::Secret;
use crate::live::Live;
use crate::proxy::Proxy;
use crate::proxy::body::ProxyBody;
use crate::session::formats;
use crate::session::{ExchangeGuard, Origin, RegistryError};

/// The token of `Authorization: Bearer TOKEN`, if the request has one.
fn bearer<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The largest cookie import accepted.
const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

/// The largest `PATCH /sessions/NAME` body accepted.
const MAX_SETTINGS_BYTES: usize = 1024 * 1024;

pub struct Admin {
    proxy: Arc<Proxy>,
    ca_pem: String,
    /// `admin.token`; a reload may change it.
    token: Live<Option<Secret>>,
}

/// An admin call that failed: its status and message.
struct Failure(StatusCode, String);

type Reply = Result<Response<ProxyBody>, Failure>;

impl Admin {
    pub fn new(proxy: Arc<Proxy>, ca_pem: String, token: Option<Secret>) -> Admin {
        Admin {
            proxy,
            ca_pem,
            token: Live::new(token),
        }
    }

    /// Calls from now on need `token` (or, with `None`, come from loopback).
    pub fn set_token(&self, token: Option<Secret>) {
        self.token.set(Arc::new(token));
    }

    /// `peer` is the client's canonical address.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let reply = match self.authorize(&req, peer) {
            Ok(()) => self.route(req).await,
            Err(f) => Err(f),
        };
        reply.unwrap_or_else(|Failure(status, message)| {
            let mut resp = json_response(status, &json!({ "error": message }));
            if status == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"sessiond\""),
                );
            }
            resp
        })
    }

    fn authorize<B>(&self, req: &Request<B>, peer: SocketAddr) -> Result<(), Failure> {
        let token = self.token.get();
        let Some(token) = token.as_ref() else {
            return if peer.ip().is_loopback() {
                Ok(())
            } else {
                Err(Failure(
                    StatusCode::FORBIDDEN,
                    "without admin.token the admin API answers loopback clients only".into(),
                ))
            };
        };
        match bearer(req) {
            Some(t) if token.matches(t) => Ok(()),
            _ => Err(Failure(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <admin.token>".into(),
            )),
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Reply {
        let path = req.uri().path().trim_end_matches('/').to_string();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = req.method().clone();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["healthz"]) => Ok(text(StatusCode::OK, "ok\n".into())),
            (&Method::GET, ["readyz"]) => Ok(self.readyz()),
            (&Method::GET, ["metrics"]) => {
                let mut resp = text(StatusCode::OK, self.proxy.observer().metrics().render());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                Ok(resp)
            }
            (&Method::GET, ["ca.pem"]) => {
                let mut resp = text(StatusCode::OK, self.ca_pem.clone());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-pem-file"),
                );
                Ok(resp)
            }
            (&Method::GET, ["sessions"]) => self.list(),
            (&Method::GET, ["events"]) => Ok(self.events(&req)),
            (&Method::GET, ["sessions", name, "har"]) => self.har(name, &req),
            (&Method::GET, ["sessions", name]) => self.show(name),
            (&Method::DELETE, ["sessions", name]) => self.delete(name).await,
            (&Method::PATCH, ["sessions", name]) => {
                let name = name.to_string();
                self.patch(&name, req).await
            }
            (&Method::GET, ["sessions", name, "cookies"]) => self.cookies(name, &req),
            (&Method::PUT | &Method::POST, ["sessions", name, "cookies"]) => {
                let name = name.to_string();
                self.import(&name, req, method == Method::PUT).await
            }
            (&Method::DELETE, ["sessions", name, "cookies"]) => self.clear(name, &req).await,
            (
                _,
                [
                    "healthz" | "readyz" | "metrics" | "ca.pem" | "sessions" | "events",
                    ..,
                ],
            ) => Err(Failure(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed here"),
            )),
            _ => Err(Failure(
                StatusCode::NOT_FOUND,
                format!("no endpoint {path}"),
            )),
        }
    }

    /// Live exchanges as server-sent events, optionally for one session.
    fn events(&self, req: &Request<Incoming>) -> Response<ProxyBody> {
        let stream = self.proxy.observer().subscribe(query(req, "session"));
        let mut resp = Response::new(ProxyBody::Channel(stream));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
        resp
    }

    /// The session's recent exchanges as HAR 1.2. Secrets stay redacted unless
    /// `?secrets=true` comes with the admin token.
    fn har(&self, name: &str, req: &Request<Incoming>) -> Reply {
        let secrets = query(req, "secrets").as_deref() == Some("true");
        // Asked again here, of the token as it is now: a reload may have set one since
        // `authorize` let a loopback caller in without.
        let token = self.token.get();
        let proven = token
            .as_ref()
            .as_ref()
            .is_some_and(|t| bearer(req).is_some_and(|b| t.matches(b)));
        if secrets && !proven {
            return Err(Failure(
                StatusCode::FORBIDDEN,
                "secrets=true needs admin.token to be configured (and sent)".into(),
            ));
        }
        let guard = self.session(name, false)?;
        let session = guard.session();
        let credential_headers: Vec<http::HeaderName> = session
            .settings()
            .auth
            .iter()
            .map(|c| c.header.clone())
            .collect();
        let har = crate::observe::har(&session.recent().snapshot(), secrets, &credential_headers);
        Ok(json_response(StatusCode::OK, &har))
    }

    fn readyz(&self) -> Response<ProxyBody> {
        match self.proxy.registry().store().last_error() {
            None => text(
                StatusCode::OK,
                format!("ready: {} sessions\n", self.proxy.registry().len()),
            ),
            Some(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: the last commit to the session store failed: {e}\n"),
            ),
        }
    }

    fn list(&self) -> Reply {
        let registry = self.proxy.registry();
        let mut names: Vec<String> = registry.names().iter().map(|n| n.to_string()).collect();
        let stored = registry.store().sessions().map_err(internal)?;
        names.extend(stored);
        names.sort();
        names.dedup();
        let sessions: Vec<Value> = names
            .iter()
            .map(|name| {
                let live = registry.get(name);
                json!({
                    "name": name,
                    "in_memory": live.is_some(),
                    "configured": live.as_ref().is_some_and(|s| s.origin() == Origin::Configured),
                })
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({ "sessions": sessions }),
        ))
    }

    fn show(&self, name: &str) -> Reply {
        let guard = self.session(name, false)?;
        Ok(json_response(StatusCode::OK, &describe(guard.session())))
    }

    /// `PATCH /sessions/NAME`: each of `headers`, `override_headers` and `remove_headers`
    /// that the JSON object gives replaces that list in the session's effective settings;
    /// absent ones stay. The change applies to the next request, is committed to the store
    /// before the answer (the effective settings, as `GET` shows them), and makes the
    /// session from the template if it does not exist. A bad body changes nothing.
    async fn patch(&self, name: &str, req: Request<Incoming>) -> Reply {
        let body = read_body(req.into_body(), MAX_SETTINGS_BYTES).await?;
        let text = utf8(&body)?;
        let given = crate::session::HeaderOverrides::from_json(text)
            .map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
        let guard = self.session(name, true)?;
        let session = guard.session();
        let store = self.proxy.registry().store();
        session
            .patch(given, |merged| {
                store.put_settings(session.name(), merged.to_json())
            })
            .wait()
            .await
            .map_err(internal)?;
        Ok(json_response(StatusCode::OK, &describe(session)))
    }
    async fn delete(&self, name: &str) -> Reply {
        let registry = self.proxy.registry();
        let guard = self.session(name, false)?;
        let configured = guard.session().origin() == Origin::Configured;
        if configured {
            // A configured session cannot stop existing; it loses its cookies.
            guard.session().jar().remove_matching(None, None);
            self.persist(&guard).await?;
        } else {
            drop(guard);
            registry.forget(name);
            registry
                .store()
                .delete_session(name)
                .wait()
                .await
                .map_err(internal)?;
        }
        Ok(empty(StatusCode::NO_CONTENT))
    }

    fn cookies(&self, name: &str, req: &Request<Incoming>) -> Reply {
        let guard = self.session(name, false)?;
        let cookies = guard.session().jar().export();
        match query(req, "format").as_deref() {
            None | Some("json") => Ok(json_response(StatusCode::OK, &formats::to_json(&cookies))),
            Some("netscape") => Ok(text(StatusCode::OK, formats::to_netscape(&cookies))),
            Some(other) => Err(Failure(
                StatusCode::BAD_REQUEST,
                format!("format={other}: use json or netscape"),
            )),
        }
    }

    async fn import(&self, name: &str, req: Request<Incoming>, replace: bool) -> Reply {
        let format = query(&req, "format");
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        let body = read_body(req.into_body(), MAX_IMPORT_BYTES).await?;
        let text = utf8(&body)?;
        let as_json = match format.as_deref() {
            Some("json") => true,
            Some("netscape") => false,
            Some(other) => {
                return Err(Failure(
                    StatusCode::BAD_REQUEST,
                    format!("format={other}: use json or netscape"),
                ));
            }
            None => json_type || text.trim_start().starts_with('['),
        };
        // Parsed whole before anything changes: a bad line imports nothing.
        let cookies = if as_json {
            formats::from_json_str(text)
        } else {
            formats::from_netscape(text)
        }
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))?;
        let guard = self.session(name, true)?;
        let imported = guard.session().jar().import(cookies, replace);
        self.persist(&guard).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({ "imported": imported }),
        ))
    }

    async fn clear(&self, name: &str, req: &Request<Incoming>) -> Reply {
        let guard = self.session(name, false)?;
        let (domain, cookie) = (query(req, "domain"), query(req, "name"));
        let removed = guard
            .session()
            .jar()
            .remove_matching(domain.as_deref(), cookie.as_deref());
        self.persist(&guard).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({ "removed": removed }),
        ))
    }

    fn session(&self, name: &str, create: bool) -> Result<ExchangeGuard, Failure> {
        match self.proxy.registry().enter_for_admin(name, create) {
            Ok(Some(guard)) => Ok(guard),
            Ok(None) => Err(Failure(
                StatusCode::NOT_FOUND,
                format!("no session {name:?}"),
            )),
            Err(RegistryError::InvalidName) => Err(Failure(
                StatusCode::BAD_REQUEST,
                "invalid session name: use 1-64 characters of A-Z a-z 0-9 . _ -".into(),
            )),
            Err(e) => Err(internal(e)),
        }
    }

    /// Commits the jar's changes before answering: an acknowledged edit is durable.
    async fn persist(&self, guard: &ExchangeGuard) -> Result<(), Failure> {
        let session = guard.session();
        let changes = session.jar().take_changes();
        if changes.is_empty() {
            return Ok(());
        }
        self.proxy
            .registry()
            .store()
            .apply(session.name(), changes)
            .wait()
            .await
            .map_err(internal)
    }
}

/// One session as `GET /sessions/NAME` (and `PATCH`) shows it: the effective settings
/// with credential values left out, and its counters.
fn describe(session: &crate::session::Session) -> Value {
    let settings = session.settings();
    let pairs = |list: &[(http::HeaderName, http::HeaderValue)]| -> Value {
        list.iter()
            .map(|(n, v)| {
                let secret = v.is_sensitive()
                    || [
                        header::AUTHORIZATION,
                        header::PROXY_AUTHORIZATION,
                        header::COOKIE,
                    ]
                    .contains(n);
                let shown = if secret {
                    "<redacted>"
                } else {
                    v.to_str().unwrap_or("<binary>")
                };
                (n.to_string(), json!(shown))
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "name": session.name().as_ref(),
        "configured": session.origin() == Origin::Configured,
        "has_secret": session.profile().configured.secret.is_some(),
        "cookies": session.jar().len(),
        "requests": session.requests(),
        "last_used": session.last_request(),
        "headers": pairs(&settings.headers),
        "override_headers": pairs(&settings.override_headers),
        "remove_headers": settings.remove_headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        // Which headers credentials set, never their values.
        "credentials": settings.auth.iter().map(|c| json!({ "header": c.header.as_str(), "override": c.override_client })).collect::<Vec<_>>(),
        "timeouts": {
            "connect_ms": settings.timeouts.connect.as_millis() as u64,
            "response_ms": settings.timeouts.response.as_millis() as u64,
            "read_ms": settings.timeouts.read.as_millis() as u64,
        },
        "upstream_proxy": settings.upstream_proxy.is_some(),
        "verify_tls": settings.tls.verify,
    })
}

/// A request body of at most `limit` bytes.
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, Failure> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            Failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body: {e}"),
            )
        })
}

fn utf8(body: &Bytes) -> Result<&str, Failure> {
    std::str::from_utf8(body)
        .map_err(|_| Failure(StatusCode::BAD_REQUEST, "the body is not UTF-8".into()))
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_response(status: StatusCode, value: &Value) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn empty(status: StatusCode) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = status;
    resp
}
