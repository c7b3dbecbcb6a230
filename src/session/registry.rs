//! The registry of live sessions: configured ones, made at start, and ones made on demand
//! from `[template]`. A `max_sessions` cap is kept by evicting the least recently used
//! idle session made on demand, never by refusing a request.
//!
//! The map is a cache in front of the durable store: a miss looks there first. A reload
//! swaps the registry's defaults and reconfigures every session in memory in one pass.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dashmap::DashMap;

use super::name::valid_session_name;
use super::{Configured, ExchangeGuard, HeaderOverrides, Origin, Session};
use crate::config::{Config, CookieLimits, Secret, SessionSettings};
use crate::live::Live;
use crate::proxy::upstream::{TlsSetupError, Upstream, UpstreamClient};
use crate::session::Jar;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid session name: use 1-64 characters of A-Z a-z 0-9 . _ -")]
    InvalidName,
    #[error("unknown session and sessions on demand are disabled")]
    Unknown,
    #[error("session store: {0}")]
    Store(StoreError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

pub struct Registry {
    sessions: DashMap<Arc<str>, Arc<Session>>,
    /// What sessions made on demand start with, and the rules for making them.
    defaults: Live<Defaults>,
    /// Fixed for the daemon's life: jars are made with them (a change needs a restart).
    limits: CookieLimits,
    /// Where sessions live between restarts; the map above is a cache in front of it.
    store: Arc<dyn Store>,
}

/// The registry's share of the configuration.
struct Defaults {
    template: Arc<SessionSettings>,
    /// The upstream client of every session made from the template, built once.
    template_upstream: UpstreamClient,
    dynamic: bool,
    max_sessions: usize,
    /// `[sessions.NAME]` tables by name.
    configured: HashMap<Arc<str>, (Option<Secret>, Arc<SessionSettings>, UpstreamClient)>,
    /// Names that exist without a table of their own: `default` and `[[clients]]` sessions.
    implied: HashSet<Arc<str>>,
}

impl Defaults {
    /// What `name` is configured as: its own table, or the template.
    fn configured(&self, name: &str) -> Configured {
        match self.configured.get(name) {
            Some((secret, settings, upstream)) => Configured {
                origin: Origin::Configured,
                secret: secret.clone(),
                settings: Arc::clone(settings),
                upstream: upstream.clone(),
            },
            None => Configured {
                origin: if self.implied.contains(name) {
                    Origin::Configured
                } else {
                    Origin::Dynamic
                },
                secret: None,
                settings: Arc::clone(&self.template),
                upstream: self.template_upstream.clone(),
            },
        }
    }

    fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.configured.keys().chain(self.implied.iter())
    }
}

/// A configuration checked and ready to apply: every fallible step (TLS settings, store
/// reads) is done, so applying it cannot fail halfway.
pub struct Prepared {
    defaults: Arc<Defaults>,
    /// What the store has for configured sessions that are not in memory.
    stored: Vec<(Arc<str>, Stored)>,
}

/// A session's jar and runtime settings as the store has them; `None` if it has nothing.
type Stored = Option<(Jar, HeaderOverrides)>;

/// How much of `max_sessions` one eviction frees at least (1/64): the scan it takes is
/// then paid once for that many new sessions.
const EVICT_SHARE: usize = 64;

impl Registry {
    /// Creates every configured session, `default`, and each session named by
    /// `[[clients]]`, so those exist whether or not sessions on demand are allowed.
    /// Fails if a session's TLS settings cannot be used (a key that does not match its
    /// certificate, say): better at start than on the first request.
    pub fn new(
        config: &Config,
        upstream: &Upstream,
        store: Arc<dyn Store>,
    ) -> Result<Registry, RegistryError> {
        let defaults = Arc::new(Registry::defaults(config, upstream)?);
        let registry = Registry {
            sessions: DashMap::new(),
            defaults: Live::shared(Arc::clone(&defaults)),
            limits: config.proxy.cookies,
            store,
        };
        let stored = registry.missing(&defaults)?;
        registry.apply(Prepared { defaults, stored });
        Ok(registry)
    }

    /// Checks a new configuration and reads what it needs, changing nothing yet.
    pub fn prepare(&self, config: &Config, upstream: &Upstream) -> Result<Prepared, RegistryError> {
        let defaults = Arc::new(Registry::defaults(config, upstream)?);
        let stored = self.missing(&defaults)?;
        Ok(Prepared { defaults, stored })
    }

    /// What the store has for the configured sessions that are not in memory.
    fn missing(&self, defaults: &Defaults) -> Result<Vec<(Arc<str>, Stored)>, RegistryError> {
        let mut stored = Vec::new();
        for name in defaults.names() {
            if !self.sessions.contains_key(name) {
                stored.push((Arc::clone(name), self.stored(name)?));
            }
        }
        Ok(stored)
    }

    /// Makes a prepared configuration current: sessions in memory take their new
    /// settings (exchanges already running finish on the old ones), configured sessions
    /// not in memory are loaded, and the template applies to sessions made from now on.
    pub fn apply(&self, prepared: Prepared) {
        let Prepared { defaults, stored } = prepared;
        // Swapped first: a session created from here on reads the new defaults inside
        // the map's entry lock, so the pass below either sees it or it was made new.
        self.defaults.set(Arc::clone(&defaults));
        for entry in self.sessions.iter() {
            entry.value().reconfigure(defaults.configured(entry.key()));
        }
        // A session made meanwhile was either seen by the pass above or made from the new
        // defaults: only the missing ones are inserted.
        for (name, stored) in stored {
            self.sessions
                .entry(Arc::clone(&name))
                .or_insert_with(|| Arc::new(self.session(&defaults, &name, stored)));
        }
    }

    fn defaults(config: &Config, upstream: &Upstream) -> Result<Defaults, RegistryError> {
        warn_if_unverified("template", &config.template);
        let mut configured = HashMap::new();
        for s in &config.sessions {
            warn_if_unverified(&s.name, &s.settings);
            let client = upstream.client_for(&s.settings)?;
            configured.insert(
                Arc::from(s.name.as_str()),
                (s.secret.clone(), Arc::clone(&s.settings), client),
            );
        }
        let implied = std::iter::once("default")
            .chain(config.clients.iter().map(|c| c.session.as_str()))
            .filter(|name| !configured.contains_key(*name))
            .map(Arc::from)
            .collect();
        Ok(Defaults {
            template: Arc::clone(&config.template),
            template_upstream: upstream.client_for(&config.template)?,
            dynamic: config.proxy.dynamic_sessions,
            max_sessions: config.proxy.max_sessions,
            configured,
            implied,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Session>> {
        self.sessions.get(name).map(|s| Arc::clone(s.value()))
    }

    /// Finds a session and starts an exchange on it. The session is marked busy while the
    /// map's shard guard is held, so eviction (which re-checks idleness under the shard's
    /// write lock) can never remove a session between lookup and use.
    pub fn enter(&self, name: &str) -> Option<ExchangeGuard> {
        self.sessions.get(name).map(|s| s.value().begin_exchange())
    }

    /// A session for the admin API: in memory, or loaded from the store; with `create`,
    /// made from the template if it exists nowhere (whatever `dynamic_sessions` says: the
    /// operator asked for it). Marked busy like an exchange while the guard lives.
    pub fn enter_for_admin(
        &self,
        name: &str,
        create: bool,
    ) -> Result<Option<ExchangeGuard>, RegistryError> {
        // Held, not entered: the admin API's calls are not the session's requests.
        if let Some(guard) = self.sessions.get(name).map(|s| s.value().hold()) {
            return Ok(Some(guard));
        }
        if !valid_session_name(name) {
            return Err(RegistryError::InvalidName);
        }
        let stored = self.stored(name)?;
        if stored.is_none() && !create {
            return Ok(None);
        }
        let guard = self
            .sessions
            .entry(Arc::from(name))
            .or_insert_with(|| Arc::new(self.session(&self.defaults.get(), name, stored)))
            .value()
            .hold();
        Ok(Some(guard))
    }

    /// The names of the sessions in memory, sorted.
    pub fn names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.sessions.iter().map(|e| Arc::clone(e.key())).collect();
        names.sort();
        names
    }

    /// Drops a session from memory (the store keeps it unless told otherwise).
    pub fn forget(&self, name: &str) {
        self.sessions.remove(name);
    }

    /// As [`enter`](Self::enter), making the session from the template if allowed.
    pub fn enter_or_create(&self, name: &str) -> Result<ExchangeGuard, RegistryError> {
        if let Some(guard) = self.enter(name) {
            return Ok(guard);
        }
        if !valid_session_name(name) {
            return Err(RegistryError::InvalidName);
        }
        // Not in memory: maybe in the store (evicted, or from before a restart). A session
        // the store knows is loaded even with sessions on demand off: it exists.
        let stored = self.stored(name)?;
        let defaults = self.defaults.get();
        if stored.is_none() && !defaults.dynamic {
            return Err(RegistryError::Unknown);
        }
        if self.sessions.len() >= defaults.max_sessions {
            self.evict(defaults.max_sessions);
        }
        // Two requests may race to create the same name; the entry API makes one win and
        // both use it. The guard is held only for this synchronous insert. The defaults
        // are read again inside it: a reload may have swapped them since.
        let guard = self
            .sessions
            .entry(Arc::from(name))
            .or_insert_with(|| Arc::new(self.session(&self.defaults.get(), name, stored)))
            .value()
            .begin_exchange();
        Ok(guard)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Removes the least recently used idle session made on demand. If every such
    /// session is busy the cap is exceeded for now: the excess is bounded by the number of
    /// connections, and refusing the request would be worse.
    /// Makes room for one more session by evicting the least recently used idle sessions
    /// made on demand: a batch of them ([`EVICT_SHARE`] of the cap), so that one scan of
    /// the map pays for many new sessions, and so that concurrent requests for new
    /// sessions (which would all pick the same oldest victim) still keep the cap.
    fn evict(&self, max_sessions: usize) {
        // Down to this many, which leaves room for the new one and for the next few.
        let target = max_sessions.saturating_sub((max_sessions / EVICT_SHARE).max(1));
        let excess = self.sessions.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        // Collect first, remove after: removing while iterating would deadlock on the
        // shard the iterator holds.
        let mut idle: Vec<(u64, Arc<str>)> = self
            .sessions
            .iter()
            .filter(|e| e.origin() == Origin::Dynamic && e.is_idle())
            .map(|e| (e.last_used(), Arc::clone(e.key())))
            .collect();
        let take = excess.min(idle.len());
        if take == 0 {
            tracing::warn!(
                max_sessions,
                "every session made on demand is busy; exceeding proxy.max_sessions for now"
            );
            return;
        }
        if take < idle.len() {
            idle.select_nth_unstable(take - 1);
        }
        // Another request may be evicting at the same time: stop at the target.
        let mut evicted = 0;
        for (_, name) in &idle[..take] {
            if self.sessions.len() <= target {
                break;
            }
            // Re-check under the shard lock: it may have become busy meanwhile.
            if self.sessions.remove_if(name, |_, s| s.is_idle()).is_some() {
                evicted += 1;
            }
        }
        if evicted > 0 {
            tracing::info!(
                evicted,
                max_sessions,
                "evicted the least recently used idle sessions to stay within proxy.max_sessions"
            );
        }
    }

    /// A session as `defaults` configure it, with what the store had for it, if anything.
    fn session(&self, defaults: &Defaults, name: &str, stored: Stored) -> Session {
        let (jar, overrides) =
            stored.unwrap_or_else(|| (Jar::new(self.limits), HeaderOverrides::default()));
        Session::new(Arc::from(name), defaults.configured(name), overrides, jar)
    }

    /// The session's jar and runtime header settings as the store has them, if the store
    /// knows the session. Stored settings that no longer parse are logged and ignored:
    /// the session still loads, with its configured settings.
    fn stored(&self, name: &str) -> Result<Stored, RegistryError> {
        let Some(cookies) = self.store.load(name).map_err(RegistryError::Store)? else {
            return Ok(None);
        };
        let overrides = match self
            .store
            .load_settings(name)
            .map_err(RegistryError::Store)?
        {
            None => HeaderOverrides::default(),
            Some(json) => HeaderOverrides::from_json(&json).unwrap_or_else(|e| {
                tracing::warn!(session = name, error = %e, "ignoring unreadable stored settings");
                HeaderOverrides::default()
            }),
        };
        Ok(Some((Jar::restore(self.limits, cookies), overrides)))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// `verify = false` is a footgun worth a loud line at every start.
fn warn_if_unverified(name: &str, settings: &SessionSettings) {
    if !settings.tls.verify {
        tracing::warn!(
            session = name,
            "TLS certificate verification towards origins is OFF (verify = false): \
             anyone on the path can impersonate any origin for this session"
        );
    }
}
