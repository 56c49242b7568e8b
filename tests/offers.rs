//! The offers pipeline end to end on the default configuration.
//!
//! Offers published with `sluice publish offers` reach `offers-accepted` with exact ids and
//! prices, and invalid ones reach `offers-dead-letter` at once. Duplicates are ignored, and
//! the best offers survive a restart in the bucket `offers-state`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{AcknowledgeRequest, PubsubMessage, PullRequest};
use sluice_proto::sluice::v1::admin_client::AdminClient;
use sluice_proto::sluice::v1::ListSubscriptionsRequest;
use support::{channel, TestServer};

/// Maximum wait for the handler to work through the offers. It is far above what the handler
/// needs, so that only a stuck handler fails the test.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `sluice ARGS --server URL` and returns its stdout, failing the test on an error.
fn sluice(server: &TestServer, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--server", server.url()])
        .output()
        .expect("sluice runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sluice {args:?} failed: {stderr}");
    String::from_utf8(output.stdout).expect("UTF-8 stdout")
}

fn publish_offer(server: &TestServer, offer: &str) {
    sluice(server, &["publish", "offers", "--message", offer]);
}

/// Waits until the `offers-processor` subscription has nothing left to deliver or in flight.
async fn wait_until_settled(server: &TestServer) {
    let mut admin = AdminClient::new(channel(server).await);
    let give_up = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let subscriptions = admin
            .list_subscriptions(ListSubscriptionsRequest::default())
            .await
            .expect("list subscriptions")
            .into_inner()
            .subscriptions;
        let processor = subscriptions
            .iter()
            .find(|s| s.name == "offers-processor")
            .expect("the default configuration has an offers-processor subscription");
        if processor.backlog == 0 && processor.outstanding == 0 {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "offers-processor still has {} messages after {SETTLE_TIMEOUT:?}",
            processor.backlog
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pulls and acknowledges every message of a subscription, in publish order.
async fn pull_all(server: &TestServer, subscription: &str) -> Vec<PubsubMessage> {
    let mut client = SubscriberClient::new(channel(server).await);
    let name = format!("projects/local/subscriptions/{subscription}");
    let received = client
        .pull(PullRequest {
            subscription: name.clone(),
            max_messages: 100,
            ..PullRequest::default()
        })
        .await
        .expect("pull")
        .into_inner()
        .received_messages;
    let ack_ids = received.iter().map(|r| r.ack_id.clone()).collect();
    client
        .acknowledge(AcknowledgeRequest {
            subscription: name,
            ack_ids,
        })
        .await
        .expect("acknowledge");
    let mut messages: Vec<PubsubMessage> = received
        .into_iter()
        .map(|r| r.message.expect("message"))
        .collect();
    messages.sort_by_key(|message| message.message_id.parse::<u64>().unwrap_or(u64::MAX));
    messages
}

fn state(server: &TestServer, product_object: &str) -> Value {
    let text = sluice(
        server,
        &["objects", "get", "offers-state", product_object, "-o", "-"],
    );
    serde_json::from_str(&text).expect("the state object is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_pipeline_keeps_best_offer() {
    let mut server = TestServer::start(None);
    let big_id = r#"{"offerId":9007199254740993,"productId":"kettle","sellerId":"s1","price":"10.00","currency":"EUR"}"#;
    publish_offer(&server, big_id);
    wait_until_settled(&server).await;
    publish_offer(
        &server,
        r#"{"offerId":"b","productId":"kettle","sellerId":"s2","price":"9.70","currency":"EUR"}"#,
    );
    publish_offer(&server, big_id);
    publish_offer(
        &server,
        r#"{"offerId":"c","productId":"kettle","sellerId":"s3","price":"4.5","currency":"EUX"}"#,
    );
    wait_until_settled(&server).await;

    let accepted = pull_all(&server, "offers-accepted").await;
    assert_eq!(accepted.len(), 2, "the duplicate is ignored: {accepted:?}");
    assert_eq!(accepted[0].data, big_id.as_bytes());
    assert_eq!(accepted[0].attributes["offerId"], "9007199254740993");
    assert_eq!(accepted[0].attributes["bestOffer"], "true");
    assert_eq!(accepted[1].attributes["offerId"], "b");
    assert_eq!(accepted[1].attributes["previousBestPrice"], "10.00");
    assert_eq!(accepted[1].attributes["priceDrop"], "0.30");

    let dead_letters = pull_all(&server, "offers-dead-letter").await;
    assert_eq!(dead_letters.len(), 1);
    let attributes = &dead_letters[0].attributes;
    assert_eq!(
        attributes["sluiceDeadLetterReason"],
        "invalid offer: currency \"EUX\" is not an ISO 4217 currency code"
    );
    assert_eq!(attributes["CloudPubSubDeadLetterSourceDeliveryCount"], "1");

    let kettle = state(&server, "products/kettle.json");
    assert_eq!(kettle["bestOffers"]["EUR"]["offerId"], "b");
    assert_eq!(kettle["bestOffers"]["EUR"]["price"], "9.70");

    // The state survives a restart: the first offer is still a duplicate afterwards.
    let (status, _) = server.terminate();
    assert!(status.success(), "server exits cleanly");
    let data_dir = server.data_dir.clone();
    let server = TestServer::start_in(&data_dir, None);
    publish_offer(&server, big_id);
    publish_offer(
        &server,
        r#"{"offerId":"d","productId":"kettle","sellerId":"s4","price":"9.69","currency":"EUR"}"#,
    );
    wait_until_settled(&server).await;

    let accepted = pull_all(&server, "offers-accepted").await;
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0].attributes["offerId"], "d");
    assert_eq!(accepted[0].attributes["priceDrop"], "0.01");
    let kettle = state(&server, "products/kettle.json");
    assert_eq!(kettle["bestOffers"]["EUR"]["offerId"], "d");
    assert_eq!(
        kettle["acceptedOffers"].as_object().map(|o| o.len()),
        Some(3)
    );
    assert!(server.stop().success(), "server exits cleanly");
}
