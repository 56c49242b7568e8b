//! Validation of the `[subscriptions.push]` tables.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use sluice_router::store::{PushConfig, PushFormat, MAX_RETENTION_SECS};

use super::Report;
use crate::config::push::{DEFAULT_PUSH_FORMAT, PUSH_FORMATS};
use crate::config::{PushEndpointConfig, PushTokenSpec, SubscriptionConfig};

/// Valid values of `max_event_age_secs`: a message is never older than the longest
/// retention, so a larger age would drop nothing.
const MAX_EVENT_AGE_SECS: RangeInclusive<u64> = 1..=MAX_RETENTION_SECS;

/// Checks the `oidc_token` tables of push subscriptions and returns them by subscription.
pub(super) fn validate_push_tokens(
    subscriptions: &[SubscriptionConfig],
    report: &mut Report,
) -> HashMap<String, PushTokenSpec> {
    let mut tokens = HashMap::new();
    for subscription in subscriptions {
        let Some(token) = subscription
            .push
            .as_ref()
            .and_then(|push| push.oidc_token.as_ref())
        else {
            continue;
        };
        if token.service_account_email.trim().is_empty() {
            report.error(
                &format!("subscription {:?}", subscription.name),
                "push oidc_token has no service_account_email: name the account that the \
                 token's sub and email claims carry",
            );
            continue;
        }
        let endpoint = subscription
            .push
            .as_ref()
            .map_or("", |push| push.endpoint.as_str());
        if sends_in_plaintext(endpoint) {
            report.warning(
                &format!("subscription {:?}", subscription.name),
                format!(
                    "push oidc_token is sent to {endpoint:?} over plain http, so anyone on the \
                     path can read the token and replay it until it expires: use an https \
                     endpoint"
                ),
            );
        }
        tokens.insert(
            subscription.name.clone(),
            PushTokenSpec {
                endpoint: endpoint.to_owned(),
                service_account_email: token.service_account_email.clone(),
                audience: token.audience.clone(),
            },
        );
    }
    tokens
}

/// Returns whether requests to `endpoint` cross a network unencrypted: an http URL whose
/// host is not a loopback address or `localhost`.
fn sends_in_plaintext(endpoint: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(endpoint) else {
        return false;
    };
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    url.scheme() == "http" && !loopback
}

/// Checks the push table of a subscription and returns its runtime form.
pub(super) fn validate_push(
    subscription: &SubscriptionConfig,
    push: &PushEndpointConfig,
    label: &str,
    report: &mut Report,
) -> Option<PushConfig> {
    if subscription.handler.is_some() {
        report.error(
            label,
            "the subscription has both a [subscriptions.handler] and a [subscriptions.push] \
             table, but one consumer takes its messages: remove one of them, or add a second \
             subscription on the same topic",
        );
    }
    validate_push_table(push, DEFAULT_PUSH_FORMAT, label, report)
}

/// Checks a push table and returns its runtime form. `default_format`, one of
/// [`PUSH_FORMATS`], applies when the table sets no `format`. Every problem is recorded under
/// `label`.
pub(super) fn validate_push_table(
    push: &PushEndpointConfig,
    default_format: &str,
    label: &str,
    report: &mut Report,
) -> Option<PushConfig> {
    let endpoint = check_endpoint(&push.endpoint, label, report);
    let format_name = push.format.as_deref().unwrap_or(default_format);
    let format = check_format(format_name, push.write_metadata, label, report);
    let max_event_age_secs = match push.max_event_age_secs {
        Some(secs) => Some(check_max_event_age(secs, label, report)?),
        None => None,
    };
    Some(PushConfig {
        endpoint: endpoint?,
        attributes: push.attributes.clone(),
        format: format?,
        max_event_age_secs,
    })
}

/// Returns the format that `format` names, and records an error for an unknown name or for
/// `write_metadata` on a format other than `unwrapped`.
fn check_format(
    format: &str,
    write_metadata: Option<bool>,
    label: &str,
    report: &mut Report,
) -> Option<PushFormat> {
    // Why each format other than unwrapped has no use for write_metadata.
    let metadata_place = match format {
        "wrapped" => "a wrapped push carries the metadata in its JSON body",
        "background" => "a background event carries the metadata in its context",
        "cloudevent" => "a CloudEvent carries the metadata in its ce-* headers",
        _ => "",
    };
    if write_metadata.is_some() && !metadata_place.is_empty() {
        report.error(
            label,
            format!(
                "push.write_metadata applies to format = \"unwrapped\" only, because \
                 {metadata_place}: remove it, or set push.format = \"unwrapped\""
            ),
        );
    }
    match format {
        "wrapped" => Some(PushFormat::Wrapped),
        "unwrapped" => Some(PushFormat::Unwrapped {
            write_metadata: write_metadata.unwrap_or(false),
        }),
        "background" => Some(PushFormat::Background),
        "cloudevent" => Some(PushFormat::CloudEvent),
        format => {
            report.error(
                label,
                format!(
                    "unknown push.format {format:?}: the known formats are {}",
                    PUSH_FORMATS.join(", ")
                ),
            );
            None
        }
    }
}

/// Returns `secs` when it lies in [`MAX_EVENT_AGE_SECS`], and records an error naming the
/// value otherwise.
fn check_max_event_age(secs: i64, label: &str, report: &mut Report) -> Option<u64> {
    if let Ok(valid) = u64::try_from(secs) {
        if MAX_EVENT_AGE_SECS.contains(&valid) {
            return Some(valid);
        }
    }
    report.error(
        label,
        format!(
            "push.max_event_age_secs is {secs}, outside the valid range of {} to {} seconds \
             (31 days, the longest retention): set an age in that range, or remove the key \
             to push messages of any age",
            MAX_EVENT_AGE_SECS.start(),
            MAX_EVENT_AGE_SECS.end()
        ),
    );
    None
}

/// Returns `endpoint` when it is an absolute http or https URL with a host, and records an
/// error naming the value otherwise.
fn check_endpoint(endpoint: &str, label: &str, report: &mut Report) -> Option<String> {
    if endpoint.trim().is_empty() {
        report.error(
            label,
            "push.endpoint is missing: set it to the http or https URL that receives the \
             messages, such as \"http://127.0.0.1:8080/push\"",
        );
        return None;
    }
    let problem = match reqwest::Url::parse(endpoint) {
        Err(err) => err.to_string(),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            format!("the scheme is {:?}", url.scheme())
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => "it has no host".to_owned(),
        Ok(_) => return Some(endpoint.to_owned()),
    };
    report.error(
        label,
        format!(
            "push.endpoint {endpoint:?} is not a valid http or https URL ({problem}): write \
             an absolute URL such as \"http://127.0.0.1:8080/push\""
        ),
    );
    None
}
