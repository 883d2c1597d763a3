//! The keys of registered devices, cached in memory in front of the store, and when each was last
//! heard from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use p256::ecdsa::VerifyingKey;

use crate::store::{Store, StoreError};

/// A registered device as the request path needs it.
pub struct KnownDevice {
    /// Its UUID.
    pub uuid: String,
    /// The public key of its certificate.
    pub key: VerifyingKey,
    /// Milliseconds since the Unix epoch of its last authenticated request.
    pub last_seen_ms: AtomicU64,
    /// `last_seen_ms` as last written to the store.
    flushed_ms: AtomicU64,
}

/// Devices seen since start, by the first 16 bytes of their certificate hash and by UUID.
#[derive(Default)]
pub struct DeviceCache {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Hash prefix -> (full certificate hash, device).
    by_hash: HashMap<[u8; 16], (Vec<u8>, Arc<KnownDevice>)>,
    by_uuid: HashMap<String, Arc<KnownDevice>>,
}

impl DeviceCache {
    /// The device whose certificate hash (16 or 32 bytes) is `hash`, from the cache or the store.
    pub async fn find(
        &self,
        store: &dyn Store,
        hash: &[u8],
    ) -> Result<Option<Arc<KnownDevice>>, StoreError> {
        let Some(prefix) = hash.get(..16).and_then(|p| <[u8; 16]>::try_from(p).ok()) else {
            return Ok(None);
        };
        if let Some((full, device)) = self
            .inner
            .read()
            .expect("device cache lock")
            .by_hash
            .get(&prefix)
        {
            return Ok(full.starts_with(hash).then(|| Arc::clone(device)));
        }
        let Some(device) = store.device_by_cert_hash(hash).await? else {
            return Ok(None);
        };
        let Ok(key) = lichen_api::cert::public_key(&device.cert_der) else {
            return Ok(None);
        };
        let full = <sha2::Sha256 as sha2::Digest>::digest(&device.cert_der).to_vec();
        let known = Arc::new(KnownDevice {
            uuid: device.uuid,
            key,
            last_seen_ms: AtomicU64::new(0),
            flushed_ms: AtomicU64::new(0),
        });
        let mut cache = self.inner.write().expect("device cache lock");
        let (_, known) = cache.by_hash.entry(prefix).or_insert((full, known));
        let known = Arc::clone(known);
        cache.by_uuid.insert(known.uuid.clone(), Arc::clone(&known));
        Ok(Some(known))
    }

    /// When the device with `uuid` was last heard from, if it was since the controller started.
    pub fn last_seen_ms(&self, uuid: &str) -> Option<u64> {
        let cache = self.inner.read().expect("device cache lock");
        let seen = cache
            .by_uuid
            .get(uuid)?
            .last_seen_ms
            .load(Ordering::Relaxed);
        Some(seen).filter(|ms| *ms > 0)
    }

    /// Devices heard from since their last contact was written to the store, with the time.
    pub fn unflushed_contacts(&self) -> Vec<(String, u64)> {
        let cache = self.inner.read().expect("device cache lock");
        cache
            .by_uuid
            .values()
            .filter_map(|device| {
                let seen = device.last_seen_ms.load(Ordering::Relaxed);
                (seen > device.flushed_ms.load(Ordering::Relaxed))
                    .then(|| (device.uuid.clone(), seen))
            })
            .collect()
    }

    /// Notes that these contacts were written to the store.
    pub fn mark_flushed(&self, contacts: &[(String, u64)]) {
        let cache = self.inner.read().expect("device cache lock");
        for (uuid, seen) in contacts {
            if let Some(device) = cache.by_uuid.get(uuid) {
                device.flushed_ms.fetch_max(*seen, Ordering::Relaxed);
            }
        }
    }

    /// Forgets a deleted device.
    pub fn forget(&self, uuid: &str) {
        let mut cache = self.inner.write().expect("device cache lock");
        cache.by_uuid.remove(uuid);
        cache.by_hash.retain(|_, (_, device)| device.uuid != uuid);
    }
}

impl KnownDevice {
    /// Records that the device was heard from at `now_ms`.
    pub fn seen(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
    }
}
