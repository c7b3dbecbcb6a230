//! The admin API. Endpoints so far:
//!
//! | endpoint        | answer                                              |
//! |-----------------|-----------------------------------------------------|
//! | `GET /healthz`  | `200 ok` while the process serves                   |
//! | `GET /readyz`   | `200 ready`; `503` while the store's last commit failed |
//!
//! Everything else is `404`. Session, cookie and event endpoints come with the store.
//! There is no admin token yet, so clients other than loopback get `403`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};

use crate::proxy::Proxy;
use crate::proxy::body::ProxyBody;

pub struct Admin {
    proxy: Arc<Proxy>,
}

impl Admin {
    pub fn new(proxy: Arc<Proxy>) -> Admin {
        Admin { proxy }
    }

    /// `peer` is the client's canonical address.
    pub fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<ProxyBody> {
        if !peer.ip().is_loopback() {
            return text(
                StatusCode::FORBIDDEN,
                "the admin API answers loopback clients only\n".into(),
            );
        }
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
            (&Method::GET, "/readyz") => match self.proxy.registry().store().last_error() {
                None => text(
                    StatusCode::OK,
                    format!("ready: {} sessions\n", self.proxy.registry().len()),
                ),
                Some(e) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: the last commit to the session store failed: {e}\n"),
                ),
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::certs::{CertAuthority, Minter};
    use crate::connect::Tunnels;
    use crate::proxy::identify::Identifier;
    use crate::proxy::upstream::Upstream;
    use crate::session::Registry;
    use crate::store::Durability;
    use crate::store::sqlite::SqliteStore;

    fn admin() -> Admin {
        let config = Config::defaults();
        let upstream = Upstream::new(&config.upstream);
        let dir = std::env::temp_dir().join(format!(
            "sessiond-admin-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let store = SqliteStore::open(&dir, Durability::Full).unwrap();
        let tunnels = Tunnels {
            builder: Arc::new(hyper_util::server::conn::auto::Builder::new(
                hyper_util::rt::TokioExecutor::new(),
            )),
            head_timeout: std::time::Duration::from_secs(1),
            tls: config.tls.clone(),
            minter: Arc::new(Minter::new(Arc::new(CertAuthority::generate().unwrap()))),
        };
        let identifier = Identifier {
            registry: Registry::new(&config, &upstream, Arc::new(store)).unwrap(),
            clients: Vec::new(),
            require_auth: false,
        };
        Admin::new(Arc::new(Proxy::new(identifier, tunnels)))
    }

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[test]
    fn health_answers_loopback_and_refuses_others() {
        let a = admin();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        assert_eq!(a.handle(get("/healthz"), local).status(), StatusCode::OK);
        assert_eq!(a.handle(get("/readyz"), local).status(), StatusCode::OK);
        assert_eq!(
            a.handle(get("/nope"), local).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            a.handle(get("/healthz"), remote).status(),
            StatusCode::FORBIDDEN
        );
    }
}
