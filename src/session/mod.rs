//! Sessions: what one named client identity owns (settings, credentials, the cookie jar,
//! its upstream connection identity), and the registry that finds or creates them.
//!
//! Nothing in this module does I/O; the jar lives behind a `std::sync::Mutex` because no
//! `.await` ever happens while it is held.

pub mod formats;
pub mod jar;
pub mod name;
mod registry;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::{Secret, SessionSettings};
use crate::proxy::upstream::UpstreamClient;
pub use jar::Jar;
pub use registry::{Registry, RegistryError};

/// Whether a session was declared in the config or made on demand. Only sessions made on
/// demand are evicted under `max_sessions` pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Configured,
    Dynamic,
}

pub struct Session {
    name: Arc<str>,
    secret: Option<Secret>,
    origin: Origin,
    settings: Arc<SessionSettings>,
    upstream: UpstreamClient,
    jar: Mutex<Jar>,
    last_used: AtomicU64,
    in_flight: AtomicUsize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(
        name: Arc<str>,
        secret: Option<Secret>,
        origin: Origin,
        settings: Arc<SessionSettings>,
        upstream: UpstreamClient,
        jar: Jar,
    ) -> Session {
        Session {
            name,
            secret,
            origin,
            settings,
            upstream,
            jar: Mutex::new(jar),
            last_used: AtomicU64::new(tick()),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    pub fn upstream(&self) -> &UpstreamClient {
        &self.upstream
    }

    /// Locks the jar. Callers keep the guard for one synchronous step only.
    pub fn jar(&self) -> MutexGuard<'_, Jar> {
        // A panic while holding the jar cannot leave it half-updated in a way that matters
        // more than losing the session's traffic, so a poisoned lock is still used.
        self.jar.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the start of an exchange; the session counts as busy (not evictable) until
    /// the returned guard is dropped, which happens when the response body ends.
    pub fn begin_exchange(self: &Arc<Self>) -> ExchangeGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.last_used.store(tick(), Ordering::Relaxed);
        ExchangeGuard(Arc::clone(self))
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }
}

/// Keeps a session marked busy for the duration of one exchange.
#[derive(Debug)]
pub struct ExchangeGuard(Arc<Session>);

impl ExchangeGuard {
    pub fn session(&self) -> &Arc<Session> {
        &self.0
    }
}

impl Drop for ExchangeGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.last_used.store(tick(), Ordering::Relaxed);
    }
}

/// A logical clock for recency: every touch gets a later tick than the one before, so
/// least-recently-used has no ties (milliseconds would tie under load).
fn tick() -> u64 {
    static TICK: AtomicU64 = AtomicU64::new(0);
    TICK.fetch_add(1, Ordering::Relaxed)
}
