//! The SQLite store (rusqlite, bundled): `STATE/sessions.db` in WAL mode, one writer
//! thread that groups every commit queued while the previous one ran into one transaction,
//! and one reader connection for loading sessions.
//!
//! Safety: the state directory is created 0700 and the database 0600 (SQLite gives its
//! `-wal` and `-shm` files the same mode). A database that cannot be opened or fails its
//! integrity check is moved aside as `sessions.db.corrupt-<unix time>` and a new one is
//! started: the daemon never refuses to start, or crashes in a loop, over its store.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::oneshot;

use super::{Commit, Durability, Store, StoreError};
use crate::session::jar::{CookieChange, StoredCookie};

/// How long a batched commit may wait for company.
const BATCH_WINDOW: Duration = Duration::from_secs(1);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    name TEXT PRIMARY KEY,
    created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cookies (
    session TEXT NOT NULL,
    domain TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    host_only INTEGER NOT NULL,
    secure INTEGER NOT NULL,
    http_only INTEGER NOT NULL,
    same_site TEXT,
    expires INTEGER,
    created INTEGER NOT NULL,
    PRIMARY KEY (session, domain, path, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (
    session TEXT PRIMARY KEY,
    json TEXT NOT NULL
) WITHOUT ROWID;
";

enum Job {
    Apply {
        session: String,
        changes: Vec<CookieChange>,
    },
    DeleteSession(String),
    PutSettings {
        session: String,
        json: String,
    },
    Flush,
}

struct Queued {
    job: Job,
    done: oneshot::Sender<Result<(), StoreError>>,
}

pub struct SqliteStore {
    jobs: Mutex<mpsc::Sender<Queued>>,
    reader: Mutex<Connection>,
    durability: Durability,
    last_error: Arc<Mutex<Option<StoreError>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SqliteStore {
    /// Opens (or creates) `dir/sessions.db`, moving a corrupt one aside.
    pub fn open(dir: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        create_private_dir(dir)?;
        let path = dir.join("sessions.db");
        let writer = match open_connection(&path, durability) {
            Ok(conn) => conn,
            Err(e) => {
                let aside = move_aside(&path)?;
                tracing::error!(
                    store = %path.display(),
                    moved_to = %aside.display(),
                    error = %e,
                    "the session store could not be opened; it was moved aside and a new, empty one started"
                );
                open_connection(&path, durability)?
            }
        };
        let reader = open_connection(&path, durability)?;
        let (tx, rx) = mpsc::channel::<Queued>();
        let last_error = Arc::new(Mutex::new(None));
        let errors = Arc::clone(&last_error);
        let handle = std::thread::Builder::new()
            .name("sessiond-store".into())
            .spawn(move || write_loop(writer, rx, durability, &errors))
            .map_err(|e| StoreError::new(format!("cannot start the store writer: {e}")))?;
        Ok(SqliteStore {
            jobs: Mutex::new(tx),
            reader: Mutex::new(reader),
            durability,
            last_error,
            writer: Mutex::new(Some(handle)),
        })
    }

    fn queue(&self, job: Job) -> Commit {
        let (done, rx) = oneshot::channel();
        let sent = lock(&self.jobs).send(Queued { job, done });
        if let Err(mpsc::SendError(q)) = sent {
            let _ = q.done.send(Err(StoreError::new("the store has stopped")));
        }
        Commit::new(rx)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer commit what is left and stop; wait for it, so
        // nothing acknowledged is lost when the daemon exits.
        let (closed, _) = mpsc::channel();
        *lock(&self.jobs) = closed;
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }
}

impl Store for SqliteStore {
    fn load(&self, session: &str) -> Result<Option<Vec<StoredCookie>>, StoreError> {
        let conn = lock(&self.reader);
        let known = conn
            .query_row("SELECT 1 FROM sessions WHERE name = ?1", [session], |_| {
                Ok(())
            })
            .optional()?;
        if known.is_none() {
            return Ok(None);
        }
        let mut stmt = conn.prepare_cached(
            "SELECT domain, host_only, path, name, value, secure, http_only, same_site, expires, created
             FROM cookies WHERE session = ?1 ORDER BY created",
        )?;
        let cookies = stmt
            .query_map([session], |row| {
                Ok(StoredCookie {
                    domain: row.get(0)?,
                    host_only: row.get(1)?,
                    path: row.get(2)?,
                    name: row.get(3)?,
                    value: row.get(4)?,
                    secure: row.get(5)?,
                    http_only: row.get(6)?,
                    same_site: row.get(7)?,
                    expires: row.get(8)?,
                    created: row.get::<_, i64>(9)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(cookies))
    }

    fn sessions(&self) -> Result<Vec<String>, StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached("SELECT name FROM sessions ORDER BY name")?;
        let names = stmt
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }

    fn apply(&self, session: &str, changes: Vec<CookieChange>) -> Commit {
        self.queue(Job::Apply {
            session: session.to_string(),
            changes,
        })
    }

    fn delete_session(&self, session: &str) -> Commit {
        self.queue(Job::DeleteSession(session.to_string()))
    }

    fn load_settings(&self, session: &str) -> Result<Option<String>, StoreError> {
        let conn = lock(&self.reader);
        let json = conn
            .query_row(
                "SELECT json FROM settings WHERE session = ?1",
                [session],
                |row| row.get(0),
            )
            .optional()?;
        Ok(json)
    }

    fn put_settings(&self, session: &str, json: String) -> Commit {
        self.queue(Job::PutSettings {
            session: session.to_string(),
            json,
        })
    }

    fn flush(&self) -> Commit {
        self.queue(Job::Flush)
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    fn last_error(&self) -> Option<StoreError> {
        lock(&self.last_error).clone()
    }
}

/// The writer: takes one job, gathers what else is queued (at once for full durability,
/// for up to a second when batched), commits them in one transaction, answers them all.
fn write_loop(
    mut conn: Connection,
    jobs: mpsc::Receiver<Queued>,
    durability: Durability,
    last_error: &Mutex<Option<StoreError>>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        match durability {
            Durability::Full => batch.extend(jobs.try_iter()),
            Durability::Batched => {
                let deadline = Instant::now() + BATCH_WINDOW;
                while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                    match jobs.recv_timeout(left) {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
        }
        let result = commit(&mut conn, &batch);
        match &result {
            Ok(()) => *lock(last_error) = None,
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "committing to the session store failed");
                *lock(last_error) = Some(e.clone());
            }
        }
        for queued in batch {
            let _ = queued.done.send(result.clone());
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Queued]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut known = tx.prepare_cached(
            "INSERT OR IGNORE INTO sessions (name, created) VALUES (?1, unixepoch())",
        )?;
        let mut put = tx.prepare_cached(
            "INSERT INTO cookies (session, domain, path, name, value, host_only, secure, http_only, same_site, expires, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (session, domain, path, name) DO UPDATE SET
                value = excluded.value, host_only = excluded.host_only, secure = excluded.secure,
                http_only = excluded.http_only, same_site = excluded.same_site,
                expires = excluded.expires, created = excluded.created",
        )?;
        let mut delete = tx.prepare_cached(
            "DELETE FROM cookies WHERE session = ?1 AND domain = ?2 AND path = ?3 AND name = ?4",
        )?;
        for queued in batch {
            match &queued.job {
                Job::Apply { session, changes } => {
                    known.execute([session])?;
                    for change in changes {
                        match change {
                            CookieChange::Put(c) => {
                                put.execute(params![
                                    session,
                                    c.domain,
                                    c.path,
                                    c.name,
                                    c.value,
                                    c.host_only,
                                    c.secure,
                                    c.http_only,
                                    c.same_site,
                                    c.expires,
                                    c.created as i64,
                                ])?;
                            }
                            CookieChange::Delete { domain, path, name } => {
                                delete.execute(params![session, domain, path, name])?;
                            }
                        }
                    }
                }
                Job::DeleteSession(session) => {
                    tx.execute("DELETE FROM cookies WHERE session = ?1", [session])?;
                    tx.execute("DELETE FROM settings WHERE session = ?1", [session])?;
                    tx.execute("DELETE FROM sessions WHERE name = ?1", [session])?;
                }
                Job::PutSettings { session, json } => {
                    known.execute([session])?;
                    tx.execute(
                        "INSERT INTO settings (session, json) VALUES (?1, ?2)
                         ON CONFLICT (session) DO UPDATE SET json = excluded.json",
                        [session, json],
                    )?;
                }
                Job::Flush => {}
            }
        }
    }
    tx.commit()?;
    Ok(())
}

fn open_connection(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    // Create the file ourselves so it is 0600 from the first byte; SQLite gives its -wal
    // and -shm files the database's mode.
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::new(format!("cannot create {}: {e}", path.display())))?;
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::new(format!(
            "{}: cannot use WAL mode",
            path.display()
        )));
    }
    // FULL syncs the WAL at every commit (power loss safe); NORMAL still survives a crash
    // of the process, which is all `batched` promises.
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Batched => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StoreError::new(format!(
            "{}: integrity check: {check}",
            path.display()
        )));
    }
    conn.execute_batch(SCHEMA)?;
    // Cookies that expired while the daemon was down are gone for good.
    conn.execute(
        "DELETE FROM cookies WHERE expires IS NOT NULL AND expires <= unixepoch()",
        [],
    )?;
    Ok(conn)
}

/// Renames the database and its WAL files to `*.corrupt-<unix time>`.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let aside = path.with_extension(format!("db.corrupt-{stamp}"));
    fs::rename(path, &aside)
        .map_err(|e| StoreError::new(format!("cannot move {} aside: {e}", path.display())))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let mut side_aside = aside.as_os_str().to_owned();
        side_aside.push(suffix);
        let _ = fs::rename(&side, &side_aside);
    }
    Ok(aside)
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::new(format!("cannot create {}: {e}", dir.display())))
}

/// Store locks guard plain data; a panic elsewhere cannot leave them inconsistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings_are_stored_replaced_and_deleted() {
        let dir =
            std::env::temp_dir().join(format!("sessiond-unit-settings-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = SqliteStore::open(&dir, Durability::Full).unwrap();
        assert_eq!(store.load_settings("s").unwrap(), None);
        store
            .put_settings("s", "{\"a\":1}".into())
            .wait()
            .await
            .unwrap();
        store
            .put_settings("s", "{\"b\":2}".into())
            .wait()
            .await
            .unwrap();
        assert_eq!(
            store.load_settings("s").unwrap().as_deref(),
            Some("{\"b\":2}")
        );
        // Storing settings makes the session known, with an empty jar.
        assert_eq!(store.load("s").unwrap().map(|c| c.len()), Some(0));
        store.delete_session("s").wait().await.unwrap();
        assert_eq!(store.load_settings("s").unwrap(), None);
        assert!(store.load("s").unwrap().is_none());
        drop(store);
        let _ = fs::remove_dir_all(&dir);
    }
}
