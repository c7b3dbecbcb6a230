//! One error type for everything that ends an exchange early, and the one place that turns
//! it into the response the client sees: a status, a short plain-text body saying what
//! failed, and a `Proxy-Status` header (RFC 9209) naming the error for programs.
//!
//! Messages name hosts, addresses and durations, never a secret: no credential, cookie or
//! query string ever reaches a variant.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::proxy::body::ProxyBody;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("{0}")]
    ProxyAuthRequired(&'static str),
    #[error("client address {0} may not use this proxy")]
    ClientForbidden(std::net::IpAddr),
    #[error("host {host} is not allowed for session {session}")]
    HostDenied { host: String, session: String },
    #[error("loop: {0} is this proxy itself")]
    Loop(String),
    #[error("cannot resolve {host}: {reason}")]
    Dns { host: String, reason: String },
    #[error("connection to {0} refused")]
    ConnectRefused(SocketAddr),
    #[error("connecting to {target} timed out after {}", humantime::format_duration(*.after))]
    ConnectTimeout { target: String, after: Duration },
    #[error("connection to {target} failed: {reason}")]
    ConnectFailed { target: String, reason: String },
    #[error("TLS with {target} failed: {reason}")]
    Tls {
        target: String,
        reason: String,
        /// The origin's certificate was refused (rather than the handshake failing).
        certificate: bool,
    },
    #[error("the client sent nothing inside its request body for {}", humantime::format_duration(*.0))]
    UploadTimeout(Duration),
    #[error("{target} sent no response within {}", humantime::format_duration(*.after))]
    ResponseTimeout { target: String, after: Duration },
    #[error("{target}: {reason}")]
    BadGateway { target: String, reason: String },
    #[error("the session could not be loaded: {0}")]
    Store(String),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyAuthRequired(_) => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ClientForbidden(_) | HostDenied { .. } => StatusCode::FORBIDDEN,
            Loop(_) => StatusCode::LOOP_DETECTED,
            UploadTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Dns { .. }
            | ConnectRefused(_)
            | ConnectFailed { .. }
            | Tls { .. }
            | BadGateway { .. } => StatusCode::BAD_GATEWAY,
            ConnectTimeout { .. } | ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `Proxy-Status` header (RFC 9209): this proxy's name and the error type.
    fn proxy_status(&self) -> &'static str {
        use ProxyError::*;
        match self {
            BadRequest(_) | UploadTimeout(_) => "sessiond; error=http_request_error",
            ProxyAuthRequired(_) | ClientForbidden(_) | HostDenied { .. } => {
                "sessiond; error=http_request_denied"
            }
            Loop(_) => "sessiond; error=proxy_loop_detected",
            Store(_) => "sessiond; error=proxy_internal_error",
            Dns { .. } => "sessiond; error=dns_error",
            ConnectRefused(_) => "sessiond; error=connection_refused",
            ConnectTimeout { .. } => "sessiond; error=connection_timeout",
            ConnectFailed { .. } => "sessiond; error=destination_unavailable",
            Tls {
                certificate: true, ..
            } => "sessiond; error=tls_certificate_error",
            Tls { .. } => "sessiond; error=tls_protocol_error",
            ResponseTimeout { .. } => "sessiond; error=http_response_timeout",
            BadGateway { .. } => "sessiond; error=http_protocol_error",
        }
    }

    /// The response the client sees.
    pub fn to_response(&self) -> Response<ProxyBody> {
        let body = Bytes::from(format!("sessiond: {self}\n"));
        let mut resp = Response::new(ProxyBody::full(body));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            "proxy-status",
            HeaderValue::from_static(self.proxy_status()),
        );
        if matches!(self, ProxyError::ProxyAuthRequired(_)) {
            headers.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sessiond\""),
            );
        }
        resp
    }
}
