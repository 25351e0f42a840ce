//! The memory store: cached responses under their keys in TinyUFO (pingora's cache of
//! TinyLFU admission and S3-FIFO eviction: an object seen once does not push out one asked for
//! often, so a scan of many URLs passes through without emptying the store), weighed in KiB
//! against the byte limit. A key with variants holds the names its `Vary` lists; each variant
//! is stored under its own key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tinyufo::TinyUfo;

use super::disk::Disk;
use super::key::{variant, RequestFields};
pub use super::object::{Object, Requested, State};
use super::Settings;

/// What a key holds.
#[derive(Clone)]
enum Slot {
    Object(Arc<Object>),
    /// The response of this key varies on these fields (lowercase, sorted).
    Vary(Arc<str>, Arc<[Box<str>]>),
}

/// Entries and bytes held, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Responses held.
    pub entries: usize,
    /// Their bytes (keys, fields, bodies).
    pub bytes: u64,
    /// The store's limit.
    pub limit: u64,
    /// Bytes of the disk tier's files.
    pub disk_bytes: u64,
}

/// The process's memory store.
pub struct Store {
    ufo: TinyUfo<String, Slot>,
    /// Every key held, in order (purges by prefix), with its object (takedown purges).
    keys: Mutex<BTreeMap<String, Option<Arc<Object>>>>,
    entries: AtomicUsize,
    bytes: AtomicU64,
    limit: u64,
    disk: Option<Disk>,
}

/// TinyUFO's weights are in these.
const WEIGHT_UNIT: usize = 1024;
/// For TinyUFO's sketch: objects expected in the store per MiB of its limit.
const OBJECTS_PER_MIB: usize = 64;

static STORE: OnceLock<Store> = OnceLock::new();

/// The process's store, made with `settings` on first use (the limit is read at start).
pub fn init(settings: &Settings) -> &'static Store {
    STORE.get_or_init(|| {
        let mut store = Store::new(settings.memory_bytes);
        if let Some(d) = &settings.disk {
            match Disk::open(&d.dir, d.bytes) {
                Ok(disk) => store.disk = Some(disk),
                Err(e) => {
                    let dir = d.dir.display();
                    tracing::error!("cache.disk_dir {dir}: {e}; the cache keeps to memory");
                }
            }
        }
        store
    })
}

/// The process's store, if a request has used it yet.
pub fn current() -> Option<&'static Store> {
    STORE.get()
}

impl Store {
    /// A store of at most `limit` bytes.
    pub fn new(limit: u64) -> Self {
        let units = usize::try_from(limit).unwrap_or(usize::MAX) / WEIGHT_UNIT;
        let estimated = (units / 1024 * OBJECTS_PER_MIB).max(1024);
        Self {
            ufo: TinyUfo::new(units.max(1), estimated),
            keys: Mutex::default(),
            entries: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            limit,
            disk: None,
        }
    }

    /// Its disk tier, if any.
    pub fn disk(&self) -> Option<&Disk> {
        self.disk.as_ref()
    }

    /// Puts an object read from the disk tier back in memory.
    pub fn promote(&self, object: Object) -> Arc<Object> {
        let key = object.key.clone();
        self.in_memory(key, object)
    }

    /// The object stored for a request with `primary` key and `request` fields.
    pub fn get(&self, primary: &str, request: &dyn RequestFields) -> Option<Arc<Object>> {
        let key = primary.to_owned();
        match self.ufo.get(&key)? {
            Slot::Object(o) => (o.key == primary).then_some(o),
            Slot::Vary(_, names) => {
                let key = variant(primary, &names, request);
                match self.ufo.get(&key)? {
                    // Keys are hashed: the object's own key tells a collision.
                    Slot::Object(o) => (o.key == key).then_some(o),
                    Slot::Vary(..) => None,
                }
            }
        }
    }

    /// Stores `object` for `primary`, varying on `vary` (its key is the variant's then).
    pub fn put(&self, primary: &str, vary: &[Box<str>], object: Object) -> Arc<Object> {
        if !vary.is_empty() {
            let names: Arc<[Box<str>]> = vary.into();
            self.insert(primary.to_owned(), Slot::Vary(primary.into(), names), 1);
        }
        let object = self.in_memory(object.key.clone(), object);
        if let Some(disk) = &self.disk {
            disk.save(&object, !vary.is_empty());
        }
        object
    }

    fn in_memory(&self, key: String, object: Object) -> Arc<Object> {
        let object = Arc::new(object);
        let units = object.size().div_ceil(WEIGHT_UNIT).max(1);
        if let Ok(weight) = u16::try_from(units) {
            self.insert(key, Slot::Object(object.clone()), weight);
        }
        object
    }

    /// Removes what `key` holds (an object, or a key's `Vary` names): whether it held an
    /// object.
    pub fn remove(&self, key: &str) -> bool {
        if let Some(disk) = &self.disk {
            disk.remove(key);
        }
        match self.ufo.remove(&key.to_owned()) {
            Some(old) => self.forget(&old),
            None => false,
        }
    }

    /// Removes the responses stored for `primary` (every variant): how many.
    pub fn purge_key(&self, primary: &str) -> usize {
        let variants = format!("{primary}\0");
        usize::from(self.remove(primary)) + self.purge_prefix(&variants)
    }

    /// Removes every response whose key starts with `prefix`, in memory or on disk: how many.
    pub fn purge_prefix(&self, prefix: &str) -> usize {
        let mut keys: BTreeSet<String> = {
            let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            let from = keys.range(prefix.to_owned()..);
            from.take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, _)| k.clone())
                .collect()
        };
        if let Some(disk) = &self.disk {
            keys.extend(disk.keys_where(|k, _| k.starts_with(prefix)));
        }
        keys.iter().filter(|k| self.remove_anywhere(k)).count()
    }

    /// Removes every response stored for a request `doomed` picks, in memory or on disk: how
    /// many.
    pub fn purge_where(&self, doomed: impl Fn(&Requested) -> bool) -> usize {
        let mut keys: BTreeSet<String> = {
            let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            let objects = keys.iter().filter_map(|(k, o)| Some((k, o.as_ref()?)));
            objects
                .filter(|(_, o)| doomed(&o.requested))
                .map(|(k, _)| k.clone())
                .collect()
        };
        if let Some(disk) = &self.disk {
            keys.extend(disk.keys_where(|_, requested| doomed(requested)));
        }
        keys.iter().filter(|k| self.remove_anywhere(k)).count()
    }

    /// Removes `key` from memory and disk: whether either held it.
    fn remove_anywhere(&self, key: &str) -> bool {
        let on_disk = self
            .disk
            .as_ref()
            .is_some_and(|d| !d.keys_where(|k, _| k == key).is_empty());
        self.remove(key) || on_disk
    }

    /// What it holds.
    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            disk_bytes: self.disk.as_ref().map_or(0, Disk::used),
            limit: self.limit,
        }
    }

    fn insert(&self, key: String, slot: Slot, weight: u16) {
        if let Some(old) = self.ufo.remove(&key) {
            self.forget(&old);
        }
        let object = match &slot {
            Slot::Object(o) => {
                self.entries.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(o.size() as u64, Ordering::Relaxed);
                Some(o.clone())
            }
            Slot::Vary(..) => None,
        };
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.insert(key.clone(), object);
        drop(keys);
        // What TinyUFO evicts (the new one itself, when TinyLFU finds it less asked for).
        for evicted in self.ufo.put(key, slot, weight) {
            self.forget(&evicted.data);
        }
    }

    /// Accounts for `slot` leaving the store: whether it was an object.
    fn forget(&self, slot: &Slot) -> bool {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match slot {
            Slot::Object(o) => {
                // A newer object under the same key stays listed.
                if keys
                    .get(&o.key)
                    .is_some_and(|k| k.as_ref().is_some_and(|k| Arc::ptr_eq(k, o)))
                {
                    keys.remove(&o.key);
                }
                self.entries.fetch_sub(1, Ordering::Relaxed);
                self.bytes.fetch_sub(o.size() as u64, Ordering::Relaxed);
                true
            }
            Slot::Vary(key, _) => {
                if keys.get(&**key).is_some_and(Option::is_none) {
                    keys.remove(&**key);
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::*;
    use crate::cache::fresh::Freshness;
    use crate::cache::key::Taken;

    fn object(key: &str, body: usize) -> Object {
        Object {
            key: key.into(),
            status: 200,
            fields: Bytes::new(),
            body: Bytes::from(vec![b'x'; body]),
            stored_at: Instant::now(),
            fresh: Freshness {
                lifetime: Duration::from_secs(60),
                initial_age: Duration::ZERO,
                while_revalidate: Duration::ZERO,
                if_error: Duration::ZERO,
                must_revalidate: false,
            },
            requested: Requested::default(),
        }
    }

    #[test]
    fn objects_and_variants_are_found_by_their_keys() {
        let store = Store::new(1 << 20);
        store.put("a/x", &[], object("a/x", 10));
        let none = Taken::default();
        assert_eq!(store.get("a/x", &none).map(|o| o.body.len()), Some(10));
        let vary: Vec<Box<str>> = vec!["accept-language".into()];
        let zh = Taken(vec![("accept-language".into(), b"zh".to_vec())]);
        let en = Taken(vec![("accept-language".into(), b"en".to_vec())]);
        store.put("a/v", &vary, object(&variant("a/v", &vary, &zh), 3));
        assert!(store.get("a/v", &zh).is_some());
        assert!(store.get("a/v", &en).is_none());
        assert_eq!(store.stats().entries, 2);
        store.remove("a/x");
        assert_eq!(store.stats().entries, 1);
        assert_eq!(store.purge_key("a/v"), 1);
        assert_eq!(store.stats().entries, 0);
        store.put("s/a/1", &[], object("s/a/1", 1));
        store.put("s/a/2", &[], object("s/a/2", 1));
        let mut taken_down = object("s/b", 1);
        taken_down.requested.target = "/b".into();
        store.put("s/b", &[], taken_down);
        assert_eq!(store.purge_prefix("s/a/"), 2);
        assert_eq!(store.purge_where(|r| &*r.target == "/b"), 1);
        assert_eq!(store.stats().entries, 0);
    }

    #[test]
    fn the_byte_limit_holds() {
        let store = Store::new(64 * 1024);
        for i in 0..100 {
            let key = format!("k{i}");
            store.put(&key, &[], object(&key, 4000));
        }
        let stats = store.stats();
        assert!(stats.bytes <= 64 * 1024 + 4100, "{stats:?}");
        assert!(stats.entries >= 8, "{stats:?}");
    }
}
