//! Validation of the `[subscriptions.push]` tables.

use sluice_router::store::{PushConfig, PushFormat};

use super::Report;
use crate::config::push::PUSH_FORMATS;
use crate::config::{PushEndpointConfig, SubscriptionConfig};

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
    let endpoint = check_endpoint(&push.endpoint, label, report);
    let format = match push.format.as_str() {
        "wrapped" => {
            if push.write_metadata.is_some() {
                report.error(
                    label,
                    "push.write_metadata applies to format = \"unwrapped\" only, because a \
                     wrapped push carries the metadata in its JSON body: remove it, or set \
                     push.format = \"unwrapped\"",
                );
            }
            Some(PushFormat::Wrapped)
        }
        "unwrapped" => Some(PushFormat::Unwrapped {
            write_metadata: push.write_metadata.unwrap_or(false),
        }),
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
    };
    Some(PushConfig {
        endpoint: endpoint?,
        attributes: push.attributes.clone(),
        format: format?,
    })
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
