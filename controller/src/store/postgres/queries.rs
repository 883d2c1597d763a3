//! The PostgreSQL store's queries: rows to records, and the `Store` operations as SQL
//! statements on the connection pool. A row that does not decode is an error.

use super::*;

fn onboarding_of(row: &Row) -> Onboarding {
    Onboarding {
        id: row.get(0),
        cert_der: row.get(1),
        serials: row.get(2),
        subject: row.get(3),
    }
}

const DEVICE_COLUMNS: &str = "uuid, serial, onboarding_id, cert_der, registered_at, last_seen_ms";

fn device_of(row: &Row) -> Result<Device, StoreError> {
    Ok(Device {
        uuid: row.get(0),
        serial: row.get(1),
        onboarding_id: row.get(2),
        cert_der: row.get(3),
        registered_at: u64_of(row.get(4))?,
        last_seen_ms: u64_of(row.get(5))?,
    })
}

fn telemetry_of(row: &Row) -> Result<Telemetry, StoreError> {
    Ok(Telemetry {
        uuid: row.get(0),
        kind: row.get(1),
        seq: u64_of(row.get(2))?,
        received_at_ms: u64_of(row.get(3))?,
        payload: row.get(4),
        object: row.get(5),
        lines: Vec::new(),
    })
}

fn log_line_of(row: &Row) -> Result<LogLine, StoreError> {
    Ok(LogLine {
        seq: u64_of(row.get(0))?,
        uuid: row.get(1),
        at_ms: u64_of(row.get(2))?,
        severity: row.get(3),
        source: row.get(4),
        text: row.get(5),
    })
}

/// Fails with [`StoreError::NotFound`] when a statement changed no row.
fn changed(rows: u64) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

impl Store for PostgresStore {
    fn put_onboarding(&self, entry: Onboarding) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.query(
                "INSERT INTO onboarding (id, cert_der, serials, subject) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET serials = excluded.serials,
                    cert_der = excluded.cert_der, subject = excluded.subject",
                &[&entry.id, &entry.cert_der, &entry.serials, &entry.subject],
            )
            .await?;
            Ok(())
        })
    }

    fn remove_onboarding<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let deleted = self
                .execute("DELETE FROM onboarding WHERE id = $1", &[&id])
                .await?;
            changed(deleted)
        })
    }

    fn onboarding(&self) -> StoreFuture<'_, Vec<Onboarding>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT id, cert_der, serials, subject FROM onboarding ORDER BY id",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(onboarding_of).collect())
        })
    }

    fn insert_device(&self, device: Device) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let hash: [u8; 32] = Sha256::digest(&device.cert_der).into();
            self.query(
                "INSERT INTO devices (uuid, serial, onboarding_id, cert_der, cert_prefix,
                    cert_hash, registered_at, last_seen_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &device.uuid,
                    &device.serial,
                    &device.onboarding_id,
                    &device.cert_der,
                    &&hash[..16],
                    &&hash[..],
                    &i64_of(device.registered_at),
                    &i64_of(device.last_seen_ms),
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn remove_device<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let deleted = self
                .execute("DELETE FROM devices WHERE uuid = $1", &[&uuid])
                .await?;
            changed(deleted)
        })
    }

    fn devices(&self) -> StoreFuture<'_, Vec<Device>> {
        self.devices_by_contact(ContactQuery::default())
    }

    fn device<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<Device>> {
        Box::pin(async move {
            let rows = self
                .query(
                    &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE uuid = $1"),
                    &[&uuid],
                )
                .await?;
            rows.first().map(device_of).transpose()
        })
    }

    fn device_by_cert_hash<'a>(&'a self, hash: &'a [u8]) -> StoreFuture<'a, Option<Device>> {
        Box::pin(async move {
            if hash.len() != 16 && hash.len() != 32 {
                return Ok(None);
            }
            let rows = self
                .query(
                    &format!(
                        "SELECT {DEVICE_COLUMNS}, cert_hash FROM devices WHERE cert_prefix = $1"
                    ),
                    &[&&hash[..16]],
                )
                .await?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let full: Vec<u8> = row.get(6);
            if !full.starts_with(hash) {
                return Ok(None);
            }
            device_of(row).map(Some)
        })
    }

    fn device_by_serial<'a>(
        &'a self,
        onboarding_id: &'a str,
        serial: &'a str,
    ) -> StoreFuture<'a, Option<Device>> {
        Box::pin(async move {
            let rows = self
                .query(
                    &format!(
                        "SELECT {DEVICE_COLUMNS} FROM devices
                         WHERE onboarding_id = $1 AND serial = $2"
                    ),
                    &[&onboarding_id, &serial],
                )
                .await?;
            rows.first().map(device_of).transpose()
        })
    }

    fn set_config(&self, config: DeviceConfig) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let changed = self
                .execute(
                    "INSERT INTO configs (uuid, version, config, hash) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (uuid) DO UPDATE SET version = excluded.version,
                    config = excluded.config, hash = excluded.hash
                 WHERE configs.version < excluded.version",
                    &[
                        &config.uuid,
                        &i64_of(config.version),
                        &config.config,
                        &config.hash,
                    ],
                )
                .await?;
            if changed == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
    }

    fn config<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<DeviceConfig>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT uuid, version, config, hash FROM configs WHERE uuid = $1",
                    &[&uuid],
                )
                .await?;
            rows.first()
                .map(|row| {
                    Ok(DeviceConfig {
                        uuid: row.get(0),
                        version: u64_of(row.get(1))?,
                        config: row.get(2),
                        hash: row.get(3),
                    })
                })
                .transpose()
        })
    }

    fn config_request<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<ConfigRequestState>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT c.version, c.config, c.hash, a.record FROM devices d
                     LEFT JOIN configs c ON c.uuid = d.uuid
                     LEFT JOIN attestations a ON a.uuid = d.uuid
                     WHERE d.uuid = $1",
                    &[&uuid],
                )
                .await?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let version: Option<i64> = row.get(0);
            let config = match (version, row.get(1), row.get(2)) {
                (Some(version), Some(config), Some(hash)) => Some(DeviceConfig {
                    uuid: uuid.to_owned(),
                    version: u64_of(version)?,
                    config,
                    hash,
                }),
                _ => None,
            };
            let record: Option<Vec<u8>> = row.get(3);
            Ok(Some(ConfigRequestState {
                config,
                integrity_token: crate::store::token_of(record.as_deref())?,
            }))
        })
    }

    fn attestation<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<Attestation>> {
        Box::pin(async move {
            let rows = self
                .query("SELECT record FROM attestations WHERE uuid = $1", &[&uuid])
                .await?;
            rows.first()
                .map(|row| {
                    let bytes: Vec<u8> = row.get(0);
                    prost::Message::decode(&bytes[..]).map_err(|error| {
                        StoreError::Backend(format!("attestation record: {error}"))
                    })
                })
                .transpose()
        })
    }

    fn put_attestation(&self, record: Attestation) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let bytes = prost::Message::encode_to_vec(&record);
            let version = i64_of(record.version);
            let changed = if record.version == 1 {
                self.execute(
                    "INSERT INTO attestations (uuid, version, record) VALUES ($1, $2, $3)
                     ON CONFLICT (uuid) DO NOTHING",
                    &[&record.uuid, &version, &bytes],
                )
                .await?
            } else {
                self.execute(
                    "UPDATE attestations SET version = $2::bigint, record = $3
                     WHERE uuid = $1 AND version = $2::bigint - 1",
                    &[&record.uuid, &version, &bytes],
                )
                .await?
            };
            if changed == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
    }

    fn record_contacts(&self, contacts: Vec<(String, u64)>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (uuids, seen): (Vec<String>, Vec<i64>) = contacts
                .into_iter()
                .map(|(uuid, seen)| (uuid, i64_of(seen)))
                .unzip();
            self.query(
                "UPDATE devices SET last_seen_ms = contact.seen
                 FROM unnest($1::text[], $2::bigint[]) AS contact (uuid, seen)
                 WHERE devices.uuid = contact.uuid AND devices.last_seen_ms < contact.seen",
                &[&uuids, &seen],
            )
            .await?;
            Ok(())
        })
    }

    fn devices_by_contact(&self, query: ContactQuery) -> StoreFuture<'_, Vec<Device>> {
        Box::pin(async move {
            let since = query.seen_since.map_or(0, i64_of);
            let before = query.not_seen_since.map_or(i64::MAX, i64_of);
            let rows = self
                .query(
                    &format!(
                        "SELECT {DEVICE_COLUMNS} FROM devices
                         WHERE last_seen_ms >= $1 AND last_seen_ms < $2 ORDER BY uuid"
                    ),
                    &[&since, &before],
                )
                .await?;
            rows.iter().map(device_of).collect()
        })
    }

    fn add_telemetry(&self, report: Telemetry) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let rows = self
                .query(
                    // One statement: the report and its lines are stored together or not at all.
                    "WITH report AS (
                        INSERT INTO telemetry (uuid, kind, received_at_ms, payload, object)
                        VALUES ($1, $2, $3, $4, $5) RETURNING seq),
                     lines AS (
                        INSERT INTO log_lines (seq, line, uuid, at_ms, severity, source, text)
                        SELECT report.seq, line.number, $1, line.at_ms, line.severity,
                            line.source, line.text
                        FROM report, unnest($6::int[], $7::bigint[], $8::text[], $9::text[],
                            $10::text[]) AS line (number, at_ms, severity, source, text))
                     SELECT seq FROM report",
                    &[
                        &report.uuid,
                        &report.kind,
                        &i64_of(report.received_at_ms),
                        &report.payload,
                        &report.object,
                        &(0..report.lines.len() as i32).collect::<Vec<i32>>(),
                        &report
                            .lines
                            .iter()
                            .map(|l| i64_of(l.at_ms))
                            .collect::<Vec<i64>>(),
                        &report
                            .lines
                            .iter()
                            .map(|l| l.severity.as_str())
                            .collect::<Vec<&str>>(),
                        &report
                            .lines
                            .iter()
                            .map(|l| l.source.as_str())
                            .collect::<Vec<&str>>(),
                        &report
                            .lines
                            .iter()
                            .map(|l| l.text.as_str())
                            .collect::<Vec<&str>>(),
                    ],
                )
                .await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::Backend("insert returned no sequence number".into()))?;
            u64_of(row.get(0))
        })
    }

    fn telemetry(&self, query: TelemetryQuery) -> StoreFuture<'_, Vec<Telemetry>> {
        Box::pin(async move {
            if query.kinds.is_empty() || query.limit == 0 {
                return Ok(Vec::new());
            }
            let order = if query.newest_first { "DESC" } else { "ASC" };
            // One statement per shape, so that each gets a plan that uses the right index.
            let device = if query.uuid.is_some() {
                "uuid = $6 AND"
            } else {
                "$6::text IS NULL AND"
            };
            let object = if query.object.is_some() {
                "object = $7 AND"
            } else {
                "$7::text IS NULL AND"
            };
            let sql = format!(
                "SELECT uuid, kind, seq, received_at_ms, payload, object FROM telemetry
                 WHERE {device} {object} kind = ANY($1) AND seq > $2
                   AND received_at_ms >= $3 AND received_at_ms < $4
                 ORDER BY seq {order} LIMIT $5"
            );
            let kinds: Vec<i32> = query.kinds.iter().map(|kind| *kind as i32).collect();
            let rows = self
                .query(
                    &sql,
                    &[
                        &kinds,
                        &i64_of(query.after_seq),
                        &query.since_ms.map_or(0, i64_of),
                        &query.until_ms.map_or(i64::MAX, i64_of),
                        &i64_of(query.limit as u64),
                        &query.uuid,
                        &query.object,
                    ],
                )
                .await?;
            rows.iter().map(telemetry_of).collect()
        })
    }

    fn logs(&self, query: LogQuery) -> StoreFuture<'_, Vec<LogLine>> {
        Box::pin(async move {
            if query.limit == 0 {
                return Ok(Vec::new());
            }
            let order = if query.newest_first { "DESC" } else { "ASC" };
            let device = if query.uuid.is_some() {
                "uuid = $1"
            } else {
                "$1::text IS NULL"
            };
            let sql = format!(
                "SELECT seq, uuid, at_ms, severity, source, text FROM log_lines
                 WHERE {device} AND at_ms >= $2 AND at_ms < $3
                   AND (cardinality($4::text[]) = 0 OR severity = ANY($4))
                   AND ($5::text IS NULL OR strpos(text, $5) > 0)
                 ORDER BY at_ms {order}, seq {order}, line {order} LIMIT $6"
            );
            let rows = self
                .query(
                    &sql,
                    &[
                        &query.uuid,
                        &query.since_ms.map_or(0, i64_of),
                        &query.until_ms.map_or(i64::MAX, i64_of),
                        &query.severities,
                        &query.text,
                        &i64_of(query.limit as u64),
                    ],
                )
                .await?;
            rows.iter().map(log_line_of).collect()
        })
    }

    fn retire(&self, retention: Retention, now_ms: u64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut deleted = 0;
            for kind in TelemetryKind::ALL {
                let keep = retention.get(kind);
                let code = kind as i32;
                if let Some(age) = keep.max_age_ms {
                    deleted += self
                        .execute(
                            "DELETE FROM telemetry WHERE kind = $1 AND received_at_ms < $2",
                            &[&code, &i64_of(now_ms.saturating_sub(age))],
                        )
                        .await?;
                }
                if let Some(count) = keep.max_per_device {
                    deleted += self
                        .execute(
                            "DELETE FROM telemetry WHERE seq IN (
                                SELECT seq FROM (
                                    SELECT seq, row_number() OVER (
                                        PARTITION BY uuid ORDER BY seq DESC) AS newer
                                    FROM telemetry WHERE kind = $1) AS ranked
                                WHERE newer > $2)",
                            &[&code, &i64_of(count)],
                        )
                        .await?;
                }
                if let Some(bytes) = keep.max_bytes_per_device {
                    // octet_length() of a TOASTed bytea reads its size, not its content.
                    deleted += self
                        .execute(
                            "DELETE FROM telemetry WHERE seq IN (
                                SELECT seq FROM (
                                    SELECT seq, sum(octet_length(payload)) OVER (
                                        PARTITION BY uuid ORDER BY seq DESC
                                        ROWS UNBOUNDED PRECEDING) AS newer_bytes
                                    FROM telemetry WHERE kind = $1) AS ranked
                                WHERE newer_bytes > $2)",
                            &[&code, &i64_of(bytes)],
                        )
                        .await?;
                }
            }
            Ok(deleted)
        })
    }
}
