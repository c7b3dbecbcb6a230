//! Every metric, registered in one place, served as Prometheus text at `GET /metrics`.
//!
//! Label cardinality is bounded by construction: sessions appear only as their class
//! (`configured` or `dynamic`), statuses as their class (`2xx`…), never a session name or
//! a URL.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `configured`, `dynamic`, or `none` (refused before a session was chosen).
    pub session: &'static str,
    /// `1xx`…`5xx`, or `none` when the client left before a status.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// From sending a request to its response head.
    pub upstream_wait: Histogram,
    pub response_bytes: Counter,
    pub client_connections: Gauge,
    pub upstream_connections_opened: Counter,
    pub upstream_connections: Gauge,
    pub request_bytes: Counter,
    pub cookies: Family<OutcomeLabels, Counter>,
    pub store_commit: Histogram,
    pub tunnels: Family<OutcomeLabels, Counter>,
    pub leaf_certificates_minted: Counter,
    pub hook_runs: Family<OutcomeLabels, Counter>,
}

/// A client connection, counted in `client_connections` while it lives.
pub struct ConnectionCount(Gauge);

impl ConnectionCount {
    pub fn new(gauge: &Gauge) -> ConnectionCount {
        gauge.inc();
        ConnectionCount(gauge.clone())
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("sessiond");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Exchanges finished, by session class and status class",
            requests.clone(),
        );
        let upstream_wait = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "upstream_wait_seconds",
            "Time from sending a request upstream to its response head",
            upstream_wait.clone(),
        );
        let response_bytes = Counter::default();
        registry.register(
            "response_bytes",
            "Response body bytes sent to clients",
            response_bytes.clone(),
        );
        let client_connections = Gauge::default();
        registry.register(
            "client_connections",
            "Client connections open now (proxy listeners)",
            client_connections.clone(),
        );
        let upstream_connections_opened = Counter::default();
        registry.register(
            "upstream_connections_opened",
            "Upstream TCP connections made (requests minus these were served by the pool)",
            upstream_connections_opened.clone(),
        );
        let upstream_connections = Gauge::default();
        registry.register(
            "upstream_connections",
            "Upstream connections open now (pooled or in use)",
            upstream_connections.clone(),
        );
        let request_bytes = Counter::default();
        registry.register(
            "request_bytes",
            "Request body bytes sent upstream",
            request_bytes.clone(),
        );
        let cookies = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "cookies",
            "Set-Cookie headers seen, by what the jar did with them",
            cookies.clone(),
        );
        let store_commit = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "store_commit_seconds",
            "Time a response waited for its cookie changes to be committed",
            store_commit.clone(),
        );
        let tunnels = Family::<OutcomeLabels, Counter>::default();
        registry.register("tunnels", "CONNECT tunnels, by kind", tunnels.clone());
        let leaf_certificates_minted = Counter::default();
        registry.register(
            "tls_leaf_certificates_minted",
            "Leaf certificates minted (intercepted tunnels minus these were cache hits)",
            leaf_certificates_minted.clone(),
        );
        let hook_runs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "hook_runs",
            "Hooks run, by outcome (ok, failed)",
            hook_runs.clone(),
        );
        Metrics {
            hook_runs,
            registry,
            requests,
            upstream_wait,
            response_bytes,
            client_connections,
            upstream_connections_opened,
            upstream_connections,
            request_bytes,
            cookies,
            store_commit,
            tunnels,
            leaf_certificates_minted,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `2xx` and friends.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_bounded_labels() {
        let m = Metrics::default();
        m.requests
            .get_or_create(&RequestLabels {
                session: "dynamic",
                status: status_class(204),
            })
            .inc();
        let text = m.render();
        assert!(
            text.contains("sessiond_requests_total{session=\"dynamic\",status=\"2xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE sessiond_upstream_wait_seconds histogram"));
        assert!(text.ends_with("# EOF\n"));
    }
}
