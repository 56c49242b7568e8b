//! The `[subscriptions.push]` table: the endpoint that the server POSTs a subscription's
//! messages to.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The request formats, as `format` names them: Pub/Sub's JSON body, the message data as the
/// body, the legacy background event of Cloud Functions, and a binary-mode CloudEvent.
pub(crate) const PUSH_FORMATS: [&str; 4] = ["wrapped", "unwrapped", "background", "cloudevent"];

/// The format of a subscription's push table that sets none, as in Pub/Sub.
pub(crate) const DEFAULT_PUSH_FORMAT: &str = "wrapped";

/// One `[subscriptions.push]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PushEndpointConfig {
    /// The http or https URL that receives each message. Required, but defaulted here so
    /// that validation can report it missing with every other problem.
    #[serde(default = "default_endpoint")]
    pub(crate) endpoint: String,
    /// Endpoint attributes, as Pub/Sub's `PushConfig.attributes`.
    #[serde(default = "default_attributes")]
    pub(crate) attributes: BTreeMap<String, String>,
    /// One of [`PUSH_FORMATS`]. `None` when the table does not set it, so that the validation
    /// of a subscription can apply [`DEFAULT_PUSH_FORMAT`] and other tables that embed this
    /// one their own default.
    #[serde(default = "default_format")]
    pub(crate) format: Option<String>,
    /// Whether an unwrapped push carries the message metadata and attributes as headers.
    /// `None` when the table does not set it, so that validation can reject it with the
    /// other formats.
    #[serde(default = "default_write_metadata")]
    pub(crate) write_metadata: Option<bool>,
    /// Messages published longer ago than this are acknowledged without a request, counted
    /// and logged. `None` pushes messages of any age.
    /// Signed, so that validation can report a negative value with the valid range.
    #[serde(default = "default_max_event_age_secs")]
    pub(crate) max_event_age_secs: Option<i64>,
    /// Signs each request with an OIDC-style token, as Pub/Sub's authenticated push does.
    #[serde(default)]
    pub(crate) oidc_token: Option<OidcTokenConfig>,
}

/// One `[subscriptions.push.oidc_token]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OidcTokenConfig {
    /// The push service account, the token's `sub` and `email` claims. Required.
    #[serde(default)]
    pub(crate) service_account_email: String,
    /// The token's `aud` claim; the endpoint URL when unset, as in Pub/Sub.
    #[serde(default)]
    pub(crate) audience: Option<String>,
}

/// The validated token settings of one push subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushTokenSpec {
    /// The endpoint of the configuration file. Requests to any other endpoint, after an
    /// API call changed it, go unsigned.
    pub(crate) endpoint: String,
    pub(crate) service_account_email: String,
    /// `None` uses the endpoint URL.
    pub(crate) audience: Option<String>,
}

fn default_endpoint() -> String {
    String::new()
}

fn default_attributes() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn default_format() -> Option<String> {
    None
}

fn default_write_metadata() -> Option<bool> {
    None
}

fn default_max_event_age_secs() -> Option<i64> {
    None
}
