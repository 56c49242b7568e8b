//! Buckets over HTTP end to end: multipart uploads to `POST /upload/{bucket}` and the Cloud
//! Storage JSON API routes of a real `sluice serve` on 127.0.0.1, the upload size limit,
//! object names that look like paths, and the notifications that uploads publish.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{AcknowledgeRequest, PubsubMessage, PullRequest};
use sluice_proto::tonic::transport::Channel;
use support::{channel, encode_segment, TestServer};

/// A text whose checksums below were computed outside this project, the MD5 with Python's
/// hashlib and the CRC32C with a bitwise reference implementation, so that they do not come
/// from the code under test.
const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";
/// Base64 of the MD5 digest of [`FOX`], 9e107d9d372bb6826bd81d3542a419d6.
const FOX_MD5: &str = "nhB9nTcrtoJr2B01QqQZ1g==";
/// Base64 of the CRC32C of [`FOX`], 0x22620404, big-endian.
const FOX_CRC32C: &str = "ImIEBA==";

/// A bucket `uploads` that notifies `uploads-events`, read by the subscription
/// `test-events`, and a versioned bucket `archive` without notifications.
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
custom_attributes = { origin = "storage-http-test" }

[[buckets]]
name = "archive"
versioning = true
"#;

fn http_client() -> Client {
    Client::builder()
        .no_proxy()
        .build()
        .expect("the HTTP client builds")
}

/// Returns the JSON API URL of an object, with the name percent-encoded as one segment.
fn object_url(server: &TestServer, bucket: &str, name: &str) -> String {
    format!(
        "{}/storage/v1/b/{bucket}/o/{}",
        server.url,
        encode_segment(name)
    )
}

/// Returns a `file` part named `name`, with a content type when given.
fn file_part(name: &str, bytes: &[u8], content_type: Option<&str>) -> Part {
    let part = Part::bytes(bytes.to_vec()).file_name(name.to_owned());
    match content_type {
        Some(content_type) => part.mime_str(content_type).expect("a valid media type"),
        None => part,
    }
}

async fn post_form(
    client: &Client,
    server: &TestServer,
    bucket: &str,
    form: Form,
) -> (StatusCode, Value) {
    let response = client
        .post(format!("{}/upload/{bucket}", server.url))
        .multipart(form)
        .send()
        .await
        .expect("the upload request completes");
    json_body(response).await
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

/// Uploads one file under `name` and returns its object resource.
async fn upload(
    client: &Client,
    server: &TestServer,
    bucket: &str,
    name: &str,
    bytes: &[u8],
) -> Value {
    let form = Form::new()
        .text("name", name.to_owned())
        .part("file", file_part("ignored.bin", bytes, None));
    let (status, body) = post_form(client, server, bucket, form).await;
    assert_eq!(status, StatusCode::OK, "upload of {name:?}: {body}");
    body["objects"][0].clone()
}

async fn get_json(client: &Client, url: &str) -> (StatusCode, Value) {
    json_body(client.get(url).send().await.expect("GET completes")).await
}

/// Asserts Google's error shape and returns the message.
fn error_message(status: StatusCode, body: &Value) -> String {
    assert_eq!(
        body["error"]["code"],
        json!(status.as_u16()),
        "code in {body}"
    );
    assert!(body["error"]["status"].is_string(), "status in {body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("message in {body}"))
        .to_owned()
}

/// Pulls and acknowledges every message available on `subscription` now.
async fn pull_all(channel: &Channel, subscription: &str) -> Vec<PubsubMessage> {
    let subscription = format!("projects/local/subscriptions/{subscription}");
    let mut client = SubscriberClient::new(channel.clone());
    #[allow(deprecated, reason = "return_immediately keeps empty pulls short")]
    let request = PullRequest {
        subscription: subscription.clone(),
        max_messages: 100,
        return_immediately: true,
    };
    let received = client
        .pull(request)
        .await
        .expect("pull succeeds")
        .into_inner()
        .received_messages;
    let ack_ids: Vec<String> = received.iter().map(|m| m.ack_id.clone()).collect();
    if !ack_ids.is_empty() {
        client
            .acknowledge(AcknowledgeRequest {
                subscription,
                ack_ids,
            })
            .await
            .expect("acknowledge succeeds");
    }
    received
        .into_iter()
        .map(|received| {
            received
                .message
                .expect("a received message has its message")
        })
        .collect()
}

/// Returns every file below `root`, relative to it.
fn files_below(root: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a readable folder") {
            let path = entry.expect("a readable entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let relative = path.strip_prefix(root).expect("below the root");
                files.insert(relative.to_path_buf());
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_one_file_lists_checksums() {
    let server = TestServer::start(None);
    let client = http_client();
    let form = Form::new().part("file", file_part("fox.txt", FOX, Some("text/plain")));
    let (status, body) = post_form(&client, &server, "uploads", form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let objects = body["objects"].as_array().expect("objects is an array");
    assert_eq!(objects.len(), 1, "{body}");
    let uploaded = &objects[0];
    assert_eq!(uploaded["kind"], "storage#object");
    assert_eq!(uploaded["name"], "fox.txt", "named by the part's filename");
    assert_eq!(uploaded["bucket"], "uploads");
    assert_eq!(
        uploaded["contentType"], "text/plain",
        "the part's content type"
    );
    assert_eq!(uploaded["size"], "43", "int64 as a string");
    assert_eq!(uploaded["md5Hash"], FOX_MD5);
    assert_eq!(uploaded["crc32c"], FOX_CRC32C);
    assert_eq!(uploaded["metageneration"], "1");

    let (status, listing) =
        get_json(&client, &format!("{}/storage/v1/b/uploads/o", server.url)).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert_eq!(listing["kind"], "storage#objects");
    assert!(listing.get("prefixes").is_none(), "no prefixes: {listing}");
    let items = listing["items"].as_array().expect("items is an array");
    assert_eq!(items.len(), 1, "{listing}");
    assert_eq!(items[0]["name"], "fox.txt");
    assert_eq!(items[0]["size"], "43");
    assert_eq!(items[0]["md5Hash"], FOX_MD5);
    assert_eq!(items[0]["crc32c"], FOX_CRC32C);
    assert_eq!(items[0]["generation"], uploaded["generation"]);

    let (status, empty) = get_json(
        &client,
        &format!("{}/storage/v1/b/thumbnails/o", server.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(
        empty,
        json!({"kind": "storage#objects"}),
        "an empty bucket has no items"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_several_files_at_once() {
    let server = TestServer::start(None);
    let client = http_client();
    let form = Form::new()
        .part("file", file_part("first.txt", b"one", Some("text/plain")))
        .text("name", "photos/second.bin")
        .part("file", file_part("not-this-name.bin", b"two", None))
        .part(
            "file",
            file_part("third.json", b"{}", Some("application/json")),
        );
    let (status, body) = post_form(&client, &server, "uploads", form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let objects = body["objects"].as_array().expect("objects is an array");
    let summary: Vec<(&str, &str, &str)> = objects
        .iter()
        .map(|object| {
            (
                object["name"].as_str().expect("name"),
                object["contentType"].as_str().expect("contentType"),
                object["size"].as_str().expect("size"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("first.txt", "text/plain", "3"),
            ("photos/second.bin", "application/octet-stream", "3"),
            ("third.json", "application/json", "2"),
        ],
        "one object per file, in order; `name` applies to the next file only"
    );

    let (status, listing) = get_json(
        &client,
        &format!("{}/storage/v1/b/uploads/o?delimiter=/", server.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let names: Vec<&str> = listing["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["first.txt", "third.json"], "{listing}");
    assert_eq!(listing["prefixes"], json!(["photos/"]), "{listing}");

    let (status, listing) = get_json(
        &client,
        &format!("{}/storage/v1/b/uploads/o?prefix=photos/", server.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert_eq!(
        listing["items"].as_array().map(Vec::len),
        Some(1),
        "{listing}"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn media_round_trips_bytes() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let client = http_client();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let first = upload(&client, &server, "uploads", "dir/all bytes.bin", &bytes).await;
    let second = upload(&client, &server, "uploads", "dir/all bytes.bin", FOX).await;
    let first_generation = first["generation"].as_str().expect("generation");
    let second_generation = second["generation"].as_str().expect("generation");

    let url = object_url(&server, "uploads", "dir/all bytes.bin");
    let response = client
        .get(format!("{url}?alt=media"))
        .send()
        .await
        .expect("GET completes");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream",
        "the object's content type"
    );
    assert_eq!(response.headers()["x-goog-generation"], second_generation);
    assert_eq!(
        response.headers()["x-goog-hash"],
        format!("crc32c={FOX_CRC32C},md5={FOX_MD5}").as_str()
    );
    let body = response.bytes().await.expect("the body reads");
    assert_eq!(body.as_ref(), FOX, "the live version's bytes");

    let download = format!(
        "{}/download/storage/v1/b/uploads/o/{}?alt=media",
        server.url,
        encode_segment("dir/all bytes.bin")
    );
    let body = client
        .get(&download)
        .send()
        .await
        .expect("GET completes")
        .bytes()
        .await
        .expect("the body reads");
    assert_eq!(
        body.as_ref(),
        FOX,
        "the download path returns the same bytes"
    );

    // The bucket is not versioned, so the first generation is gone.
    let response = client
        .get(format!("{url}?alt=media&generation={first_generation}"))
        .send()
        .await
        .expect("GET completes");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let archived = upload(&client, &server, "archive", "v.bin", &bytes).await;
    upload(&client, &server, "archive", "v.bin", FOX).await;
    let archived_generation = archived["generation"].as_str().expect("generation");
    let old = client
        .get(format!(
            "{}?alt=media&generation={archived_generation}",
            object_url(&server, "archive", "v.bin")
        ))
        .send()
        .await
        .expect("GET completes");
    assert_eq!(old.status(), StatusCode::OK);
    let old_bytes = old.bytes().await.expect("the body reads");
    assert_eq!(
        old_bytes.as_ref(),
        bytes.as_slice(),
        "a noncurrent version's bytes"
    );
    let (status, versions) = get_json(
        &client,
        &format!("{}/storage/v1/b/archive/o?versions=true", server.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    assert_eq!(
        versions["items"].as_array().map(Vec::len),
        Some(2),
        "{versions}"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn object_paths_decode() {
    let server = TestServer::start(None);
    let client = http_client();
    upload(&client, &server, "uploads", "a/b c+d%e.txt", FOX).await;
    let encoded = format!(
        "{}/storage/v1/b/uploads/o/a%2Fb%20c%2Bd%25e.txt",
        server.url
    );
    let (status, object) = get_json(&client, &encoded).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    assert_eq!(object["name"], "a/b c+d%e.txt", "%2F decodes to a slash");

    let raw_slash = format!("{}/storage/v1/b/uploads/o/a/b%20c%2Bd%25e.txt", server.url);
    let (status, object) = get_json(&client, &raw_slash).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    assert_eq!(
        object["name"], "a/b c+d%e.txt",
        "a raw slash is part of the name"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_over_limit_gets_413() {
    let server = TestServer::start_with_args(None, &["--max-upload-bytes", "4096"]);
    let client = http_client();
    // The last size is past the part of an oversized body that the server reads and drops.
    for size in [8 * 1024, 2 * 1024 * 1024, 80 * 1024 * 1024] {
        let form = Form::new().part("file", file_part("big.bin", &vec![7; size], None));
        let response = client
            .post(format!("{}/upload/uploads", server.url))
            .multipart(form)
            .send()
            .await;
        let Ok(response) = response else {
            // Past the discard limit the server may close the connection before the client
            // reads the response; only the smaller sizes must get the 413.
            assert_eq!(size, 80 * 1024 * 1024, "{size} bytes: {response:?}");
            continue;
        };
        let (status, body) = json_body(response).await;
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{size} bytes: {body}"
        );
        let message = error_message(status, &body);
        assert!(message.contains("4096 bytes"), "names the limit: {message}");
        assert!(
            message.contains("--max-upload-bytes"),
            "names the fix: {message}"
        );
    }

    // Without Content-Length the server finds the excess while it reads the form.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..16).map(|_| Ok(vec![7; 64 * 1024])).collect();
    let streamed = Part::stream(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .file_name("streamed.bin");
    let (status, body) = post_form(
        &client,
        &server,
        "uploads",
        Form::new().part("file", streamed),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "chunked body: {body}"
    );
    assert!(
        error_message(status, &body).contains("4096 bytes"),
        "{body}"
    );

    let health = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("the server still serves");
    assert_eq!(health.status(), StatusCode::OK);
    let small = upload(&client, &server, "uploads", "small.txt", FOX).await;
    assert_eq!(small["size"], "43", "uploads within the limit still work");
    let (status, listing) =
        get_json(&client, &format!("{}/storage/v1/b/uploads/o", server.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listing["items"].as_array().map(Vec::len),
        Some(1),
        "nothing of the rejected uploads was stored: {listing}"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn path_like_names_stay_inside_buckets() {
    let server = TestServer::start(None);
    let client = http_client();
    let root = server
        .data_dir
        .parent()
        .expect("the data directory has a parent")
        .to_path_buf();
    let passwd_before = std::fs::read("/etc/passwd").ok();
    let before = files_below(&root);

    let names = [
        "../../x",
        "/etc/passwd",
        "../../../../../../../../tmp/sluice-escape",
        "a/../../b",
        "..\\..\\windows",
        "./.",
        "index.json",
        "blobs/1",
    ];
    for (index, name) in names.iter().enumerate() {
        let content = format!("content {index}");
        let object = upload(&client, &server, "uploads", name, content.as_bytes()).await;
        assert_eq!(object["name"], *name, "stored under its own name");
        let media = client
            .get(format!(
                "{}?alt=media",
                object_url(&server, "uploads", name)
            ))
            .send()
            .await
            .expect("GET completes")
            .bytes()
            .await
            .expect("the body reads");
        assert_eq!(media.as_ref(), content.as_bytes(), "{name:?} reads back");
    }
    let longest = "n".repeat(1024);
    let object = upload(&client, &server, "uploads", &longest, FOX).await;
    assert_eq!(object["name"], longest.as_str(), "1024 bytes is allowed");

    let after = files_below(&root);
    let buckets = Path::new("data").join("buckets");
    for path in after.difference(&before) {
        assert!(
            path.starts_with(&buckets) || is_sled_file(path),
            "a file appeared outside {}: {}",
            buckets.display(),
            path.display()
        );
    }
    assert!(
        !Path::new("/tmp/sluice-escape").exists(),
        "no file was written through the name"
    );
    assert_eq!(
        std::fs::read("/etc/passwd").ok(),
        passwd_before,
        "/etc/passwd is unchanged"
    );

    let (status, listing) =
        get_json(&client, &format!("{}/storage/v1/b/uploads/o", server.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listing["items"].as_array().map(Vec::len),
        Some(names.len() + 1),
        "every name is listed: {listing}"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

/// Returns whether a path below the test's temporary folder is one the sled store writes in
/// the data directory, outside `buckets/`.
fn is_sled_file(path: &Path) -> bool {
    path.starts_with("data")
        && !path.starts_with(Path::new("data").join("buckets"))
        && path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| {
                matches!(name, "db" | "conf")
                    || name.starts_with("snap.")
                    || path.starts_with("data/blobs")
                    || is_payload_segment(path, name)
            })
}

/// Returns whether a path is a payload segment of the message store: `data/payloads/`, then
/// 16 hex digits with `.seg`.
fn is_payload_segment(path: &Path, name: &str) -> bool {
    path.parent() == Some(Path::new("data/payloads"))
        && name
            .strip_suffix(".seg")
            .is_some_and(|hex| hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_names_rejected() {
    let server = TestServer::start(None);
    let client = http_client();
    let too_long = "n".repeat(1025);
    let cases = [
        (
            "line\nfeed",
            "cannot contain a carriage return or a line feed",
        ),
        (
            "carriage\rreturn",
            "cannot contain a carriage return or a line feed",
        ),
        (
            too_long.as_str(),
            "at most 1024 bytes of UTF-8, and this one is 1025 bytes",
        ),
        ("..", "are not valid object names"),
        (
            ".well-known/acme-challenge/token",
            "cannot start with `.well-known/acme-challenge/`",
        ),
    ];
    for (name, rule) in cases {
        let form = Form::new()
            .text("name", name.to_owned())
            .part("file", file_part("x", FOX, None));
        let (status, body) = post_form(&client, &server, "uploads", form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        let message = error_message(status, &body);
        assert!(
            message.contains("invalid object name"),
            "{name:?}: {message}"
        );
        assert!(message.contains(rule), "{name:?} names the rule: {message}");
    }

    // A bad name anywhere in the form stores none of its files.
    let form = Form::new()
        .part("file", file_part("fine.txt", FOX, None))
        .text("name", "bad\nname")
        .part("file", file_part("x", FOX, None));
    let (status, body) = post_form(&client, &server, "uploads", form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(status, &body).starts_with("file #2: "),
        "{body}"
    );
    let (_, listing) = get_json(&client, &format!("{}/storage/v1/b/uploads/o", server.url)).await;
    assert!(listing.get("items").is_none(), "nothing stored: {listing}");
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_uploads_rejected() {
    let server = TestServer::start(None);
    let client = http_client();
    let unnamed = Part::bytes(FOX.to_vec());
    let (status, body) = post_form(
        &client,
        &server,
        "uploads",
        Form::new().part("file", unnamed),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = error_message(status, &body);
    assert!(
        message.starts_with("file #1 has no name: send a `name` part before it"),
        "{message}"
    );

    let (status, body) =
        post_form(&client, &server, "uploads", Form::new().text("name", "x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(status, &body).contains("no `file` part after it"),
        "{body}"
    );

    let (status, body) = post_form(
        &client,
        &server,
        "uploads",
        Form::new().part("upload", file_part("a", FOX, None)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(status, &body).contains("unknown form part \"upload\""),
        "{body}"
    );

    let response = client
        .post(format!("{}/upload/uploads", server.url))
        .body("plain text")
        .send()
        .await
        .expect("the request completes");
    let (status, body) = json_body(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(status, &body).contains("multipart/form-data"),
        "{body}"
    );

    let form = Form::new().part("file", file_part("a", FOX, None));
    let (status, body) = post_form(&client, &server, "no-such-bucket", form).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["status"], "NOT_FOUND");
    let message = error_message(status, &body);
    assert!(
        message.contains("\"no-such-bucket\" not found"),
        "{message}"
    );
    assert!(message.contains("[[buckets]]"), "names the fix: {message}");

    let (status, body) = get_json(
        &client,
        &format!("{}/storage/v1/b/uploads/o/missing", server.url),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        error_message(status, &body).contains("\"missing\" not found"),
        "{body}"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_then_delete_object() {
    let server = TestServer::start(None);
    let client = http_client();
    let uploaded = upload(&client, &server, "uploads", "doc.txt", FOX).await;
    let url = object_url(&server, "uploads", "doc.txt");

    let patch = |body: Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            json_body(
                client
                    .patch(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("PATCH completes"),
            )
            .await
        }
    };
    let (status, patched) = patch(json!({
        "metadata": {"owner": "ada", "stage": "draft"},
        "contentType": "text/markdown"
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["metadata"],
        json!({"owner": "ada", "stage": "draft"})
    );
    assert_eq!(patched["contentType"], "text/markdown");
    assert_eq!(patched["metageneration"], "2");
    assert_eq!(
        patched["generation"], uploaded["generation"],
        "same generation"
    );

    let (status, patched) = patch(json!({"metadata": {"stage": null, "reviewed": "yes"}})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["metadata"],
        json!({"owner": "ada", "reviewed": "yes"})
    );
    assert_eq!(
        patched["contentType"], "text/markdown",
        "unchanged when absent"
    );
    assert_eq!(patched["metageneration"], "3");

    let (status, patched) = patch(json!({"metadata": null})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(
        patched.get("metadata").is_none(),
        "every key removed: {patched}"
    );

    let (status, body) = patch(json!({"cacheControl": "no-cache"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(status, &body).contains("cacheControl"),
        "{body}"
    );

    let (status, fetched) = get_json(&client, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["metageneration"], "4", "the last patch is stored");

    let (status, body) = json_body(
        client
            .delete(format!("{url}?ifGenerationMatch=1"))
            .send()
            .await
            .expect("DELETE completes"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(status, &body).starts_with("ifGenerationMatch is not supported"),
        "{body}"
    );

    let deleted = client.delete(&url).send().await.expect("DELETE completes");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(
        deleted.bytes().await.expect("the body reads").is_empty(),
        "no body"
    );
    let (status, body) = get_json(&client, &url).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let deleted_again = client.delete(&url).send().await.expect("DELETE completes");
    assert_eq!(deleted_again.status(), StatusCode::NOT_FOUND);

    let (status, body) = json_body(
        client
            .patch(&url)
            .json(&json!({"metadata": {"a": "b"}}))
            .send()
            .await
            .expect("PATCH completes"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "patching a deleted object: {body}"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_by_generation() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let client = http_client();
    let first = upload(&client, &server, "archive", "v.txt", b"one").await;
    let second = upload(&client, &server, "archive", "v.txt", b"two").await;
    let url = object_url(&server, "archive", "v.txt");
    let first_generation = first["generation"].as_str().expect("generation");

    let deleted = client
        .delete(format!("{url}?generation={first_generation}"))
        .send()
        .await
        .expect("DELETE completes");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, live) = get_json(&client, &url).await;
    assert_eq!(status, StatusCode::OK, "{live}");
    assert_eq!(
        live["generation"], second["generation"],
        "the live version stays"
    );
    let (_, versions) = get_json(
        &client,
        &format!("{}/storage/v1/b/archive/o?versions=true", server.url),
    )
    .await;
    assert_eq!(
        versions["items"].as_array().map(Vec::len),
        Some(1),
        "{versions}"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_publishes_finalize() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let client = http_client();
    let channel = channel(&server).await;
    let object = upload(&client, &server, "uploads", "photos/cat.jpg", FOX).await;

    let messages = pull_all(&channel, "test-events").await;
    assert_eq!(messages.len(), 1, "one message per upload: {messages:?}");
    let message = &messages[0];
    let attributes: &HashMap<String, String> = &message.attributes;
    let generation = object["generation"].as_str().expect("generation");
    let expected = [
        ("eventType", "OBJECT_FINALIZE"),
        ("bucketId", "uploads"),
        ("objectId", "photos/cat.jpg"),
        ("objectGeneration", generation),
        ("payloadFormat", "JSON_API_V1"),
        ("origin", "storage-http-test"),
    ];
    for (key, value) in expected {
        assert_eq!(
            attributes.get(key).map(String::as_str),
            Some(value),
            "attribute {key}: {attributes:?}"
        );
    }
    let config = attributes
        .get("notificationConfig")
        .expect("notificationConfig attribute");
    assert!(
        config.starts_with("projects/_/buckets/uploads/notificationConfigs/"),
        "{config}"
    );
    let mut data: Value = serde_json::from_slice(&message.data).expect("the data is JSON");
    // The response links to the server the client used. The message, which has no client,
    // links to Google's endpoint as Cloud Storage's messages do.
    let media_link = data["mediaLink"].as_str().expect("mediaLink");
    assert!(
        media_link.starts_with("https://www.googleapis.com/download/storage/v1/b/uploads/o/"),
        "{media_link}"
    );
    let mut object = object;
    for link in ["selfLink", "mediaLink"] {
        data[link] = Value::Null;
        object[link] = Value::Null;
    }
    assert_eq!(data, object, "the data is the uploaded object resource");

    // Changes of the versioned bucket without notifications publish nothing.
    upload(&client, &server, "archive", "quiet.txt", FOX).await;
    assert!(
        pull_all(&channel, "test-events").await.is_empty(),
        "no message from archive"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_one_notification_config() {
    let mut first = TestServer::start(Some(EVENTS_CONFIG));
    let data_dir = first.data_dir.clone();
    let config = data_dir
        .parent()
        .expect("the data directory has a parent")
        .join("sluice.toml");
    let (status, _) = first.terminate();
    assert!(status.success(), "the first server exits cleanly");

    let server = TestServer::start_in(&data_dir, Some(&config));
    let client = http_client();
    let channel = channel(&server).await;
    upload(&client, &server, "uploads", "again.txt", FOX).await;
    let messages = pull_all(&channel, "test-events").await;
    assert_eq!(
        messages.len(),
        1,
        "the configured notification config was not added twice: {messages:?}"
    );
    assert!(server.stop().success(), "server exits cleanly");
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_notification_replaces_the_old_one() {
    let mut first = TestServer::start(Some(EVENTS_CONFIG));
    let data_dir = first.data_dir.clone();
    let config = data_dir
        .parent()
        .expect("the data directory has a parent")
        .join("sluice.toml");
    let (status, _) = first.terminate();
    assert!(status.success(), "the first server exits cleanly");

    // The same notification with another payload format and attribute value.
    let edited = EVENTS_CONFIG.replace(
        r#"custom_attributes = { origin = "storage-http-test" }"#,
        "payload_format = \"NONE\"\ncustom_attributes = { origin = \"edited\" }",
    );
    std::fs::write(&config, edited).expect("the edited config is written");
    let server = TestServer::start_in(&data_dir, Some(&config));
    let client = http_client();
    let channel = channel(&server).await;
    upload(&client, &server, "uploads", "edited.txt", FOX).await;
    let messages = pull_all(&channel, "test-events").await;

    assert_eq!(
        messages.len(),
        1,
        "the edited notification replaced the old one: {messages:?}"
    );
    assert_eq!(messages[0].attributes["origin"], "edited");
    assert_eq!(messages[0].attributes["payloadFormat"], "NONE");
    assert!(messages[0].data.is_empty(), "NONE carries no payload");
    assert!(server.stop().success(), "server exits cleanly");
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_is_404_json() {
    let server = TestServer::start(None);
    let client = http_client();

    for (method, path) in [("GET", "/nonexistent"), ("POST", "/upload/")] {
        let response = client
            .request(
                method.parse().expect("method"),
                format!("{}{path}", server.url),
            )
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 404, "{method} {path}");
        let body: serde_json::Value = response.json().await.expect("JSON error body");
        assert_eq!(body["error"]["status"], "NOT_FOUND", "{method} {path}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(path), "{method} {path}: {message}");
    }
    assert!(server.stop().success(), "server exits cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_name_is_rejected() {
    let server = TestServer::start(Some(EVENTS_CONFIG));
    let client = http_client();
    let form = reqwest::multipart::Form::new()
        .part(
            "name",
            reqwest::multipart::Part::bytes(b"a\xff\xfeb.jpg".to_vec()),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(FOX.to_vec()).file_name("fox.txt"),
        );

    let response = client
        .post(format!("{}/upload/uploads", server.url))
        .multipart(form)
        .send()
        .await
        .expect("upload request");

    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("not valid UTF-8"), "{message}");
    let listing: serde_json::Value = client
        .get(format!("{}/storage/v1/b/uploads/o", server.url))
        .send()
        .await
        .expect("list request")
        .json()
        .await
        .expect("list body");
    assert!(
        listing.get("items").is_none(),
        "nothing was stored: {listing}"
    );
    assert!(server.stop().success(), "server exits cleanly");
}
