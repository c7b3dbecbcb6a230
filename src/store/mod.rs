//! The durable store: every session's cookies live here between restarts (and through a
//! `kill -9`); the in-memory registry is a cache in front of it. Only the store writes
//! state. One backend today ([`sqlite`]); the registry and the pipeline see only [`Store`].

pub mod sqlite;

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::session::jar::{CookieChange, StoredCookie};

/// `store.durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A response whose `Set-Cookie` changed the jar waits until the change is committed.
    Full,
    /// Changes are committed within about a second; responses do not wait.
    Batched,
}

/// Why the store could not do something. The text names files and SQLite's reason, never
/// a cookie value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(Arc<str>);

impl StoreError {
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError(Arc::from(message.into()))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::new(e.to_string())
    }
}

/// Where sessions live between restarts.
pub trait Store: Send + Sync + 'static {
    /// A session's cookies, or `None` if the store has never seen the session.
    fn load(&self, session: &str) -> Result<Option<Vec<StoredCookie>>, StoreError>;

    /// Every session the store knows, by name.
    fn sessions(&self) -> Result<Vec<String>, StoreError>;

    /// Queues a session's changes; the [`Commit`] completes once they are committed.
    fn apply(&self, session: &str, changes: Vec<CookieChange>) -> Commit;

    /// Forgets a session, its cookies and its runtime settings.
    fn delete_session(&self, session: &str) -> Commit;

    /// A session's runtime header settings (`PATCH /sessions/NAME`) as the JSON that
    /// [`put_settings`](Self::put_settings) stored, or `None` if it has none.
    fn load_settings(&self, session: &str) -> Result<Option<String>, StoreError>;

    /// Queues a session's runtime header settings, replacing what was stored; the session
    /// becomes known to the store.
    fn put_settings(&self, session: &str, json: String) -> Commit;

    /// Completes once everything queued before it is committed.
    fn flush(&self) -> Commit;

    fn durability(&self) -> Durability;

    /// The last commit failure, if the latest commit failed (for `/readyz`).
    fn last_error(&self) -> Option<StoreError>;
}

/// A pending commit.
#[must_use = "a commit is only known durable once waited for"]
pub struct Commit(oneshot::Receiver<Result<(), StoreError>>);

impl Commit {
    pub(crate) fn new(rx: oneshot::Receiver<Result<(), StoreError>>) -> Commit {
        Commit(rx)
    }

    /// Waits for the commit. A store that has stopped reports that as an error.
    pub async fn wait(self) -> Result<(), StoreError> {
        self.0
            .await
            .unwrap_or_else(|_| Err(StoreError::new("the store has stopped")))
    }
}
