//! `GET /metrics` end to end: a scripted run on the default configuration (entries through
//! the log sinks, a pull with acks, an upload for the thumbnail handler), with the scrape
//! parsed by a Prometheus text-format parser after each step.

mod support;

use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value as MetricValue};
use serde_json::{json, Value};
use support::TestServer;

/// How long the test waits for the thumbnail handler before it fails.
const GIVE_UP: Duration = Duration::from_secs(60);

/// Fetches `/metrics`, checks its content type and parses it.
async fn scrape(http: &reqwest::Client, server: &TestServer) -> Scrape {
    let response = http
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .expect("metrics request");
    assert_eq!(response.status(), 200, "metrics status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type {content_type:?}"
    );
    let text = response.text().await.expect("metrics body");
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .unwrap_or_else(|err| panic!("/metrics does not parse ({err}):\n{text}"))
}

/// Returns the value of the sample `name` whose labels include `labels`; 0 when there is
/// none, as for a counter that has not moved yet.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, expected)| sample.labels.get(key) == Some(*expected))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} matches {} samples",
        matching.len()
    );
    match matching.first().map(|sample| &sample.value) {
        None => 0.0,
        Some(MetricValue::Counter(v) | MetricValue::Gauge(v) | MetricValue::Untyped(v)) => *v,
        Some(other) => panic!("{name} {labels:?} is not a single number: {other:?}"),
    }
}

/// Returns whether the scrape has a sample `name` whose labels include `labels`.
fn has_sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> bool {
    scrape.samples.iter().any(|sample| {
        sample.metric == name
            && labels
                .iter()
                .all(|(key, expected)| sample.labels.get(key) == Some(*expected))
    })
}

async fn post_json(http: &reqwest::Client, url: String, body: Value) -> Value {
    let response = http.post(&url).json(&body).send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "POST {url}: {text}");
    serde_json::from_str(&text).expect("JSON response")
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_scripted_run() {
    let server = TestServer::start(None);
    let http = reqwest::Client::new();

    let before = scrape(&http, &server).await;
    assert_eq!(
        value(&before, "sluice_entries_in_total", &[]),
        0.0,
        "entries before"
    );

    // Two entries for the storage sink, one of them an error, and one that no sink takes.
    let entries = json!({"logName": "projects/local/logs/metrics-test", "entries": [
        {"resource": {"type": "gcs_bucket"}, "severity": "INFO", "textPayload": "stored"},
        {"resource": {"type": "gcs_bucket"}, "severity": "ERROR", "textPayload": "denied"},
        {"resource": {"type": "gce_instance"}, "severity": "INFO", "textPayload": "booted"},
    ]});
    post_json(&http, format!("{}/v2/entries:write", server.url()), entries).await;

    let routed = scrape(&http, &server).await;
    let storage_sink = [("sink", "storage-audit")];
    let errors_sink = [("sink", "errors")];
    let storage_topic = [("messaging_destination_name", "audit-storage")];
    let errors_topic = [("messaging_destination_name", "audit-errors")];
    let storage_subscription = [("subscription", "audit-storage")];
    assert_eq!(
        value(&routed, "sluice_entries_in_total", &[]),
        3.0,
        "entries in"
    );
    assert_eq!(
        value(&routed, "sluice_unmatched_total", &[]),
        1.0,
        "unmatched"
    );
    assert_eq!(
        value(&routed, "sluice_sink_matches_total", &storage_sink),
        2.0,
        "storage sink matches"
    );
    assert_eq!(
        value(&routed, "sluice_sink_matches_total", &errors_sink),
        1.0,
        "errors sink matches"
    );
    assert_eq!(
        value(
            &routed,
            "messaging_client_sent_messages_total",
            &storage_topic
        ),
        2.0,
        "messages sent to audit-storage"
    );
    assert_eq!(
        value(
            &routed,
            "messaging_client_sent_messages_total",
            &errors_topic
        ),
        1.0,
        "messages sent to audit-errors"
    );
    assert_eq!(
        value(&routed, "sluice_backlog_messages", &storage_subscription),
        2.0,
        "backlog before the pull"
    );
    let oldest = value(
        &routed,
        "sluice_oldest_unacked_message_age_seconds",
        &storage_subscription,
    );
    assert!(oldest > 0.0, "oldest unacked age {oldest}");
    assert!(
        value(
            &routed,
            "sluice_store_commit_duration_seconds_count",
            &[("store", "sled")]
        ) > 0.0,
        "store commits measured"
    );
    assert!(
        has_sample(
            &routed,
            "sluice_oldest_unacked_message_age_seconds",
            &[("subscription", "audit-storage"), ("dead_letter", "false")]
        ),
        "a subscription that is no dead-letter queue has dead_letter=\"false\""
    );
    assert!(
        has_sample(
            &routed,
            "sluice_backlog_messages",
            &[
                ("subscription", "thumbnailer-dead-letter"),
                ("dead_letter", "true")
            ]
        ),
        "the dead-letter subscription has dead_letter=\"true\""
    );
    assert!(
        value(&routed, "process_memory_usage_bytes", &[]) > 0.0,
        "process memory"
    );

    let pulled = post_json(
        &http,
        format!(
            "{}/v1/projects/local/subscriptions/audit-storage:pull",
            server.url()
        ),
        json!({"maxMessages": 10}),
    )
    .await;
    let ack_ids: Vec<Value> = pulled["receivedMessages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|message| message["ackId"].clone())
        .collect();
    assert_eq!(ack_ids.len(), 2, "pulled messages: {pulled}");
    post_json(
        &http,
        format!(
            "{}/v1/projects/local/subscriptions/audit-storage:acknowledge",
            server.url()
        ),
        json!({"ackIds": ack_ids}),
    )
    .await;

    let acked = scrape(&http, &server).await;
    assert_eq!(
        value(&acked, "sluice_deliveries_total", &storage_subscription),
        2.0,
        "deliveries"
    );
    assert_eq!(
        value(&acked, "sluice_acks_total", &storage_subscription),
        2.0,
        "acks"
    );
    assert_eq!(
        value(&acked, "sluice_backlog_messages", &storage_subscription),
        0.0,
        "backlog after the acks"
    );
    assert_eq!(
        value(
            &acked,
            "sluice_delivery_latency_seconds_count",
            &[("subscription", "audit-storage"), ("mode", "pull")]
        ),
        2.0,
        "pull delivery latency measured"
    );
    assert_eq!(
        value(
            &acked,
            "sluice_oldest_unacked_message_age_seconds",
            &storage_subscription
        ),
        0.0,
        "oldest unacked age after the acks"
    );

    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/demo/photos/landscape.jpg"
    ))
    .expect("demo photo");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(photo).file_name("metered.jpg"),
    );
    let response = http
        .post(format!("{}/upload/uploads", server.url()))
        .multipart(form)
        .send()
        .await
        .expect("upload request");
    assert_eq!(response.status(), 200, "upload status");

    let thumbnailer = [("subscription", "thumbnailer"), ("handler", "thumbnail")];
    let give_up = Instant::now() + GIVE_UP;
    let handled = loop {
        let current = scrape(&http, &server).await;
        if value(&current, "sluice_handler_succeeded_total", &thumbnailer) >= 1.0 {
            break current;
        }
        assert!(
            Instant::now() < give_up,
            "the thumbnail handler did not succeed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        value(&handled, "sluice_handler_succeeded_total", &thumbnailer),
        1.0,
        "thumbnail handler successes"
    );
    let runs = [
        ("messaging_destination_subscription_name", "thumbnailer"),
        ("handler", "thumbnail"),
    ];
    assert_eq!(
        value(&handled, "messaging_process_duration_seconds_count", &runs),
        1.0,
        "thumbnail handler runs measured"
    );
    assert!(
        value(
            &handled,
            "sluice_delivery_latency_seconds_count",
            &[("subscription", "thumbnailer"), ("mode", "push")]
        ) >= 1.0,
        "thumbnailer delivery latency measured"
    );
    assert_eq!(
        value(
            &handled,
            "messaging_client_sent_messages_total",
            &[("messaging_destination_name", "uploads-events")]
        ),
        1.0,
        "upload notifications sent"
    );
}
