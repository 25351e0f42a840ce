//! The edge cache (RFC 9111), below every engine: what a site or route caches (`rules.rs`),
//! whether a response may be stored and for how long (`fresh.rs`, reading `control.rs`'s
//! Cache-Control), the key (`key.rs`), the stored response (`object.rs`), the memory store
//! (`store.rs`, TinyUFO) and its disk tier (`disk.rs`, files written by a thread of its own),
//! one backend fetch per key while other requests wait (`lock.rs`), the response teed into the
//! store as it streams to the client (`fill.rs`), byte ranges of a stored body (`range.rs`).
//! The engines' hooks are `proxy/cache.rs`.

pub mod control;
pub mod disk;
pub mod fill;
pub mod fresh;
pub mod key;
pub mod lock;
pub mod object;
pub mod range;
pub mod rules;
pub mod status;
pub mod store;

pub use fill::Fill;
pub use rules::{DiskSettings, KeyParts, Rules, Settings};
pub use store::{Object, Stats, Store};
