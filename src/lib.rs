//! sessiond: a forward proxy that owns HTTP sessions.
//!
//! Modules in the order a request meets them:
//!
//! - [`config`] — TOML as written → validated [`config::Config`]; errors name the key.
//! - [`server`] — listeners, connection limit, hyper-util auto builder, graceful shutdown.
//! - [`connect`] — CONNECT tunnels: sniffing, TLS interception, blind copies.
//! - [`certs`] — the local CA and per-host leaf certificates; the only code touching CA keys.
//! - [`proxy`] — the pipeline: identify → target → rewrite → upstream → record → body.
//! - [`session`] — sessions, the registry, the cookie jar rules (no I/O).
//! - [`store`] — the durable store behind the registry; the only code that writes state.
//! - [`hosts`] — host patterns used by credentials and egress rules.
//! - [`error`] — the one error type and the one place it becomes a response.
//! - [`observe`] — finished exchanges: live events and each session's recent ones (HAR).
//! - [`metrics`] — every metric, registered in one place.
//! - [`admin`] — the admin API.
//! - [`cli`] — the admin API's client, behind `sessiond sessions|cookies|health`.
//! - [`reload`] — what a `SIGHUP` reload applies and which keys need a restart.
//! - [`live`] — the swappable cells a reload (or a `PATCH`) replaces values in.

pub mod admin;
pub mod certs;
pub mod cli;
pub mod config;
pub mod connect;
pub mod error;
pub mod hosts;
pub mod live;
pub mod metrics;
pub mod observe;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod session;
pub mod store;

pub use config::Config;
pub use server::Daemon;
