//! The annotate and offers kinds of `[subscriptions.handler]`, and the keys each kind takes.

use super::*;

/// Returns a config with the topics `events`, `events-dead` and `accepted`, the buckets
/// `small` and `state`, and a subscription `worker` of `events` with a dead-letter topic and a
/// handler table of `handler_keys`, followed by `rest`.
fn kind_config(handler_keys: &str, rest: &str) -> String {
    format!(
        "[[topics]]\nname = \"events\"\n[[topics]]\nname = \"events-dead\"\n\
         [[topics]]\nname = \"accepted\"\n\
         [[buckets]]\nname = \"small\"\n[[buckets]]\nname = \"state\"\n\
         [[subscriptions]]\nname = \"worker\"\ntopic = \"events\"\n\
         [subscriptions.dead_letter]\ntopic = \"events-dead\"\n\
         [subscriptions.handler]\n{handler_keys}\n{rest}"
    )
}

fn handler_of(text: &str) -> HandlerSpec {
    let config = validate_text(text)
        .unwrap_or_else(|err| panic!("config should validate:\n{text}\n{:#?}", err.errors));
    config.handler("worker").cloned().expect("worker handler")
}

#[test]
fn annotate_defaults_fill_optional_keys() {
    let handler = handler_of(&kind_config(
        "kind = \"annotate\"\ndestination_bucket = \"small\"",
        "",
    ));

    assert_eq!(
        handler,
        HandlerSpec::Annotate {
            destination_bucket: "small".to_owned(),
            name_prefix: String::new(),
            max_pixels: 100_000_000,
            max_colors: 10,
            concurrency: 0,
        }
    );
}

#[test]
fn annotate_settings_kept() {
    let handler = handler_of(&kind_config(
        "kind = \"annotate\"\ndestination_bucket = \"small\"\nname_prefix = \"json/\"\n\
         max_pixels = 5\nmax_colors = 64\nconcurrency = 3",
        "",
    ));

    assert_eq!(
        handler,
        HandlerSpec::Annotate {
            destination_bucket: "small".to_owned(),
            name_prefix: "json/".to_owned(),
            max_pixels: 5,
            max_colors: 64,
            concurrency: 3,
        }
    );
}

#[test]
fn annotate_ranges_and_keys_checked() {
    let errors = error_lines(&kind_config(
        "kind = \"annotate\"\ndestination_bucket = \"small\"\nmax_colors = 0\n\
         max_pixels = -1\njpeg_quality = 90",
        "",
    ));

    assert_eq!(
        errors,
        [
            "subscription \"worker\": handler.jpeg_quality does not apply to kind \
             \"annotate\", whose keys are destination_bucket, name_prefix, max_pixels, \
             max_colors, concurrency: remove it",
            "subscription \"worker\": handler.max_pixels is -1, but it must be at least 1",
            "subscription \"worker\": handler.max_colors is 0, outside the valid range of 1 to \
             64 colours",
        ]
    );
}

#[test]
fn annotate_destination_required() {
    assert_single_error(
        &kind_config("kind = \"annotate\"", ""),
        "subscription \"worker\": handler.destination_bucket is missing: set it to the \
         declared bucket that receives the annotations",
    );
    assert_single_error(
        &kind_config("kind = \"annotate\"\ndestination_bucket = \"big\"", ""),
        "subscription \"worker\": handler.destination_bucket \"big\" is not a declared \
         bucket; add [[buckets]] name = \"big\"",
    );
}

#[test]
fn annotate_into_own_source_needs_prefix() {
    let notify = "[[buckets.notifications]]\ntopic = \"events\"\n";
    let text = format!(
        "[[topics]]\nname = \"events\"\n[[topics]]\nname = \"events-dead\"\n\
         [[buckets]]\nname = \"uploads\"\n{notify}\
         [[subscriptions]]\nname = \"worker\"\ntopic = \"events\"\n\
         [subscriptions.dead_letter]\ntopic = \"events-dead\"\n\
         [subscriptions.handler]\nkind = \"annotate\"\ndestination_bucket = \"uploads\"\n"
    );

    assert_single_error(
        &text,
        "subscription \"worker\": handler.destination_bucket \"uploads\" publishes \
         OBJECT_FINALIZE to this subscription's topic \"events\" and handler.name_prefix is \
         empty, so annotations would be written among the objects of \"uploads\" that they \
         describe, and the handler rejects such events: set handler.name_prefix (for example \
         \"annotations/\"), or write annotations to a bucket that does not notify \"events\"",
    );
    let prefixed = format!("{text}name_prefix = \"annotations/\"\n");
    assert!(validate_text(&prefixed).is_ok(), "a prefix avoids the loop");
}

#[test]
fn offers_settings_kept() {
    let handler = handler_of(&kind_config(
        "kind = \"offers\"\nstate_bucket = \"state\"\naccepted_topic = \"accepted\"\n\
         concurrency = 2",
        "",
    ));

    assert_eq!(
        handler,
        HandlerSpec::Offers {
            state_bucket: "state".to_owned(),
            accepted_topic: "accepted".to_owned(),
            concurrency: 2,
        }
    );
}

#[test]
fn offers_keys_required_and_declared() {
    assert_eq!(
        error_lines(&kind_config("kind = \"offers\"", "")),
        [
            "subscription \"worker\": handler.state_bucket is missing: set it to the declared \
             bucket that keeps the best offer of each product",
            "subscription \"worker\": handler.accepted_topic is missing: set it to the \
             declared topic that receives the accepted offers",
        ]
    );
    assert_eq!(
        error_lines(&kind_config(
            "kind = \"offers\"\nstate_bucket = \"nowhere\"\naccepted_topic = \"gone\"",
            ""
        )),
        [
            "subscription \"worker\": handler.state_bucket \"nowhere\" is not a declared \
             bucket; add [[buckets]] name = \"nowhere\"",
            "subscription \"worker\": handler.accepted_topic \"gone\" is not a declared topic; \
             add [[topics]] name = \"gone\"",
        ]
    );
}

#[test]
fn offers_rejects_keys_of_other_kinds() {
    assert_single_error(
        &kind_config(
            "kind = \"offers\"\nstate_bucket = \"state\"\naccepted_topic = \"accepted\"\n\
             destination_bucket = \"small\"",
            "",
        ),
        "subscription \"worker\": handler.destination_bucket does not apply to kind \
         \"offers\", whose keys are state_bucket, accepted_topic, concurrency: remove it",
    );
}

#[test]
fn offers_loops_rejected() {
    assert_single_error(
        &kind_config(
            "kind = \"offers\"\nstate_bucket = \"state\"\naccepted_topic = \"events\"",
            "",
        ),
        "subscription \"worker\": handler.accepted_topic \"events\" is the subscription's own \
         topic, so each accepted offer would come back to the handler: publish accepted \
         offers to another topic",
    );
    let text = format!(
        "{}[[buckets.notifications]]\ntopic = \"events\"\n",
        kind_config(
            "kind = \"offers\"\nstate_bucket = \"state\"\naccepted_topic = \"accepted\"",
            "",
        )
    );
    assert_single_error(
        &text,
        "subscription \"worker\": handler.state_bucket \"state\" publishes OBJECT_FINALIZE to \
         this subscription's topic \"events\", so every state write would come back to the \
         handler and be dead-lettered: use a bucket that does not notify \"events\"",
    );
}

#[test]
fn offers_state_bucket_not_shared() {
    let text = format!(
        "{}[[subscriptions]]\nname = \"second\"\ntopic = \"events\"\n\
         [subscriptions.dead_letter]\ntopic = \"events-dead\"\n\
         [subscriptions.handler]\nkind = \"offers\"\nstate_bucket = \"state\"\n\
         accepted_topic = \"accepted\"\n",
        kind_config(
            "kind = \"offers\"\nstate_bucket = \"state\"\naccepted_topic = \"accepted\"",
            "",
        )
    );

    assert_single_error(
        &text,
        "subscription \"second\": handler.state_bucket \"state\" is already the state bucket \
         of subscription \"worker\", and two offers handlers must not share one: give each its \
         own bucket",
    );
}

#[test]
fn thumbnail_rejects_keys_of_other_kinds() {
    assert_single_error(
        &kind_config(
            "kind = \"thumbnail\"\ndestination_bucket = \"small\"\nmax_colors = 3",
            "",
        ),
        "subscription \"worker\": handler.max_colors does not apply to kind \"thumbnail\", \
         whose keys are destination_bucket, name_prefix, max_width, max_height, max_pixels, \
         jpeg_quality, concurrency: remove it",
    );
}

#[test]
fn default_config_annotate_and_offers() {
    let file = parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME).expect("default config should parse");
    let config = file.validate().expect("default config should validate");

    assert_eq!(
        config.handler("annotator"),
        Some(&HandlerSpec::Annotate {
            destination_bucket: "annotations".to_owned(),
            name_prefix: String::new(),
            max_pixels: 100_000_000,
            max_colors: 10,
            concurrency: 0,
        })
    );
    assert_eq!(
        config.handler("offers-processor"),
        Some(&HandlerSpec::Offers {
            state_bucket: "offers-state".to_owned(),
            accepted_topic: "offers-accepted".to_owned(),
            concurrency: 0,
        })
    );
    let subscription = |name: &str| {
        config
            .subscriptions
            .iter()
            .find(|subscription| subscription.name == name)
            .unwrap_or_else(|| panic!("subscription {name} exists"))
    };
    assert_eq!(subscription("annotator").topic, "uploads-events");
    assert_eq!(
        subscription("annotator").filter,
        "attributes.eventType = \"OBJECT_FINALIZE\""
    );
    assert_eq!(subscription("offers-processor").topic, "offers");
    let dead_letter = subscription("offers-processor").dead_letter.clone();
    assert_eq!(
        dead_letter.map(|policy| policy.topic),
        Some("offers-dead-letter".to_owned())
    );
    for pulled in [
        "annotator-dead-letter",
        "offers-accepted",
        "offers-dead-letter",
    ] {
        assert_eq!(subscription(pulled).topic, pulled, "{pulled} can be pulled");
    }
}
