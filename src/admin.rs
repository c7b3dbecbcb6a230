//! The admin API. Endpoints so far:
//!
//! | endpoint        | answer                                              |
//! |-----------------|-----------------------------------------------------|
//! | `GET /healthz`  | `200 ok` while the process serves                   |
//! | `GET /readyz`   | `200 ready`: the listeners are bound before serving  |
//!
//! Everything else is `404`. Session, cookie and event endpoints come with the store.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::proxy::Proxy;
use crate::proxy::body::ProxyBody;

pub struct Admin {
    proxy: Arc<Proxy>,
}

impl Admin {
    pub fn new(proxy: Arc<Proxy>) -> Admin {
        Admin { proxy }
    }

    pub fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
            (&Method::GET, "/readyz") => text(
                StatusCode::OK,
                format!("ready: {} sessions\n", self.proxy.registry().len()),
            ),
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
