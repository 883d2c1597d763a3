//! The store of earlier versions: all state in memory, every change appended to
//! `store/lichen.log` (each record `length: u32 LE`, `crc32: u32 LE` of the body, and the body, a
//! protobuf `Record`). Only read now, by `lichen-controller migrate`, which moves its contents
//! into a [`Store`].
//!
//! What the file may hold: anything (it may be torn by a crash or damaged). Replay stops at the
//! first record that is cut short, fails its checksum, is implausibly long or does not decode;
//! what follows is reported as dropped, never guessed at.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use futures_util::future::join_all;
use prost::Message;

use super::record::{Change, Record};
use super::{Device, DeviceConfig, Onboarding, Store, StoreError, Telemetry, TelemetryKind};

/// Size of a record header: body length and CRC-32, both u32 LE.
const HEADER_LEN: usize = 8;
/// Largest record body accepted on replay; anything larger is corruption.
const MAX_RECORD_LEN: usize = 64 << 20;
/// Reports the old store kept per device and kind.
const RETAINED_REPORTS: usize = 64;
/// Writes issued together while migrating (the store commits them in groups).
const CONCURRENT_WRITES: usize = 512;

/// The old log in a state directory.
pub fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join("store").join("lichen.log")
}

/// What [`migrate`] moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Onboarding certificates.
    pub onboarding: usize,
    /// Devices.
    pub devices: usize,
    /// Device configurations.
    pub configs: usize,
    /// Reports (the newest 64 per device and kind, as the old store kept).
    pub reports: usize,
    /// Bytes at the end of the log that were torn or corrupt, and dropped.
    pub dropped_bytes: usize,
}

/// The old store's state, rebuilt from its log.
#[derive(Default)]
struct State {
    onboarding: BTreeMap<String, Onboarding>,
    devices: BTreeMap<String, Device>,
    configs: HashMap<String, DeviceConfig>,
    telemetry: HashMap<String, BTreeMap<TelemetryKind, VecDeque<Telemetry>>>,
}

impl State {
    /// Applies a change as the old store did: changes about devices that no longer exist are
    /// ignored.
    fn apply(&mut self, change: Change) {
        match change {
            Change::PutOnboarding(entry) => {
                self.onboarding.insert(entry.id.clone(), entry);
            }
            Change::RemoveOnboarding(id) => {
                self.onboarding.remove(&id);
            }
            Change::InsertDevice(device) => {
                self.devices.insert(device.uuid.clone(), device);
            }
            Change::RemoveDevice(uuid) => {
                self.devices.remove(&uuid);
                self.configs.remove(&uuid);
                self.telemetry.remove(&uuid);
            }
            Change::SetConfig(config) => {
                if self.devices.contains_key(&config.uuid) {
                    self.configs.insert(config.uuid.clone(), config);
                }
            }
            Change::AddTelemetry(report) => {
                let Some(kind) = TelemetryKind::from_code(report.kind) else {
                    return;
                };
                if !self.devices.contains_key(&report.uuid) {
                    return;
                }
                let queue = self
                    .telemetry
                    .entry(report.uuid.clone())
                    .or_default()
                    .entry(kind)
                    .or_default();
                if queue.len() == RETAINED_REPORTS {
                    queue.pop_front();
                }
                queue.push_back(report);
            }
        }
    }
}

/// Moves the contents of the old log at `log` into `store` (which should be empty); reports
/// keep their order. The log itself is left alone.
pub async fn migrate(log: &Path, store: &dyn Store) -> Result<Migrated, StoreError> {
    let bytes = std::fs::read(log)?;
    let (changes, valid) = decode_records(&bytes);
    let mut state = State::default();
    for change in changes {
        state.apply(change);
    }
    let mut migrated = Migrated {
        dropped_bytes: bytes.len() - valid,
        ..Migrated::default()
    };
    for entry in state.onboarding.into_values() {
        store.put_onboarding(entry).await?;
        migrated.onboarding += 1;
    }
    let devices: Vec<Device> = state.devices.into_values().collect();
    migrated.devices = devices.len();
    in_groups(devices, |device| store.insert_device(device)).await?;
    let configs: Vec<DeviceConfig> = state.configs.into_values().collect();
    migrated.configs = configs.len();
    in_groups(configs, |config| store.set_config(config)).await?;
    let mut reports: Vec<Telemetry> = state
        .telemetry
        .into_values()
        .flat_map(|kinds| kinds.into_values().flatten())
        .collect();
    reports.sort_by_key(|report| report.seq);
    migrated.reports = reports.len();
    // Backends number writes in the order they are issued, so reports keep their order.
    in_groups(reports, |report| store.add_telemetry(report)).await?;
    Ok(migrated)
}

/// Runs `write` on every item, [`CONCURRENT_WRITES`] at a time.
async fn in_groups<'a, T, R>(
    items: Vec<T>,
    write: impl Fn(T) -> super::StoreFuture<'a, R>,
) -> Result<(), StoreError> {
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let group: Vec<_> = items.by_ref().take(CONCURRENT_WRITES).map(&write).collect();
        for result in join_all(group).await {
            result?;
        }
    }
    Ok(())
}

#[cfg(test)]
fn encode_record(change: &Change, out: &mut Vec<u8>) {
    let body = Record {
        change: Some(change.clone()),
    }
    .encode_to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

/// The changes in `bytes`, and the length of the valid prefix.
fn decode_records(bytes: &[u8]) -> (Vec<Change>, usize) {
    let mut changes = Vec::new();
    let mut offset = 0;
    while let Some(header) = bytes.get(offset..offset + HEADER_LEN) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let start = offset + HEADER_LEN;
        let Some(body) = bytes
            .get(start..start + len)
            .filter(|_| len <= MAX_RECORD_LEN)
        else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let Ok(Record {
            change: Some(change),
        }) = Record::decode(body)
        else {
            break;
        };
        changes.push(change);
        offset = start + len;
    }
    (changes, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::TelemetryQuery;

    fn device(uuid: &str, serial: &str, cert: &[u8]) -> Device {
        Device {
            uuid: uuid.into(),
            serial: serial.into(),
            onboarding_id: "onb".into(),
            cert_der: cert.to_vec(),
            registered_at: 1,
            last_seen_ms: 0,
        }
    }

    fn report(uuid: &str, kind: TelemetryKind, seq: u64, payload: &[u8]) -> Telemetry {
        Telemetry {
            uuid: uuid.into(),
            kind: kind as i32,
            seq,
            received_at_ms: 2,
            payload: payload.to_vec(),
            ..Telemetry::default()
        }
    }

    #[test]
    fn an_old_log_moves_into_the_store_up_to_its_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let config = DeviceConfig {
            uuid: "u1".into(),
            version: 3,
            config: vec![1, 2],
            hash: "h".into(),
        };
        let onboarding = Onboarding {
            id: "onb".into(),
            cert_der: vec![9],
            serials: vec!["sim-*".into()],
            subject: "CN=x".into(),
        };
        let mut changes = vec![
            Change::PutOnboarding(onboarding.clone()),
            Change::InsertDevice(device("u1", "s1", b"cert1")),
            Change::InsertDevice(device("u2", "s2", b"cert2")),
            Change::SetConfig(config.clone()),
            Change::AddTelemetry(report("u2", TelemetryKind::Info, 1, b"gone")),
            Change::RemoveDevice("u2".into()),
        ];
        // More metrics than the old store kept: only the newest 64 move.
        for seq in 2..102u64 {
            changes.push(Change::AddTelemetry(report(
                "u1",
                TelemetryKind::Metrics,
                seq,
                &seq.to_le_bytes(),
            )));
        }
        changes.push(Change::AddTelemetry(report(
            "u1",
            TelemetryKind::Logs,
            102,
            b"l",
        )));
        let mut bytes = Vec::new();
        for change in &changes {
            encode_record(change, &mut bytes);
        }
        let mut torn = Vec::new();
        encode_record(&Change::RemoveDevice("u1".into()), &mut torn);
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        let log = dir.path().join("lichen.log");
        std::fs::write(&log, &bytes).unwrap();

        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = SqliteStore::open(&dir.path().join("new")).unwrap();
            let migrated = migrate(&log, &store).await.unwrap();
            assert_eq!(
                migrated,
                Migrated {
                    onboarding: 1,
                    devices: 1,
                    configs: 1,
                    reports: 65,
                    dropped_bytes: torn.len() - 3,
                }
            );
            assert_eq!(store.onboarding().await.unwrap(), vec![onboarding]);
            assert_eq!(
                store.devices().await.unwrap(),
                vec![device("u1", "s1", b"cert1")]
            );
            assert_eq!(store.config("u1").await.unwrap(), Some(config));
            let reports = store
                .telemetry(TelemetryQuery::device("u1", &TelemetryKind::ALL, 1000))
                .await
                .unwrap();
            let payloads: Vec<&[u8]> = reports.iter().map(|r| r.payload.as_slice()).collect();
            let mut expected: Vec<Vec<u8>> =
                (38..102u64).map(|seq| seq.to_le_bytes().to_vec()).collect();
            expected.push(b"l".to_vec());
            assert_eq!(
                payloads,
                expected.iter().map(Vec::as_slice).collect::<Vec<_>>()
            );
        });
    }

    #[test]
    fn a_corrupt_record_ends_the_replay() {
        let mut bytes = Vec::new();
        encode_record(&Change::RemoveDevice("a".into()), &mut bytes);
        let first = bytes.len();
        encode_record(&Change::RemoveDevice("b".into()), &mut bytes);
        bytes[first + HEADER_LEN] ^= 0xff;
        let (changes, valid) = decode_records(&bytes);
        assert_eq!(changes, vec![Change::RemoveDevice("a".into())]);
        assert_eq!(valid, first);
        // An implausible length is corruption too, not an allocation.
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 12]);
        assert_eq!(decode_records(&huge), (Vec::new(), 0));
    }
}
