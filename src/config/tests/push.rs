//! The `[subscriptions.push]` table.

use sluice_router::store::{PushConfig, PushFormat};

use super::*;

/// Returns a config with the topic `orders` and the subscription `billing` on it, whose table
/// ends with `[subscriptions.push]` and `keys`.
fn push_with(keys: &str) -> String {
    format!(
        "[[topics]]\nname = \"orders\"\n\
         [[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n\
         [subscriptions.push]\n{keys}"
    )
}

fn push_config(text: &str) -> Option<PushConfig> {
    let config = validate_text(text).expect("config should validate");
    config.subscriptions[0].push.clone()
}

#[test]
fn push_table_kept() {
    let push = push_config(&push_with(
        "endpoint = \"https://example.test/push?token=a\"\n\
         format = \"unwrapped\"\n\
         write_metadata = true\n\
         attributes = { x-goog-version = \"v1\" }\n",
    ));

    assert_eq!(
        push,
        Some(PushConfig {
            endpoint: "https://example.test/push?token=a".to_owned(),
            attributes: BTreeMap::from([("x-goog-version".to_owned(), "v1".to_owned())]),
            format: PushFormat::Unwrapped {
                write_metadata: true
            },
            max_event_age_secs: None,
        })
    );
}

#[test]
fn push_defaults_to_wrapped() {
    let push = push_config(&push_with("endpoint = \"http://127.0.0.1:8080/push\"\n"));

    assert_eq!(
        push,
        Some(PushConfig {
            endpoint: "http://127.0.0.1:8080/push".to_owned(),
            attributes: BTreeMap::new(),
            format: PushFormat::Wrapped,
            max_event_age_secs: None,
        })
    );
}

#[test]
fn unwrapped_push_defaults_to_no_metadata() {
    let push = push_config(&push_with(
        "endpoint = \"http://127.0.0.1:8080/push\"\nformat = \"unwrapped\"\n",
    ));

    assert_eq!(
        push.map(|push| push.format),
        Some(PushFormat::Unwrapped {
            write_metadata: false
        })
    );
}

#[test]
fn subscription_without_push_table_pulls() {
    let config = validate_text(
        "[[topics]]\nname = \"orders\"\n[[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n",
    )
    .expect("config should validate");

    assert_eq!(config.subscriptions[0].push, None);
}

#[test]
fn push_endpoint_must_be_http_url() {
    let cases = [
        ("ftp://example.test/push", "the scheme is \"ftp\""),
        ("example.test/push", "relative URL without a base"),
        ("http://", "empty host"),
        ("file:///tmp/push", "the scheme is \"file\""),
    ];
    for (endpoint, problem) in cases {
        assert_single_error(
            &push_with(&format!("endpoint = \"{endpoint}\"\n")),
            &format!(
                "subscription \"billing\": push.endpoint \"{endpoint}\" is not a valid http or \
                 https URL ({problem}): write an absolute URL such as \
                 \"http://127.0.0.1:8080/push\""
            ),
        );
    }
}

#[test]
fn push_endpoint_missing() {
    assert_single_error(
        &push_with("format = \"wrapped\"\n"),
        "subscription \"billing\": push.endpoint is missing: set it to the http or https URL \
         that receives the messages, such as \"http://127.0.0.1:8080/push\"",
    );
}

#[test]
fn unknown_push_format_rejected() {
    assert_single_error(
        &push_with("endpoint = \"http://127.0.0.1:8080/push\"\nformat = \"raw\"\n"),
        "subscription \"billing\": unknown push.format \"raw\": the known formats are wrapped, \
         unwrapped, background, cloudevent",
    );
}

#[test]
fn write_metadata_needs_unwrapped_format() {
    assert_single_error(
        &push_with("endpoint = \"http://127.0.0.1:8080/push\"\nwrite_metadata = false\n"),
        "subscription \"billing\": push.write_metadata applies to format = \"unwrapped\" only, \
         because a wrapped push carries the metadata in its JSON body: remove it, or set \
         push.format = \"unwrapped\"",
    );
}

#[test]
fn push_and_handler_rejected_together() {
    let text = "[[topics]]\nname = \"uploads\"\n\
                [[buckets]]\nname = \"thumbnails\"\n\
                [[subscriptions]]\nname = \"thumbnailer\"\ntopic = \"uploads\"\n\
                [subscriptions.handler]\nkind = \"thumbnail\"\ndestination_bucket = \"thumbnails\"\n\
                [subscriptions.push]\nendpoint = \"http://127.0.0.1:8080/push\"\n";
    let errors = error_lines(text);

    assert!(
        errors.contains(
            &"subscription \"thumbnailer\": the subscription has both a \
              [subscriptions.handler] and a [subscriptions.push] table, but one consumer takes \
              its messages: remove one of them, or add a second subscription on the same topic"
                .to_owned()
        ),
        "{errors:#?}"
    );
}

#[test]
fn every_push_error_reported_at_once() {
    let errors = error_lines(&push_with(
        "endpoint = \"gopher://example.test\"\nformat = \"binary\"\n",
    ));

    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("push.endpoint \"gopher://example.test\""));
    assert!(errors[1].contains("unknown push.format \"binary\""));
}

#[test]
fn misspelled_push_key_suggested() {
    let errors = error_lines(&push_with(
        "endpoint = \"http://127.0.0.1:8080/push\"\nwrite_metdata = true\n",
    ));

    assert_eq!(
        errors,
        [
            "subscriptions[1].push: unknown key \"write_metdata\" at line 8, column 1: did you \
             mean \"write_metadata\"?"
        ]
    );
}

#[test]
fn event_formats_kept() {
    let cases = [
        ("background", PushFormat::Background),
        ("cloudevent", PushFormat::CloudEvent),
    ];
    for (name, format) in cases {
        let push = push_config(&push_with(&format!(
            "endpoint = \"http://127.0.0.1:8080/\"\nformat = \"{name}\"\n"
        )));

        assert_eq!(push.map(|push| push.format), Some(format), "{name}");
    }
}

#[test]
fn max_event_age_kept() {
    let push = push_config(&push_with(
        "endpoint = \"http://127.0.0.1:8080/\"\nformat = \"cloudevent\"\n\
         max_event_age_secs = 3600\n",
    ));

    assert_eq!(push.and_then(|push| push.max_event_age_secs), Some(3600));
}

#[test]
fn max_event_age_out_of_range_rejected() {
    for age in ["0", "-5", "2678401"] {
        assert_single_error(
            &push_with(&format!(
                "endpoint = \"http://127.0.0.1:8080/\"\nmax_event_age_secs = {age}\n"
            )),
            &format!(
                "subscription \"billing\": push.max_event_age_secs is {age}, outside the valid \
                 range of 1 to 2678400 seconds (31 days, the longest retention): set an age in \
                 that range, or remove the key to push messages of any age"
            ),
        );
    }
}

#[test]
fn write_metadata_rejected_on_event_formats() {
    let cases = [
        (
            "background",
            "a background event carries the metadata in its context",
        ),
        (
            "cloudevent",
            "a CloudEvent carries the metadata in its ce-* headers",
        ),
    ];
    for (format, reason) in cases {
        assert_single_error(
            &push_with(&format!(
                "endpoint = \"http://127.0.0.1:8080/\"\nformat = \"{format}\"\n\
                 write_metadata = true\n"
            )),
            &format!(
                "subscription \"billing\": push.write_metadata applies to format = \
                 \"unwrapped\" only, because {reason}: remove it, or set push.format = \
                 \"unwrapped\""
            ),
        );
    }
}

#[test]
fn push_token_over_plain_http_warned() {
    let token = "[subscriptions.push.oidc_token]\nservice_account_email = \"push@local\"\n";
    let remote = validate_text(&push_with(&format!(
        "endpoint = \"http://functions.internal:8080/\"\n{token}"
    )))
    .expect("config should validate");
    assert_eq!(remote.warnings.len(), 1, "{:?}", remote.warnings);
    let warning = remote.warnings[0].to_string();
    assert!(warning.contains("over plain http"), "{warning}");
    assert!(
        warning.contains("http://functions.internal:8080/"),
        "{warning}"
    );

    for endpoint in [
        "https://functions.internal/",
        "http://127.0.0.1:8080/",
        "http://[::1]:8080/",
        "http://localhost:8080/",
    ] {
        let config = validate_text(&push_with(&format!("endpoint = \"{endpoint}\"\n{token}")))
            .expect("config should validate");
        assert!(
            config.warnings.is_empty(),
            "{endpoint}: {:?}",
            config.warnings
        );
    }
}
