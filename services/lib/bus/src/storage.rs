//! Where a persistent table keeps its objects across publisher restarts.
//!
//! A [`Publisher`](crate::Publisher) writes every change through its [`Storage`] before it
//! applies it, and loads the stored objects when it starts, so a restarted publisher comes back
//! with exactly the table it had. The storage layer itself (a disk, a config partition, a
//! storage service on the bus) lives elsewhere and implements the trait; values are stored as the
//! same postcard bytes that go on the wire.

use alloc::{collections::BTreeMap, string::String, vec::Vec};
use core::{convert::Infallible, fmt};

/// The objects of one table: key to postcard-encoded value.
pub type StoredObjects = BTreeMap<String, Vec<u8>>;

/// Keeps one publisher's table. Each publisher has its own storage, scoped to its topic.
pub trait Storage {
    /// Why the storage failed.
    type Error: fmt::Debug;

    /// Reads every stored object, when the publisher starts.
    fn load(&mut self) -> Result<StoredObjects, Self::Error>;

    /// Stores `value` (the postcard encoding) at `key`, replacing any earlier value.
    fn store(&mut self, key: &str, value: &[u8]) -> Result<(), Self::Error>;

    /// Removes the object at `key`, if stored.
    fn remove(&mut self, key: &str) -> Result<(), Self::Error>;
}

/// No storage: the table starts empty every time its publisher starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Volatile;

impl Storage for Volatile {
    type Error = Infallible;

    fn load(&mut self) -> Result<StoredObjects, Infallible> {
        Ok(StoredObjects::new())
    }

    fn store(&mut self, _key: &str, _value: &[u8]) -> Result<(), Infallible> {
        Ok(())
    }

    fn remove(&mut self, _key: &str) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Storage in memory, which outlives the publisher it is handed back from (see
/// [`Publisher::into_storage`](crate::Publisher::into_storage)): for tests, and as the reference
/// of what a storage layer must do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryStorage {
    /// The stored objects.
    pub objects: StoredObjects,
}

impl Storage for MemoryStorage {
    type Error = Infallible;

    fn load(&mut self) -> Result<StoredObjects, Infallible> {
        Ok(self.objects.clone())
    }

    fn store(&mut self, key: &str, value: &[u8]) -> Result<(), Infallible> {
        self.objects.insert(key.into(), value.into());
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<(), Infallible> {
        self.objects.remove(key);
        Ok(())
    }
}
