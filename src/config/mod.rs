//! The sluice configuration file, loaded in two steps.
//!
//! [`ConfigFile`] and the structs under it mirror the TOML text: serde rejects values of the
//! wrong type there and fills in defaults, and [`parse`] records every key that the schema
//! does not know. [`ConfigFile::validate`] then builds the runtime [`Config`], compiling every
//! filter and checking that every topic a subscription, sink or bucket notification names is
//! declared, and every bucket a handler names. It collects every problem it finds, unknown
//! keys included, each prefixed by the topic, subscription, sink, exclusion or bucket at
//! fault, so that one run reports them all.
//!
//! The tables of buckets are in [`buckets`], the handler table of a subscription in
//! [`handler`], its push table in [`push`] and the tables of triggers in [`triggers`].
//! Validation expands each trigger into the topic, subscription, sink or bucket
//! notification that carries its events.

mod buckets;
mod handler;
mod push;
pub(crate) mod security;
mod store;
pub(crate) mod triggers;
mod unknown_keys;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;
use sluice_router::filter::{FilterError, Position, Warning};
use sluice_router::route::Sink;
use sluice_router::store::{
    SubscriptionSpec, TopicSettings, DEFAULT_RETENTION_SECS, MAX_RETENTION_SECS, MIN_RETENTION_SECS,
};

pub(crate) use buckets::{BucketConfig, BucketNotificationConfig, BucketSpec};
pub(crate) use handler::{HandlerConfig, HandlerSpec, SubscriptionHandler};
pub(crate) use push::{OidcTokenConfig, PushEndpointConfig, PushTokenSpec};
pub(crate) use security::{
    AuthConfig, GrantConfig, IdentityConfig, LimitsConfig, LimitsSpec, SecuritySpec, TlsConfig,
};
pub(crate) use store::{StoreConfig, StoreSpec};
pub(crate) use triggers::{TriggerConfig, TriggerSpec};

/// The default configuration, `config/default.toml`, built into the binary.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

/// The name under which messages about [`DEFAULT_CONFIG`] refer to it.
pub(crate) const DEFAULT_CONFIG_NAME: &str = "<built-in config/default.toml>";

/// The project of the configuration when the file sets none, as in Google's emulator
/// examples.
pub(crate) const DEFAULT_PROJECT: &str = "local";

/// Maximum length of a sink or exclusion name, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 100;

// The limits and defaults below are Pub/Sub's, from the field docs of `google.pubsub.v1`
// `Topic.name`, `Subscription.ack_deadline_seconds` and `DeadLetterPolicy`.

/// Valid lengths of a topic or subscription name, in characters.
const RESOURCE_NAME_CHARS: RangeInclusive<usize> = 3..=255;

/// Valid subscription ack deadlines, in seconds.
const ACK_DEADLINE_SECS: RangeInclusive<u32> = 10..=600;

/// Ack deadline of a subscription that does not set one, in seconds.
const DEFAULT_ACK_DEADLINE_SECS: i64 = 10;

/// Valid message retention of topics and subscriptions, in seconds: 10 minutes to 31 days.
const RETENTION_SECS: RangeInclusive<u64> = MIN_RETENTION_SECS..=MAX_RETENTION_SECS;

/// Valid dead-letter delivery attempt limits.
const MAX_DELIVERY_ATTEMPTS: RangeInclusive<u32> = 5..=100;

/// Delivery attempt limit of a dead-letter table that does not set one.
const DEFAULT_MAX_DELIVERY_ATTEMPTS: i64 = 5;

// The retry policy's bounds and defaults are Pub/Sub's, from the field docs of
// `google.pubsub.v1.RetryPolicy`.

/// Valid retry backoffs, minimum and maximum, in seconds.
const BACKOFF_SECS: RangeInclusive<u32> = 0..=600;

/// Minimum backoff of a retry policy table that does not set one, in seconds.
const DEFAULT_MINIMUM_BACKOFF_SECS: i64 = 10;

/// Maximum backoff of a retry policy table that does not set one, in seconds.
const DEFAULT_MAXIMUM_BACKOFF_SECS: i64 = 600;

/// The configuration file as written.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfigFile {
    /// The Pub/Sub project id that the declared topics and subscriptions live in, so that
    /// clients address them as `projects/{project}/topics/NAME`.
    #[serde(default = "default_project")]
    pub(crate) project: String,
    /// Topic for entries that no enabled sink routed. Without it they are dropped.
    #[serde(default = "default_catch_all_topic")]
    pub(crate) catch_all_topic: Option<String>,
    /// Topics, in file order.
    #[serde(default = "default_topics")]
    pub(crate) topics: Vec<TopicConfig>,
    /// Pull subscriptions, in file order.
    #[serde(default = "default_subscriptions")]
    pub(crate) subscriptions: Vec<SubscriptionConfig>,
    /// Log sinks, in file order.
    #[serde(default = "default_sinks")]
    pub(crate) sinks: Vec<SinkConfig>,
    /// Buckets, in file order.
    #[serde(default = "default_buckets")]
    pub(crate) buckets: Vec<BucketConfig>,
    /// Eventarc-style triggers, in file order.
    #[serde(default = "default_triggers")]
    pub(crate) triggers: Vec<TriggerConfig>,
    /// Where topics, subscriptions and messages live.
    #[serde(default)]
    pub(crate) store: StoreConfig,
    /// TLS on the listener; plaintext without the table.
    #[serde(default)]
    pub(crate) tls: Option<TlsConfig>,
    /// Identities and their grants; see [`security`] for when authentication is on.
    #[serde(default)]
    pub(crate) auth: Option<AuthConfig>,
    /// Size and rate limits of requests.
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    /// One error per key that the schema does not know, filled in by [`parse`].
    /// [`ConfigFile::validate`] reports them with its own errors.
    #[serde(skip)]
    pub(crate) unknown_keys: Vec<Diagnostic>,
}

/// One `[[topics]]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TopicConfig {
    /// Unique topic name. Required, but defaulted here so that validation can report a
    /// missing name together with every other problem.
    #[serde(default = "default_name")]
    pub(crate) name: String,
    /// Seconds the topic keeps every message, acknowledged or not, so that subscriptions can
    /// seek back over them. Unset keeps messages only while a subscription needs them.
    #[serde(default)]
    pub(crate) message_retention_secs: Option<i64>,
}

/// One `[[subscriptions]]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SubscriptionConfig {
    /// Unique subscription name. Required, defaulted like the topic name.
    #[serde(default = "default_name")]
    pub(crate) name: String,
    /// Declared topic that the subscription receives from. Required, defaulted like `name`.
    #[serde(default = "default_topic")]
    pub(crate) topic: String,
    /// Seconds a consumer has to acknowledge a delivery. The type is wider than the runtime
    /// `u32` so that validation, not parsing, reports a negative value with the other
    /// problems.
    #[serde(default = "default_ack_deadline_secs")]
    pub(crate) ack_deadline_secs: i64,
    #[serde(default = "default_dead_letter")]
    pub(crate) dead_letter: Option<DeadLetterConfig>,
    /// Redelivery backoff. Without the table, a nacked or expired message is delivered again
    /// at once.
    #[serde(default = "default_retry_policy")]
    pub(crate) retry_policy: Option<RetryPolicyConfig>,
    /// Delivers the messages of each non-empty ordering key in publish order, one at a time.
    #[serde(default = "default_enable_message_ordering")]
    pub(crate) enable_message_ordering: bool,
    /// Pub/Sub filter on message attributes. Empty passes every message.
    #[serde(default = "default_subscription_filter")]
    pub(crate) filter: String,
    /// Seconds an unacknowledged message stays in the subscription before it expires.
    #[serde(default = "default_message_retention_secs")]
    pub(crate) message_retention_secs: i64,
    /// Keeps acknowledged messages for `message_retention_secs`, for seeking back.
    #[serde(default)]
    pub(crate) retain_acked_messages: bool,
    /// A built-in handler that consumes the subscription's messages inside the server.
    #[serde(default = "default_handler")]
    pub(crate) handler: Option<HandlerConfig>,
    /// An endpoint that the server POSTs the subscription's messages to.
    #[serde(default = "default_push")]
    pub(crate) push: Option<PushEndpointConfig>,
}

/// One `[subscriptions.dead_letter]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DeadLetterConfig {
    /// Declared topic that receives messages after too many failed deliveries. Required,
    /// defaulted like a subscription's topic.
    #[serde(default = "default_topic")]
    pub(crate) topic: String,
    /// Deliveries before a message is dead-lettered. The type is `i64` for the same reason as
    /// `ack_deadline_secs`.
    #[serde(default = "default_max_delivery_attempts")]
    pub(crate) max_delivery_attempts: i64,
}

/// One `[subscriptions.retry_policy]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RetryPolicyConfig {
    /// Delay before the first redelivery, in seconds. `i64` for the same reason as
    /// `ack_deadline_secs`.
    #[serde(default = "default_minimum_backoff_secs")]
    pub(crate) minimum_backoff_secs: i64,
    /// Maximum delay between redeliveries, in seconds.
    #[serde(default = "default_maximum_backoff_secs")]
    pub(crate) maximum_backoff_secs: i64,
}

/// One `[[sinks]]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SinkConfig {
    /// Unique sink name. Required, but defaulted here so that validation can report a
    /// missing name together with every other problem.
    #[serde(default = "default_name")]
    pub(crate) name: String,
    /// Inclusion filter in the Logging query language. Empty matches every entry.
    #[serde(default = "default_sink_filter")]
    pub(crate) filter: String,
    /// Declared topic that receives matching entries. Required, defaulted like `name`.
    #[serde(default = "default_destination")]
    pub(crate) destination: String,
    #[serde(default = "default_disabled")]
    pub(crate) disabled: bool,
    #[serde(default = "default_exclusions")]
    pub(crate) exclusions: Vec<ExclusionConfig>,
}

/// One `[[sinks.exclusions]]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ExclusionConfig {
    /// Name, unique within the sink.
    #[serde(default = "default_name")]
    pub(crate) name: String,
    /// Entries that match this filter are not routed by the sink. Must not be empty.
    #[serde(default = "default_exclusion_filter")]
    pub(crate) filter: String,
    #[serde(default = "default_disabled")]
    pub(crate) disabled: bool,
}

fn default_project() -> String {
    DEFAULT_PROJECT.to_owned()
}

fn default_catch_all_topic() -> Option<String> {
    None
}

fn default_topics() -> Vec<TopicConfig> {
    Vec::new()
}

fn default_subscriptions() -> Vec<SubscriptionConfig> {
    Vec::new()
}

fn default_sinks() -> Vec<SinkConfig> {
    Vec::new()
}

fn default_buckets() -> Vec<BucketConfig> {
    Vec::new()
}

fn default_triggers() -> Vec<TriggerConfig> {
    Vec::new()
}

fn default_name() -> String {
    String::new()
}

fn default_topic() -> String {
    String::new()
}

fn default_ack_deadline_secs() -> i64 {
    DEFAULT_ACK_DEADLINE_SECS
}

fn default_dead_letter() -> Option<DeadLetterConfig> {
    None
}

fn default_handler() -> Option<HandlerConfig> {
    None
}

fn default_push() -> Option<PushEndpointConfig> {
    None
}

fn default_retry_policy() -> Option<RetryPolicyConfig> {
    None
}

fn default_enable_message_ordering() -> bool {
    false
}

fn default_subscription_filter() -> String {
    String::new()
}

fn default_message_retention_secs() -> i64 {
    DEFAULT_RETENTION_SECS as i64
}

fn default_minimum_backoff_secs() -> i64 {
    DEFAULT_MINIMUM_BACKOFF_SECS
}

fn default_maximum_backoff_secs() -> i64 {
    DEFAULT_MAXIMUM_BACKOFF_SECS
}

fn default_max_delivery_attempts() -> i64 {
    DEFAULT_MAX_DELIVERY_ATTEMPTS
}

fn default_sink_filter() -> String {
    String::new()
}

fn default_destination() -> String {
    String::new()
}

fn default_disabled() -> bool {
    false
}

fn default_exclusions() -> Vec<ExclusionConfig> {
    Vec::new()
}

fn default_exclusion_filter() -> String {
    String::new()
}

/// A validated configuration, with every filter compiled and every topic reference
/// resolved.
#[derive(Debug)]
pub(crate) struct Config {
    /// The project id of the declared topics and subscriptions.
    pub(crate) project: String,
    /// Declared topic names, in file order.
    pub(crate) topics: Vec<String>,
    /// The settings of each declared topic, by name.
    pub(crate) topic_settings: HashMap<String, TopicSettings>,
    /// Subscriptions, in file order.
    pub(crate) subscriptions: Vec<SubscriptionSpec>,
    /// Sinks in file order, disabled ones included.
    pub(crate) sinks: Vec<Sink>,
    #[allow(
        dead_code,
        reason = "the server passes it to LogRouter::new, and `rules check` does not print it"
    )]
    pub(crate) catch_all_topic: Option<String>,
    /// Buckets, in file order.
    pub(crate) buckets: Vec<BucketSpec>,
    /// The subscriptions that have a built-in handler, in file order.
    pub(crate) handlers: Vec<SubscriptionHandler>,
    /// Triggers in file order, with the resources each one added to the lists above.
    pub(crate) triggers: Vec<TriggerSpec>,
    /// The store the server opens.
    pub(crate) store: StoreSpec,
    /// TLS, authentication and limits.
    pub(crate) security: SecuritySpec,
    /// The push subscriptions that sign their requests, by subscription name.
    pub(crate) push_tokens: HashMap<String, PushTokenSpec>,
    /// Settings that are valid but probably not what their author meant.
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Config {
    /// Returns the handler of a subscription, or `None` when its messages are left to pull
    /// clients.
    #[cfg(test)]
    pub(crate) fn handler(&self, subscription: &str) -> Option<&HandlerSpec> {
        self.handlers
            .iter()
            .find(|handler| handler.subscription == subscription)
            .map(|handler| &handler.handler)
    }
}

/// One problem in the configuration, with the component at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diagnostic {
    /// The component, such as `sink "errors"`, `sink "errors": exclusion "noisy"` or, for an
    /// unknown key, the table path `sinks[2]`.
    pub(crate) component: String,
    /// Description of the problem and its fix. A filter error spans three lines: the
    /// message, the filter line and a caret under the column.
    pub(crate) message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.component, self.message)
    }
}

/// Every error that [`ConfigFile::validate`] found, and the warnings it collected so far.
#[derive(Debug)]
pub(crate) struct ValidationErrors {
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

/// Reads and parses the configuration file at `path`.
///
/// # Errors
///
/// Fails when the file cannot be read, or when its TOML is invalid or has a value of the
/// wrong type. The message names the file and gives the line and column of a TOML error.
pub(crate) fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read config file {}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses configuration text. `source` names the file in error messages.
///
/// Unknown keys do not fail parsing: they are stored in [`ConfigFile::unknown_keys`], so that
/// [`ConfigFile::validate`] reports all of them with every other problem.
///
/// # Errors
///
/// Fails on invalid TOML and values of the wrong type, with the line and column.
pub(crate) fn parse(text: &str, source: &str) -> anyhow::Result<ConfigFile> {
    let with_source =
        |err: toml::de::Error| anyhow::anyhow!("{source}: {}", err.to_string().trim_end());
    let deserializer = toml::Deserializer::parse(text).map_err(with_source)?;
    let mut unknown_paths = Vec::new();
    let mut file: ConfigFile = serde_ignored::deserialize(deserializer, |path| {
        unknown_paths.push(unknown_keys::segments(&path));
    })
    .map_err(with_source)?;
    file.unknown_keys = unknown_keys::diagnose(text, &unknown_paths);
    Ok(file)
}

/// Renders a filter warning like [`FilterError::render`]: the message with its position,
/// then the filter line and a caret under the column.
pub(crate) fn render_warning(warning: &Warning, text: &str) -> String {
    let position = Position::of_offset(text, warning.offset);
    // FilterError::render draws the same caret layout, so reuse it for the last two lines.
    let caret = FilterError::at(text, warning.offset, "", "").render(text);
    let (_, context) = caret.split_once('\n').unwrap_or(("", ""));
    format!(
        "filter at line {}, column {}: {}\n{context}",
        position.line, position.column, warning.message
    )
}

#[cfg(test)]
mod tests;
