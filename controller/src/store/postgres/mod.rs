//! The PostgreSQL store, for fleets that outgrow one machine: several controllers (stateless
//! themselves) share one database. Every write is one statement, atomic on its own, committed
//! before it is acknowledged (PostgreSQL merges concurrent commits into one WAL flush). A small
//! pool of connections carries the queries, each pipelining concurrent requests; a connection
//! that fails is replaced on next use. The schema is versioned (table `lichen_schema`); on open,
//! the migrations past the database's version are applied in one transaction under an advisory
//! lock, so controllers starting together migrate once.
//!
//! What the server may send that this code did not write: rows are decoded into typed columns by
//! the driver; a value out of range (e.g. a negative time) is reported as a backend error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

mod queries;

use super::{
    Attestation, ConfigRequestState, ContactQuery, Device, DeviceConfig, LogLine, LogQuery,
    Onboarding, Retention, Store, StoreError, StoreFuture, Telemetry, TelemetryKind,
    TelemetryQuery,
};

/// Connections per controller.
const CONNECTIONS: usize = 8;
/// The advisory lock held while migrating (an arbitrary constant: "lichen" in ASCII).
const MIGRATION_LOCK: i64 = 0x6c69_6368_656e;

/// The schema, one migration per version. Never edit a released migration: add one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE onboarding (
        id TEXT PRIMARY KEY,
        cert_der BYTEA NOT NULL,
        serials TEXT[] NOT NULL,
        subject TEXT NOT NULL
    );
    CREATE TABLE devices (
        uuid TEXT PRIMARY KEY,
        serial TEXT NOT NULL,
        onboarding_id TEXT NOT NULL,
        cert_der BYTEA NOT NULL,
        cert_prefix BYTEA NOT NULL UNIQUE,
        cert_hash BYTEA NOT NULL,
        registered_at BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL DEFAULT 0,
        UNIQUE (onboarding_id, serial)
    );
    CREATE INDEX devices_by_contact ON devices (last_seen_ms);
    CREATE TABLE configs (
        uuid TEXT PRIMARY KEY REFERENCES devices (uuid) ON DELETE CASCADE,
        version BIGINT NOT NULL,
        config BYTEA NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TABLE telemetry (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        uuid TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
        kind INTEGER NOT NULL,
        received_at_ms BIGINT NOT NULL,
        payload BYTEA NOT NULL
    );
    CREATE INDEX telemetry_by_device ON telemetry (uuid, kind, seq);
    CREATE INDEX telemetry_by_time ON telemetry (kind, received_at_ms);",
    // 2: what reports are about, and log lines, for queries.
    "ALTER TABLE telemetry ADD COLUMN object TEXT NOT NULL DEFAULT '';
    CREATE INDEX telemetry_by_object ON telemetry (uuid, kind, object, seq);
    CREATE TABLE log_lines (
        seq BIGINT NOT NULL REFERENCES telemetry (seq) ON DELETE CASCADE,
        line INTEGER NOT NULL,
        uuid TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
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
        version BIGINT NOT NULL,
        record BYTEA NOT NULL
    );",
];

/// The PostgreSQL store (see the module docs).
pub struct PostgresStore {
    config: String,
    slots: Vec<tokio::sync::Mutex<Option<Arc<Connection>>>>,
    next: AtomicUsize,
}

/// A connection and its prepared statements.
struct Connection {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

fn backend(error: tokio_postgres::Error) -> StoreError {
    let detail = error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.to_string());
    StoreError::Backend(format!("postgresql: {detail}"))
}

/// Maps constraint violations to the store's meaning of them.
fn refused(error: tokio_postgres::Error) -> StoreError {
    match error.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => StoreError::Conflict,
        Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => StoreError::NotFound,
        _ => backend(error),
    }
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn u64_of(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Backend(format!("negative value {value} stored")))
}

async fn connect(config: &str) -> Result<Arc<Connection>, StoreError> {
    let (client, connection) = tokio_postgres::connect(config, NoTls)
        .await
        .map_err(backend)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("lichen-controller: postgresql connection closed: {error}");
        }
    });
    Ok(Arc::new(Connection {
        client,
        statements: Mutex::default(),
    }))
}

impl PostgresStore {
    /// Connects to the database described by `config` (a `postgresql://` URL or `key=value`
    /// pairs) and brings its schema up to date.
    pub async fn open(config: &str) -> Result<Self, StoreError> {
        let first = connect(config).await?;
        migrate(&first.client).await?;
        let mut slots: Vec<_> = (1..CONNECTIONS)
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        slots.push(tokio::sync::Mutex::new(Some(first)));
        Ok(Self {
            config: config.to_owned(),
            slots,
            next: AtomicUsize::new(0),
        })
    }

    /// A live connection from the pool (connecting if its slot's one failed).
    async fn connection(&self) -> Result<Arc<Connection>, StoreError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let mut slot = slot.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(Arc::clone(connection));
        }
        let connection = connect(&self.config).await?;
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// A connection and `sql` prepared on it (once per connection).
    async fn prepared(&self, sql: &str) -> Result<(Arc<Connection>, Statement), StoreError> {
        let connection = self.connection().await?;
        let cached = connection
            .statements
            .lock()
            .expect("statement cache lock")
            .get(sql)
            .cloned();
        let statement = match cached {
            Some(statement) => statement,
            None => {
                let statement = connection.client.prepare(sql).await.map_err(backend)?;
                connection
                    .statements
                    .lock()
                    .expect("statement cache lock")
                    .insert(sql.to_owned(), statement.clone());
                statement
            }
        };
        Ok((connection, statement))
    }

    /// Runs `sql` and returns its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let (connection, statement) = self.prepared(sql).await?;
        connection
            .client
            .query(&statement, params)
            .await
            .map_err(refused)
    }

    /// Runs `sql` and returns how many rows it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let (connection, statement) = self.prepared(sql).await?;
        connection
            .client
            .execute(&statement, params)
            .await
            .map_err(refused)
    }
}

async fn migrate(client: &Client) -> Result<(), StoreError> {
    client.batch_execute("BEGIN").await.map_err(backend)?;
    let result = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS lichen_schema (version INTEGER NOT NULL)")
            .await?;
        let version: i32 = client
            .query_opt("SELECT version FROM lichen_schema", &[])
            .await?
            .map_or(0, |row| row.get(0));
        Ok::<_, tokio_postgres::Error>(version)
    }
    .await;
    let version = match result {
        Ok(version) => version as usize,
        Err(error) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(backend(error));
        }
    };
    if version > MIGRATIONS.len() {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}, newer than this controller's {}",
            MIGRATIONS.len()
        )));
    }
    let applied = async {
        for migration in &MIGRATIONS[version..] {
            client.batch_execute(migration).await?;
        }
        let latest = MIGRATIONS.len() as i32;
        client.execute("DELETE FROM lichen_schema", &[]).await?;
        client
            .execute(
                "INSERT INTO lichen_schema (version) VALUES ($1)",
                &[&latest],
            )
            .await?;
        client.batch_execute("COMMIT").await
    }
    .await;
    if let Err(error) = applied {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(backend(error));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Why the PostgreSQL tests are ignored by a plain `cargo test`.
    const NEEDS: &str = "needs PostgreSQL: controller/tests/with-postgres.sh cargo test -p lichen-controller -- --include-ignored";

    /// The PostgreSQL server tests use, from `LICHEN_TEST_POSTGRES` (`key=value` pairs naming a
    /// superuser; `controller/tests/with-postgres.sh` starts one and sets it).
    pub(crate) fn server() -> String {
        std::env::var("LICHEN_TEST_POSTGRES")
            .unwrap_or_else(|_| panic!("LICHEN_TEST_POSTGRES is not set ({NEEDS})"))
    }

    /// A new, empty database on `server`; returns its connection configuration.
    pub(crate) async fn new_database(server: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "lichen_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) = tokio_postgres::connect(server, NoTls).await.unwrap();
        tokio::spawn(connection);
        for statement in ["DROP DATABASE IF EXISTS", "CREATE DATABASE"] {
            client
                .batch_execute(&format!("{statement} {name}"))
                .await
                .unwrap();
        }
        format!("{server} dbname={name}")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL (controller/tests/with-postgres.sh)"]
    async fn conforms() {
        let server = Arc::new(server());
        super::super::conformance::run_all(Box::new(move || {
            let server = Arc::clone(&server);
            Box::pin(async move {
                let config = new_database(&server).await;
                Ok(Box::new(PostgresStore::open(&config).await?) as Box<dyn Store>)
            })
        }))
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL (controller/tests/with-postgres.sh)"]
    async fn controllers_opening_together_migrate_once_and_a_newer_schema_is_refused() {
        let server = server();
        let config = new_database(&server).await;
        let opened =
            futures_util::future::join_all((0..4).map(|_| PostgresStore::open(&config))).await;
        assert!(opened.iter().all(Result::is_ok));
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
        tokio::spawn(connection);
        let versions = client
            .query("SELECT version FROM lichen_schema", &[])
            .await
            .unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].get::<_, i32>(0), MIGRATIONS.len() as i32);
        client
            .execute("UPDATE lichen_schema SET version = version + 1", &[])
            .await
            .unwrap();
        let error = PostgresStore::open(&config)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("newer"), "{error}");
    }
}
