//! Cloud Storage JSON API uploads and buckets over raw HTTP against a real `sluice serve`.
//! The tests cover media and multipart uploads with their checks and notifications,
//! downloads of a byte range, bucket creation that survives a restart, and the error bodies
//! of bad requests.

mod support;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{PubsubMessage, PullRequest};
use support::{channel, encode_segment, TestServer};

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

async fn json_body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.bytes().await.expect("the body reads");
    let json = serde_json::from_slice(&body).unwrap_or_else(|err| {
        panic!(
            "status {status}: body is not JSON ({err}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, json)
}

/// Asserts Cloud Storage's error shape, with its `errors` list, and returns the message.
fn error_message(status: StatusCode, body: &Value, reason: &str) -> String {
    let error = &body["error"];
    assert_eq!(error["code"], json!(status.as_u16()), "code in {body}");
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("message in {body}"))
        .to_owned();
    assert_eq!(error["errors"][0]["reason"], reason, "reason in {body}");
    assert_eq!(error["errors"][0]["message"], message, "errors in {body}");
    message
}

/// Returns a multipart/related body of `resource` and `bytes`, as google-cloud-storage
/// writes it.
fn related_body(resource: &Value, content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(b"--sep\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n");
    body.extend_from_slice(resource.to_string().as_bytes());
    body.extend_from_slice(format!("\r\n--sep\r\ncontent-type: {content_type}\r\n\r\n").as_bytes());
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n--sep--");
    body
}

async fn post_multipart(server: &TestServer, bucket: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let response = http_client()
        .post(format!(
            "{}/upload/storage/v1/b/{bucket}/o?uploadType=multipart",
            server.url
        ))
        .header("content-type", "multipart/related; boundary=\"sep\"")
        .body(body)
        .send()
        .await
        .expect("POST completes");
    json_body(response).await
}

async fn pull_all(server: &TestServer, subscription: &str) -> Vec<PubsubMessage> {
    let mut client = SubscriberClient::new(channel(server).await);
    #[allow(deprecated, reason = "return_immediately keeps empty pulls short")]
    let request = PullRequest {
        subscription: format!("projects/local/subscriptions/{subscription}"),
        max_messages: 100,
        return_immediately: true,
    };
    let response = client.pull(request).await.expect("pull succeeds");
    response
        .into_inner()
        .received_messages
        .into_iter()
        .filter_map(|received| received.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_upload_stores_and_notifies() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let resource = json!({
        "name": "docs/fox.txt",
        "metadata": {"origin": "test"},
        "crc32c": FOX_CRC32C,
        "md5Hash": FOX_MD5,
    });
    let body = related_body(&resource, "text/plain", FOX);
    let (status, object) = post_multipart(&server, "uploads", body).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    assert_eq!(object["name"], "docs/fox.txt");
    assert_eq!(object["size"], "43");
    assert_eq!(object["contentType"], "text/plain");
    assert_eq!(object["crc32c"], FOX_CRC32C);
    assert_eq!(object["metadata"], json!({"origin": "test"}));
    let media_link = object["mediaLink"].as_str().expect("mediaLink");
    assert!(
        media_link.starts_with(&format!(
            "{}/download/storage/v1/b/uploads/o/docs%2Ffox.txt",
            server.url
        )),
        "{media_link}"
    );

    let downloaded = http_client()
        .get(media_link)
        .send()
        .await
        .expect("GET completes");
    assert_eq!(downloaded.status(), StatusCode::OK);
    let hash = downloaded.headers()["x-goog-hash"].to_str().expect("ASCII");
    assert_eq!(hash, format!("crc32c={FOX_CRC32C},md5={FOX_MD5}"));
    assert_eq!(&downloaded.bytes().await.expect("bytes")[..], FOX);

    let messages = pull_all(&server, "test-events").await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].attributes["eventType"], "OBJECT_FINALIZE");
    assert_eq!(messages[0].attributes["objectId"], "docs/fox.txt");
}

#[tokio::test(flavor = "multi_thread")]
async fn media_upload_takes_name_and_type() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let response = http_client()
        .post(format!(
            "{}/upload/storage/v1/b/uploads/o?uploadType=media&name=a%2Fb.txt",
            server.url
        ))
        .header("content-type", "text/plain")
        .body(FOX)
        .send()
        .await
        .expect("POST completes");
    let (status, object) = json_body(response).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    assert_eq!(object["name"], "a/b.txt");
    assert_eq!(object["contentType"], "text/plain");
    assert_eq!(object["md5Hash"], FOX_MD5);
    assert_eq!(pull_all(&server, "test-events").await.len(), 1);
}

/// One rejected upload: URL, Content-Type, body, expected status, reason, and a part of the
/// expected message.
type BadUpload = (
    String,
    &'static str,
    Vec<u8>,
    StatusCode,
    &'static str,
    &'static str,
);

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_get_clear_errors() {
    let server = TestServer::start_with_args(Some(EVENTS_CONFIG), &["--max-upload-bytes", "1000"]);
    let client = http_client();
    let base = format!("{}/upload/storage/v1/b", server.url);
    let post = |url: String, content_type: &'static str, body: Vec<u8>| {
        let request = client
            .post(url)
            .header("content-type", content_type)
            .body(body);
        async move { json_body(request.send().await.expect("POST completes")).await }
    };

    let cases: Vec<BadUpload> = vec![
        (
            format!("{base}/uploads/o?name=x"),
            "text/plain",
            FOX.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
            "uploadType is missing",
        ),
        (
            format!("{base}/uploads/o?uploadType=chunked&name=x"),
            "text/plain",
            FOX.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
            "invalid uploadType \"chunked\"",
        ),
        (
            format!("{base}/uploads/o?uploadType=media"),
            "text/plain",
            FOX.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
            "the object name is missing",
        ),
        (
            format!("{base}/missing/o?uploadType=media&name=x"),
            "text/plain",
            FOX.to_vec(),
            StatusCode::NOT_FOUND,
            "notFound",
            "POST /storage/v1/b",
        ),
        (
            format!("{base}/uploads/o?uploadType=media&name=x"),
            "text/plain",
            vec![b'a'; 1001],
            StatusCode::PAYLOAD_TOO_LARGE,
            "uploadTooLarge",
            "limit of 1000 bytes",
        ),
        (
            format!("{base}/uploads/o?uploadType=media&name=x&ifGenerationMatch=0"),
            "text/plain",
            FOX.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
            "ifGenerationMatch is not supported",
        ),
        (
            format!("{base}/uploads/o?uploadType=multipart"),
            "multipart/form-data; boundary=sep",
            FOX.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
            "must be multipart/related",
        ),
        (
            format!("{base}/uploads/o?uploadType=multipart"),
            "multipart/related; boundary=sep",
            related_body(
                &json!({"name": "x", "crc32c": "AAAAAA=="}),
                "text/plain",
                FOX,
            ),
            StatusCode::BAD_REQUEST,
            "invalid",
            "the CRC32C \"AAAAAA==\" that the request gives does not match",
        ),
        (
            format!("{base}/uploads/o?uploadType=multipart"),
            "multipart/related; boundary=sep",
            related_body(
                &json!({"name": "x", "cacheControl": "no-cache"}),
                "text/plain",
                FOX,
            ),
            StatusCode::BAD_REQUEST,
            "invalid",
            "field \"cacheControl\" is not supported",
        ),
        (
            format!("{base}/uploads/o?uploadType=multipart&name=y"),
            "multipart/related; boundary=sep",
            related_body(&json!({"name": "x"}), "text/plain", FOX),
            StatusCode::BAD_REQUEST,
            "invalid",
            "differ",
        ),
        (
            format!("{base}/uploads/o?uploadType=multipart"),
            "multipart/related; boundary=sep",
            b"--sep\r\n\r\n{}\r\n--sep--".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
            "has two parts",
        ),
    ];
    for (url, content_type, body, expected_status, reason, expected) in cases {
        let (status, body) = post(url.clone(), content_type, body).await;
        assert_eq!(status, expected_status, "{url}: {body}");
        let message = error_message(status, &body, reason);
        assert!(message.contains(expected), "{url}: {message}");
    }

    // Nothing was stored, so nothing was published.
    let (status, listing) = json_body(
        client
            .get(format!("{}/storage/v1/b/uploads/o", server.url))
            .send()
            .await
            .expect("GET completes"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(listing.get("items").is_none(), "{listing}");
    assert!(pull_all(&server, "test-events").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn download_honours_range() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let client = http_client();
    let body = related_body(&json!({"name": "fox.txt"}), "text/plain", FOX);
    let (status, _) = post_multipart(&server, "uploads", body).await;
    assert_eq!(status, StatusCode::OK);
    let url = format!("{}/storage/v1/b/uploads/o/fox.txt?alt=media", server.url);

    let cases = [
        ("bytes=4-8", "bytes 4-8/43", &FOX[4..9]),
        ("bytes=40-", "bytes 40-42/43", &FOX[40..]),
        ("bytes=-3", "bytes 40-42/43", &FOX[40..]),
    ];
    for (range, content_range, expected) in cases {
        let response = client
            .get(&url)
            .header("range", range)
            .send()
            .await
            .expect("GET completes");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            response.headers()["content-range"],
            content_range,
            "{range}"
        );
        assert_eq!(
            &response.bytes().await.expect("bytes")[..],
            expected,
            "{range}"
        );
    }

    let response = client
        .get(&url)
        .header("range", "bytes=43-")
        .send()
        .await
        .expect("GET completes");
    assert_eq!(response.headers()["content-range"], "bytes */43");
    let (status, body) = json_body(response).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    let message = error_message(status, &body, "requestedRangeNotSatisfiable");
    assert!(message.contains("\"bytes=43-\""), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn created_bucket_survives_restart() {
    let mut first = TestServer::start(None);
    let client = http_client();
    let buckets = format!("{}/storage/v1/b?project=test", first.url);
    let create = |body: Value| {
        let request = client.post(&buckets).json(&body);
        async move { json_body(request.send().await.expect("POST completes")).await }
    };
    let (status, bucket) =
        create(json!({"name": "made-by-api", "versioning": {"enabled": true}})).await;
    assert_eq!(status, StatusCode::OK, "{bucket}");
    assert_eq!(bucket["kind"], "storage#bucket");
    assert_eq!(bucket["versioning"]["enabled"], true);

    let (status, body) = create(json!({"name": "made-by-api"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    error_message(status, &body, "conflict");
    let (status, body) = create(json!({"name": "Bad_Name"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = error_message(status, &body, "invalid");
    assert!(message.contains("Bad_Name"), "{message}");
    let (status, body) = create(json!({"name": "b2", "lifecycle": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = error_message(status, &body, "invalid");
    assert!(message.contains("\"lifecycle\""), "{message}");

    let body = related_body(&json!({"name": "kept.txt"}), "text/plain", FOX);
    let (status, _) = post_multipart(&first, "made-by-api", body).await;
    assert_eq!(status, StatusCode::OK);

    let data_dir = first.data_dir.clone();
    let (exit, _) = first.terminate();
    assert!(exit.success(), "the first server exits cleanly");
    let server = TestServer::start_in(&data_dir, None);
    let (status, bucket) = json_body(
        client
            .get(format!("{}/storage/v1/b/made-by-api", server.url))
            .send()
            .await
            .expect("GET completes"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bucket}");
    assert_eq!(bucket["versioning"]["enabled"], true);
    let object_url = format!(
        "{}/storage/v1/b/made-by-api/o/{}?alt=media",
        server.url,
        encode_segment("kept.txt")
    );
    let bytes = client
        .get(object_url)
        .send()
        .await
        .expect("GET completes")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&bytes[..], FOX);
    let (_, listing) = json_body(
        client
            .get(format!("{}/storage/v1/b?project=test", server.url))
            .send()
            .await
            .expect("GET completes"),
    )
    .await;
    let names: Vec<&str> = listing["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|bucket| bucket["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "annotations",
            "made-by-api",
            "offers-state",
            "thumbnails",
            "uploads"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_list_filters_rejected() {
    let server = TestServer::start(None);
    let client = http_client();
    for param in [
        "matchGlob=**.jpg",
        "startOffset=a",
        "includeTrailingDelimiter=true",
    ] {
        let url = format!("{}/storage/v1/b/uploads/o?{param}", server.url);
        let (status, body) = json_body(client.get(&url).send().await.expect("GET completes")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{param}");
        let message = error_message(status, &body, "invalid");
        let name = param.split('=').next().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{name} is not supported")),
            "{message}"
        );
    }
}
