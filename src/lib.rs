//! sessiond: a forward proxy that owns HTTP sessions.
//!
//! Modules in the order a request meets them:
//!
//! - [`config`] — TOML as written → validated [`config::Config`]; errors name the key.
//! - [`server`] — listeners, connection limit, hyper-util auto builder, graceful shutdown.
//! - [`proxy`] — the pipeline: identify → target → rewrite → upstream → record → body.
//! - [`session`] — sessions, the registry, the cookie jar rules (no I/O).
//! - [`hosts`] — host patterns used by credentials and egress rules.
//! - [`error`] — the one error type and the one place it becomes a response.
//! - [`admin`] — the admin API.

pub mod admin;
pub mod config;
pub mod error;
pub mod hosts;
pub mod proxy;
pub mod server;
pub mod session;

pub use config::Config;
pub use server::Daemon;
