//! Integration tests of the proxy on real sockets: an origin and a daemon on 127.0.0.1:0.

mod support;

mod admin;
mod cookies;
mod daemon;
mod hooks;
mod https;
mod identify;
mod observe;
mod reload;
mod rewrite;
mod server;
mod store;
mod upstream;
