//! One backend fetch per key: the first request to miss a key fetches it while the others wait
//! (at most the lock timeout), then look again; when the fetch failed or was not stored, each
//! goes to the backend itself.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// The keys being fetched, each with what its waiters watch (the fetcher's lock closes it).
static FETCHING: LazyLock<Mutex<HashMap<String, watch::Receiver<()>>>> =
    LazyLock::new(Default::default);

/// A request's turn at a missing key.
pub enum Turn {
    /// It fetches; its lock is released when it drops (after the object is stored, if it is).
    Fetch(FillLock),
    /// Another request fetches: wait for it.
    Wait(watch::Receiver<()>),
}

/// Held by the request that fetches a key.
#[derive(Debug)]
pub struct FillLock {
    key: String,
    _done: watch::Sender<()>,
}

impl Drop for FillLock {
    fn drop(&mut self) {
        let mut fetching = FETCHING.lock().unwrap_or_else(PoisonError::into_inner);
        fetching.remove(&self.key);
        // `_done` drops after this: every waiter wakes.
    }
}

/// The request's turn at `key`.
pub fn turn(key: &str) -> Turn {
    let mut fetching = FETCHING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(waiting) = fetching.get(key) {
        return Turn::Wait(waiting.clone());
    }
    let (done, waiting) = watch::channel(());
    fetching.insert(key.to_owned(), waiting);
    Turn::Fetch(FillLock {
        key: key.to_owned(),
        _done: done,
    })
}

/// Waits until the fetch `waiting` watches ends, at most `limit`: whether it ended.
pub async fn wait(mut waiting: watch::Receiver<()>, limit: Duration) -> bool {
    // Nothing is ever sent: `changed` returns once the fetcher's lock drops.
    tokio::time::timeout(limit, waiting.changed()).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_the_fetch_ends() {
        let Turn::Fetch(lock) = turn("k") else {
            panic!("the first request fetches");
        };
        let Turn::Wait(waiting) = turn("k") else {
            panic!("the second waits");
        };
        let waiter = tokio::spawn(wait(waiting, Duration::from_secs(30)));
        drop(lock);
        assert!(waiter.await.expect("joined"));
        assert!(matches!(turn("k"), Turn::Fetch(_)));
        let Turn::Fetch(_held) = turn("k2") else {
            panic!("fetch");
        };
        let Turn::Wait(waiting) = turn("k2") else {
            panic!("wait");
        };
        assert!(!wait(waiting, Duration::from_millis(10)).await);
    }
}
