//! The in-memory delivery state of one subscription: which pending messages are ready,
//! which wait out a retry backoff, which wait behind an earlier message of their ordering
//! key, and which are leased to a consumer and until when.
//!
//! Messages with an ordering key (the broker passes none unless the subscription enables
//! message ordering) are held one key at a time: the key's oldest pending message is its
//! *head*, and only the head is ever ready, delayed or leased. The later messages of the key
//! wait in sequence order until the head is removed (acknowledged or dead-lettered). A nack
//! or an expired lease keeps the head in place, so its key stays blocked until the head is
//! delivered again and settled. At most one message per key is outstanding, and no message
//! of a key is delivered before an earlier one is settled.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A message handed to a consumer and not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lease {
    /// Deliveries so far, this one included. It also distinguishes leases of the same message,
    /// so that an ack id from an expired delivery cannot change the current one's deadline.
    pub(crate) attempts: u32,
    pub(crate) deadline: Instant,
}

/// The messages of one ordering key that are not yet settled.
#[derive(Debug)]
struct KeyQueue {
    /// The key's oldest pending message: ready, delayed, leased, or between a release and
    /// its requeue.
    head: u64,
    /// The key's later messages, by sequence number, with the deliveries each has had.
    waiting: BTreeMap<u64, u32>,
}

/// Ready, delayed, waiting and leased messages of one subscription, by sequence number.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    /// Messages waiting for delivery, with the deliveries each has had.
    ready: BTreeMap<u64, u32>,
    leased: HashMap<u64, Lease>,
    /// The leases ordered by deadline, for finding expired ones without a scan.
    deadlines: BTreeSet<(Instant, u64)>,
    /// Released messages waiting out their retry backoff, by the instant they become ready,
    /// with the deliveries each has had.
    delayed: BTreeMap<(Instant, u64), u32>,
    /// The ready-at instant of each delayed message, to find it by sequence number.
    delayed_until: HashMap<u64, Instant>,
    /// The ordering key of each pending message that has one.
    keys: HashMap<u64, Arc<str>>,
    /// The unsettled messages of each ordering key.
    key_queues: HashMap<Arc<str>, KeyQueue>,
    /// Messages in the `waiting` maps of `key_queues`, counted for [`Self::backlog`].
    waiting: usize,
    /// Pending messages left in the store because the window was full when they arrived.
    spilled: u64,
    /// The first sequence number that may be spilled: every pending message before it is in
    /// memory. Meaningful only while `spilled` is above 0.
    spill_from: u64,
}

/// What [`QueueState::refill_request`] asks the broker to read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refill {
    /// The first sequence number to read.
    pub(crate) from: u64,
    /// How many pending entries to read at most.
    pub(crate) limit: usize,
}

impl QueueState {
    /// Adds a newly published message, or leaves it in the store and counts it as spilled
    /// when `window` messages are already ready or delayed, or others are spilled before it.
    pub(crate) fn admit(&mut self, seq: u64, key: Option<Arc<str>>, window: usize) {
        let spilling = self.spilled > 0 && seq >= self.spill_from;
        if spilling || self.ready.len() + self.delayed.len() >= window {
            if self.spilled == 0 {
                self.spill_from = seq;
            }
            self.spilled += 1;
            return;
        }
        self.push(seq, 0, key);
    }

    /// Returns what to read from the store when spilled messages are waiting and fewer than
    /// half of `window` messages are ready or delayed.
    ///
    /// Messages waiting behind their ordering key do not count, so that a long key cannot
    /// keep other keys' messages in the store. They are not bounded by the window.
    pub(crate) fn refill_request(&self, window: usize) -> Option<Refill> {
        let queued = self.ready.len() + self.delayed.len();
        (self.spilled > 0 && queued < window / 2).then(|| Refill {
            from: self.spill_from,
            limit: window - queued,
        })
    }

    /// Adds the entries read for a [`Refill`], in sequence order, as `(seq, attempts, key)`.
    /// `exhausted` says that the read reached the end of the pending set, so that nothing is
    /// spilled any longer.
    pub(crate) fn refilled(&mut self, entries: Vec<(u64, u32, Option<Arc<str>>)>, exhausted: bool) {
        let mut next = self.spill_from;
        for (seq, attempts, key) in entries {
            next = next.max(seq + 1);
            self.push(seq, attempts, key);
            self.spilled = self.spilled.saturating_sub(1);
        }
        self.spill_from = next;
        if exhausted {
            self.spilled = 0;
        } else if self.spilled == 0 {
            // More entries are pending than were counted, which happens when a publish and
            // a refill race; count one so that the next refill reads on.
            self.spilled = 1;
        }
    }

    /// Marks `count` pending messages from `from` on as spilled, before the first refill
    /// of an empty queue.
    pub(crate) fn spill_all(&mut self, from: u64, count: u64) {
        self.spill_from = from;
        self.spilled = count;
    }

    /// Forgets a message that left the store's pending set, in memory or spilled.
    pub(crate) fn forget(&mut self, seq: u64) {
        if !self.remove(seq) && self.spilled > 0 && seq >= self.spill_from {
            self.spilled -= 1;
        }
    }

    /// Adds a message that is ready for delivery. When an earlier message of its ordering key
    /// is still pending, the new one waits behind it.
    pub(crate) fn push(&mut self, seq: u64, attempts: u32, key: Option<Arc<str>>) {
        if self.leased.contains_key(&seq) || self.delayed_until.contains_key(&seq) {
            return;
        }
        let Some(key) = key else {
            self.ready.insert(seq, attempts);
            return;
        };
        self.keys.insert(seq, key.clone());
        let Some(queue) = self.key_queues.get_mut(&key) else {
            self.key_queues.insert(
                key,
                KeyQueue {
                    head: seq,
                    waiting: BTreeMap::new(),
                },
            );
            self.ready.insert(seq, attempts);
            return;
        };
        if queue.head == seq {
            self.ready.insert(seq, attempts);
        } else if seq < queue.head && self.ready.contains_key(&queue.head) {
            // An earlier message that arrived late, before the current head was delivered,
            // takes its place so that the key is still delivered in sequence order.
            let head_attempts = self.ready.remove(&queue.head).unwrap_or_default();
            queue.waiting.insert(queue.head, head_attempts);
            self.waiting += 1;
            queue.head = seq;
            self.ready.insert(seq, attempts);
        } else if queue.waiting.insert(seq, attempts).is_none() {
            self.waiting += 1;
        }
    }

    /// Returns a released message to the queue: ready at once when `ready_at` is `None` or
    /// has passed, otherwise delayed until `ready_at`. It keeps its place at the head of its
    /// ordering key either way.
    pub(crate) fn requeue(
        &mut self,
        seq: u64,
        attempts: u32,
        ready_at: Option<Instant>,
        now: Instant,
    ) {
        let key = self.keys.get(&seq).cloned();
        let is_head = key
            .as_ref()
            .and_then(|key| self.key_queues.get(key))
            .is_none_or(|queue| queue.head == seq);
        match ready_at {
            Some(ready_at) if ready_at > now && is_head && !self.leased.contains_key(&seq) => {
                self.ready.remove(&seq);
                self.delayed.insert((ready_at, seq), attempts);
                self.delayed_until.insert(seq, ready_at);
            }
            _ => self.push(seq, attempts, key),
        }
    }

    /// Moves the delayed messages whose backoff has ended by `now` to the ready set.
    /// Returns how many became ready.
    pub(crate) fn promote(&mut self, now: Instant) -> usize {
        let mut promoted = 0;
        while let Some((&(ready_at, seq), _)) = self.delayed.first_key_value() {
            if ready_at > now {
                break;
            }
            if let Some(attempts) = self.delayed.remove(&(ready_at, seq)) {
                self.delayed_until.remove(&seq);
                self.ready.insert(seq, attempts);
                promoted += 1;
            }
        }
        promoted
    }

    /// Returns when the next delayed message becomes ready, if any is delayed.
    pub(crate) fn next_ready_at(&self) -> Option<Instant> {
        self.delayed.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Leases up to `max` ready messages, oldest first, until `now + ack_deadline`.
    /// Returns `(seq, attempts)` with the attempt count including this delivery.
    pub(crate) fn lease(
        &mut self,
        max: usize,
        now: Instant,
        ack_deadline: Duration,
    ) -> Vec<(u64, u32)> {
        let mut taken = Vec::with_capacity(max.min(self.ready.len()));
        while taken.len() < max {
            let Some((seq, attempts)) = self.ready.pop_first() else {
                break;
            };
            let attempts = attempts.saturating_add(1);
            let deadline = now + ack_deadline;
            self.leased.insert(seq, Lease { attempts, deadline });
            self.deadlines.insert((deadline, seq));
            taken.push((seq, attempts));
        }
        taken
    }

    /// Returns the deliveries a message in memory has had: counted by its current lease,
    /// or recorded when it was queued again. `None` when the message is not in memory.
    pub(crate) fn attempts_of(&self, seq: u64) -> Option<u32> {
        if let Some(lease) = self.leased.get(&seq) {
            return Some(lease.attempts);
        }
        if let Some(attempts) = self.ready.get(&seq) {
            return Some(*attempts);
        }
        if let Some(ready_at) = self.delayed_until.get(&seq) {
            return self.delayed.get(&(*ready_at, seq)).copied();
        }
        let key = self.keys.get(&seq)?;
        self.key_queues.get(key)?.waiting.get(&seq).copied()
    }

    /// Forgets a message: it was acknowledged or dead-lettered. When it was the head of its
    /// ordering key, the key's next message becomes ready. Returns whether it was known.
    pub(crate) fn remove(&mut self, seq: u64) -> bool {
        let was_ready = self.ready.remove(&seq).is_some();
        let lease = self.leased.remove(&seq);
        if let Some(lease) = lease {
            self.deadlines.remove(&(lease.deadline, seq));
        }
        let was_delayed = match self.delayed_until.remove(&seq) {
            Some(ready_at) => self.delayed.remove(&(ready_at, seq)).is_some(),
            None => false,
        };
        let was_keyed = self.remove_from_key(seq);
        was_ready || lease.is_some() || was_delayed || was_keyed
    }

    /// Takes `seq` out of its ordering key's queue, making the next message the head when
    /// `seq` was the head. Returns whether `seq` had a key.
    fn remove_from_key(&mut self, seq: u64) -> bool {
        let Some(key) = self.keys.remove(&seq) else {
            return false;
        };
        let Some(queue) = self.key_queues.get_mut(&key) else {
            return true;
        };
        if queue.head != seq {
            if queue.waiting.remove(&seq).is_some() {
                self.waiting -= 1;
            }
            return true;
        }
        match queue.waiting.pop_first() {
            Some((next, attempts)) => {
                queue.head = next;
                self.waiting -= 1;
                self.ready.insert(next, attempts);
            }
            None => {
                self.key_queues.remove(&key);
            }
        }
        true
    }

    /// Moves the deadline of the lease `(seq, attempts)`. Returns false when that lease is no
    /// longer current.
    pub(crate) fn extend(&mut self, seq: u64, attempts: u32, deadline: Instant) -> bool {
        match self.leased.get_mut(&seq) {
            Some(lease) if lease.attempts == attempts => {
                self.deadlines.remove(&(lease.deadline, seq));
                lease.deadline = deadline;
                self.deadlines.insert((deadline, seq));
                true
            }
            _ => false,
        }
    }

    /// Ends the lease `(seq, attempts)` early (a nack). Returns the lease when it was current.
    /// The message stays the head of its ordering key until it is requeued or removed.
    pub(crate) fn release(&mut self, seq: u64, attempts: u32) -> Option<Lease> {
        match self.leased.get(&seq) {
            Some(lease) if lease.attempts == attempts => {
                let lease = *lease;
                self.leased.remove(&seq);
                self.deadlines.remove(&(lease.deadline, seq));
                Some(lease)
            }
            _ => None,
        }
    }

    /// Removes and returns the leases whose deadline has passed, as `(seq, attempts)`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(u64, u32)> {
        let mut expired = Vec::new();
        while let Some(&(deadline, seq)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(lease) = self.leased.remove(&seq) {
                expired.push((seq, lease.attempts));
            }
        }
        expired
    }

    /// Messages not yet acknowledged: ready, delayed, waiting behind their ordering key and
    /// leased ones.
    pub(crate) fn backlog(&self) -> usize {
        let spilled = usize::try_from(self.spilled).unwrap_or(usize::MAX);
        self.ready.len() + self.delayed.len() + self.waiting + self.leased.len() + spilled
    }

    /// Messages currently leased to consumers.
    pub(crate) fn outstanding(&self) -> usize {
        self.leased.len()
    }

    /// Whether a message is ready now, or spilled messages wait to be read.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty() || self.spilled > 0
    }
}

#[cfg(test)]
mod tests;
