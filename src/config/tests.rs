use std::collections::BTreeMap;

use sluice_router::buckets::{EventType, NotificationConfig, PayloadFormat};

use super::*;

mod delivery;
mod handlers;
mod push;
mod triggers;

fn validate_text(text: &str) -> Result<Config, ValidationErrors> {
    let file = parse(text, "test.toml").expect("test config should parse");
    file.validate()
}

fn error_lines(text: &str) -> Vec<String> {
    match validate_text(text) {
        Ok(_) => panic!("config should be invalid:\n{text}"),
        Err(report) => report.errors.iter().map(ToString::to_string).collect(),
    }
}

/// Asserts that validating `text` fails with exactly one error, equal to `expected`.
fn assert_single_error(text: &str, expected: &str) {
    let errors = error_lines(text);
    assert_eq!(errors, [expected], "errors of:\n{text}");
}

#[test]
fn default_config_is_valid() {
    let file = parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME).expect("default config should parse");
    let config = file.validate().expect("default config should validate");

    assert_eq!(
        config.topics,
        [
            "audit-storage",
            "audit-errors",
            "uploads-events",
            "thumbnailer-dead-letter",
            "annotator-dead-letter",
            "offers",
            "offers-accepted",
            "offers-dead-letter"
        ],
        "default topic names"
    );
    assert_eq!(config.subscriptions.len(), 9, "default subscription count");
    for (subscription, name) in config
        .subscriptions
        .iter()
        .zip(["audit-storage", "audit-errors"])
    {
        assert_eq!(subscription.name, name, "subscription name");
        assert_eq!(subscription.topic, name, "subscription {name} topic");
        assert_eq!(
            subscription.ack_deadline_secs, 10,
            "subscription {name} ack deadline"
        );
        assert!(
            subscription.dead_letter.is_none(),
            "subscription {name} has no dead-letter policy"
        );
    }

    let names: Vec<_> = config.sinks.iter().map(|sink| sink.name.as_str()).collect();
    assert_eq!(names, ["storage-audit", "errors"], "default sink names");
    assert_eq!(
        config.sinks[0].destination, "audit-storage",
        "storage-audit destination"
    );
    assert_eq!(
        config.sinks[1].destination, "audit-errors",
        "errors destination"
    );
    assert!(
        config.catch_all_topic.is_none(),
        "default has no catch-all topic"
    );
    assert!(config.warnings.is_empty(), "default has no warnings");
}

#[test]
fn defaults_fill_optional_keys() {
    let config = validate_text(
        r#"
        [[topics]]
        name = "everything"
        [[topics]]
        name = "dead-letters"
        [[subscriptions]]
        name = "plain"
        topic = "everything"
        [[subscriptions]]
        name = "with-dead-letter"
        topic = "everything"
        [subscriptions.dead_letter]
        topic = "dead-letters"
        [[sinks]]
        name = "all"
        destination = "everything"
        [[sinks.exclusions]]
        name = "debug"
        filter = "severity=DEBUG"
        "#,
    )
    .expect("config should validate");
    let sink = &config.sinks[0];
    assert!(!sink.disabled, "sink disabled defaults to false");
    assert_eq!(sink.filter.as_str(), "", "sink filter defaults to empty");
    assert!(
        !sink.exclusions[0].disabled,
        "exclusion disabled defaults to false"
    );

    let plain = &config.subscriptions[0];
    assert_eq!(plain.ack_deadline_secs, 10, "ack deadline defaults to 10");
    assert!(plain.dead_letter.is_none(), "dead letter defaults to none");
    let policy = config.subscriptions[1]
        .dead_letter
        .as_ref()
        .expect("dead-letter table gives a policy");
    assert_eq!(policy.topic, "dead-letters", "dead-letter topic");
    assert_eq!(
        policy.max_delivery_attempts, 5,
        "max delivery attempts defaults to 5"
    );
}

#[test]
fn subscription_settings_kept() {
    let config = validate_text(
        r#"
        [[topics]]
        name = "orders"
        [[topics]]
        name = "orders-dead"
        [[subscriptions]]
        name = "billing"
        topic = "orders"
        ack_deadline_secs = 600
        [subscriptions.dead_letter]
        topic = "orders-dead"
        max_delivery_attempts = 100
        "#,
    )
    .expect("config should validate");
    assert_eq!(
        config.subscriptions,
        [SubscriptionSpec {
            name: "billing".to_owned(),
            topic: "orders".to_owned(),
            ack_deadline_secs: 600,
            dead_letter: Some(sluice_router::store::DeadLetterPolicy {
                topic: "orders-dead".to_owned(),
                max_delivery_attempts: 100,
            }),
            ..SubscriptionSpec::new("billing", "orders")
        }],
        "subscription spec"
    );
}

#[test]
fn four_kinds_reported_in_one_run() {
    let errors = error_lines(
        r#"
        [[topics]]
        name = "audit-storage"
        [[subscriptions]]
        name = "audit-storage"
        topic = "audit-storage"
        ack_deadline_secs = 5
        [[sinks]]
        name = "storage-audit"
        filter = 'resource.type='
        destination = "audit-storage"
        [[sinks]]
        name = "errors"
        filter = "severity>=ERROR"
        destination = "audit-errors"
        disabeld = true
        "#,
    );
    let expected_starts = [
        "sinks[2]: unknown key \"disabeld\" at line 16, column 9: did you mean \"disabled\"?",
        "subscription \"audit-storage\": ack_deadline_secs is 5, outside the valid range of 10 \
         to 600 seconds",
        "sink \"storage-audit\": invalid filter at line 1, column 15",
        "sink \"errors\": destination \"audit-errors\" is not a declared topic; add [[topics]] \
         name = \"audit-errors\"",
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
fn every_error_reported_at_once() {
    let errors = error_lines(
        r#"
        catch_all_topic = " "
        [[topics]]
        name = "topic-a"
        [[sinks]]
        name = "bad-filter"
        filter = 'resource.type='
        destination = "topic-a"
        [[sinks]]
        name = "bad-filter"
        destination = ""
        [[sinks.exclusions]]
        name = "noisy"
        filter = 'severity>=LOUD'
        [[sinks.exclusions]]
        name = "noisy"
        filter = '-- only a comment'
        [[sinks]]
        name = "has space"
        destination = "topic-a"
        [[sinks]]
        destination = "topic-a"
        [[sinks.exclusions]]
        filter = "severity=DEBUG"
        "#,
    );
    let expected_starts = [
        "catch_all_topic: topic name is empty",
        "sink \"bad-filter\": invalid filter at line 1, column 15",
        "sink \"bad-filter\": duplicate name: sink #1 has the same name",
        "sink \"bad-filter\": destination is missing",
        "sink \"bad-filter\": exclusion \"noisy\": invalid filter at line 1, column 11",
        "sink \"bad-filter\": exclusion \"noisy\": duplicate name: exclusion #1",
        "sink \"bad-filter\": exclusion \"noisy\": filter is empty",
        "sink \"has space\": invalid name \"has space\"",
        "sink #4: name is missing",
        "sink #4: exclusion #1: name is missing",
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
fn filter_error_has_caret_line() {
    let errors = error_lines(
        r#"
        [[topics]]
        name = "topic-a"
        [[sinks]]
        name = "s"
        filter = 'resource.type='
        destination = "topic-a"
        "#,
    );
    let lines: Vec<_> = errors[0].lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "message, filter line, caret line: {lines:?}"
    );
    assert_eq!(lines[1], "  resource.type=", "filter line");
    assert_eq!(
        lines[2].trim_end(),
        "                ^",
        "caret under column 15"
    );
}

#[test]
fn long_and_odd_names_rejected() {
    let long = "a".repeat(MAX_NAME_CHARS + 1);
    let text = format!(
        "[[topics]]\nname = \"topic-a\"\n\
         [[sinks]]\nname = \"{long}\"\ndestination = \"topic-a\"\n\
         [[sinks]]\nname = \"caf\u{e9}\"\ndestination = \"topic-a\"\n\
         [[sinks]]\nname = \"{}\"\ndestination = \"topic-a\"\n",
        "a".repeat(MAX_NAME_CHARS)
    );
    let errors = error_lines(&text);
    assert_eq!(
        errors.len(),
        2,
        "only the long and the accented name fail: {errors:#?}"
    );
    assert!(
        errors[0].contains("invalid name"),
        "101 characters: {}",
        errors[0]
    );
    assert!(
        errors[1].contains("invalid name \"café\""),
        "accented: {}",
        errors[1]
    );
}

#[test]
fn filter_warning_collected() {
    let config = validate_text(
        r#"
        [[topics]]
        name = "topic-a"
        [[sinks]]
        name = "s"
        filter = 'resource.type="a" OR "b"'
        destination = "topic-a"
        "#,
    )
    .expect("a warning does not make the config invalid");
    assert_eq!(
        config.warnings.len(),
        1,
        "one warning: {:?}",
        config.warnings
    );
    let warning = config.warnings[0].to_string();
    assert!(
        warning.starts_with("sink \"s\": filter at line 1, column 22: "),
        "warning names sink and position: {warning}"
    );
}

#[test]
fn unknown_key_reports_position() {
    let file = parse(
        "[[topics]]\nname = \"topic-a\"\n[[sinks]]\nname = \"s\"\ndestinaton = \"topic-a\"\n",
        "my.toml",
    )
    .expect("an unknown key does not stop parsing");
    assert_eq!(
        file.unknown_keys,
        [Diagnostic {
            component: "sinks[1]".to_owned(),
            message: "unknown key \"destinaton\" at line 5, column 1: did you mean \
                      \"destination\"?"
                .to_owned(),
        }],
        "unknown key diagnostic"
    );
    let errors = file
        .validate()
        .expect_err("an unknown key makes the config invalid")
        .errors;
    assert_eq!(
        errors[0], file.unknown_keys[0],
        "validate reports the unknown key first"
    );
    assert!(
        errors[1].message.starts_with("destination is missing"),
        "the misspelled key leaves the destination unset: {errors:#?}"
    );
}

#[test]
fn unknown_keys_all_reported() {
    let text = r#"
sink = "x"

[[topics]]
name = "orders"
retention = "7d"

[[topics]]
name = "orders-dead"

[[subscriptions]]
name = "billing"
topic = "orders"
ack_deadline = 20
[subscriptions.dead_letter]
topic = "orders-dead"
max_delivery_attempt = 7

[[sinks]]
name = "a"
destination = "orders"

[[sinks]]
name = "b"
destination = "orders"
[[sinks.exclusions]]
name = "x"
filter = "severity=DEBUG"
filtre = "severity=INFO"
"#;
    let errors = error_lines(text);
    let expected = [
        "top level: unknown key \"sink\" at line 2, column 1: did you mean \"sinks\"?",
        "topics[1]: unknown key \"retention\" at line 6, column 1: the keys of this table \
         are name, message_retention_secs",
        "subscriptions[1]: unknown key \"ack_deadline\" at line 14, column 1: the keys of this \
         table are name, topic, ack_deadline_secs, dead_letter, retry_policy, \
         enable_message_ordering, filter, message_retention_secs, retain_acked_messages, \
         handler, push",
        "subscriptions[1].dead_letter: unknown key \"max_delivery_attempt\" at line 17, \
         column 1: did you mean \"max_delivery_attempts\"?",
        "sinks[2].exclusions[1]: unknown key \"filtre\" at line 29, column 1: did you mean \
         \"filter\"?",
    ];
    for line in expected {
        assert!(
            errors.iter().any(|error| error == line),
            "expected {line:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "no other errors: {errors:#?}");
}

#[test]
fn unknown_key_in_inline_table() {
    let errors = error_lines(
        r#"
        [[topics]]
        name = "orders"
        [[topics]]
        name = "orders-dead"
        [[subscriptions]]
        name = "billing"
        topic = "orders"
        dead_letter = { topic = "orders-dead", attempts = 5 }
        "#,
    );
    assert_eq!(
        errors,
        [
            "subscriptions[1].dead_letter: unknown key \"attempts\" at line 9, column 48: the \
          keys of this table are topic, max_delivery_attempts"
        ],
        "key inside an inline table"
    );
}

#[test]
fn wrong_type_stops_parsing() {
    let err = parse(
        "[[topics]]\nname = \"orders\"\n[[subscriptions]]\nname = \"billing\"\n\
         topic = \"orders\"\nack_deadline_secs = \"ten\"\n",
        "my.toml",
    )
    .expect_err("a string ack deadline should be rejected");
    let message = err.to_string();
    assert!(
        message.starts_with("my.toml: "),
        "names the file: {message}"
    );
    assert!(
        message.contains("line 6, column 21"),
        "gives the position: {message}"
    );
}

#[test]
fn topics_as_single_table_rejected() {
    let err = parse("[topics]\nname = \"orders\"\n", "my.toml")
        .expect_err("topics must be an array of tables");
    let message = err.to_string();
    assert!(message.contains("line 1"), "gives the position: {message}");
    assert!(
        message.contains("expected a sequence"),
        "reports that an array is expected: {message}"
    );
}

#[test]
fn disabled_flags_kept() {
    let config = validate_text(
        r#"
        [[topics]]
        name = "topic-a"
        [[sinks]]
        name = "a"
        destination = "topic-a"
        disabled = true
        [[sinks.exclusions]]
        name = "x"
        filter = "severity=DEBUG"
        disabled = true
        [[sinks]]
        name = "b"
        destination = "topic-a"
        "#,
    )
    .expect("config should validate");
    assert!(config.sinks[0].disabled, "sink a is disabled");
    assert!(
        config.sinks[0].exclusions[0].disabled,
        "exclusion x is disabled"
    );
    assert!(!config.sinks[1].disabled, "sink b is enabled");
}

#[test]
fn multi_line_filter_error_on_last_line() {
    let errors = error_lines(
        "[[topics]]\nname = \"topic-a\"\n\
         [[sinks]]\nname = \"s\"\ndestination = \"topic-a\"\nfilter = '''\nseverity>=ERROR\nAND resource.type=\n'''\n",
    );
    assert!(
        errors[0].starts_with("sink \"s\": invalid filter at line 2, column 19: "),
        "position on the filter's last line: {}",
        errors[0]
    );
    assert!(
        errors[0].contains("\n  AND resource.type=\n"),
        "quotes line 2: {}",
        errors[0]
    );
}

#[test]
fn sink_destination_must_be_declared() {
    assert_single_error(
        r#"
        [[topics]]
        name = "audit-storage"
        [[sinks]]
        name = "errors"
        filter = "severity>=ERROR"
        destination = "audit-errors"
        "#,
        "sink \"errors\": destination \"audit-errors\" is not a declared topic; add [[topics]] \
         name = \"audit-errors\"",
    );
}

#[test]
fn catch_all_topic_must_be_declared() {
    assert_single_error(
        "catch_all_topic = \"unmatched\"\n",
        "catch_all_topic: topic \"unmatched\" is not a declared topic; add [[topics]] name = \
         \"unmatched\"",
    );
    let config =
        validate_text("catch_all_topic = \"unmatched\"\n[[topics]]\nname = \"unmatched\"\n")
            .expect("a declared catch-all topic is valid");
    assert_eq!(
        config.catch_all_topic.as_deref(),
        Some("unmatched"),
        "catch-all topic kept"
    );
}

#[test]
fn project_defaults_to_local() {
    let config = validate_text("").expect("an empty file is valid");
    assert_eq!(config.project, "local", "default project");
    let config = validate_text("project = \"my-project\"\n").expect("a project id is valid");
    assert_eq!(config.project, "my-project", "project kept");
}

#[test]
fn project_must_fit_resource_names() {
    assert_single_error(
        "project = \"\"\n",
        "project: invalid project id \"\": it is empty; clients name resources \
         projects/PROJECT/topics/NAME, so use an id such as \"local\" or \"my-project\"",
    );
    assert_single_error(
        "project = \"a/b\"\n",
        "project: invalid project id \"a/b\": it contains '/'; clients name resources \
         projects/PROJECT/topics/NAME, so use an id such as \"local\" or \"my-project\"",
    );
    let errors = error_lines("project = \"my project\"\n");
    assert_eq!(errors.len(), 1, "one error for a space: {errors:?}");
    assert!(errors[0].contains("it contains ' '"), "{errors:?}");
}

#[test]
fn subscription_topic_must_be_declared() {
    assert_single_error(
        "[[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n",
        "subscription \"billing\": topic \"orders\" is not a declared topic; add [[topics]] \
         name = \"orders\"",
    );
}

#[test]
fn subscription_topic_required() {
    assert_single_error(
        "[[subscriptions]]\nname = \"billing\"\n",
        "subscription \"billing\": topic is missing: set it to the declared topic that the \
         subscription receives from",
    );
}

#[test]
fn dead_letter_topic_must_be_declared() {
    assert_single_error(
        "[[topics]]\nname = \"orders\"\n\
         [[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n\
         [subscriptions.dead_letter]\ntopic = \"orders-dead\"\n",
        "subscription \"billing\": dead_letter.topic \"orders-dead\" is not a declared topic; \
         add [[topics]] name = \"orders-dead\"",
    );
}

#[test]
fn dead_letter_topic_required() {
    let errors = error_lines(
        "[[topics]]\nname = \"orders\"\n\
         [[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n\
         [subscriptions.dead_letter]\nmax_delivery_attempts = 10\n",
    );
    assert_eq!(errors.len(), 1, "one error: {errors:#?}");
    assert!(
        errors[0].starts_with("subscription \"billing\": dead_letter.topic is missing"),
        "missing dead-letter topic: {}",
        errors[0]
    );
}

#[test]
fn dead_letter_to_own_topic_rejected() {
    let errors = error_lines(
        "[[topics]]\nname = \"orders\"\n\
         [[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n\
         [subscriptions.dead_letter]\ntopic = \"orders\"\n",
    );
    assert_eq!(errors.len(), 1, "one error: {errors:#?}");
    assert!(
        errors[0].starts_with(
            "subscription \"billing\": dead_letter.topic \"orders\" is the topic the \
             subscription receives from, so dead-lettered messages would loop"
        ),
        "loop named: {}",
        errors[0]
    );
}

#[test]
fn ack_deadline_range_enforced() {
    for value in ["9", "601", "-1", "4294967306"] {
        let text = format!(
            "[[topics]]\nname = \"orders\"\n\
             [[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n\
             ack_deadline_secs = {value}\n"
        );
        assert_single_error(
            &text,
            &format!(
                "subscription \"billing\": ack_deadline_secs is {value}, outside the valid \
                 range of 10 to 600 seconds"
            ),
        );
    }
    for value in [10, 600] {
        let text = format!(
            "[[topics]]\nname = \"orders\"\n\
             [[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n\
             ack_deadline_secs = {value}\n"
        );
        let config = validate_text(&text).expect("limit is valid");
        assert_eq!(
            config.subscriptions[0].ack_deadline_secs, value,
            "ack deadline {value}"
        );
    }
}

#[test]
fn max_delivery_attempts_range_enforced() {
    let text_with = |value: &str| {
        format!(
            "[[topics]]\nname = \"orders\"\n[[topics]]\nname = \"orders-dead\"\n\
             [[subscriptions]]\nname = \"billing\"\ntopic = \"orders\"\n\
             [subscriptions.dead_letter]\ntopic = \"orders-dead\"\n\
             max_delivery_attempts = {value}\n"
        )
    };
    for value in ["4", "101", "0"] {
        assert_single_error(
            &text_with(value),
            &format!(
                "subscription \"billing\": dead_letter.max_delivery_attempts is {value}, \
                 outside the valid range of 5 to 100"
            ),
        );
    }
    for value in [5, 100] {
        let config = validate_text(&text_with(&value.to_string())).expect("limit is valid");
        let policy = config.subscriptions[0]
            .dead_letter
            .as_ref()
            .expect("policy kept");
        assert_eq!(
            policy.max_delivery_attempts, value,
            "max delivery attempts {value}"
        );
    }
}

#[test]
fn duplicate_topic_and_subscription_names() {
    let errors = error_lines(
        r#"
        [[topics]]
        name = "orders"
        [[topics]]
        name = "orders"
        [[subscriptions]]
        name = "billing"
        topic = "orders"
        [[subscriptions]]
        name = "billing"
        topic = "orders"
        "#,
    );
    assert_eq!(
        errors,
        [
            "topic \"orders\": duplicate name: topic #1 has the same name, and topic names \
             must be unique",
            "subscription \"billing\": duplicate name: subscription #1 has the same name, and \
             subscription names must be unique",
        ],
        "one error per repeated name"
    );
}

#[test]
fn topic_and_subscription_may_share_name() {
    validate_text(
        "[[topics]]\nname = \"orders\"\n[[subscriptions]]\nname = \"orders\"\ntopic = \"orders\"\n",
    )
    .expect("topic and subscription names are separate");
}

#[test]
fn resource_name_rules() {
    let rule = "topic names follow the Pub/Sub rules: 3 to 255 characters from A-Z, a-z, 0-9 \
                and '-', '_', '.', '~', '+', '%', starting with a letter but not with \"goog\"";
    let too_long = format!("a{}", "b".repeat(255));
    let cases = [
        ("ab", "it has 2 characters"),
        (too_long.as_str(), "it has 256 characters"),
        ("1orders", "it does not start with a letter"),
        ("-orders", "it does not start with a letter"),
        ("orders/eu", "it contains '/'"),
        ("ordérs", "it contains 'é'"),
        ("google-orders", "it starts with \"goog\""),
    ];
    for (name, problem) in cases {
        assert_single_error(
            &format!("[[topics]]\nname = \"{name}\"\n"),
            &format!("topic {name:?}: invalid name {name:?}: {problem}, but {rule}"),
        );
    }

    let longest = format!("a{}", "b".repeat(254));
    for name in ["abc", "a-_.~+%9Z", "Goog", "go-og", longest.as_str()] {
        validate_text(&format!("[[topics]]\nname = \"{name}\"\n"))
            .unwrap_or_else(|err| panic!("{name:?} is a valid topic name: {:#?}", err.errors));
    }
}

#[test]
fn subscription_name_rules() {
    assert_single_error(
        "[[topics]]\nname = \"orders\"\n[[subscriptions]]\nname = \"goog-billing\"\ntopic = \"orders\"\n",
        "subscription \"goog-billing\": invalid name \"goog-billing\": it starts with \"goog\", \
         but subscription names follow the Pub/Sub rules: 3 to 255 characters from A-Z, a-z, \
         0-9 and '-', '_', '.', '~', '+', '%', starting with a letter but not with \"goog\"",
    );
}

#[test]
fn missing_topic_and_subscription_names() {
    let errors = error_lines(
        "[[topics]]\nname = \"orders\"\n[[topics]]\n\
         [[subscriptions]]\ntopic = \"orders\"\n",
    );
    assert_eq!(errors.len(), 2, "two errors: {errors:#?}");
    assert!(
        errors[0].starts_with("topic #2: name is missing: every topic needs a name"),
        "unnamed topic: {}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("subscription #1: name is missing: every subscription needs a name"),
        "unnamed subscription: {}",
        errors[1]
    );
}

#[test]
fn default_config_upload_pipeline() {
    let file = parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME).expect("default config should parse");
    let config = file.validate().expect("default config should validate");

    let names: Vec<_> = config.buckets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        ["uploads", "thumbnails", "annotations", "offers-state"],
        "default bucket names"
    );
    let uploads = &config.buckets[0];
    assert!(!uploads.versioning, "uploads is not versioned");
    assert_eq!(
        uploads.notifications,
        [NotificationConfig {
            id: String::new(),
            topic: "uploads-events".to_owned(),
            event_types: Vec::new(),
            object_name_prefix: None,
            payload_format: PayloadFormat::JsonApiV1,
            custom_attributes: BTreeMap::new(),
        }],
        "uploads notifies uploads-events of every event type"
    );
    assert!(
        config.buckets[1].notifications.is_empty(),
        "thumbnails notifies nothing"
    );

    let thumbnailer = config
        .subscriptions
        .iter()
        .find(|subscription| subscription.name == "thumbnailer")
        .expect("the thumbnailer subscription exists");
    assert_eq!(thumbnailer.topic, "uploads-events", "thumbnailer topic");
    let dead_letter = thumbnailer
        .dead_letter
        .as_ref()
        .expect("thumbnailer has a dead-letter policy");
    assert_eq!(dead_letter.topic, "thumbnailer-dead-letter");
    assert_eq!(dead_letter.max_delivery_attempts, 5);
    assert_eq!(
        config.handlers[0],
        SubscriptionHandler {
            subscription: "thumbnailer".to_owned(),
            handler: default_thumbnail("thumbnails"),
        },
        "the first handler is the thumbnailer, with the default settings"
    );
    assert_eq!(
        config.handler("thumbnailer"),
        Some(&default_thumbnail("thumbnails")),
        "handler found by subscription"
    );
    assert_eq!(config.handler("audit-errors"), None, "no other handler");
    assert!(
        config
            .subscriptions
            .iter()
            .any(|subscription| subscription.name == "thumbnailer-dead-letter"),
        "the dead letters can be pulled"
    );
}

/// Returns a thumbnail handler with every setting at its default.
fn default_thumbnail(destination_bucket: &str) -> HandlerSpec {
    HandlerSpec::Thumbnail {
        destination_bucket: destination_bucket.to_owned(),
        name_prefix: String::new(),
        max_width: 256,
        max_height: 256,
        max_pixels: 100_000_000,
        jpeg_quality: 85,
        concurrency: 0,
    }
}

/// Returns a config with topics `events` and `events-dead`, and a subscription
/// `thumbnailer` of `events` with a dead-letter topic and a handler table of `handler_keys`,
/// followed by `rest`.
fn handler_config(handler_keys: &str, rest: &str) -> String {
    format!(
        "[[topics]]\nname = \"events\"\n[[topics]]\nname = \"events-dead\"\n\
         [[subscriptions]]\nname = \"thumbnailer\"\ntopic = \"events\"\n\
         [subscriptions.dead_letter]\ntopic = \"events-dead\"\n\
         [subscriptions.handler]\n{handler_keys}\n{rest}"
    )
}

#[test]
fn bucket_settings_kept() {
    let config = validate_text(
        r#"
        [[topics]]
        name = "photos-events"
        [[buckets]]
        name = "photos"
        versioning = true
        [[buckets.notifications]]
        topic = "photos-events"
        event_types = ["OBJECT_FINALIZE", "OBJECT_DELETE"]
        object_name_prefix = "raw/"
        payload_format = "NONE"
        custom_attributes = { source = "camera", team = "ops" }
        [[buckets.notifications]]
        topic = "photos-events"
        event_types = ["OBJECT_ARCHIVE"]
        [[buckets]]
        name = "plain.example.com"
        "#,
    )
    .expect("config should validate");
    assert_eq!(
        config.buckets,
        [
            BucketSpec {
                name: "photos".to_owned(),
                versioning: true,
                notifications: vec![
                    NotificationConfig {
                        id: String::new(),
                        topic: "photos-events".to_owned(),
                        event_types: vec![EventType::ObjectFinalize, EventType::ObjectDelete],
                        object_name_prefix: Some("raw/".to_owned()),
                        payload_format: PayloadFormat::None,
                        custom_attributes: BTreeMap::from([
                            ("source".to_owned(), "camera".to_owned()),
                            ("team".to_owned(), "ops".to_owned()),
                        ]),
                    },
                    NotificationConfig {
                        id: String::new(),
                        topic: "photos-events".to_owned(),
                        event_types: vec![EventType::ObjectArchive],
                        object_name_prefix: None,
                        payload_format: PayloadFormat::JsonApiV1,
                        custom_attributes: BTreeMap::new(),
                    },
                ],
            },
            BucketSpec {
                name: "plain.example.com".to_owned(),
                versioning: false,
                notifications: Vec::new(),
            },
        ],
        "bucket specs"
    );
    assert!(config.handlers.is_empty(), "no handlers");
}

#[test]
fn bucket_errors_reported_at_once() {
    let errors = error_lines(
        r#"
        [[topics]]
        name = "events"
        [[buckets]]
        name = "Photos"
        [[buckets]]
        [[buckets]]
        name = "media"
        [[buckets]]
        name = "media"
        [[buckets.notifications]]
        topic = "missing"
        [[buckets.notifications]]
        event_types = ["OBJECT_CREATE", "OBJECT_DELETE", "OBJECT_DELETE"]
        payload_format = "JSON"
        custom_attributes = { eventType = "x", "" = "y" }
        [[buckets.notifications]]
        topic = "events"
        event_types = []
        "#,
    );
    let expected = [
        "bucket \"Photos\": invalid name \"Photos\": bucket names may contain only lowercase \
         letters, digits, `-`, `_` and `.`, and this one contains 'P'",
        "bucket #2: name is missing: every bucket needs a name that follows Cloud Storage's \
         rules, such as \"uploads\"",
        "bucket \"media\": duplicate name: bucket #3 has the same name, and bucket names must \
         be unique",
        "bucket \"media\": notification #1: topic \"missing\" is not a declared topic; add \
         [[topics]] name = \"missing\"",
        "bucket \"media\": notification #2: topic is missing: set it to the declared topic \
         that receives the bucket's object changes",
        "bucket \"media\": notification #2: event_types: unknown event type \"OBJECT_CREATE\"; \
         use OBJECT_FINALIZE, OBJECT_METADATA_UPDATE, OBJECT_DELETE or OBJECT_ARCHIVE",
        "bucket \"media\": notification #2: event_types lists OBJECT_DELETE twice: remove one",
        "bucket \"media\": notification #2: payload_format: unknown payload format \"JSON\"; \
         use JSON_API_V1 or NONE",
        "bucket \"media\": notification #2: custom_attributes has an empty key: give every \
         attribute a name",
        "bucket \"media\": notification #2: custom_attributes key \"eventType\" is a standard \
         attribute of notification messages, whose value would replace yours: rename it",
        "bucket \"media\": notification #3: event_types is empty: list the event types to \
         publish, or remove the key to publish every type",
    ];
    for line in expected {
        assert!(
            errors.iter().any(|error| error == line),
            "expected {line:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "no other errors: {errors:#?}");
}

#[test]
fn repeated_notification_rejected() {
    assert_single_error(
        "[[topics]]\nname = \"events\"\n[[buckets]]\nname = \"media\"\n\
         [[buckets.notifications]]\ntopic = \"events\"\n\
         [[buckets.notifications]]\ntopic = \"events\"\npayload_format = \"JSON_API_V1\"\n",
        "bucket \"media\": notification #2: repeats notification #1 of this bucket, so every \
         message would be published twice: remove one of them",
    );
}

#[test]
fn notification_limit_per_event_type() {
    let mut text = String::from("[[buckets]]\nname = \"media\"\n");
    let mut topics = String::new();
    for index in 0..11 {
        topics.push_str(&format!("[[topics]]\nname = \"events-{index}\"\n"));
        text.push_str(&format!(
            "[[buckets.notifications]]\ntopic = \"events-{index}\"\n\
             event_types = [\"OBJECT_FINALIZE\"]\n"
        ));
    }
    assert_single_error(
        &format!("{topics}{text}"),
        "bucket \"media\": 11 notification configs publish OBJECT_FINALIZE, but a bucket can \
         have at most 10 for one event type: remove some or list fewer event_types",
    );
}

#[test]
fn bucket_unknown_keys_reported() {
    let errors = error_lines(
        "[[topics]]\nname = \"events\"\n[[buckets]]\nname = \"media\"\nversioned = true\n\
         [[buckets.notifications]]\ntopic = \"events\"\nprefix = \"a/\"\n",
    );
    let expected = [
        "buckets[1]: unknown key \"versioned\" at line 5, column 1: the keys of this table are \
         name, versioning, notifications",
        "buckets[1].notifications[1]: unknown key \"prefix\" at line 8, column 1: the keys of \
         this table are topic, event_types, object_name_prefix, payload_format, \
         custom_attributes",
    ];
    for line in expected {
        assert!(
            errors.iter().any(|error| error == line),
            "expected {line:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "no other errors: {errors:#?}");
}

#[test]
fn handler_settings_kept() {
    let config = validate_text(&handler_config(
        "kind = \"thumbnail\"\ndestination_bucket = \"small\"\nname_prefix = \"thumbs/\"\n\
         max_width = 65535\nmax_height = 1\nmax_pixels = 1\njpeg_quality = 100\n\
         concurrency = 1024",
        "[[buckets]]\nname = \"small\"\n",
    ))
    .expect("config should validate");
    assert_eq!(
        config.handlers,
        [SubscriptionHandler {
            subscription: "thumbnailer".to_owned(),
            handler: HandlerSpec::Thumbnail {
                destination_bucket: "small".to_owned(),
                name_prefix: "thumbs/".to_owned(),
                max_width: 65535,
                max_height: 1,
                max_pixels: 1,
                jpeg_quality: 100,
                concurrency: 1024,
            },
        }],
        "handler spec"
    );
    assert!(
        config.warnings.is_empty(),
        "no warnings: {:?}",
        config.warnings
    );
}

#[test]
fn handler_defaults_fill_optional_keys() {
    let config = validate_text(&handler_config(
        "kind = \"thumbnail\"\ndestination_bucket = \"small\"",
        "[[buckets]]\nname = \"small\"\n",
    ))
    .expect("config should validate");
    assert_eq!(
        config.handler("thumbnailer"),
        Some(&default_thumbnail("small")),
        "defaults"
    );
}

#[test]
fn handler_ranges_enforced() {
    let errors = error_lines(&handler_config(
        "kind = \"thumbnail\"\ndestination_bucket = \"small\"\nmax_width = 0\n\
         max_height = 65536\nmax_pixels = 0\njpeg_quality = 101\nconcurrency = -1",
        "[[buckets]]\nname = \"small\"\n",
    ));
    assert_eq!(
        errors,
        [
            "subscription \"thumbnailer\": handler.max_width is 0, outside the valid range of \
             1 to 65535 pixels",
            "subscription \"thumbnailer\": handler.max_height is 65536, outside the valid \
             range of 1 to 65535 pixels",
            "subscription \"thumbnailer\": handler.max_pixels is 0, but it must be at least 1",
            "subscription \"thumbnailer\": handler.jpeg_quality is 101, outside the valid range \
             of 1 to 100",
            "subscription \"thumbnailer\": handler.concurrency is -1, outside the valid range \
             of 0 to 1024 (0 means one per CPU)",
        ],
        "one error per setting"
    );
}

#[test]
fn handler_kind_must_be_known() {
    assert_single_error(
        &handler_config("kind = \"resize\"\ndestination_bucket = \"small\"", ""),
        "subscription \"thumbnailer\": unknown handler.kind \"resize\": the known kinds are \
         thumbnail, annotate, offers",
    );
    assert_single_error(
        &handler_config("destination_bucket = \"small\"", ""),
        "subscription \"thumbnailer\": handler.kind is missing: set it to one of the known \
         kinds: thumbnail, annotate, offers",
    );
}

#[test]
fn handler_bucket_must_be_declared() {
    assert_single_error(
        &handler_config("kind = \"thumbnail\"\ndestination_bucket = \"small\"", ""),
        "subscription \"thumbnailer\": handler.destination_bucket \"small\" is not a declared \
         bucket; add [[buckets]] name = \"small\"",
    );
    assert_single_error(
        &handler_config("kind = \"thumbnail\"", ""),
        "subscription \"thumbnailer\": handler.destination_bucket is missing: set it to the \
         declared bucket that receives the thumbnails",
    );
}

#[test]
fn handler_unknown_key_reported() {
    let errors = error_lines(&handler_config(
        "kind = \"thumbnail\"\ndestination_bucket = \"small\"\nquality = 90",
        "[[buckets]]\nname = \"small\"\n",
    ));
    assert_eq!(
        errors,
        [
            "subscriptions[1].handler: unknown key \"quality\" at line 13, column 1: the keys of \
          this table are kind, destination_bucket, name_prefix, max_width, max_height, \
          max_pixels, jpeg_quality, max_colors, state_bucket, accepted_topic, concurrency"
        ],
        "unknown handler key"
    );
}

#[test]
fn thumbnail_overwriting_source_rejected() {
    assert_single_error(
        &handler_config(
            "kind = \"thumbnail\"\ndestination_bucket = \"uploads\"",
            "[[buckets]]\nname = \"uploads\"\n\
             [[buckets.notifications]]\ntopic = \"events\"\n",
        ),
        "subscription \"thumbnailer\": handler.destination_bucket \"uploads\" publishes \
         OBJECT_FINALIZE to this subscription's topic \"events\" and handler.name_prefix is \
         empty, so the thumbnail of an object in \"uploads\" would be written over that \
         object: set handler.name_prefix (for example \"thumbnails/\"), or write thumbnails \
         to a bucket that does not notify \"events\"",
    );
}

#[test]
fn thumbnail_name_prefix_checked() {
    assert_single_error(
        &handler_config(
            "kind = \"thumbnail\"\ndestination_bucket = \"small\"\nname_prefix = \"a\\nb/\"",
            "[[buckets]]\nname = \"small\"\n",
        ),
        "subscription \"thumbnailer\": handler.name_prefix \"a\\nb/\" contains a line break, \
         which object names may not contain: remove it",
    );
    let long = "p".repeat(1024);
    assert_single_error(
        &handler_config(
            &format!(
                "kind = \"thumbnail\"\ndestination_bucket = \"small\"\nname_prefix = \"{long}\""
            ),
            "[[buckets]]\nname = \"small\"\n",
        ),
        "subscription \"thumbnailer\": handler.name_prefix is 1024 bytes long, so no \
         thumbnail name would fit in 1024 bytes: shorten it",
    );
}

#[test]
fn thumbnail_without_loop_allowed() {
    let cases = [
        // Thumbnails go to "thumbs/" in the source bucket. The handler skips its own output,
        // so the notification of each thumbnail ends there.
        (
            "name_prefix = \"thumbs/\"",
            "topic = \"events\"\nobject_name_prefix = \"th\"",
        ),
        // The notification only publishes names under "photos/", and thumbnails go to
        // "thumbs/".
        (
            "name_prefix = \"thumbs/\"",
            "topic = \"events\"\nobject_name_prefix = \"photos/\"",
        ),
        // The notification does not publish OBJECT_FINALIZE.
        ("", "topic = \"events\"\nevent_types = [\"OBJECT_DELETE\"]"),
        // The notification goes to another topic.
        ("", "topic = \"events-dead\""),
    ];
    for (handler_keys, notification_keys) in cases {
        let text = handler_config(
            &format!("kind = \"thumbnail\"\ndestination_bucket = \"uploads\"\n{handler_keys}"),
            &format!(
                "[[buckets]]\nname = \"uploads\"\n[[buckets.notifications]]\n{notification_keys}\n"
            ),
        );
        let config = validate_text(&text)
            .unwrap_or_else(|err| panic!("no loop in:\n{text}\nerrors: {:#?}", err.errors));
        assert_eq!(config.handlers.len(), 1, "handler kept for:\n{text}");
    }
}

#[test]
fn handler_without_dead_letter_warns() {
    let config = validate_text(
        "[[topics]]\nname = \"events\"\n[[buckets]]\nname = \"small\"\n\
         [[subscriptions]]\nname = \"thumbnailer\"\ntopic = \"events\"\n\
         [subscriptions.handler]\nkind = \"thumbnail\"\ndestination_bucket = \"small\"\n",
    )
    .expect("a missing dead-letter table is only a warning");
    assert_eq!(
        config.warnings.len(),
        1,
        "one warning: {:?}",
        config.warnings
    );
    let warning = config.warnings[0].to_string();
    assert!(
        warning.starts_with(
            "subscription \"thumbnailer\": the subscription has a handler but no \
             [subscriptions.dead_letter] table"
        ),
        "warning names the subscription and the table: {warning}"
    );
}

const TOKEN_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000001";

#[test]
fn duplicate_credentials_rejected() {
    let errors = error_lines(&format!(
        r#"
        [[auth.identities]]
        name = "first"
        token_sha256 = "{TOKEN_HASH}"
        client_certificate = "spiffe://sluice/worker"
        [[auth.identities]]
        name = "second"
        token_sha256 = "{TOKEN_HASH}"
        client_certificate = "spiffe://sluice/worker"
        "#
    ));
    assert_eq!(
        errors,
        [
            "identity \"second\": token_sha256 is the same as that of identity \"first\"; give \
             each identity its own token",
            "identity \"second\": client_certificate \"spiffe://sluice/worker\" is also that of \
             identity \"first\"; each certificate identity can belong to one identity only",
        ]
    );
}

#[test]
fn grant_patterns_that_match_nothing_rejected() {
    for pattern in [
        "orders",
        "topic/orders",
        "topics/",
        "Topics/orders",
        "log",
        "projects/local/topics/orders-a",
        "topics/orders-a/",
        "logs/*",
        "topics/Orders A",
    ] {
        let errors = error_lines(&format!(
            r#"
            [[auth.identities]]
            name = "worker"
            token_sha256 = "{TOKEN_HASH}"
            [[auth.identities.grants]]
            actions = ["publish"]
            resources = ["{pattern}"]
            "#
        ));
        assert_eq!(errors.len(), 1, "{pattern}: {errors:#?}");
        assert!(
            errors[0].contains(&format!("resource pattern {pattern:?} matches no resource")),
            "{pattern}: {errors:#?}"
        );
    }
    for pattern in [
        "**",
        "*",
        "topics/orders",
        "topics/*",
        "topics/*/*",
        "topics/**",
        "t*",
        "logs",
        "buckets/?x",
        "*/orders",
        "projects/local",
    ] {
        let config = validate_text(&format!(
            r#"
            [[auth.identities]]
            name = "worker"
            token_sha256 = "{TOKEN_HASH}"
            [[auth.identities.grants]]
            actions = ["publish"]
            resources = ["{pattern}"]
            "#
        ));
        assert!(config.is_ok(), "{pattern}: {:?}", config.err());
    }
}
