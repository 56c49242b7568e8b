//! The resources that carry a function's events, created from its trigger:
//!
//! - a bucket trigger: topic `function-NAME` and a notification config on the bucket for the
//!   trigger's event type;
//! - a topic trigger: the topic itself, created when missing as gcloud does;
//! - an audit-log trigger: topic `function-NAME` and a log sink `function-NAME` whose filter
//!   is the one `[[triggers]]` build ([`crate::config::triggers::audit_sink_filter`]);
//!
//! and for every function, subscription `function-NAME` on that topic, consumed by the
//! function's runner, with topic `function-NAME-dead-letter` as its dead-letter topic when
//! retry is on, and a subscription of that name on it that keeps the dead-lettered events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use sluice_router::buckets::{BucketError, EventType, NotificationConfig, PayloadFormat};
use sluice_router::deliver::Broker;
use sluice_router::filter::LogFilter;
use sluice_router::route::{LogRouter, Sink};
use sluice_router::storage::Storage;
use sluice_router::store::{DeadLetterPolicy, RetryPolicy, SubscriptionSpec};
use tracing::info;

use super::delivery::subscription_name;
use super::spec::{DeploySpec, Trigger, GENERATED_PREFIX};

/// Deliveries of a failing event before it is dead-lettered with retry on: Pub/Sub's
/// maximum.
// NOTE: with the backoff of RETRY_POLICY, 100 attempts take about 15 hours (1 + 2 + ... +
// 512 s, then 600 s each), so they end the retries before a maximum event age longer than
// that, such as the default of 7 days.
const MAX_DELIVERY_ATTEMPTS: u32 = 100;

/// The retry backoff of a function with retry on, in seconds: short at first, so a crash
/// that a restart fixes delays the event by about a second, and Pub/Sub's maximum later.
const RETRY_POLICY: RetryPolicy = RetryPolicy::from_secs(1, 600);

/// Pub/Sub's range of the ack deadline, in seconds.
const ACK_DEADLINE_SECS: std::ops::RangeInclusive<u32> = 10..=600;

/// The resources a trigger created, kept in the deployment record so that a redeploy or a
/// delete can remove it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Wiring {
    /// The topic that the function's subscription reads.
    pub(crate) topic: String,
    /// The bucket and id of the notification config of a bucket trigger.
    #[serde(default)]
    pub(crate) notification: Option<(String, String)>,
}

/// The log router with the sinks of the configuration and those of audit-log functions.
#[derive(Debug)]
pub(crate) struct RouterSwitch {
    router: Arc<ArcSwap<LogRouter>>,
    configured: Vec<Sink>,
    catch_all: Option<String>,
    /// The sinks of functions, by function name.
    functions: Mutex<BTreeMap<String, Sink>>,
}

impl RouterSwitch {
    /// Returns a switch over the configured sinks, whose router `router` holds.
    pub(crate) fn new(
        router: Arc<ArcSwap<LogRouter>>,
        configured: Vec<Sink>,
        catch_all: Option<String>,
    ) -> Self {
        RouterSwitch {
            router,
            configured,
            catch_all,
            functions: Mutex::default(),
        }
    }

    /// Adds, replaces or (with `None`) removes a function's sink and swaps in the new router.
    fn set(&self, function: &str, sink: Option<Sink>) {
        let mut functions = self
            .functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match sink {
            Some(sink) => functions.insert(function.to_owned(), sink),
            None => functions.remove(function),
        };
        let sinks = self
            .configured
            .iter()
            .cloned()
            .chain(functions.values().cloned())
            .collect();
        self.router
            .store(Arc::new(LogRouter::new(sinks, self.catch_all.clone())));
    }
}

/// Returns the generated topic of a function.
pub(crate) fn generated_topic(function: &str) -> String {
    format!("{GENERATED_PREFIX}{function}")
}

fn dead_letter_topic(function: &str) -> String {
    format!("{GENERATED_PREFIX}{function}-dead-letter")
}

/// Checks what the trigger needs to exist before anything is installed: the bucket of a
/// bucket trigger.
///
/// # Errors
///
/// Names the missing bucket.
pub(crate) fn check(spec: &DeploySpec, storage: &Storage) -> anyhow::Result<()> {
    let Trigger::Bucket { bucket, .. } = &spec.trigger else {
        return Ok(());
    };
    storage.buckets().bucket(bucket).map_err(|err| match err {
        BucketError::BucketNotFound { .. } => anyhow::anyhow!(
            "--trigger-bucket {bucket:?} does not exist; create it first (for example with \
             [[buckets]] in the configuration)"
        ),
        other => anyhow::Error::new(other),
    })?;
    Ok(())
}

/// Checks that the names a first deploy generates are free, so that it takes over no
/// subscription or topic that the configuration or a client created.
///
/// # Errors
///
/// Names the subscription or topic that exists already.
pub(crate) fn check_names_free(spec: &DeploySpec, broker: &Broker) -> anyhow::Result<()> {
    let subscription = subscription_name(&spec.name);
    if broker.subscription_spec(&subscription).is_ok() {
        anyhow::bail!(
            "subscription {subscription:?} exists already, but function {:?} would create it; \
             choose another function name",
            spec.name
        );
    }
    if matches!(spec.trigger, Trigger::Topic { .. }) {
        return Ok(());
    }
    let topic = generated_topic(&spec.name);
    if broker
        .store()
        .topics()
        .iter()
        .any(|record| record.name == topic)
    {
        anyhow::bail!(
            "topic {topic:?} exists already, but function {:?} would create it; choose \
             another function name",
            spec.name
        );
    }
    Ok(())
}

/// Creates or updates the wiring of `spec`, replacing `previous` where the trigger changed.
///
/// # Errors
///
/// Fails when the trigger's bucket does not exist, or a topic, subscription or notification
/// config cannot be written.
pub(crate) async fn apply(
    spec: &DeploySpec,
    previous: Option<&Wiring>,
    broker: &Broker,
    storage: &Storage,
    router: &RouterSwitch,
) -> anyhow::Result<Wiring> {
    let name = &spec.name;
    let generated = generated_topic(name);
    check(spec, storage)?;
    let topic = match &spec.trigger {
        Trigger::Topic { topic, .. } => topic.clone(),
        Trigger::Bucket { .. } | Trigger::AuditLog { .. } => generated.clone(),
    };
    // The subscription exists before anything publishes to the topic, because a
    // subscription receives only the messages published after its creation.
    create_topic(broker, &topic).await?;
    apply_subscription(spec, &topic, broker).await?;

    let notification = match &spec.trigger {
        Trigger::Bucket { bucket, event_type } => Some(apply_notification(
            name,
            bucket,
            *event_type,
            &generated,
            previous,
            storage,
        )?),
        _ => None,
    };
    if let Some(previous) = previous {
        if previous.notification != notification {
            remove_notification(storage, previous);
        }
        // A bucket or audit-log trigger replaced by a topic trigger leaves its topic unused.
        if previous.topic == generated && topic != generated {
            if let Err(err) = broker.delete_topic(&generated).await {
                tracing::warn!(function = %name, topic = %generated, error = %err, "failed to delete the function's old topic");
            }
        }
    }
    router.set(name, audit_sink(spec, &generated)?);
    Ok(Wiring {
        topic,
        notification,
    })
}

/// Adds the log sink of a deployed function's audit-log trigger to the router, as `apply`
/// does, for a function restored at start-up. The topic, the subscription and any bucket
/// notification live in the store and need nothing.
pub(crate) fn restore_sink(spec: &DeploySpec, router: &RouterSwitch) -> anyhow::Result<()> {
    let sink = audit_sink(spec, &generated_topic(&spec.name))?;
    if sink.is_some() {
        router.set(&spec.name, sink);
    }
    Ok(())
}

/// Returns the bucket and id of the notification config that publishes the trigger's
/// events to `topic`: the previous version's when it has the same settings, or a new one.
fn apply_notification(
    function: &str,
    bucket: &str,
    event_type: EventType,
    topic: &str,
    previous: Option<&Wiring>,
    storage: &Storage,
) -> anyhow::Result<(String, String)> {
    let kept = previous
        .and_then(|previous| previous.notification.clone())
        .filter(|(old_bucket, id)| {
            old_bucket == bucket
                && storage
                    .buckets()
                    .notification_configs(bucket)
                    .is_ok_and(|configs| {
                        configs.iter().any(|stored| {
                            &stored.id == id
                                && stored.topic == topic
                                && stored.event_types == [event_type]
                        })
                    })
        });
    if let Some(kept) = kept {
        return Ok(kept);
    }
    let config = NotificationConfig {
        id: String::new(),
        topic: topic.to_owned(),
        event_types: vec![event_type],
        object_name_prefix: None,
        payload_format: PayloadFormat::JsonApiV1,
        custom_attributes: BTreeMap::new(),
    };
    let stored = storage
        .buckets()
        .insert_notification_config(bucket, config)
        .with_context(|| format!("failed to add a notification config to bucket {bucket:?}"))?;
    info!(function, bucket, id = %stored.id, "notification config added");
    Ok((bucket.to_owned(), stored.id))
}

/// Returns the log sink of an audit-log trigger, or `None` for other triggers.
fn audit_sink(spec: &DeploySpec, topic: &str) -> anyhow::Result<Option<Sink>> {
    let Some(text) = spec.trigger.audit_filter().map_err(anyhow::Error::msg)? else {
        return Ok(None);
    };
    let filter = LogFilter::new(&text)
        .map_err(|err| anyhow::anyhow!("the trigger's filter {text:?} is invalid: {err}"))?;
    Ok(Some(Sink {
        name: topic.to_owned(),
        filter,
        exclusions: Vec::new(),
        destination: topic.to_owned(),
        disabled: false,
    }))
}

/// Creates the function's subscription, or updates it; a subscription of another topic,
/// left by a trigger that changed, is replaced.
async fn apply_subscription(spec: &DeploySpec, topic: &str, broker: &Broker) -> anyhow::Result<()> {
    let name = subscription_name(&spec.name);
    if let Ok(existing) = broker.subscription_spec(&name) {
        if existing.topic != topic {
            broker
                .delete_subscription(&name)
                .await
                .with_context(|| format!("failed to replace subscription {name:?}"))?;
        }
    }
    let mut subscription = SubscriptionSpec::new(&name, topic);
    subscription.ack_deadline_secs = spec
        .timeout_secs
        .clamp(*ACK_DEADLINE_SECS.start(), *ACK_DEADLINE_SECS.end());
    if spec.retry {
        let dead_letter = dead_letter_topic(&spec.name);
        create_topic(broker, &dead_letter).await?;
        // A topic keeps messages only for its subscriptions, so the dead-lettered events
        // wait in a subscription of the same name for `sluice pull`.
        broker
            .create_subscription(SubscriptionSpec::new(&dead_letter, &dead_letter))
            .await
            .with_context(|| format!("failed to create subscription {dead_letter:?}"))?;
        subscription.retry_policy = Some(RETRY_POLICY);
        subscription.dead_letter = Some(DeadLetterPolicy {
            topic: dead_letter,
            max_delivery_attempts: MAX_DELIVERY_ATTEMPTS,
        });
    }
    broker
        .create_subscription(subscription)
        .await
        .with_context(|| format!("failed to create subscription {name:?}"))?;
    Ok(())
}

async fn create_topic(broker: &Broker, topic: &str) -> anyhow::Result<()> {
    broker
        .create_topic(topic)
        .await
        .with_context(|| format!("failed to create topic {topic:?}"))?;
    Ok(())
}

fn remove_notification(storage: &Storage, wiring: &Wiring) {
    let Some((bucket, id)) = &wiring.notification else {
        return;
    };
    match storage.buckets().delete_notification_config(bucket, id) {
        Ok(()) | Err(BucketError::NotificationNotFound { .. }) => {}
        Err(BucketError::BucketNotFound { .. }) => {}
        Err(err) => {
            tracing::warn!(bucket = %bucket, id = %id, error = %err, "failed to delete a function's notification config");
        }
    }
}

/// Removes everything [`apply`] created for `function`, except the dead-letter topic and
/// its subscription, which keep the events that failed for good.
///
/// # Errors
///
/// Fails when the subscription or topic cannot be deleted.
pub(crate) async fn remove(
    function: &str,
    wiring: &Wiring,
    broker: &Broker,
    storage: &Storage,
    router: &RouterSwitch,
) -> anyhow::Result<()> {
    router.set(function, None);
    remove_notification(storage, wiring);
    let subscription = subscription_name(function);
    if broker.subscription_spec(&subscription).is_ok() {
        broker
            .delete_subscription(&subscription)
            .await
            .with_context(|| format!("failed to delete subscription {subscription:?}"))?;
    }
    let generated = generated_topic(function);
    // Another function's --trigger-topic, or a client, may have subscribed to the topic.
    let still_read = broker
        .stats()
        .iter()
        .any(|stats| stats.spec.topic == generated);
    if still_read {
        info!(function, topic = %generated, "kept the function's topic, which other subscriptions read");
    } else if wiring.topic == generated {
        broker
            .delete_topic(&generated)
            .await
            .with_context(|| format!("failed to delete topic {generated:?}"))?;
    }
    Ok(())
}
