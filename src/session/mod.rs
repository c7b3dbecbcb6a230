//! Sessions: what one named client identity owns (settings, credentials, the cookie jar,
//! its upstream connection identity), and the registry that finds or creates them.
//!
//! Nothing in this module does I/O; the jar, the runtime header overrides and the
//! effective settings live behind `std::sync` locks because no `.await` ever happens while
//! one is held.

pub mod formats;
pub mod jar;
pub mod name;
pub mod overrides;
mod registry;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::{Secret, SessionSettings};
use crate::live::Live;
use crate::proxy::upstream::UpstreamClient;
pub use jar::Jar;
pub use overrides::HeaderOverrides;
pub use registry::{Registry, RegistryError};

/// Whether a session was declared in the config or made on demand. Only sessions made on
/// demand are evicted under `max_sessions` pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Configured,
    Dynamic,
}

/// What the configuration makes of a session: swapped whole by a reload or a `PATCH`,
/// read as one `Arc` per exchange so an exchange never mixes two configurations.
#[derive(Debug, Clone)]
pub struct Profile {
    pub configured: Configured,
    /// `configured.settings` with the runtime overrides laid over it: what requests get.
    pub settings: Arc<SessionSettings>,
}

/// What a session is configured as, before its runtime overrides.
#[derive(Debug, Clone)]
pub struct Configured {
    pub origin: Origin,
    pub secret: Option<Secret>,
    /// The configured (or template) settings.
    pub settings: Arc<SessionSettings>,
    /// The shared pool for the settings' connection identity.
    pub upstream: UpstreamClient,
}

pub struct Session {
    name: Arc<str>,
    /// What `PATCH /sessions/NAME` changed, as the store keeps it.
    overrides: Mutex<HeaderOverrides>,
    profile: Live<Profile>,
    jar: Mutex<Jar>,
    last_used: AtomicU64,
    in_flight: AtomicUsize,
    /// Exchanges started (admin calls are not counted).
    requests: AtomicU64,
    /// Unix seconds of the last exchange start; 0 for never.
    last_request: AtomicU64,
    /// The most recent exchanges, for `GET /sessions/NAME/har`.
    recent: crate::observe::Recent,
    /// One refresh hook at a time; a tokio mutex because the hook is awaited under it.
    refresh: tokio::sync::Mutex<()>,
    /// Bumped by every successful refresh.
    generation: AtomicU64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.name)
            .field("origin", &self.origin())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(
        name: Arc<str>,
        configured: Configured,
        overrides: HeaderOverrides,
        jar: Jar,
    ) -> Session {
        let profile = profile(configured, &overrides);
        Session {
            name,
            overrides: Mutex::new(overrides),
            profile: Live::new(profile),
            jar: Mutex::new(jar),
            last_used: AtomicU64::new(tick()),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_request: AtomicU64::new(0),
            recent: crate::observe::Recent::default(),
            refresh: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The session as configured now. Hold the `Arc` for one exchange: a reload or a
    /// `PATCH` meanwhile affects only later exchanges.
    pub fn profile(&self) -> Arc<Profile> {
        self.profile.get()
    }

    /// The effective settings (see [`profile`](Self::profile)).
    pub fn settings(&self) -> Arc<SessionSettings> {
        Arc::clone(&self.profile().settings)
    }

    pub fn origin(&self) -> Origin {
        self.profile().configured.origin
    }

    /// Lays `given` over the session's runtime overrides and swaps the effective settings
    /// at once. `persist` gets the merged overrides while they are still locked, so
    /// concurrent patches reach the store in the order they took effect.
    pub fn patch<R>(
        &self,
        given: HeaderOverrides,
        persist: impl FnOnce(&HeaderOverrides) -> R,
    ) -> R {
        let mut overrides = self.overrides.lock().unwrap_or_else(|p| p.into_inner());
        overrides.merge(given);
        let current = self.profile();
        let next = Profile {
            settings: effective(&current.configured.settings, &overrides),
            configured: current.configured.clone(),
        };
        self.profile.set(Arc::new(next));
        persist(&overrides)
    }

    /// Applies a reloaded configuration; the runtime overrides stay laid over it.
    pub fn reconfigure(&self, configured: Configured) {
        // Under the overrides' lock, so a concurrent PATCH is not lost.
        let overrides = self.overrides.lock().unwrap_or_else(|p| p.into_inner());
        self.profile.set(Arc::new(profile(configured, &overrides)));
    }

    /// Exchanges started on this session.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Unix seconds of the last exchange start, if any.
    pub fn last_request(&self) -> Option<u64> {
        Some(self.last_request.load(Ordering::Relaxed)).filter(|&t| t != 0)
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
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.last_request.store(unix_now(), Ordering::Relaxed);
        self.hold()
    }

    /// As [`begin_exchange`](Self::begin_exchange) without counting a request: the admin
    /// API holds a session this way while it works on it.
    fn hold(self: &Arc<Self>) -> ExchangeGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.last_used.store(tick(), Ordering::Relaxed);
        ExchangeGuard(Arc::clone(self))
    }

    /// How many refreshes have succeeded: read before sending a request, so a stale
    /// answer can tell whether someone refreshed since.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Runs `refresh` unless the session was refreshed since `seen`; concurrent callers
    /// wait for the one running. True when the session is (now) fresh.
    pub async fn refresh<F: std::future::Future<Output = bool>>(
        &self,
        seen: u64,
        refresh: F,
    ) -> bool {
        let _turn = self.refresh.lock().await;
        if self.generation() != seen {
            return true;
        }
        let ok = refresh.await;
        if ok {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        ok
    }

    pub fn recent(&self) -> &crate::observe::Recent {
        &self.recent
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

fn profile(configured: Configured, overrides: &HeaderOverrides) -> Profile {
    Profile {
        settings: effective(&configured.settings, overrides),
        configured,
    }
}

fn effective(base: &Arc<SessionSettings>, overrides: &HeaderOverrides) -> Arc<SessionSettings> {
    if overrides.is_empty() {
        Arc::clone(base)
    } else {
        Arc::new(overrides.apply(base))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A logical clock for recency: every touch gets a later tick than the one before, so
/// least-recently-used has no ties (milliseconds would tie under load).
fn tick() -> u64 {
    static TICK: AtomicU64 = AtomicU64::new(0);
    TICK.fetch_add(1, Ordering::Relaxed)
}
