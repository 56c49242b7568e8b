//! The live state of one subscription.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::{Mutex, RwLock};

use tokio::sync::Notify;

use super::queue::QueueState;
use super::SubscriptionCounters;
use crate::filter::pubsub::SubscriptionFilter;
use crate::store::{StoreError, SubscriptionSpec};

/// The live state of one subscription.
#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) spec: RwLock<SubscriptionSpec>,
    /// The parsed filter, or `None` when the subscription has none. The filter is fixed at
    /// creation, so later changes of `spec` leave it alone.
    filter: Option<SubscriptionFilter>,
    /// Whether ordering keys are honoured, fixed at creation like the filter.
    ordered: bool,
    pub(super) state: Mutex<QueueState>,
    /// Woken when messages become ready, so that waiting pulls return.
    pub(super) ready: Notify,
    pub(super) counters: SubscriptionCounters,
    /// The last part of every ack id the subscription issues, so that an ack id of another
    /// subscription is rejected: the FNV-1a hash of the name, in hex.
    tag: String,
}

impl Subscription {
    /// Builds the live state of a subscription over an empty queue.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidFilter`] when the filter of `spec` does not parse.
    pub(super) fn new(spec: SubscriptionSpec) -> Result<Self, StoreError> {
        let filter =
            SubscriptionFilter::parse(&spec.filter).map_err(|error| StoreError::InvalidFilter {
                name: spec.name.clone(),
                error,
            })?;
        let tag = format!("{:08x}", fnv1a(spec.name.as_bytes()));
        Ok(Subscription {
            tag,
            filter: filter.expression().is_some().then_some(filter),
            ordered: spec.enable_message_ordering,
            spec: RwLock::new(spec),
            state: Mutex::new(QueueState::default()),
            ready: Notify::new(),
            counters: SubscriptionCounters::default(),
        })
    }

    pub(super) fn tag(&self) -> &str {
        &self.tag
    }

    pub(super) fn spec(&self) -> SubscriptionSpec {
        self.spec
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // The state is only changed by short, non-panicking sections; after a poisoning panic
        // elsewhere it is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns whether a message with these attributes passes the subscription's filter.
    pub(super) fn accepts(&self, attributes: &BTreeMap<String, String>) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|filter| filter.matches(attributes))
    }

    /// Returns whether the subscription delivers messages of one ordering key one at a time.
    pub(super) fn is_ordered(&self) -> bool {
        self.ordered
    }

    /// Returns the key that orders `ordering_key`'s messages in this subscription: `None`
    /// for an empty key or when the subscription does not enable message ordering.
    pub(super) fn key_of(&self, ordering_key: &str) -> Option<Arc<str>> {
        (self.ordered && !ordering_key.is_empty()).then(|| Arc::from(ordering_key))
    }
}

/// 32-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}
