//! Coalescing of identical upstream reads in flight at the same time: the first caller starts the
//! read, every caller that asks for the same key while it runs awaits the same result (success or
//! error), across operations and callers. The key decides what "identical" means; the gateway's
//! key (`graphql::budget`) is the upstream identity, the entity set's write generation, the URL
//! and the page size, so that two upstream identities never share a read.
//!
//! Nothing is cached here: the entry of a read is removed when the read ends (before its waiters
//! see the result), so a caller that comes later starts a read of its own; an error is shared by
//! the waiters of that one read only.
//!
//! Cancellation: the map holds only a [`WeakShared`], so the read is owned by its waiters alone.
//! When every waiter is gone (a client hung up, an operation was aborted), the read's future is
//! dropped with its upstream call, and a guard inside it removes the entry. A guard removes only
//! its own entry (entries carry a serial number), never a newer read's under the same key.

use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// A read in flight, shared by its waiters.
pub type SharedRead<V> = Shared<BoxFuture<'static, V>>;

struct Entry<V> {
    serial: u64,
    read: WeakShared<BoxFuture<'static, V>>,
}

type Map<K, V> = Mutex<HashMap<K, Entry<V>>>;

/// Reads in flight by key (see the module docs).
pub struct Coalescer<K, V> {
    inflight: Arc<Map<K, V>>,
    serial: AtomicU64,
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Coalescer {
            inflight: Arc::default(),
            serial: AtomicU64::new(0),
        }
    }
}

impl<K, V> std::fmt::Debug for Coalescer<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

/// Removes its read's entry when the read ends or is dropped.
struct Leave<K: Hash + Eq, V> {
    map: Weak<Map<K, V>>,
    key: Option<K>,
    serial: u64,
}

impl<K: Hash + Eq, V> Drop for Leave<K, V> {
    fn drop(&mut self) {
        let (Some(map), Some(key)) = (self.map.upgrade(), self.key.take()) else {
            return;
        };
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&key).is_some_and(|e| e.serial == self.serial) {
            // Only a WeakShared is dropped here, never a future: no re-entry into this lock.
            map.remove(&key);
        }
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The read of `key` in flight, or a new one made by `start` (called only then). The flag
    /// says whether an existing read was joined. Await the returned future to get the result.
    pub fn join_or_start(&self, key: K, start: impl FnOnce() -> BoxFuture<'static, V>) -> (SharedRead<V>, bool) {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = map.get(&key).and_then(|e| e.read.upgrade()) {
            // Returned, not dropped, under the lock: dropping the last waiter would re-enter it.
            return (running, true);
        }
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let leave = Leave {
            map: Arc::downgrade(&self.inflight),
            key: Some(key.clone()),
            serial,
        };
        let read = start();
        let shared = async move {
            let value = read.await;
            // Gone from the map before any waiter sees the value: later callers read again.
            drop(leave);
            value
        }
        .boxed()
        .shared();
        let weak = shared.downgrade().expect("a read not yet polled can be downgraded");
        map.insert(key, Entry { serial, read: weak });
        (shared, false)
    }

    /// Reads in flight (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::oneshot;

    type Reads = Coalescer<&'static str, Result<u32, String>>;

    /// A read that waits for `release` and counts how often it was started and dropped.
    fn read(
        started: &Arc<AtomicUsize>,
        dropped: &Arc<AtomicUsize>,
        release: oneshot::Receiver<Result<u32, String>>,
    ) -> BoxFuture<'static, Result<u32, String>> {
        started.fetch_add(1, Ordering::SeqCst);
        struct CountDrop(Arc<AtomicUsize>);
        impl Drop for CountDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let guard = CountDrop(dropped.clone());
        async move {
            let _guard = guard;
            release.await.unwrap_or_else(|_| Err("sender gone".into()))
        }
        .boxed()
    }

    #[tokio::test]
    async fn identical_reads_in_flight_share_one_and_errors_are_not_kept() {
        let reads = Reads::default();
        let (started, dropped) = (Arc::default(), Arc::default());
        let (tx, rx) = oneshot::channel();
        let (a, joined_a) = reads.join_or_start("k", || read(&started, &dropped, rx));
        let (b, joined_b) = reads.join_or_start("k", || unreachable!("joined"));
        assert!(!joined_a && joined_b);
        assert_eq!(reads.in_flight(), 1);
        tx.send(Err("boom".into())).unwrap();
        let (a, b) = tokio::join!(a, b);
        assert_eq!((a, b), (Err("boom".to_string()), Err("boom".to_string())));
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert_eq!(reads.in_flight(), 0, "an ended read (even a failed one) is forgotten");
        let (tx, rx) = oneshot::channel();
        let (c, joined_c) = reads.join_or_start("k", || read(&started, &dropped, rx));
        assert!(!joined_c, "a later caller reads again");
        tx.send(Ok(7)).unwrap();
        assert_eq!(c.await, Ok(7));
    }

    #[tokio::test]
    async fn different_keys_never_share() {
        let reads = Reads::default();
        let (started, dropped) = (Arc::default(), Arc::default());
        let (_tx1, rx1) = oneshot::channel();
        let (_tx2, rx2) = oneshot::channel();
        let (_a, ja) = reads.join_or_start("app", || read(&started, &dropped, rx1));
        let (_b, jb) = reads.join_or_start("user:1", || read(&started, &dropped, rx2));
        assert!(!ja && !jb);
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_read_every_waiter_left_is_dropped_and_forgotten() {
        let reads = Reads::default();
        let (started, dropped) = (Arc::default(), Arc::default());
        let (_tx, rx) = oneshot::channel();
        let (a, _) = reads.join_or_start("k", || read(&started, &dropped, rx));
        let (b, _) = reads.join_or_start("k", || unreachable!("joined"));
        // Polled once (the read starts), then both waiters go away.
        let mut a = a;
        assert!(futures::poll!(&mut a).is_pending());
        drop(a);
        assert_eq!(dropped.load(Ordering::SeqCst), 0, "one waiter is left");
        drop(b);
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the read was dropped");
        assert_eq!(reads.in_flight(), 0, "and its entry removed");
        // A stale guard does not remove a newer read of the same key.
        let (_tx, rx) = oneshot::channel();
        let (_c, joined) = reads.join_or_start("k", || read(&started, &dropped, rx));
        assert!(!joined);
        assert_eq!(reads.in_flight(), 1);
    }
}
