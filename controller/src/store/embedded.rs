//! The default store: all state in memory, every change appended to a log file and fsynced
//! before it is acknowledged.
//!
//! Log format: a sequence of records, each `length: u32 LE`, `crc32: u32 LE` of the body, and the
//! body (a protobuf `Record`). On open the log is replayed; a torn or corrupt tail (a write that
//! was never acknowledged) is cut off. One writer thread commits changes in batches (group
//! commit: one fsync for all the changes that arrived meanwhile) and applies them to memory only
//! once they are durable, so readers never see an unacknowledged change. When the log has grown
//! well past the live data it is rewritten (compacted) atomically: written to a new file, fsynced,
//! renamed over the old one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock};
use std::thread;

use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::record::{Change, Record};
use super::{
    Device, DeviceConfig, Onboarding, Store, StoreError, StoreFuture, Telemetry, TelemetryKind,
};

/// Size of a record header: body length and CRC-32, both u32 LE.
const HEADER_LEN: usize = 8;
/// Largest record body accepted on replay; anything larger is corruption.
const MAX_RECORD_LEN: usize = 64 << 20;
/// Most changes committed with one fsync.
const MAX_BATCH: usize = 4096;

/// Tuning of an [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Reports kept per device and kind; older ones are dropped at compaction.
    pub retained_reports: usize,
    /// The log is compacted when larger than this and than 4x its size after the last compaction.
    pub compact_min_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retained_reports: 64,
            compact_min_bytes: 64 << 20,
        }
    }
}

/// The embedded, durable store (see the module docs).
pub struct EmbeddedStore {
    state: Arc<RwLock<State>>,
    writer: Option<mpsc::Sender<Pending>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// A change waiting for the writer, and who to tell when it is durable.
struct Pending {
    change: Change,
    done: oneshot::Sender<Result<u64, StoreError>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store whose log is `dir/lichen.log`, replaying it.
    pub fn open(dir: &Path, options: Options) -> Result<Self, StoreError> {
        fs::create_dir_all(dir)?;
        let (log, changes) = Log::open(&dir.join("lichen.log"))?;
        let mut state = State::new(options.retained_reports);
        for change in changes {
            state.apply(change);
        }
        let state = Arc::new(RwLock::new(state));
        let (writer, queue) = mpsc::channel();
        let writer_state = Arc::clone(&state);
        let thread = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(&writer_state, log, &queue, &options))?;
        Ok(Self {
            state,
            writer: Some(writer),
            thread: Some(thread),
        })
    }

    fn read<T>(&self, query: impl FnOnce(&State) -> T) -> T {
        query(&self.state.read().expect("store state lock"))
    }

    fn ready<'a, T: Send + 'a>(&self, query: impl FnOnce(&State) -> T) -> StoreFuture<'a, T> {
        let value = self.read(query);
        Box::pin(std::future::ready(Ok(value)))
    }

    fn commit(&self, change: Change) -> StoreFuture<'_, u64> {
        let (done, result) = oneshot::channel();
        let sent = self
            .writer
            .as_ref()
            .is_some_and(|writer| writer.send(Pending { change, done }).is_ok());
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Backend("store is closed".into()));
            }
            result
                .await
                .unwrap_or_else(|_| Err(StoreError::Backend("store writer stopped".into())))
        })
    }

    fn commit_unit(&self, change: Change) -> StoreFuture<'_, ()> {
        let commit = self.commit(change);
        Box::pin(async move { commit.await.map(drop) })
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store for EmbeddedStore {
    fn put_onboarding(&self, entry: Onboarding) -> StoreFuture<'_, ()> {
        self.commit_unit(Change::PutOnboarding(entry))
    }

    fn remove_onboarding<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        self.commit_unit(Change::RemoveOnboarding(id.to_owned()))
    }

    fn onboarding(&self) -> StoreFuture<'_, Vec<Onboarding>> {
        self.ready(|state| state.onboarding.values().cloned().collect())
    }

    fn insert_device(&self, device: Device) -> StoreFuture<'_, ()> {
        self.commit_unit(Change::InsertDevice(device))
    }

    fn remove_device<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, ()> {
        self.commit_unit(Change::RemoveDevice(uuid.to_owned()))
    }

    fn devices(&self) -> StoreFuture<'_, Vec<Device>> {
        self.ready(|state| state.devices.values().cloned().collect())
    }

    fn device<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<Device>> {
        self.ready(|state| state.devices.get(uuid).cloned())
    }

    fn device_by_cert_hash<'a>(&'a self, hash: &'a [u8]) -> StoreFuture<'a, Option<Device>> {
        self.ready(|state| {
            let prefix: [u8; 16] = hash.get(..16)?.try_into().ok()?;
            let (uuid, full) = state.by_cert_hash.get(&prefix)?;
            (full.starts_with(hash)).then(|| state.devices.get(uuid).cloned())?
        })
    }

    fn device_by_serial<'a>(
        &'a self,
        onboarding_id: &'a str,
        serial: &'a str,
    ) -> StoreFuture<'a, Option<Device>> {
        self.ready(|state| {
            let key = (onboarding_id.to_owned(), serial.to_owned());
            state
                .by_serial
                .get(&key)
                .and_then(|uuid| state.devices.get(uuid))
                .cloned()
        })
    }

    fn set_config(&self, config: DeviceConfig) -> StoreFuture<'_, ()> {
        self.commit_unit(Change::SetConfig(config))
    }

    fn config<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<DeviceConfig>> {
        self.ready(|state| state.configs.get(uuid).cloned())
    }

    fn add_telemetry(&self, report: Telemetry) -> StoreFuture<'_, u64> {
        self.commit(Change::AddTelemetry(report))
    }

    fn telemetry_after<'a>(
        &'a self,
        uuid: &'a str,
        kinds: &'a [TelemetryKind],
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Telemetry>> {
        self.ready(|state| {
            let Some(reports) = state.telemetry.get(uuid) else {
                return Vec::new();
            };
            let mut found: Vec<Telemetry> = kinds
                .iter()
                .filter_map(|kind| reports.get(kind))
                .flat_map(|queue| queue.iter().filter(|report| report.seq > after).cloned())
                .collect();
            found.sort_by_key(|report| report.seq);
            found.truncate(limit);
            found
        })
    }
}

/// Everything the store holds, with its indexes.
struct State {
    retained_reports: usize,
    onboarding: BTreeMap<String, Onboarding>,
    devices: BTreeMap<String, Device>,
    /// First 16 bytes of the certificate hash -> (UUID, full hash).
    by_cert_hash: HashMap<[u8; 16], (String, [u8; 32])>,
    /// (onboarding id, serial) -> UUID.
    by_serial: HashMap<(String, String), String>,
    configs: HashMap<String, DeviceConfig>,
    telemetry: HashMap<String, BTreeMap<TelemetryKind, VecDeque<Telemetry>>>,
    last_seq: u64,
}

/// Keys taken by the devices inserted earlier in the batch being committed.
#[derive(Default)]
struct Claims {
    uuids: HashSet<String>,
    serials: HashSet<(String, String)>,
    cert_hashes: HashSet<[u8; 16]>,
}

fn cert_sha256(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

fn prefix16(hash: &[u8; 32]) -> [u8; 16] {
    hash[..16].try_into().expect("32 > 16")
}

impl State {
    fn new(retained_reports: usize) -> Self {
        Self {
            retained_reports,
            onboarding: BTreeMap::new(),
            devices: BTreeMap::new(),
            by_cert_hash: HashMap::new(),
            by_serial: HashMap::new(),
            configs: HashMap::new(),
            telemetry: HashMap::new(),
            last_seq: 0,
        }
    }

    /// Whether `change` may be committed now, given the devices already claimed in the batch.
    fn check(&self, change: &Change, claims: &mut Claims) -> Result<(), StoreError> {
        let device_exists = |uuid: &str| {
            if self.devices.contains_key(uuid) {
                Ok(())
            } else {
                Err(StoreError::NotFound)
            }
        };
        match change {
            Change::PutOnboarding(_) => Ok(()),
            Change::RemoveOnboarding(id) => self
                .onboarding
                .get(id)
                .map(drop)
                .ok_or(StoreError::NotFound),
            Change::InsertDevice(device) => {
                let serial = (device.onboarding_id.clone(), device.serial.clone());
                let hash = prefix16(&cert_sha256(&device.cert_der));
                let taken = self.devices.contains_key(&device.uuid)
                    || self.by_serial.contains_key(&serial)
                    || self.by_cert_hash.contains_key(&hash);
                if taken
                    || !claims.uuids.insert(device.uuid.clone())
                    || !claims.serials.insert(serial)
                    || !claims.cert_hashes.insert(hash)
                {
                    return Err(StoreError::Conflict);
                }
                Ok(())
            }
            Change::RemoveDevice(uuid) => device_exists(uuid),
            Change::SetConfig(config) => device_exists(&config.uuid),
            Change::AddTelemetry(report) => device_exists(&report.uuid),
        }
    }

    /// Applies a committed change. Changes about devices that no longer exist are ignored, so
    /// that replay is tolerant of any interleaving.
    fn apply(&mut self, change: Change) {
        match change {
            Change::PutOnboarding(entry) => {
                self.onboarding.insert(entry.id.clone(), entry);
            }
            Change::RemoveOnboarding(id) => {
                self.onboarding.remove(&id);
            }
            Change::InsertDevice(device) => {
                let hash = cert_sha256(&device.cert_der);
                self.by_cert_hash
                    .insert(prefix16(&hash), (device.uuid.clone(), hash));
                let serial = (device.onboarding_id.clone(), device.serial.clone());
                self.by_serial.insert(serial, device.uuid.clone());
                self.devices.insert(device.uuid.clone(), device);
            }
            Change::RemoveDevice(uuid) => {
                if let Some(device) = self.devices.remove(&uuid) {
                    self.by_cert_hash
                        .remove(&prefix16(&cert_sha256(&device.cert_der)));
                    self.by_serial
                        .remove(&(device.onboarding_id, device.serial));
                }
                self.configs.remove(&uuid);
                self.telemetry.remove(&uuid);
            }
            Change::SetConfig(config) => {
                if self.devices.contains_key(&config.uuid) {
                    self.configs.insert(config.uuid.clone(), config);
                }
            }
            Change::AddTelemetry(report) => {
                self.last_seq = self.last_seq.max(report.seq);
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
                if queue.len() == self.retained_reports {
                    queue.pop_front();
                }
                queue.push_back(report);
            }
        }
    }

    /// The changes that rebuild this state from nothing.
    fn snapshot(&self) -> Vec<Change> {
        let onboarding = self.onboarding.values().cloned().map(Change::PutOnboarding);
        let devices = self.devices.values().cloned().map(Change::InsertDevice);
        let configs = self.configs.values().cloned().map(Change::SetConfig);
        let mut reports: Vec<&Telemetry> = self
            .telemetry
            .values()
            .flat_map(|kinds| kinds.values().flatten())
            .collect();
        reports.sort_by_key(|report| report.seq);
        let reports = reports.into_iter().cloned().map(Change::AddTelemetry);
        onboarding
            .chain(devices)
            .chain(configs)
            .chain(reports)
            .collect()
    }
}

/// The writer thread: commits batches of changes until every sender is gone.
fn write_loop(
    state: &RwLock<State>,
    mut log: Log,
    queue: &mpsc::Receiver<Pending>,
    options: &Options,
) {
    let mut next_seq = state.read().expect("store state lock").last_seq + 1;
    let mut failed: Option<String> = None;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        if let Some(error) = &failed {
            for pending in batch {
                let _ = pending.done.send(Err(StoreError::Backend(error.clone())));
            }
            continue;
        }

        // Check every change against the committed state, and number the reports.
        let mut accepted = Vec::with_capacity(batch.len());
        {
            let state = state.read().expect("store state lock");
            let mut claims = Claims::default();
            for mut pending in batch {
                match state.check(&pending.change, &mut claims) {
                    Ok(()) => {
                        let mut seq = 0;
                        if let Change::AddTelemetry(report) = &mut pending.change {
                            report.seq = next_seq;
                            seq = next_seq;
                            next_seq += 1;
                        }
                        accepted.push((pending, seq));
                    }
                    Err(error) => {
                        let _ = pending.done.send(Err(error));
                    }
                }
            }
        }
        if accepted.is_empty() {
            continue;
        }

        // Make them durable, then visible, then acknowledge them.
        let written = log.append(accepted.iter().map(|(pending, _)| &pending.change));
        if let Err(error) = written {
            let message = format!("writing the store log: {error}");
            if let Err(error) = log.truncate_to_committed() {
                failed = Some(format!("{message}; then restoring it: {error}"));
            }
            for (pending, _) in accepted {
                let _ = pending.done.send(Err(StoreError::Backend(message.clone())));
            }
            continue;
        }
        {
            let mut state = state.write().expect("store state lock");
            for (pending, _) in &accepted {
                state.apply(pending.change.clone());
            }
        }
        for (pending, seq) in accepted {
            let _ = pending.done.send(Ok(seq));
        }

        if log.len > options.compact_min_bytes && log.len > 4 * log.compacted_len {
            let snapshot = state.read().expect("store state lock").snapshot();
            if let Err(error) = log.rewrite(&snapshot) {
                eprintln!("lichen-controller: compacting the store log failed (kept the old one): {error}");
            }
        }
    }
}

/// The log file.
struct Log {
    path: PathBuf,
    file: File,
    /// Bytes of committed records.
    len: u64,
    /// `len` right after the last compaction (or open).
    compacted_len: u64,
}

impl Log {
    /// Opens or creates the log, returning its changes. A torn or corrupt tail is truncated.
    fn open(path: &Path) -> io::Result<(Self, Vec<Change>)> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if !existed {
            sync_dir(path)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (changes, valid_len) = decode_records(&bytes);
        if valid_len < bytes.len() {
            eprintln!(
                "lichen-controller: {}: dropping {} bytes of torn or corrupt log tail",
                path.display(),
                bytes.len() - valid_len
            );
            file.set_len(valid_len as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(valid_len as u64))?;
        let len = valid_len as u64;
        Ok((
            Self {
                path: path.to_owned(),
                file,
                len,
                compacted_len: len,
            },
            changes,
        ))
    }

    /// Appends records for `changes` and fsyncs.
    fn append<'a>(&mut self, changes: impl Iterator<Item = &'a Change>) -> io::Result<()> {
        let mut buffer = Vec::new();
        for change in changes {
            encode_record(change, &mut buffer);
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.len += buffer.len() as u64;
        Ok(())
    }

    /// Cuts off whatever a failed append left after the committed records.
    fn truncate_to_committed(&mut self) -> io::Result<()> {
        self.file.set_len(self.len)?;
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.sync_all()
    }

    /// Replaces the log with `changes`, atomically.
    fn rewrite(&mut self, changes: &[Change]) -> io::Result<()> {
        let temporary = self.path.with_extension("log.new");
        let mut writer = BufWriter::new(File::create(&temporary)?);
        let mut buffer = Vec::new();
        let mut len = 0;
        for change in changes {
            buffer.clear();
            encode_record(change, &mut buffer);
            writer.write_all(&buffer)?;
            len += buffer.len() as u64;
        }
        let file = writer.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)?;
        sync_dir(&self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.len = len;
        self.compacted_len = len;
        Ok(())
    }
}

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

/// Fsyncs the directory holding `path`, so that a created or renamed file survives a crash.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(uuid: &str, serial: &str, cert: &[u8]) -> Device {
        Device {
            uuid: uuid.into(),
            serial: serial.into(),
            onboarding_id: "onb".into(),
            cert_der: cert.to_vec(),
            registered_at: 1,
        }
    }

    fn report(uuid: &str, kind: TelemetryKind, payload: &[u8]) -> Telemetry {
        Telemetry {
            uuid: uuid.into(),
            kind: kind as i32,
            seq: 0,
            received_at_ms: 2,
            payload: payload.to_vec(),
        }
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn acknowledged_changes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        block_on(async {
            let store = EmbeddedStore::open(dir.path(), Options::default()).unwrap();
            store
                .insert_device(device("u1", "s1", b"cert1"))
                .await
                .unwrap();
            store
                .insert_device(device("u2", "s2", b"cert2"))
                .await
                .unwrap();
            let config = DeviceConfig {
                uuid: "u1".into(),
                version: 3,
                config: vec![1, 2],
                hash: "h".into(),
            };
            store.set_config(config.clone()).await.unwrap();
            assert_eq!(
                store
                    .add_telemetry(report("u1", TelemetryKind::Info, b"i"))
                    .await
                    .unwrap(),
                1
            );
            store.remove_device("u2").await.unwrap();
            drop(store);

            let store = EmbeddedStore::open(dir.path(), Options::default()).unwrap();
            assert_eq!(
                store.devices().await.unwrap(),
                vec![device("u1", "s1", b"cert1")]
            );
            assert_eq!(store.config("u1").await.unwrap(), Some(config));
            let reports = store
                .telemetry_after("u1", &TelemetryKind::ALL, 0, 10)
                .await
                .unwrap();
            assert_eq!(reports.len(), 1);
            assert_eq!(reports[0].payload, b"i");
            assert_eq!(
                store
                    .add_telemetry(report("u1", TelemetryKind::Logs, b"l"))
                    .await
                    .unwrap(),
                2
            );
        });
    }

    #[test]
    fn conflicting_and_dangling_changes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        block_on(async {
            let store = EmbeddedStore::open(dir.path(), Options::default()).unwrap();
            store
                .insert_device(device("u1", "s1", b"cert1"))
                .await
                .unwrap();
            let same_serial = store.insert_device(device("u2", "s1", b"cert2")).await;
            assert!(matches!(same_serial, Err(StoreError::Conflict)));
            let same_cert = store.insert_device(device("u3", "s3", b"cert1")).await;
            assert!(matches!(same_cert, Err(StoreError::Conflict)));
            let unknown = store
                .add_telemetry(report("nobody", TelemetryKind::Info, b""))
                .await;
            assert!(matches!(unknown, Err(StoreError::NotFound)));
            assert!(matches!(
                store.remove_device("nobody").await,
                Err(StoreError::NotFound)
            ));
            assert_eq!(store.devices().await.unwrap().len(), 1);
        });
    }

    #[test]
    fn concurrent_inserts_of_one_serial_admit_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        block_on(async {
            let store = EmbeddedStore::open(dir.path(), Options::default()).unwrap();
            let attempts = (0..8).map(|i| store.insert_device(device(&format!("u{i}"), "s", &[i])));
            let results = futures_util::future::join_all(attempts).await;
            assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 1);
        });
    }

    #[test]
    fn finds_devices_by_truncated_or_full_cert_hash() {
        let dir = tempfile::tempdir().unwrap();
        block_on(async {
            let store = EmbeddedStore::open(dir.path(), Options::default()).unwrap();
            store
                .insert_device(device("u1", "s1", b"cert1"))
                .await
                .unwrap();
            let hash = cert_sha256(b"cert1");
            assert_eq!(
                store
                    .device_by_cert_hash(&hash)
                    .await
                    .unwrap()
                    .unwrap()
                    .uuid,
                "u1"
            );
            assert_eq!(
                store
                    .device_by_cert_hash(&hash[..16])
                    .await
                    .unwrap()
                    .unwrap()
                    .uuid,
                "u1"
            );
            let mut wrong = hash;
            wrong[31] ^= 1;
            assert_eq!(store.device_by_cert_hash(&wrong).await.unwrap(), None);
            assert_eq!(store.device_by_cert_hash(&hash[..8]).await.unwrap(), None);
            assert_eq!(
                store
                    .device_by_serial("onb", "s1")
                    .await
                    .unwrap()
                    .unwrap()
                    .uuid,
                "u1"
            );
        });
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lichen.log");
        block_on(async {
            let store = EmbeddedStore::open(dir.path(), Options::default()).unwrap();
            store
                .insert_device(device("u1", "s1", b"cert1"))
                .await
                .unwrap();
        });
        let good_len = fs::metadata(&path).unwrap().len();
        // A record cut short, as a crash in the middle of a write leaves it.
        let mut torn = Vec::new();
        encode_record(&Change::RemoveDevice("u1".into()), &mut torn);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&torn[..torn.len() - 2]).unwrap();
        drop(file);

        block_on(async {
            let store = EmbeddedStore::open(dir.path(), Options::default()).unwrap();
            assert_eq!(store.devices().await.unwrap().len(), 1);
            store
                .insert_device(device("u2", "s2", b"cert2"))
                .await
                .unwrap();
        });
        assert!(fs::metadata(&path).unwrap().len() > good_len);
        block_on(async {
            let store = EmbeddedStore::open(dir.path(), Options::default()).unwrap();
            assert_eq!(store.devices().await.unwrap().len(), 2);
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
    }

    #[test]
    fn compaction_keeps_live_data_and_the_newest_reports() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            retained_reports: 2,
            compact_min_bytes: 512,
        };
        block_on(async {
            let store = EmbeddedStore::open(dir.path(), options.clone()).unwrap();
            store
                .insert_device(device("u1", "s1", b"cert1"))
                .await
                .unwrap();
            for i in 0..100u8 {
                store
                    .add_telemetry(report("u1", TelemetryKind::Metrics, &[i; 32]))
                    .await
                    .unwrap();
            }
        });
        assert!(fs::metadata(dir.path().join("lichen.log")).unwrap().len() < 2048);
        block_on(async {
            let store = EmbeddedStore::open(dir.path(), options).unwrap();
            let reports = store
                .telemetry_after("u1", &[TelemetryKind::Metrics], 0, 10)
                .await
                .unwrap();
            let seqs: Vec<u64> = reports.iter().map(|report| report.seq).collect();
            assert_eq!(seqs, vec![99, 100]);
            assert_eq!(
                store
                    .add_telemetry(report("u1", TelemetryKind::Info, b""))
                    .await
                    .unwrap(),
                101
            );
        });
    }
}
