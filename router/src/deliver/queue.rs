//! The in-memory delivery state of one subscription: which pending messages are ready,
//! which are leased to a consumer and until when.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// Ready and leased messages of one subscription, by sequence number.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    /// Messages waiting for delivery, with the deliveries each has had.
    ready: BTreeMap<u64, u32>,
    leased: HashMap<u64, Lease>,
    /// The leases ordered by deadline, for finding expired ones without a scan.
    deadlines: BTreeSet<(Instant, u64)>,
}

impl QueueState {
    /// Adds a message that is ready for delivery.
    pub(crate) fn push(&mut self, seq: u64, attempts: u32) {
        if !self.leased.contains_key(&seq) {
            self.ready.insert(seq, attempts);
        }
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

    /// Forgets a message: it was acknowledged or dead-lettered. Returns whether it was known.
    pub(crate) fn remove(&mut self, seq: u64) -> bool {
        let was_ready = self.ready.remove(&seq).is_some();
        let lease = self.leased.remove(&seq);
        if let Some(lease) = lease {
            self.deadlines.remove(&(lease.deadline, seq));
        }
        was_ready || lease.is_some()
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

    /// Messages not yet acknowledged, leased ones included.
    pub(crate) fn backlog(&self) -> usize {
        self.ready.len() + self.leased.len()
    }

    /// Messages currently leased to consumers.
    pub(crate) fn outstanding(&self) -> usize {
        self.leased.len()
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_takes_oldest_first() {
        let mut queue = QueueState::default();
        for seq in [3, 1, 2] {
            queue.push(seq, 0);
        }
        let now = Instant::now();
        assert_eq!(
            queue.lease(2, now, Duration::from_secs(10)),
            vec![(1, 1), (2, 1)]
        );
        assert_eq!(queue.backlog(), 3);
        assert_eq!(queue.outstanding(), 2);
    }

    #[test]
    fn expired_leases_come_back() {
        let mut queue = QueueState::default();
        queue.push(7, 0);
        let now = Instant::now();
        queue.lease(1, now, Duration::from_secs(10));
        assert!(
            queue.expire(now + Duration::from_secs(9)).is_empty(),
            "not yet due"
        );
        assert_eq!(queue.expire(now + Duration::from_secs(10)), vec![(7, 1)]);
        assert_eq!(queue.outstanding(), 0);
    }

    #[test]
    fn stale_lease_cannot_extend_or_release() {
        let mut queue = QueueState::default();
        queue.push(7, 0);
        let now = Instant::now();
        queue.lease(1, now, Duration::from_secs(10));
        queue.expire(now + Duration::from_secs(11));
        queue.push(7, 1);
        queue.lease(1, now + Duration::from_secs(11), Duration::from_secs(10));
        assert!(
            !queue.extend(7, 1, now + Duration::from_secs(100)),
            "attempt 1 is stale"
        );
        assert!(queue.release(7, 1).is_none(), "attempt 1 is stale");
        assert!(
            queue.extend(7, 2, now + Duration::from_secs(100)),
            "attempt 2 is current"
        );
    }

    #[test]
    fn remove_forgets_ready_and_leased() {
        let mut queue = QueueState::default();
        queue.push(1, 0);
        queue.push(2, 0);
        queue.lease(1, Instant::now(), Duration::from_secs(10));
        assert!(queue.remove(1));
        assert!(queue.remove(2));
        assert!(!queue.remove(2), "already gone");
        assert_eq!(queue.backlog(), 0);
    }
}
