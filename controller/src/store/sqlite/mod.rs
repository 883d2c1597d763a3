//! The default store: one SQLite database file (`lichen.db` in the state directory), in WAL mode
//! with `synchronous = FULL`, so that a committed transaction survives a crash or power loss.
//!
//! One writer thread commits changes in batches (group commit: one transaction, hence one fsync,
//! for every change that arrived meanwhile; each change in its own savepoint so that a refused
//! one does not undo the others). Reads run on a small pool of read-only connections, which WAL
//! lets proceed while the writer commits. The schema is versioned (`PRAGMA user_version`); on
//! open, the migrations past the file's version are applied in one transaction.
//!
//! What the database file may hold that this code did not write: nothing is trusted beyond
//! SQLite's own integrity; a row that does not decode (e.g. serials that are not a JSON array) is
//! reported as a backend error, never served half-read.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, Semaphore};

mod queries;

use super::{
    Attestation, ConfigRequestState, ContactQuery, Device, DeviceConfig, LogLine, LogQuery,
    Onboarding, Retention, Store, StoreError, StoreFuture, Telemetry, TelemetryKind,
    TelemetryQuery,
};

/// The database file's name in the state directory.
pub const FILE_NAME: &str = "lichen.db";
/// Most changes committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Read connections.
const READERS: usize = 4;

/// The schema, one migration per version (version N is `MIGRATIONS[N - 1]`). Never edit a
/// released migration: add one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE onboarding (
        id TEXT PRIMARY KEY,
        cert_der BLOB NOT NULL,
        serials TEXT NOT NULL,
        subject TEXT NOT NULL
    );
    CREATE TABLE devices (
        uuid TEXT PRIMARY KEY,
        serial TEXT NOT NULL,
        onboarding_id TEXT NOT NULL,
        cert_der BLOB NOT NULL,
        cert_prefix BLOB NOT NULL UNIQUE,
        cert_hash BLOB NOT NULL,
        registered_at INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL DEFAULT 0,
        UNIQUE (onboarding_id, serial)
    );
    CREATE INDEX devices_by_contact ON devices (last_seen_ms);
    CREATE TABLE configs (
        uuid TEXT PRIMARY KEY REFERENCES devices (uuid) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        config BLOB NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TABLE telemetry (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
        kind INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX telemetry_by_device ON telemetry (uuid, kind, seq);
    CREATE INDEX telemetry_by_time ON telemetry (kind, received_at_ms);",
    // 2: what reports are about, and log lines, for queries.
    "ALTER TABLE telemetry ADD COLUMN object TEXT NOT NULL DEFAULT '';
    CREATE INDEX telemetry_by_object ON telemetry (uuid, kind, object, seq);
    CREATE TABLE log_lines (
        seq INTEGER NOT NULL REFERENCES telemetry (seq) ON DELETE CASCADE,
        line INTEGER NOT NULL,
        uuid TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        severity TEXT NOT NULL,
        source TEXT NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (seq, line)
    );
    CREATE INDEX log_lines_by_device ON log_lines (uuid, at_ms);
    CREATE INDEX log_lines_by_time ON log_lines (at_ms);",
    // 3: attestation state.
    "CREATE TABLE attestations (
        uuid TEXT PRIMARY KEY REFERENCES devices (uuid) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        record BLOB NOT NULL
    );",
];

/// The SQLite store (see the module docs).
pub struct SqliteStore {
    writer: Option<mpsc::Sender<Pending>>,
    thread: Option<thread::JoinHandle<()>>,
    readers: Arc<Readers>,
}

/// A change for the writer: run inside the batch's transaction.
type Change = Box<dyn FnOnce(&Connection) -> Result<u64, StoreError> + Send>;

struct Pending {
    change: Change,
    done: oneshot::Sender<Result<u64, StoreError>>,
}

struct Readers {
    free: Mutex<Vec<Connection>>,
    available: Semaphore,
}

fn backend(error: rusqlite::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

/// Whether `error` is a UNIQUE or PRIMARY KEY violation.
fn is_conflict(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn open_connection(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    connection.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY;",
    )?;
    Ok(connection)
}

/// Applies the migrations past the database's version; returns the version reached.
fn migrate(connection: &mut Connection) -> Result<usize, StoreError> {
    let version: usize = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(backend)?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}, newer than this controller's {}",
            MIGRATIONS.len()
        )));
    }
    let transaction = connection.transaction().map_err(backend)?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        transaction.execute_batch(migration).map_err(backend)?;
        transaction
            .execute_batch(&format!("PRAGMA user_version = {}", index + 1))
            .map_err(backend)?;
    }
    transaction.commit().map_err(backend)?;
    Ok(MIGRATIONS.len())
}

impl SqliteStore {
    /// Opens (or creates) the database `dir/lichen.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut writer = open_connection(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(backend)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{}: cannot use WAL (journal mode {mode})",
                path.display()
            )));
        }
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| open_connection(&path, OpenFlags::SQLITE_OPEN_READ_ONLY))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        let (sender, queue) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(&writer, &queue))?;
        Ok(Self {
            writer: Some(sender),
            thread: Some(thread),
            readers: Arc::new(Readers {
                free: Mutex::new(readers),
                available: Semaphore::new(READERS),
            }),
        })
    }

    /// Runs `change` in the writer's next transaction; resolves once it is committed.
    fn write<'a>(
        &self,
        change: impl FnOnce(&Connection) -> Result<u64, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, u64> {
        let (done, result) = oneshot::channel();
        let sent = self.writer.as_ref().is_some_and(|writer| {
            writer
                .send(Pending {
                    change: Box::new(change),
                    done,
                })
                .is_ok()
        });
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Backend("store is closed".into()));
            }
            result
                .await
                .unwrap_or_else(|_| Err(StoreError::Backend("store writer stopped".into())))
        })
    }

    fn write_unit<'a>(
        &self,
        change: impl FnOnce(&Connection) -> Result<u64, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, ()> {
        let write = self.write(change);
        Box::pin(async move { write.await.map(drop) })
    }

    /// Runs `query` on a read connection, off the async threads.
    fn read<'a, T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        let readers = Arc::clone(&self.readers);
        Box::pin(async move {
            let _permit = readers
                .available
                .acquire()
                .await
                .map_err(|_| StoreError::Backend("store is closed".into()))?;
            let connection = readers
                .free
                .lock()
                .expect("reader pool lock")
                .pop()
                .expect("a permit guarantees a free reader");
            let (connection, result) = tokio::task::spawn_blocking(move || {
                let result = query(&connection);
                (connection, result)
            })
            .await
            .map_err(|error| StoreError::Backend(format!("store reader failed: {error}")))?;
            readers
                .free
                .lock()
                .expect("reader pool lock")
                .push(connection);
            result
        })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: commits batches until every sender is gone.
fn write_loop(connection: &Connection, queue: &mpsc::Receiver<Pending>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
            let message = format!("starting a transaction: {error}");
            for pending in batch {
                let _ = pending.done.send(Err(StoreError::Backend(message.clone())));
            }
            continue;
        }
        let mut results = Vec::with_capacity(batch.len());
        for pending in batch {
            let result = run_in_savepoint(connection, pending.change);
            results.push((pending.done, result));
        }
        if let Err(error) = connection.execute_batch("COMMIT") {
            let message = format!("committing: {error}");
            let _ = connection.execute_batch("ROLLBACK");
            for (done, _) in results {
                let _ = done.send(Err(StoreError::Backend(message.clone())));
            }
            continue;
        }
        for (done, result) in results {
            let _ = done.send(result);
        }
    }
}

fn run_in_savepoint(connection: &Connection, change: Change) -> Result<u64, StoreError> {
    connection
        .execute_batch("SAVEPOINT change")
        .map_err(backend)?;
    let result = change(connection);
    let end = if result.is_ok() {
        "RELEASE change"
    } else {
        "ROLLBACK TO change; RELEASE change"
    };
    connection.execute_batch(end).map_err(backend)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> SqliteStore {
        SqliteStore::open(dir).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conforms() {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let cases = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        super::super::conformance::run_all(Box::new(move || {
            // Each case gets an empty database.
            let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.path().join(case.to_string());
            Box::pin(async move { Ok(Box::new(open(&path)) as Box<dyn Store>) })
        }))
        .await;
    }

    #[test]
    fn reopening_migrates_nothing_twice_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        drop(open(dir.path()));
        let path = dir.path().join(FILE_NAME);
        let connection = Connection::open(&path).unwrap();
        let version: usize = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
        connection
            .execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len() + 1))
            .unwrap();
        drop(connection);
        let error = SqliteStore::open(dir.path()).err().unwrap().to_string();
        assert!(error.contains("newer"), "{error}");
    }

    #[test]
    fn a_corrupt_row_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let connection = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        connection
            .execute(
                "INSERT INTO onboarding VALUES ('x', x'00', 'not json', 's')",
                [],
            )
            .unwrap();
        drop(connection);
        let store = open(dir.path());
        let result = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(store.onboarding());
        assert!(matches!(result, Err(StoreError::Backend(_))));
    }
}
