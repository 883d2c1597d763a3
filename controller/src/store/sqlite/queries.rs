//! The SQLite store's queries: rows to records, and the `Store` operations as SQL run on the
//! writer thread (changes) or the reader pool (queries). A row that does not decode is an error.

use super::*;

fn onboarding_of(row: &Row<'_>) -> rusqlite::Result<Onboarding> {
    let serials: String = row.get(2)?;
    let serials = serde_json::from_str(&serials).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(error))
    })?;
    Ok(Onboarding {
        id: row.get(0)?,
        cert_der: row.get(1)?,
        serials,
        subject: row.get(3)?,
    })
}

const DEVICE_COLUMNS: &str = "uuid, serial, onboarding_id, cert_der, registered_at, last_seen_ms";

fn device_of(row: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        uuid: row.get(0)?,
        serial: row.get(1)?,
        onboarding_id: row.get(2)?,
        cert_der: row.get(3)?,
        registered_at: row.get::<_, i64>(4)? as u64,
        last_seen_ms: row.get::<_, i64>(5)? as u64,
    })
}

const TELEMETRY_COLUMNS: &str = "uuid, kind, seq, received_at_ms, payload, object";

fn telemetry_of(row: &Row<'_>) -> rusqlite::Result<Telemetry> {
    Ok(Telemetry {
        uuid: row.get(0)?,
        kind: row.get(1)?,
        seq: row.get::<_, i64>(2)? as u64,
        received_at_ms: row.get::<_, i64>(3)? as u64,
        payload: row.get(4)?,
        object: row.get(5)?,
        lines: Vec::new(),
    })
}

fn log_line_of(row: &Row<'_>) -> rusqlite::Result<LogLine> {
    Ok(LogLine {
        seq: row.get::<_, i64>(0)? as u64,
        uuid: row.get(1)?,
        at_ms: row.get::<_, i64>(2)? as u64,
        severity: row.get(3)?,
        source: row.get(4)?,
        text: row.get(5)?,
    })
}

fn one_device(
    connection: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Option<Device>, StoreError> {
    connection
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE {condition}"
        ))
        .and_then(|mut statement| statement.query_row(params, device_of).optional())
        .map_err(backend)
}

/// The SQL list of the codes of `kinds` (our own integers, so safe to inline).
fn kind_list(kinds: &[TelemetryKind]) -> String {
    let codes: Vec<String> = kinds
        .iter()
        .map(|kind| (*kind as i32).to_string())
        .collect();
    codes.join(",")
}

impl Store for SqliteStore {
    fn put_onboarding(&self, entry: Onboarding) -> StoreFuture<'_, ()> {
        self.write_unit(move |connection| {
            let serials = serde_json::to_string(&entry.serials)
                .map_err(|error| StoreError::Backend(error.to_string()))?;
            connection
                .prepare_cached(
                    "INSERT INTO onboarding (id, cert_der, serials, subject) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET serials = excluded.serials,
                        cert_der = excluded.cert_der, subject = excluded.subject",
                )
                .and_then(|mut statement| {
                    statement.execute(params![entry.id, entry.cert_der, serials, entry.subject])
                })
                .map_err(backend)?;
            Ok(0)
        })
    }

    fn remove_onboarding<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        let id = id.to_owned();
        self.write_unit(move |connection| {
            match connection
                .execute("DELETE FROM onboarding WHERE id = ?1", [id])
                .map_err(backend)?
            {
                0 => Err(StoreError::NotFound),
                _ => Ok(0),
            }
        })
    }

    fn onboarding(&self) -> StoreFuture<'_, Vec<Onboarding>> {
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT id, cert_der, serials, subject FROM onboarding ORDER BY id")
                .map_err(backend)?;
            let rows = statement.query_map([], onboarding_of).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn insert_device(&self, device: Device) -> StoreFuture<'_, ()> {
        self.write_unit(move |connection| {
            let hash: [u8; 32] = Sha256::digest(&device.cert_der).into();
            let inserted = connection
                .prepare_cached(
                    "INSERT INTO devices (uuid, serial, onboarding_id, cert_der, cert_prefix,
                        cert_hash, registered_at, last_seen_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        device.uuid,
                        device.serial,
                        device.onboarding_id,
                        device.cert_der,
                        &hash[..16],
                        &hash[..],
                        i64_of(device.registered_at),
                        i64_of(device.last_seen_ms),
                    ])
                });
            match inserted {
                Ok(_) => Ok(0),
                Err(error) if is_conflict(&error) => Err(StoreError::Conflict),
                Err(error) => Err(backend(error)),
            }
        })
    }

    fn remove_device<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, ()> {
        let uuid = uuid.to_owned();
        self.write_unit(move |connection| {
            match connection
                .execute("DELETE FROM devices WHERE uuid = ?1", [uuid])
                .map_err(backend)?
            {
                0 => Err(StoreError::NotFound),
                _ => Ok(0),
            }
        })
    }

    fn devices(&self) -> StoreFuture<'_, Vec<Device>> {
        self.devices_by_contact(ContactQuery::default())
    }

    fn device<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<Device>> {
        let uuid = uuid.to_owned();
        self.read(move |connection| one_device(connection, "uuid = ?1", [uuid]))
    }

    fn device_by_cert_hash<'a>(&'a self, hash: &'a [u8]) -> StoreFuture<'a, Option<Device>> {
        let hash = hash.to_vec();
        self.read(move |connection| {
            if hash.len() != 16 && hash.len() != 32 {
                return Ok(None);
            }
            let full: Option<Vec<u8>> = connection
                .query_row(
                    "SELECT cert_hash FROM devices WHERE cert_prefix = ?1",
                    [&hash[..16]],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            match full {
                Some(full) if full.starts_with(&hash) => {
                    one_device(connection, "cert_prefix = ?1", [&hash[..16]])
                }
                _ => Ok(None),
            }
        })
    }

    fn device_by_serial<'a>(
        &'a self,
        onboarding_id: &'a str,
        serial: &'a str,
    ) -> StoreFuture<'a, Option<Device>> {
        let key = (onboarding_id.to_owned(), serial.to_owned());
        self.read(move |connection| {
            one_device(
                connection,
                "onboarding_id = ?1 AND serial = ?2",
                params![key.0, key.1],
            )
        })
    }

    fn set_config(&self, config: DeviceConfig) -> StoreFuture<'_, ()> {
        self.write_unit(move |connection| {
            let result = connection
                .prepare_cached(
                    "INSERT INTO configs (uuid, version, config, hash) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (uuid) DO UPDATE SET version = excluded.version,
                        config = excluded.config, hash = excluded.hash
                     WHERE configs.version < excluded.version",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        config.uuid,
                        i64_of(config.version),
                        config.config,
                        config.hash
                    ])
                });
            match result {
                Ok(0) => Err(StoreError::Conflict),
                Ok(_) => Ok(0),
                Err(rusqlite::Error::SqliteFailure(failure, _))
                    if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    Err(StoreError::NotFound)
                }
                Err(error) => Err(backend(error)),
            }
        })
    }

    fn config<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<DeviceConfig>> {
        let uuid = uuid.to_owned();
        self.read(move |connection| {
            connection
                .prepare_cached("SELECT uuid, version, config, hash FROM configs WHERE uuid = ?1")
                .and_then(|mut statement| {
                    statement
                        .query_row([uuid], |row| {
                            Ok(DeviceConfig {
                                uuid: row.get(0)?,
                                version: row.get::<_, i64>(1)? as u64,
                                config: row.get(2)?,
                                hash: row.get(3)?,
                            })
                        })
                        .optional()
                })
                .map_err(backend)
        })
    }

    fn config_request<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<ConfigRequestState>> {
        let uuid = uuid.to_owned();
        self.read(move |connection| {
            type Row = (
                Option<i64>,
                Option<Vec<u8>>,
                Option<String>,
                Option<Vec<u8>>,
            );
            let row: Option<Row> = connection
                .prepare_cached(
                    "SELECT c.version, c.config, c.hash, a.record FROM devices d
                     LEFT JOIN configs c ON c.uuid = d.uuid
                     LEFT JOIN attestations a ON a.uuid = d.uuid
                     WHERE d.uuid = ?1",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row([&uuid], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })
                        .optional()
                })
                .map_err(backend)?;
            let Some((version, config, hash, record)) = row else {
                return Ok(None);
            };
            let config = match (version, config, hash) {
                (Some(version), Some(config), Some(hash)) => Some(DeviceConfig {
                    uuid: uuid.clone(),
                    version: version as u64,
                    config,
                    hash,
                }),
                _ => None,
            };
            Ok(Some(ConfigRequestState {
                config,
                integrity_token: crate::store::token_of(record.as_deref())?,
            }))
        })
    }

    fn attestation<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<Attestation>> {
        let uuid = uuid.to_owned();
        self.read(move |connection| {
            let record: Option<Vec<u8>> = connection
                .prepare_cached("SELECT record FROM attestations WHERE uuid = ?1")
                .and_then(|mut statement| statement.query_row([uuid], |row| row.get(0)).optional())
                .map_err(backend)?;
            record
                .map(|bytes| {
                    prost::Message::decode(&bytes[..]).map_err(|error| {
                        StoreError::Backend(format!("attestation record: {error}"))
                    })
                })
                .transpose()
        })
    }

    fn put_attestation(&self, record: Attestation) -> StoreFuture<'_, ()> {
        self.write_unit(move |connection| {
            let bytes = prost::Message::encode_to_vec(&record);
            let version = i64_of(record.version);
            let changed = if record.version == 1 {
                connection.execute(
                    "INSERT INTO attestations (uuid, version, record) VALUES (?1, ?2, ?3)
                     ON CONFLICT (uuid) DO NOTHING",
                    params![record.uuid, version, bytes],
                )
            } else {
                connection.execute(
                    "UPDATE attestations SET version = ?2, record = ?3
                     WHERE uuid = ?1 AND version = ?2 - 1",
                    params![record.uuid, version, bytes],
                )
            };
            match changed {
                Ok(0) => Err(StoreError::Conflict),
                Ok(_) => Ok(0),
                Err(rusqlite::Error::SqliteFailure(failure, _))
                    if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    Err(StoreError::NotFound)
                }
                Err(error) => Err(backend(error)),
            }
        })
    }

    fn record_contacts(&self, contacts: Vec<(String, u64)>) -> StoreFuture<'_, ()> {
        self.write_unit(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "UPDATE devices SET last_seen_ms = ?2 WHERE uuid = ?1 AND last_seen_ms < ?2",
                )
                .map_err(backend)?;
            for (uuid, seen) in contacts {
                statement
                    .execute(params![uuid, i64_of(seen)])
                    .map_err(backend)?;
            }
            Ok(0)
        })
    }

    fn devices_by_contact(&self, query: ContactQuery) -> StoreFuture<'_, Vec<Device>> {
        self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices
                     WHERE last_seen_ms >= ?1 AND last_seen_ms < ?2 ORDER BY uuid"
                ))
                .map_err(backend)?;
            let since = query.seen_since.map_or(0, i64_of);
            let before = query.not_seen_since.map_or(i64::MAX, i64_of);
            let rows = statement
                .query_map(params![since, before], device_of)
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn add_telemetry(&self, report: Telemetry) -> StoreFuture<'_, u64> {
        self.write(move |connection| {
            let inserted = connection
                .prepare_cached(
                    "INSERT INTO telemetry (uuid, kind, received_at_ms, payload, object)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        report.uuid,
                        report.kind,
                        i64_of(report.received_at_ms),
                        report.payload,
                        report.object,
                    ])
                });
            match inserted {
                Ok(_) => {
                    let seq = connection.last_insert_rowid();
                    let mut statement = connection
                        .prepare_cached(
                            "INSERT INTO log_lines (seq, line, uuid, at_ms, severity, source, text)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )
                        .map_err(backend)?;
                    for (index, line) in report.lines.iter().enumerate() {
                        statement
                            .execute(params![
                                seq,
                                index as i64,
                                report.uuid,
                                i64_of(line.at_ms),
                                line.severity,
                                line.source,
                                line.text,
                            ])
                            .map_err(backend)?;
                    }
                    Ok(seq as u64)
                }
                Err(rusqlite::Error::SqliteFailure(failure, _))
                    if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    Err(StoreError::NotFound)
                }
                Err(error) => Err(backend(error)),
            }
        })
    }

    fn telemetry(&self, query: TelemetryQuery) -> StoreFuture<'_, Vec<Telemetry>> {
        self.read(move |connection| {
            if query.kinds.is_empty() || query.limit == 0 {
                return Ok(Vec::new());
            }
            let order = if query.newest_first { "DESC" } else { "ASC" };
            let sql = format!(
                "SELECT {TELEMETRY_COLUMNS} FROM telemetry
                 WHERE (?1 IS NULL OR uuid = ?1) AND kind IN ({}) AND seq > ?2
                   AND received_at_ms >= ?3 AND received_at_ms < ?4
                   AND (?6 IS NULL OR object = ?6)
                 ORDER BY seq {order} LIMIT ?5",
                kind_list(&query.kinds)
            );
            let mut statement = connection.prepare_cached(&sql).map_err(backend)?;
            let rows = statement
                .query_map(
                    params![
                        query.uuid,
                        i64_of(query.after_seq),
                        query.since_ms.map_or(0, i64_of),
                        query.until_ms.map_or(i64::MAX, i64_of),
                        i64_of(query.limit as u64),
                        query.object,
                    ],
                    telemetry_of,
                )
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn logs(&self, query: LogQuery) -> StoreFuture<'_, Vec<LogLine>> {
        self.read(move |connection| {
            if query.limit == 0 {
                return Ok(Vec::new());
            }
            let order = if query.newest_first { "DESC" } else { "ASC" };
            let severities = serde_json::to_string(&query.severities)
                .map_err(|error| StoreError::Backend(error.to_string()))?;
            let sql = format!(
                "SELECT seq, uuid, at_ms, severity, source, text FROM log_lines
                 WHERE (?1 IS NULL OR uuid = ?1) AND at_ms >= ?2 AND at_ms < ?3
                   AND (?4 = '[]' OR severity IN (SELECT value FROM json_each(?4)))
                   AND (?5 IS NULL OR instr(text, ?5) > 0)
                 ORDER BY at_ms {order}, seq {order}, line {order} LIMIT ?6"
            );
            let mut statement = connection.prepare_cached(&sql).map_err(backend)?;
            let rows = statement
                .query_map(
                    params![
                        query.uuid,
                        query.since_ms.map_or(0, i64_of),
                        query.until_ms.map_or(i64::MAX, i64_of),
                        severities,
                        query.text,
                        i64_of(query.limit as u64),
                    ],
                    log_line_of,
                )
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn retire(&self, retention: Retention, now_ms: u64) -> StoreFuture<'_, u64> {
        self.write(move |connection| {
            let mut deleted = 0;
            for kind in TelemetryKind::ALL {
                let keep = retention.get(kind);
                if let Some(age) = keep.max_age_ms {
                    deleted += connection
                        .execute(
                            "DELETE FROM telemetry WHERE kind = ?1 AND received_at_ms < ?2",
                            params![kind as i32, i64_of(now_ms.saturating_sub(age))],
                        )
                        .map_err(backend)? as u64;
                }
                if let Some(count) = keep.max_per_device {
                    deleted += connection
                        .execute(
                            "DELETE FROM telemetry WHERE seq IN (
                                SELECT seq FROM (
                                    SELECT seq, ROW_NUMBER() OVER (
                                        PARTITION BY uuid ORDER BY seq DESC) AS newer
                                    FROM telemetry WHERE kind = ?1)
                                WHERE newer > ?2)",
                            params![kind as i32, i64_of(count)],
                        )
                        .map_err(backend)? as u64;
                }
                if let Some(bytes) = keep.max_bytes_per_device {
                    // length() of a BLOB reads its size from the record, not its content.
                    deleted += connection
                        .execute(
                            "DELETE FROM telemetry WHERE seq IN (
                                SELECT seq FROM (
                                    SELECT seq, SUM(length(payload)) OVER (
                                        PARTITION BY uuid ORDER BY seq DESC
                                        ROWS UNBOUNDED PRECEDING) AS newer_bytes
                                    FROM telemetry WHERE kind = ?1)
                                WHERE newer_bytes > ?2)",
                            params![kind as i32, i64_of(bytes)],
                        )
                        .map_err(backend)? as u64;
                }
            }
            Ok(deleted)
        })
    }
}
