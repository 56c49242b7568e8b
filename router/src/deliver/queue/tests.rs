use super::*;

fn key(name: &str) -> Option<Arc<str>> {
    Some(Arc::from(name))
}

const DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn lease_takes_oldest_first() {
    let mut queue = QueueState::default();
    for seq in [3, 1, 2] {
        queue.push(seq, 0, None);
    }
    let now = Instant::now();
    assert_eq!(queue.lease(2, now, DEADLINE), vec![(1, 1), (2, 1)]);
    assert_eq!(queue.backlog(), 3);
    assert_eq!(queue.outstanding(), 2);
}

#[test]
fn expired_leases_come_back() {
    let mut queue = QueueState::default();
    queue.push(7, 0, None);
    let now = Instant::now();
    queue.lease(1, now, DEADLINE);
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
    queue.push(7, 0, None);
    let now = Instant::now();
    queue.lease(1, now, DEADLINE);
    queue.expire(now + Duration::from_secs(11));
    queue.push(7, 1, None);
    queue.lease(1, now + Duration::from_secs(11), DEADLINE);
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
    queue.push(1, 0, None);
    queue.push(2, 0, None);
    queue.lease(1, Instant::now(), DEADLINE);
    assert!(queue.remove(1));
    assert!(queue.remove(2));
    assert!(!queue.remove(2), "already gone");
    assert_eq!(queue.backlog(), 0);
}

#[test]
fn delayed_message_ready_at_its_instant() {
    let mut queue = QueueState::default();
    let now = Instant::now();
    queue.push(1, 0, None);
    queue.lease(1, now, DEADLINE);
    queue.release(1, 1);
    queue.requeue(1, 1, Some(now + Duration::from_secs(5)), now);

    assert!(!queue.has_ready(), "delayed, not ready");
    assert_eq!(queue.backlog(), 1, "a delayed message is in the backlog");
    assert_eq!(queue.next_ready_at(), Some(now + Duration::from_secs(5)));
    assert_eq!(
        queue.promote(now + Duration::from_secs(4)),
        0,
        "not yet due"
    );
    assert_eq!(queue.promote(now + Duration::from_secs(5)), 1, "due");
    assert_eq!(queue.next_ready_at(), None);
    assert_eq!(
        queue.lease(1, now, DEADLINE),
        vec![(1, 2)],
        "the second delivery"
    );
}

#[test]
fn requeue_without_delay_is_ready() {
    let mut queue = QueueState::default();
    let now = Instant::now();
    queue.push(1, 0, None);
    queue.lease(1, now, DEADLINE);
    queue.release(1, 1);
    queue.requeue(1, 1, None, now);
    assert!(queue.has_ready());
    queue.release(1, 1);
    queue.requeue(1, 1, Some(now), now);
    assert!(queue.has_ready(), "a ready-at instant that has passed");
}

#[test]
fn remove_forgets_delayed() {
    let mut queue = QueueState::default();
    let now = Instant::now();
    queue.push(1, 0, None);
    queue.lease(1, now, DEADLINE);
    queue.release(1, 1);
    queue.requeue(1, 1, Some(now + Duration::from_secs(5)), now);
    assert!(queue.remove(1), "acknowledged while delayed");
    assert_eq!(queue.backlog(), 0);
    assert_eq!(queue.promote(now + Duration::from_secs(5)), 0);
}

#[test]
fn key_delivers_one_at_a_time() {
    let mut queue = QueueState::default();
    let now = Instant::now();
    for seq in 1..=3 {
        queue.push(seq, 0, key("k"));
    }
    queue.push(4, 0, None);

    assert_eq!(
        queue.lease(10, now, DEADLINE),
        vec![(1, 1), (4, 1)],
        "the key's head and the unkeyed message"
    );
    assert_eq!(queue.backlog(), 4);
    assert!(queue.lease(10, now, DEADLINE).is_empty(), "2 waits for 1");
    assert!(queue.remove(1));
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(2, 1)]);
    assert!(queue.remove(2));
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(3, 1)]);
}

#[test]
fn released_head_keeps_key_blocked() {
    let mut queue = QueueState::default();
    let now = Instant::now();
    queue.push(1, 0, key("k"));
    queue.push(2, 0, key("k"));
    queue.push(3, 0, key("other"));
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(1, 1), (3, 1)]);

    queue.release(1, 1);
    queue.requeue(1, 1, Some(now + Duration::from_secs(5)), now);
    assert!(
        queue.lease(10, now, DEADLINE).is_empty(),
        "2 waits while 1 is delayed"
    );
    queue.promote(now + Duration::from_secs(5));
    assert_eq!(
        queue.lease(10, now, DEADLINE),
        vec![(1, 2)],
        "1 again, not 2"
    );
}

#[test]
fn late_earlier_message_becomes_head() {
    let mut queue = QueueState::default();
    let now = Instant::now();
    queue.push(2, 0, key("k"));
    queue.push(1, 0, key("k"));
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(1, 1)]);
    assert!(queue.remove(1));
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(2, 1)]);
}

#[test]
fn removing_waiting_message_keeps_order() {
    let mut queue = QueueState::default();
    let now = Instant::now();
    for seq in 1..=3 {
        queue.push(seq, 0, key("k"));
    }
    assert!(
        queue.remove(2),
        "acknowledged with an ack id from before a restart"
    );
    assert_eq!(queue.backlog(), 2);
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(1, 1)]);
    assert!(queue.remove(1));
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(3, 1)]);
    assert!(queue.remove(3));
    assert_eq!(queue.backlog(), 0);
    assert!(queue.key_queues.is_empty(), "the key is forgotten");
}

#[test]
fn admit_spills_beyond_window() {
    let mut queue = QueueState::default();
    for seq in 1..=5 {
        queue.admit(seq, None, 3);
    }
    assert_eq!(queue.backlog(), 5, "spilled messages count in the backlog");
    let now = Instant::now();
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(1, 1), (2, 1), (3, 1)]);
    assert_eq!(
        queue.refill_request(3),
        Some(Refill { from: 4, limit: 3 }),
        "the queue is empty, so the spilled messages are read from the first one"
    );
}

#[test]
fn later_messages_spill_behind_spilled_ones() {
    let mut queue = QueueState::default();
    for seq in 1..=3 {
        queue.admit(seq, None, 2);
    }
    queue.lease(10, Instant::now(), DEADLINE);
    queue.admit(4, None, 2);
    assert_eq!(
        queue.refill_request(2).map(|refill| refill.from),
        Some(3),
        "4 waits behind the spilled 3, so the refill starts at 3"
    );
}

#[test]
fn refill_loads_and_tracks_the_end() {
    let mut queue = QueueState::default();
    queue.spill_all(0, 4);
    let refill = queue.refill_request(2).expect("all spilled");
    assert_eq!(refill, Refill { from: 0, limit: 2 });
    queue.refilled(vec![(1, 0, None), (2, 3, None)], false);
    assert_eq!(queue.backlog(), 4);
    assert_eq!(queue.refill_request(2), None, "the window is full");

    let now = Instant::now();
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(1, 1), (2, 4)]);
    let refill = queue.refill_request(2).expect("two still spilled");
    assert_eq!(refill.from, 3);
    queue.refilled(vec![(3, 0, None)], true);
    assert_eq!(
        queue.backlog(),
        3,
        "the read reached the end: one fewer than counted"
    );
    assert_eq!(
        queue.refill_request(2),
        None,
        "nothing is spilled any longer"
    );
}

#[test]
fn forget_spilled_message() {
    let mut queue = QueueState::default();
    for seq in 1..=3 {
        queue.admit(seq, None, 1);
    }
    assert_eq!(queue.backlog(), 3);
    queue.forget(3);
    assert_eq!(queue.backlog(), 2, "a spilled message leaves the count");
    queue.forget(1);
    assert_eq!(queue.backlog(), 1, "an in-memory message is removed");
}

#[test]
fn keyed_refill_keeps_key_order() {
    let mut queue = QueueState::default();
    queue.admit(1, key("k"), 1);
    queue.admit(2, key("k"), 1);
    let now = Instant::now();
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(1, 1)]);
    queue.refilled(vec![(2, 0, key("k"))], true);
    assert!(
        queue.lease(10, now, DEADLINE).is_empty(),
        "2 waits until 1 is settled"
    );
    queue.remove(1);
    assert_eq!(queue.lease(10, now, DEADLINE), vec![(2, 1)]);
}
