//! Flow-control bookkeeping of StreamingPull: the messages each stream has sent that are not
//! yet settled (acknowledged, nacked or expired), counted in messages and bytes.
//!
//! A client may settle a message on the stream that delivered it, on another stream, or with
//! the unary Acknowledge and ModifyAckDeadline calls, which is what the Python and Rust
//! clients do. So every stream's [`StreamLeases`] is registered per subscription in a
//! [`StreamRegistry`], and each of those paths settles the ack IDs in every registered set.
//!
//! Clients keep acknowledging and extending the messages they hold after a stream ends,
//! because they reconnect on UNAVAILABLE and similar codes. A closed stream's set therefore
//! stays registered until its messages are settled or expire. A new stream with the same
//! `client_id` takes it over, so that the client's flow-control limits hold across
//! reconnects, as the `client_id` field of `StreamingPullRequest` describes.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The sets of every StreamingPull stream that is open or still has unsettled messages.
#[derive(Debug, Default)]
pub(crate) struct StreamRegistry {
    /// The sets by short subscription name, because ack IDs are unique only within one
    /// subscription.
    by_subscription: Mutex<HashMap<String, Vec<Arc<StreamLeases>>>>,
}

/// The unsettled messages of one stream.
#[derive(Debug)]
pub(crate) struct StreamLeases {
    client_id: String,
    /// False once the stream has ended; the set is then kept only for settling and takeover.
    open: AtomicBool,
    state: Mutex<LeaseSet>,
    /// Woken when a message is settled, so that the stream can send more.
    settled: Notify,
}

#[derive(Debug, Default)]
struct LeaseSet {
    /// Size in bytes and deadline of each unsettled message, by ack ID.
    leases: HashMap<String, Lease>,
    /// The leases ordered by deadline, to find expired ones without a scan.
    deadlines: BTreeSet<(Instant, String)>,
    /// The sizes of `leases`, summed.
    bytes: usize,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    bytes: usize,
    deadline: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every section under these locks leaves the data consistent, even if it panics.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StreamRegistry {
    /// Registers the set of a new stream. It takes over the unsettled messages of the closed
    /// streams of the same subscription and non-empty `client_id`.
    pub(crate) fn open(&self, subscription: &str, client_id: &str) -> Arc<StreamLeases> {
        let leases = Arc::new(StreamLeases {
            client_id: client_id.to_owned(),
            open: AtomicBool::new(true),
            state: Mutex::new(LeaseSet::default()),
            settled: Notify::new(),
        });
        let mut registry = lock(&self.by_subscription);
        let streams = registry.entry(subscription.to_owned()).or_default();
        prune(streams, Instant::now());
        if !client_id.is_empty() {
            let mut state = lock(&leases.state);
            streams.retain(|previous| {
                let taken_over = previous.client_id == client_id && !previous.is_open();
                if taken_over {
                    state.take_over(&mut lock(&previous.state));
                }
                !taken_over
            });
        }
        streams.push(leases.clone());
        leases
    }

    /// Marks a stream's set closed. When the client has already reconnected, which happens
    /// when it opens the new stream before this one's end is processed, its newest open
    /// stream with the same `client_id` takes the unsettled messages over. Otherwise the set
    /// stays registered while it has unsettled messages.
    pub(crate) fn close(&self, subscription: &str, leases: &Arc<StreamLeases>) {
        leases.open.store(false, Ordering::Release);
        let mut registry = lock(&self.by_subscription);
        let Some(streams) = registry.get_mut(subscription) else {
            return;
        };
        let successor = streams.iter().rev().find(|other| {
            other.is_open() && !leases.client_id.is_empty() && other.client_id == leases.client_id
        });
        if let Some(successor) = successor {
            lock(&successor.state).take_over(&mut lock(&leases.state));
        }
        prune(streams, Instant::now());
        if streams.is_empty() {
            registry.remove(subscription);
        }
    }

    /// Removes acknowledged or nacked messages from the set that contains them.
    pub(crate) fn settle(&self, subscription: &str, ack_ids: &[String]) {
        for leases in self.streams_of(subscription) {
            let removed = {
                let mut state = lock(&leases.state);
                ack_ids.iter().filter(|id| state.remove(id)).count()
            };
            if removed > 0 {
                leases.settled.notify_one();
            }
        }
    }

    /// Moves the deadline of messages to `deadline`, as a deadline change does.
    pub(crate) fn extend(&self, subscription: &str, ack_ids: &[String], deadline: Instant) {
        for leases in self.streams_of(subscription) {
            let mut state = lock(&leases.state);
            for ack_id in ack_ids {
                state.extend(ack_id, deadline);
            }
        }
    }

    /// Returns the registered sets of a subscription, after dropping the closed ones that
    /// have nothing left to settle.
    fn streams_of(&self, subscription: &str) -> Vec<Arc<StreamLeases>> {
        let mut registry = lock(&self.by_subscription);
        let Some(streams) = registry.get_mut(subscription) else {
            return Vec::new();
        };
        prune(streams, Instant::now());
        streams.clone()
    }
}

/// Expires the leases of closed sets and drops the closed sets that are empty. Open sets are
/// expired by their own stream.
fn prune(streams: &mut Vec<Arc<StreamLeases>>, now: Instant) {
    streams.retain(|leases| {
        if leases.is_open() {
            return true;
        }
        let mut state = lock(&leases.state);
        state.expire(now);
        !state.leases.is_empty()
    });
}

impl StreamLeases {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Records a message sent on the stream, `bytes` long, unsettled until `deadline`.
    pub(crate) fn add(&self, ack_id: String, bytes: usize, deadline: Instant) {
        lock(&self.state).insert(ack_id, Lease { bytes, deadline });
    }

    /// Forgets messages without waking the stream: they were never sent.
    pub(crate) fn forget(&self, ack_ids: &[String]) {
        let mut state = lock(&self.state);
        for ack_id in ack_ids {
            state.remove(ack_id);
        }
    }

    /// Drops the leases whose deadline has passed. Returns whether any did.
    pub(crate) fn expire(&self, now: Instant) -> bool {
        lock(&self.state).expire(now)
    }

    /// Returns the unsettled messages and their total size in bytes.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.leases.len(), state.bytes)
    }

    /// Returns the earliest deadline of the unsettled messages.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        lock(&self.state)
            .deadlines
            .first()
            .map(|(deadline, _)| *deadline)
    }

    /// Completes when a message has been settled since the last call, or at once when one
    /// was settled before this call.
    pub(crate) async fn settled(&self) {
        self.settled.notified().await;
    }
}

impl LeaseSet {
    fn insert(&mut self, ack_id: String, lease: Lease) {
        self.remove(&ack_id);
        self.bytes += lease.bytes;
        self.deadlines.insert((lease.deadline, ack_id.clone()));
        self.leases.insert(ack_id, lease);
    }

    fn remove(&mut self, ack_id: &str) -> bool {
        let Some(lease) = self.leases.remove(ack_id) else {
            return false;
        };
        self.bytes -= lease.bytes;
        self.deadlines.remove(&(lease.deadline, ack_id.to_owned()));
        true
    }

    fn extend(&mut self, ack_id: &str, deadline: Instant) {
        if let Some(lease) = self.leases.get(ack_id).copied() {
            self.insert(ack_id.to_owned(), Lease { deadline, ..lease });
        }
    }

    fn expire(&mut self, now: Instant) -> bool {
        let mut expired = false;
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline > now {
                break;
            }
            if let Some((_, ack_id)) = self.deadlines.pop_first() {
                if let Some(lease) = self.leases.remove(&ack_id) {
                    self.bytes -= lease.bytes;
                }
                expired = true;
            }
        }
        expired
    }

    fn take_over(&mut self, other: &mut LeaseSet) {
        for (ack_id, lease) in other.leases.drain() {
            self.insert(ack_id, lease);
        }
        other.deadlines.clear();
        other.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn settle_frees_count_and_bytes() {
        let registry = StreamRegistry::default();
        let leases = registry.open("s", "client");
        let deadline = Instant::now() + Duration::from_secs(60);
        leases.add("1-1".to_owned(), 100, deadline);
        leases.add("2-1".to_owned(), 50, deadline);
        registry.settle("s", &ids(&["1-1", "unknown"]));
        assert_eq!(leases.usage(), (1, 50));
    }

    #[test]
    fn expired_leases_are_dropped() {
        let registry = StreamRegistry::default();
        let leases = registry.open("s", "");
        let now = Instant::now();
        leases.add("1-1".to_owned(), 10, now + Duration::from_secs(10));
        leases.add("2-1".to_owned(), 10, now + Duration::from_secs(30));
        assert!(!leases.expire(now + Duration::from_secs(5)));
        assert!(leases.expire(now + Duration::from_secs(10)));
        assert_eq!(leases.usage(), (1, 10));
        assert_eq!(leases.next_deadline(), Some(now + Duration::from_secs(30)));
    }

    #[test]
    fn extend_moves_the_deadline() {
        let registry = StreamRegistry::default();
        let leases = registry.open("s", "");
        let now = Instant::now();
        leases.add("1-1".to_owned(), 10, now + Duration::from_secs(10));
        registry.extend("s", &ids(&["1-1"]), now + Duration::from_secs(60));
        assert!(!leases.expire(now + Duration::from_secs(30)));
        assert_eq!(leases.usage(), (1, 10));
    }

    #[test]
    fn reconnect_with_same_client_id_takes_over() {
        let registry = StreamRegistry::default();
        let first = registry.open("s", "client");
        first.add(
            "1-1".to_owned(),
            10,
            Instant::now() + Duration::from_secs(60),
        );
        registry.close("s", &first);
        let other_client = registry.open("s", "other");
        assert_eq!(other_client.usage(), (0, 0));
        let second = registry.open("s", "client");
        assert_eq!(second.usage(), (1, 10));
        registry.settle("s", &ids(&["1-1"]));
        assert_eq!(second.usage(), (0, 0));
    }

    #[test]
    fn late_close_hands_over_to_reconnected_stream() {
        let registry = StreamRegistry::default();
        let first = registry.open("s", "client");
        first.add(
            "1-1".to_owned(),
            10,
            Instant::now() + Duration::from_secs(60),
        );
        let second = registry.open("s", "client");
        registry.close("s", &first);
        assert_eq!(second.usage(), (1, 10));
        assert_eq!(first.usage(), (0, 0));
    }

    #[test]
    fn open_stream_is_never_taken_over() {
        let registry = StreamRegistry::default();
        let first = registry.open("s", "client");
        first.add(
            "1-1".to_owned(),
            10,
            Instant::now() + Duration::from_secs(60),
        );
        let second = registry.open("s", "client");
        assert_eq!(second.usage(), (0, 0));
        assert_eq!(first.usage(), (1, 10));
    }

    #[test]
    fn closed_empty_sets_are_dropped() {
        let registry = StreamRegistry::default();
        let leases = registry.open("s", "client");
        registry.close("s", &leases);
        assert!(lock(&registry.by_subscription).get("s").is_none());
    }

    #[test]
    fn closed_set_stays_until_settled() {
        let registry = StreamRegistry::default();
        let leases = registry.open("s", "client");
        leases.add(
            "1-1".to_owned(),
            10,
            Instant::now() + Duration::from_secs(60),
        );
        registry.close("s", &leases);
        assert_eq!(registry.streams_of("s").len(), 1);
        registry.settle("s", &ids(&["1-1"]));
        assert!(registry.streams_of("s").is_empty());
    }
}
