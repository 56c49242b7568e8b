//! The `[subscriptions.push]` table: the endpoint that the server POSTs a subscription's
//! messages to.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The request formats, as `format` names them.
pub(crate) const PUSH_FORMATS: [&str; 2] = ["wrapped", "unwrapped"];

/// One `[subscriptions.push]` table.
#[derive(Debug, Deserialize)]
pub(crate) struct PushEndpointConfig {
    /// The http or https URL that receives each message. Required, but defaulted here so
    /// that validation can report it missing with every other problem.
    #[serde(default = "default_endpoint")]
    pub(crate) endpoint: String,
    /// Endpoint attributes, as Pub/Sub's `PushConfig.attributes`.
    #[serde(default = "default_attributes")]
    pub(crate) attributes: BTreeMap<String, String>,
    /// One of [`PUSH_FORMATS`]: Pub/Sub's JSON body, or the message data as the body.
    #[serde(default = "default_format")]
    pub(crate) format: String,
    /// Whether an unwrapped push carries the message metadata and attributes as headers.
    /// `None` when the table does not set it, so that validation can reject it on a wrapped
    /// push.
    #[serde(default = "default_write_metadata")]
    pub(crate) write_metadata: Option<bool>,
}

fn default_endpoint() -> String {
    String::new()
}

fn default_attributes() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn default_format() -> String {
    PUSH_FORMATS[0].to_owned()
}

fn default_write_metadata() -> Option<bool> {
    None
}
