//! Resumable uploads over raw HTTP against a real `sluice serve`: chunks with and without a
//! known total, offset queries, repeated and missing bytes, checksums, cancellation, and the
//! limits on open sessions and their spooled bytes.

mod support;

use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::PullRequest;
use support::{channel, TestServer};

/// A text whose checksums were computed outside this project (hashlib and a bitwise CRC32C).
const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";
/// Base64 of the MD5 digest of [`FOX`].
const FOX_MD5: &str = "nhB9nTcrtoJr2B01QqQZ1g==";
/// Base64 of the big-endian CRC32C of [`FOX`].
const FOX_CRC32C: &str = "ImIEBA==";

/// A bucket `uploads` that notifies `uploads-events`, read by the subscription `test-events`.
const EVENTS_CONFIG: &str = r#"
[[topics]]
name = "uploads-events"

[[subscriptions]]
name = "test-events"
topic = "uploads-events"

[[buckets]]
name = "uploads"

[[buckets.notifications]]
topic = "uploads-events"
"#;

fn http_client() -> Client {
    Client::builder()
        .no_proxy()
        .build()
        .expect("the HTTP client builds")
}

/// Starts a resumable upload of `resource` and returns the session URL.
async fn start(server: &TestServer, resource: &Value, headers: &[(&str, &str)]) -> String {
    let (status, response_headers, body) = start_response(server, resource, headers).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let location = response_headers["location"]
        .to_str()
        .expect("ASCII Location");
    assert!(
        location.starts_with(&format!(
            "{}/upload/storage/v1/b/uploads/o?uploadType=resumable&upload_id=",
            server.url
        )),
        "{location}"
    );
    location.to_owned()
}

async fn start_response(
    server: &TestServer,
    resource: &Value,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut request = http_client()
        .post(format!(
            "{}/upload/storage/v1/b/uploads/o?uploadType=resumable",
            server.url
        ))
        .json(resource);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST completes");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

/// Sends one PUT to a session and returns status, headers and body.
async fn put(
    url: &str,
    content_range: Option<&str>,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut request = http_client().put(url).body(body.to_vec());
    if let Some(content_range) = content_range {
        request = request.header("content-range", content_range);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("PUT completes");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

/// Asserts a 308 whose Range says the session has `received` bytes.
fn assert_incomplete(response: &(StatusCode, HeaderMap, String), received: u64) {
    let (status, headers, body) = response;
    assert_eq!(*status, StatusCode::PERMANENT_REDIRECT, "{body}");
    let range = headers
        .get("range")
        .map(|value| value.to_str().expect("ASCII"));
    let expected = format!("bytes=0-{}", received - 1);
    assert_eq!(range, Some(expected.as_str()));
}

/// Asserts an error response in Cloud Storage's shape and returns its message.
fn assert_error(
    response: &(StatusCode, HeaderMap, String),
    status: StatusCode,
    reason: &str,
) -> String {
    let body: Value = serde_json::from_str(&response.2)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", response.2));
    assert_eq!(response.0, status, "{body}");
    assert_eq!(body["error"]["code"], json!(status.as_u16()), "{body}");
    assert_eq!(body["error"]["errors"][0]["reason"], reason, "{body}");
    body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

fn stored_object(response: &(StatusCode, HeaderMap, String)) -> Value {
    assert_eq!(response.0, StatusCode::OK, "{}", response.2);
    serde_json::from_str(&response.2).expect("an object resource")
}

async fn download(server: &TestServer, name: &str) -> Vec<u8> {
    let url = format!(
        "{}/download/storage/v1/b/uploads/o/{name}?alt=media",
        server.url
    );
    let response = http_client().get(url).send().await.expect("GET completes");
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.expect("bytes").to_vec()
}

async fn finalize_events(server: &TestServer) -> Vec<String> {
    let mut client = SubscriberClient::new(channel(server).await);
    #[allow(deprecated, reason = "return_immediately keeps empty pulls short")]
    let request = PullRequest {
        subscription: "projects/local/subscriptions/test-events".to_owned(),
        max_messages: 100,
        return_immediately: true,
    };
    let response = client.pull(request).await.expect("pull succeeds");
    response
        .into_inner()
        .received_messages
        .into_iter()
        .filter_map(|received| received.message)
        .map(|message| message.attributes["objectId"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn chunks_with_unknown_total() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let url = start(
        &server,
        &json!({"name": "fox.txt", "crc32c": FOX_CRC32C}),
        &[("x-upload-content-type", "text/plain")],
    )
    .await;

    assert_incomplete(&put(&url, Some("bytes 0-9/*"), &FOX[..10], &[]).await, 10);
    assert_incomplete(&put(&url, Some("bytes */*"), b"", &[]).await, 10);
    // Bytes 5 to 9 repeat what the session has, as after a lost response.
    assert_incomplete(&put(&url, Some("bytes 5-19/*"), &FOX[5..20], &[]).await, 20);
    // Nothing is stored before the last byte.
    assert!(finalize_events(&server).await.is_empty());

    let hash = format!("crc32c={FOX_CRC32C},md5={FOX_MD5}");
    let done = put(
        &url,
        Some("bytes 20-42/43"),
        &FOX[20..],
        &[("x-goog-hash", &hash)],
    )
    .await;
    let object = stored_object(&done);
    assert_eq!(object["size"], "43");
    assert_eq!(object["contentType"], "text/plain");
    assert_eq!(object["md5Hash"], FOX_MD5);
    assert_eq!(download(&server, "fox.txt").await, FOX);
    assert_eq!(finalize_events(&server).await, ["fox.txt"]);

    // The session ended with the upload.
    let again = put(&url, Some("bytes */43"), b"", &[]).await;
    let message = assert_error(&again, StatusCode::NOT_FOUND, "notFound");
    assert!(
        message.contains("start a new resumable upload"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn total_known_from_start() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let url = start(
        &server,
        &json!({"name": "a.txt"}),
        &[("x-upload-content-length", "43")],
    )
    .await;
    assert_incomplete(&put(&url, Some("bytes 0-29/43"), &FOX[..30], &[]).await, 30);
    let object = stored_object(&put(&url, Some("bytes 30-42/43"), &FOX[30..], &[]).await);
    assert_eq!(object["crc32c"], FOX_CRC32C);
    // Without a content type the object gets Cloud Storage's default.
    assert_eq!(object["contentType"], "application/octet-stream");

    // The last chunk may be empty: `bytes */TOTAL` ends the upload.
    let response = start_response(&server, &json!({}), &[]).await;
    let message = assert_error(&response, StatusCode::BAD_REQUEST, "invalid");
    assert!(message.contains("the object name is missing"), "{message}");
    let url = start(&server, &json!({"name": "b.txt"}), &[]).await;
    assert_incomplete(&put(&url, Some("bytes 0-42/*"), FOX, &[]).await, 43);
    assert_eq!(
        stored_object(&put(&url, Some("bytes */43"), b"", &[]).await)["name"],
        "b.txt"
    );

    // Without Content-Range the body is the whole object.
    let url = start(&server, &json!({"name": "c.txt"}), &[]).await;
    assert_eq!(
        stored_object(&put(&url, None, FOX, &[]).await)["size"],
        "43"
    );
    assert_eq!(finalize_events(&server).await, ["a.txt", "b.txt", "c.txt"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_chunks_rejected() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let url = start(
        &server,
        &json!({"name": "fox.txt"}),
        &[("x-upload-content-length", "43")],
    )
    .await;
    assert_incomplete(&put(&url, Some("bytes 0-9/43"), &FOX[..10], &[]).await, 10);

    let cases: [(Option<&str>, &[u8], &str); 9] = [
        (
            Some("bytes 20-29/43"),
            &FOX[20..30],
            "the session has only 10 bytes",
        ),
        (Some("bytes 10-19/50"), &FOX[10..20], "declared 43 before"),
        (Some("bytes 10-19/*"), &FOX[10..15], "Content-Length is 5"),
        (
            Some("bytes 10-9/43"),
            b"",
            "the last byte is before the first",
        ),
        (Some("bytes 10-43/43"), &FOX[10..], "not below the total"),
        (
            Some("bytes=10-19/43"),
            &FOX[10..20],
            "the unit must be bytes",
        ),
        (
            Some("bytes */20"),
            b"",
            "as 20 bytes, but the upload declared 43 before",
        ),
        (
            Some("bytes */43"),
            b"",
            "ends the upload at 43 bytes, but the session has 10",
        ),
        (None, &FOX[10..], "already has 10 bytes"),
    ];
    for (content_range, body, expected) in cases {
        let response = put(&url, content_range, body, &[]).await;
        let message = assert_error(&response, StatusCode::BAD_REQUEST, "invalid");
        assert!(message.contains(expected), "{content_range:?}: {message}");
    }
    // The session still has its first 10 bytes and completes.
    assert_incomplete(&put(&url, Some("bytes */*"), b"", &[]).await, 10);
    assert_eq!(
        stored_object(&put(&url, Some("bytes 10-42/43"), &FOX[10..], &[]).await)["size"],
        "43"
    );

    let url = start(&server, &json!({"name": "x"}), &[]).await;
    let missing_id = url
        .split("&upload_id")
        .next()
        .unwrap_or_default()
        .to_owned();
    let message = assert_error(
        &put(&missing_id, None, FOX, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid",
    );
    assert!(message.contains("upload_id is missing"), "{message}");
    let other_bucket = url.replace("/b/uploads/", "/b/elsewhere/");
    let message = assert_error(
        &put(&other_bucket, None, FOX, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid",
    );
    assert!(
        message.contains("uploads to bucket \"uploads\""),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn checksum_mismatch_stores_nothing() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let url = start(
        &server,
        &json!({"name": "a.txt", "md5Hash": "AAAAAAAAAAAAAAAAAAAAAA=="}),
        &[],
    )
    .await;
    let response = put(&url, Some("bytes 0-42/43"), FOX, &[]).await;
    let message = assert_error(&response, StatusCode::BAD_REQUEST, "invalid");
    assert!(
        message.contains("MD5 \"AAAAAAAAAAAAAAAAAAAAAA==\""),
        "{message}"
    );

    let url = start(&server, &json!({"name": "b.txt"}), &[]).await;
    let response = put(
        &url,
        Some("bytes 0-42/43"),
        FOX,
        &[("x-goog-hash", "crc32c=AAAAAA==")],
    )
    .await;
    let message = assert_error(&response, StatusCode::BAD_REQUEST, "invalid");
    assert!(message.contains("CRC32C \"AAAAAA==\""), "{message}");
    assert!(finalize_events(&server).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_ends_session() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let url = start(&server, &json!({"name": "a.txt"}), &[]).await;
    assert_incomplete(&put(&url, Some("bytes 0-9/*"), &FOX[..10], &[]).await, 10);
    let response = http_client()
        .delete(&url)
        .send()
        .await
        .expect("DELETE completes");
    assert_eq!(response.status().as_u16(), 499);
    let message = assert_error(
        &put(&url, Some("bytes */*"), b"", &[]).await,
        StatusCode::NOT_FOUND,
        "notFound",
    );
    assert!(message.contains("not found"), "{message}");
    let spool = server.data_dir.join("resumable-uploads");
    let left: Vec<_> = std::fs::read_dir(&spool)
        .expect("the spool folder exists")
        .collect();
    assert!(left.is_empty(), "spool files left: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_bounded() {
    let server = TestServer::start_with_args(Some(EVENTS_CONFIG), &["--max-upload-bytes", "1000"]);

    // A declared size over the upload limit is rejected at the start.
    let response = start_response(
        &server,
        &json!({"name": "big"}),
        &[("x-upload-content-length", "1001")],
    )
    .await;
    assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "uploadTooLarge");
    // So is a chunk that passes it.
    let url = start(&server, &json!({"name": "big"}), &[]).await;
    let response = put(&url, Some("bytes 0-1000/*"), &[b'a'; 1001], &[]).await;
    let message = assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "uploadTooLarge");
    assert!(message.contains("limit of 1000 bytes"), "{message}");

    // The spool holds at most 8 full-size uploads, 8000 bytes, across all sessions.
    let mut urls = Vec::new();
    for number in 0..8 {
        let url = start(&server, &json!({"name": format!("part-{number}")}), &[]).await;
        assert_incomplete(
            &put(&url, Some("bytes 0-999/*"), &[b'a'; 1000], &[]).await,
            1000,
        );
        urls.push(url);
    }
    let url = start(&server, &json!({"name": "one-more"}), &[]).await;
    let response = put(&url, Some("bytes 0-0/*"), b"a", &[]).await;
    let message = assert_error(
        &response,
        StatusCode::TOO_MANY_REQUESTS,
        "rateLimitExceeded",
    );
    assert!(message.contains("8000 bytes"), "{message}");
    // Finishing one upload frees its bytes.
    let done = put(&urls[0], Some("bytes */1000"), b"", &[]).await;
    assert_eq!(stored_object(&done)["size"], "1000");
    assert_incomplete(&put(&url, Some("bytes 0-0/*"), b"a", &[]).await, 1);

    // At most 64 sessions are open at once; 9 are open now.
    for _ in 9..64 {
        start(&server, &json!({"name": "idle"}), &[]).await;
    }
    let response = start_response(&server, &json!({"name": "idle"}), &[]).await;
    let message = assert_error(
        &response,
        StatusCode::TOO_MANY_REQUESTS,
        "rateLimitExceeded",
    );
    assert!(
        message.contains("too many open resumable uploads (64)"),
        "{message}"
    );
}
