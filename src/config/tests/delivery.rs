//! The delivery settings of a subscription: retry policy, message ordering and filter.

use sluice_router::store::RetryPolicy;

use super::*;

/// Returns a config with the topic `orders` and the subscription `billing` on it, followed
/// by `keys` in the subscription's table.
fn subscription_with(keys: &str) -> String {
    format!(
        "[[topics]]\nname = \"orders\"\n\
         [[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n{keys}"
    )
}

fn billing(text: &str) -> SubscriptionSpec {
    let config = validate_text(text).expect("config should validate");
    config.subscriptions[0].clone()
}

#[test]
fn delivery_settings_kept() {
    let spec = billing(&subscription_with(
        "enable_message_ordering = true\n\
         filter = 'attributes.region = \"eu\"'\n\
         [subscriptions.retry_policy]\n\
         minimum_backoff_secs = 5\n\
         maximum_backoff_secs = 60\n",
    ));

    assert_eq!(
        spec,
        SubscriptionSpec {
            retry_policy: Some(RetryPolicy::from_secs(5, 60)),
            enable_message_ordering: true,
            filter: r#"attributes.region = "eu""#.to_owned(),
            ..SubscriptionSpec::new("billing", "orders")
        }
    );
}

#[test]
fn delivery_settings_default_off() {
    let spec = billing(&subscription_with(""));

    assert_eq!(
        spec.retry_policy, None,
        "no retry policy: immediate redelivery"
    );
    assert!(!spec.enable_message_ordering, "ordering is off");
    assert_eq!(spec.filter, "", "no filter");
}

#[test]
fn empty_retry_policy_table_takes_pubsub_defaults() {
    let spec = billing(&subscription_with("[subscriptions.retry_policy]\n"));

    assert_eq!(spec.retry_policy, Some(RetryPolicy::from_secs(10, 600)));
}

#[test]
fn backoff_range_enforced() {
    for key in ["minimum_backoff_secs", "maximum_backoff_secs"] {
        for value in ["-1", "601", "4294967306"] {
            let text =
                subscription_with(&format!("[subscriptions.retry_policy]\n{key} = {value}\n"));
            assert_single_error(
                &text,
                &format!(
                    "subscription \"billing\": retry_policy.{key} is {value}, outside the \
                     valid range of 0 to 600 seconds"
                ),
            );
        }
    }
    let limits = billing(&subscription_with(
        "[subscriptions.retry_policy]\nminimum_backoff_secs = 0\nmaximum_backoff_secs = 600\n",
    ));
    assert_eq!(
        limits.retry_policy,
        Some(RetryPolicy::from_secs(0, 600)),
        "0 and 600 are valid"
    );
}

#[test]
fn minimum_backoff_above_maximum_rejected() {
    assert_single_error(
        &subscription_with(
            "[subscriptions.retry_policy]\nminimum_backoff_secs = 30\nmaximum_backoff_secs = 20\n",
        ),
        "subscription \"billing\": retry_policy.minimum_backoff_secs is 30, above \
         retry_policy.maximum_backoff_secs of 20: lower the minimum or raise the maximum",
    );
    let equal = billing(&subscription_with(
        "[subscriptions.retry_policy]\nminimum_backoff_secs = 20\nmaximum_backoff_secs = 20\n",
    ));
    assert!(equal.retry_policy.is_some(), "equal bounds are valid");
}

#[test]
fn default_minimum_above_maximum_rejected() {
    let errors = error_lines(&subscription_with(
        "[subscriptions.retry_policy]\nmaximum_backoff_secs = 5\n",
    ));

    assert_eq!(
        errors,
        [
            "subscription \"billing\": retry_policy.minimum_backoff_secs is 10, above \
          retry_policy.maximum_backoff_secs of 5: lower the minimum or raise the maximum"
        ],
        "the default minimum of 10 s counts"
    );
}

#[test]
fn filter_error_reported_with_position() {
    let errors = error_lines(&subscription_with("filter = 'attributes.region = eu'\n"));

    assert_eq!(errors.len(), 1, "one error: {errors:#?}");
    let lines: Vec<&str> = errors[0].lines().collect();
    assert!(
        lines[0].starts_with("subscription \"billing\": invalid filter at line 1, column 21: "),
        "names the subscription and the position: {}",
        lines[0]
    );
    assert_eq!(lines[1], "  attributes.region = eu", "filter line");
    assert_eq!(
        lines[2].trim_end(),
        "                      ^^",
        "caret under column 21"
    );
}

#[test]
fn filter_error_on_second_line() {
    let errors = error_lines(&subscription_with(
        "filter = '''\nattributes:region AND\nhasprefix(attributes.name, \"a\")\n'''\n",
    ));

    assert_eq!(errors.len(), 1, "one error: {errors:#?}");
    assert!(
        errors[0].starts_with("subscription \"billing\": invalid filter at line 2, column 1: "),
        "points into the second line: {}",
        errors[0]
    );
}

#[test]
fn multi_line_filter_kept_without_final_break() {
    let spec = billing(&subscription_with("filter = '''\nattributes:region\n'''\n"));

    assert_eq!(spec.filter, "attributes:region");
}

#[test]
fn filter_too_long_rejected() {
    let long = format!("attributes:{}", "k".repeat(250));
    let errors = error_lines(&subscription_with(&format!("filter = '{long}'\n")));

    assert_eq!(errors.len(), 1, "one error: {errors:#?}");
    assert!(
        errors[0].contains("filter is 261 bytes long, but the maximum is 256 bytes"),
        "{}",
        errors[0]
    );
}

#[test]
fn delivery_errors_reported_together() {
    let text = "[[topics]]\nname = \"orders\"\n\
                [[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n\
                filter = 'attributes.a = \"x\" AND attributes.b = \"y\" OR attributes:c'\n\
                [subscriptions.dead_letter]\ntopic = \"orders-dead\"\n\
                [subscriptions.retry_policy]\nminimum_backoff_secs = 700\n";

    let errors = error_lines(text);

    let expected_starts = [
        "subscription \"billing\": dead_letter.topic \"orders-dead\" is not a declared topic",
        "subscription \"billing\": retry_policy.minimum_backoff_secs is 700",
        "subscription \"billing\": invalid filter at line 1, column",
    ];
    for start in expected_starts {
        assert!(
            errors.iter().any(|error| error.starts_with(start)),
            "expected an error starting with {start:?} in {errors:#?}"
        );
    }
    assert_eq!(
        errors.len(),
        expected_starts.len(),
        "no other errors: {errors:#?}"
    );
}

#[test]
fn unknown_retry_policy_key_lists_keys() {
    let errors = error_lines(&subscription_with(
        "[subscriptions.retry_policy]\nmin_backoff = 5\n",
    ));

    assert_eq!(
        errors,
        [
            "subscriptions[1].retry_policy: unknown key \"min_backoff\" at line 7, column 1: the \
          keys of this table are minimum_backoff_secs, maximum_backoff_secs"
        ]
    );
}

#[test]
fn misspelled_ordering_key_suggested() {
    let errors = error_lines(&subscription_with("enable_message_orderng = true\n"));

    assert_eq!(
        errors,
        [
            "subscriptions[1]: unknown key \"enable_message_orderng\" at line 6, column 1: did \
          you mean \"enable_message_ordering\"?"
        ]
    );
}
