//! Triggers end to end: `sluice triggers list` on configuration files, and the real
//! `sluice serve` on 127.0.0.1 delivering the events of storage, Pub/Sub and audit-log
//! triggers to endpoints on 127.0.0.1:0 that each test starts. The last test delivers an
//! audit-log event to a CloudEvent function run by the real functions-framework for Python.

mod support;

use std::io::Write as _;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use serde_json::{json, Value};
use support::functions::{FunctionHost, Signature};
use support::TestServer;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a test waits for something the server or the function should do. It bounds a
/// hung test, and is never a measure of speed.
const GIVE_UP: Duration = Duration::from_secs(120);

/// The audit-log trigger of [`audit_config`]: writes of JPEG objects anywhere under the
/// bucket `photos`.
const AUDIT_TRIGGER: &str = "\
[[triggers]]
name = \"jpeg-writes\"
event_type = \"google.cloud.audit.log.v1.written\"
filters = { serviceName = \"storage.googleapis.com\", methodName = \"storage.objects.create\" }
resource_name = \"projects/_/buckets/photos/objects/**/*.jpg\"
";

/// One request that the endpoint received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("header value is text")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Debug, Default)]
struct EndpointState {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
}

/// An HTTP endpoint on 127.0.0.1 that records every request and responds 204.
struct Endpoint {
    url: String,
    state: Arc<EndpointState>,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    async fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the endpoint");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("endpoint address")
        );
        let state = Arc::new(EndpointState::default());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the endpoint serves");
        });
        Endpoint { url, state, task }
    }

    fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|request| request.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` has received `count` requests and returns them.
    async fn wait_for(&self, path: &str, count: usize) -> Vec<Received> {
        let give_up = Instant::now() + GIVE_UP;
        loop {
            let arrived = self.state.arrived.notified();
            let received = self.received(path);
            if received.len() >= count {
                return received;
            }
            if tokio::time::timeout_at(give_up, arrived).await.is_err() {
                panic!(
                    "{path} received {} requests, expected {count}",
                    received.len()
                );
            }
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(state): State<Arc<EndpointState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.received.lock().expect("not poisoned").push(Received {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    state.arrived.notify_waiters();
    StatusCode::NO_CONTENT
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// Returns a configuration with the bucket `photos`, the topic `orders` and the audit-log
/// trigger [`AUDIT_TRIGGER`] pushing to `endpoint`.
fn audit_config(endpoint: &str) -> String {
    format!(
        "[[buckets]]\nname = \"photos\"\n[[topics]]\nname = \"orders\"\n\
         {AUDIT_TRIGGER}push = {{ endpoint = \"{endpoint}\" }}\n"
    )
}

/// Returns an audit-log entry of Cloud Storage in the Admin Activity log of project `local`.
fn audit_entry(insert_id: &str, method: &str, resource: &str) -> Value {
    json!({
        "logName": "projects/local/logs/cloudaudit.googleapis.com%2Factivity",
        "resource": {"type": "gcs_bucket", "labels": {"bucket_name": "photos"}},
        "insertId": insert_id,
        "timestamp": "2024-05-01T12:00:00.123456Z",
        "severity": "NOTICE",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "storage.googleapis.com",
            "methodName": method,
            "resourceName": resource,
            "authenticationInfo": {"principalEmail": "dev@example.test"}
        }
    })
}

/// Entries of which the trigger takes exactly `match-1` and `match-2`.
fn audit_entries() -> Vec<Value> {
    let create = "storage.objects.create";
    let mut not_audit = audit_entry(
        "other-log",
        create,
        "projects/_/buckets/photos/objects/a.jpg",
    );
    not_audit["logName"] = json!("projects/local/logs/app");
    vec![
        audit_entry(
            "match-1",
            create,
            "projects/_/buckets/photos/objects/cat.jpg",
        ),
        audit_entry(
            "other-method",
            "storage.objects.delete",
            "projects/_/buckets/photos/objects/cat.jpg",
        ),
        audit_entry(
            "match-2",
            create,
            "projects/_/buckets/photos/objects/2024/05/dog.jpg",
        ),
        audit_entry(
            "other-type",
            create,
            "projects/_/buckets/photos/objects/cat.png",
        ),
        audit_entry(
            "other-bucket",
            create,
            "projects/_/buckets/misc/objects/cat.jpg",
        ),
        audit_entry(
            "other-case",
            "Storage.Objects.Create",
            "projects/_/buckets/photos/objects/cat.jpg",
        ),
        not_audit,
    ]
}

/// Writes entries through Cloud Logging's REST `entries.write`.
async fn write_entries(server: &TestServer, entries: &[Value]) {
    let response = http()
        .post(format!("{}/v2/entries:write", server.url))
        .json(&json!({ "entries": entries }))
        .send()
        .await
        .expect("entries.write succeeds");
    assert_eq!(response.status().as_u16(), 200, "entries.write status");
}

/// Returns the value of a sink's `sink_matches` counter on `/metrics`, 0 when absent.
async fn sink_matches(server: &TestServer, sink: &str) -> u64 {
    let text = http()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let prefix = format!("sluice_sink_matches_total{{sink=\"{sink}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().expect("a count"))
}

/// Runs the `sluice` binary with `args` and returns its output.
fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("sluice runs")
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).expect("write the config");
    path.to_str().expect("UTF-8 path").to_owned()
}

#[test]
fn list_shows_created_resources() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        &dir,
        &format!(
            "{}[[triggers]]\nname = \"new-photos\"\n\
             event_type = \"google.cloud.storage.object.v1.finalized\"\n\
             filters = {{ bucket = \"photos\" }}\n\
             handler = {{ kind = \"annotate\", destination_bucket = \"notes\" }}\n\
             [[buckets]]\nname = \"notes\"\n",
            audit_config("http://127.0.0.1:9/audit")
        ),
    );

    let output = sluice(&["triggers", "list", "--config", &config]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(text.starts_with("jpeg-writes\n"), "{text}");
    assert!(
        text.contains(
            "  resource name projects/_/buckets/photos/objects/**/*.jpg (path pattern)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  destination   push to http://127.0.0.1:9/audit as cloudevent\n"),
        "{text}"
    );
    assert!(
        text.contains("  sink          trigger-jpeg-writes (created)\n"),
        "{text}"
    );
    assert!(
        text.contains("\nnew-photos\n  event type    google.cloud.storage.object.v1.finalized\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  notification  bucket photos publishes OBJECT_FINALIZE to topic trigger-new-photos\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  destination   handler annotate\n"),
        "{text}"
    );

    let output = sluice(&["triggers", "list", "--config", &config, "--json"]);
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[0]["name"], "jpeg-writes");
    assert_eq!(lines[0]["subscription"], "trigger-jpeg-writes");
    assert_eq!(lines[0]["topic"], "trigger-jpeg-writes");
    assert_eq!(lines[0]["topicCreated"], true);
    assert_eq!(lines[0]["destination"]["kind"], "push");
    assert_eq!(lines[0]["destination"]["format"], "cloudevent");
    assert_eq!(lines[0]["sink"]["name"], "trigger-jpeg-writes");
    assert_eq!(lines[1]["notification"]["bucket"], "photos");
    assert_eq!(lines[1]["notification"]["eventType"], "OBJECT_FINALIZE");
    assert_eq!(lines[1]["destination"]["handler"], "annotate");
}

#[test]
fn list_rejects_invalid_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        &dir,
        "[[topics]]\nname = \"trigger-hook\"\n\
         [[triggers]]\nname = \"hook\"\n\
         event_type = \"google.cloud.audit.log.v1.written\"\n\
         filters = { serviceName = \"s\", methodName = \"m\" }\n\
         push = { endpoint = \"http://127.0.0.1:9/\" }\n",
    );

    let output = sluice(&["triggers", "list", "--config", &config]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(
        stderr.contains(
            "trigger \"hook\": the trigger creates topic \"trigger-hook\", but topic #1 \
             declares that name too"
        ),
        "{stderr}"
    );
}

/// The sink filter that `triggers list` prints is one that `rules test` takes, and it
/// matches the entries that the trigger delivers.
#[test]
fn sink_filter_works_in_rules_test() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&dir, &audit_config("http://127.0.0.1:9/audit"));
    let output = sluice(&["triggers", "list", "--config", &config, "--json"]);
    assert!(output.status.success(), "{output:?}");
    let listed: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    let filter = listed["sink"]["filter"].as_str().expect("the sink filter");

    let entries_path = dir.path().join("entries.jsonl");
    let mut entries = std::fs::File::create(&entries_path).expect("create entries");
    for entry in audit_entries() {
        writeln!(entries, "{entry}").expect("write an entry");
    }
    let entries_path = entries_path.to_str().expect("UTF-8 path");

    let output = sluice(&["rules", "test", "--filter", filter, entries_path]);
    assert!(output.status.success(), "{output:?}");
    let matched: Vec<Value> = String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let ids: Vec<&str> = matched
        .iter()
        .map(|entry| entry["insertId"].as_str().expect("insertId"))
        .collect();
    assert_eq!(ids, ["match-1", "match-2"]);

    let output = sluice(&[
        "rules",
        "test",
        "--filter",
        filter,
        "--explain",
        entries_path,
    ]);
    let explained = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        explained.contains("protoPayload.resourceName=~"),
        "--explain names the path pattern's clause:\n{explained}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_trigger_pushes_cloudevents() {
    let endpoint = Endpoint::start().await;
    let server = TestServer::start(Some(&format!(
        "[[buckets]]\nname = \"photos\"\n\
         [[triggers]]\nname = \"new-photos\"\n\
         event_type = \"google.cloud.storage.object.v1.finalized\"\n\
         filters = {{ bucket = \"photos\" }}\n\
         push = {{ endpoint = \"{}/photos\" }}\n",
        endpoint.url
    )));
    let client = http();
    for name in ["cat.jpg", "dog.jpg"] {
        let response = client
            .post(format!(
                "{}/upload/storage/v1/b/photos/o?uploadType=media&name={name}",
                server.url
            ))
            .header("content-type", "image/jpeg")
            .body(format!("bytes of {name}"))
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status().as_u16(), 200, "upload {name}");
        if name == "cat.jpg" {
            // A deletion is not an event of this trigger.
            let response = client
                .delete(format!("{}/storage/v1/b/photos/o/cat.jpg", server.url))
                .send()
                .await
                .expect("delete");
            assert_eq!(response.status().as_u16(), 204, "delete cat.jpg");
        }
    }

    let received = endpoint.wait_for("/photos", 2).await;
    let mut subjects: Vec<&str> = received
        .iter()
        .map(|request| request.header("ce-subject"))
        .collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["objects/cat.jpg", "objects/dog.jpg"]);
    for request in &received {
        assert_eq!(
            request.header("ce-type"),
            "google.cloud.storage.object.v1.finalized"
        );
        assert_eq!(
            request.header("ce-source"),
            "//storage.googleapis.com/projects/_/buckets/photos"
        );
        let object = request.json();
        assert_eq!(object["bucket"], "photos");
        assert_eq!(
            format!("objects/{}", object["name"].as_str().expect("name")),
            request.header("ce-subject")
        );
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_trigger_runs_handler() {
    let server = TestServer::start(Some(
        "[[buckets]]\nname = \"photos\"\n[[buckets]]\nname = \"thumbs\"\n\
         [[triggers]]\nname = \"thumbnails\"\n\
         event_type = \"google.cloud.storage.object.v1.finalized\"\n\
         filters = { bucket = \"photos\" }\n\
         handler = { kind = \"thumbnail\", destination_bucket = \"thumbs\" }\n",
    ));
    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/demo/photos/landscape.jpg"
    ))
    .expect("read the demo photo");
    let client = http();
    let response = client
        .post(format!(
            "{}/upload/storage/v1/b/photos/o?uploadType=media&name=landscape.jpg",
            server.url
        ))
        .header("content-type", "image/jpeg")
        .body(photo)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 200, "upload status");

    let give_up = Instant::now() + GIVE_UP;
    let thumbnail = loop {
        let response = client
            .get(format!(
                "{}/storage/v1/b/thumbs/o/landscape.jpg",
                server.url
            ))
            .send()
            .await
            .expect("get the thumbnail's metadata");
        if response.status().as_u16() == 200 {
            break response.json::<Value>().await.expect("an object resource");
        }
        assert!(
            Instant::now() < give_up,
            "no thumbnail within {GIVE_UP:?}: the last status was {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(thumbnail["metadata"]["sourceBucket"], "photos");
    assert_eq!(thumbnail["metadata"]["sourceObject"], "landscape.jpg");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_trigger_pushes_messages() {
    let endpoint = Endpoint::start().await;
    let server = TestServer::start(Some(&format!(
        "[[topics]]\nname = \"orders\"\n\
         [[triggers]]\nname = \"orders\"\n\
         event_type = \"google.cloud.pubsub.topic.v1.messagePublished\"\n\
         filters = {{ topic = \"orders\" }}\n\
         push = {{ endpoint = \"{}/orders\" }}\n",
        endpoint.url
    )));
    let data = base64::engine::general_purpose::STANDARD.encode(r#"{"order":42}"#);
    let response = http()
        .post(format!(
            "{}/v1/projects/local/topics/orders:publish",
            server.url
        ))
        .json(&json!({"messages": [{"data": data, "attributes": {"shop": "north"}}]}))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status().as_u16(), 200, "publish status");

    let received = endpoint.wait_for("/orders", 1).await;
    let request = &received[0];
    assert_eq!(
        request.header("ce-type"),
        "google.cloud.pubsub.topic.v1.messagePublished"
    );
    assert_eq!(
        request.header("ce-source"),
        "//pubsub.googleapis.com/projects/local/topics/orders"
    );
    let body = request.json();
    assert_eq!(body["message"]["data"], data);
    assert_eq!(body["message"]["attributes"]["shop"], "north");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trigger_matches_path_pattern() {
    let endpoint = Endpoint::start().await;
    let server = TestServer::start(Some(&audit_config(&format!("{}/audit", endpoint.url))));

    write_entries(&server, &audit_entries()).await;

    let received = endpoint.wait_for("/audit", 2).await;
    let mut resources: Vec<&str> = received
        .iter()
        .map(|request| request.header("ce-resourcename"))
        .collect();
    resources.sort_unstable();
    assert_eq!(
        resources,
        [
            "projects/_/buckets/photos/objects/2024/05/dog.jpg",
            "projects/_/buckets/photos/objects/cat.jpg",
        ]
    );
    for request in &received {
        assert_eq!(
            request.header("ce-type"),
            "google.cloud.audit.log.v1.written"
        );
        assert_eq!(request.header("ce-methodname"), "storage.objects.create");
    }
    // The sink decides when the entries are written, so its count is final here: the
    // entries the pattern rejects were never published.
    assert_eq!(sink_matches(&server, "trigger-jpeg-writes").await, 2);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_framework_receives_audit_event() {
    let function = FunctionHost::start(
        "record_events.py",
        "record_cloudevent",
        Signature::CloudEvent,
    );
    let server = TestServer::start(Some(&audit_config(&function.url)));

    write_entries(&server, &audit_entries()).await;

    let received = function.wait_for(2).await;
    let event = received
        .iter()
        .find(|event| event["data"]["insertId"] == "match-1")
        .unwrap_or_else(|| panic!("no event of entry match-1 in {received:#?}"));
    assert_eq!(event["type"], "google.cloud.audit.log.v1.written");
    assert_eq!(
        event["source"],
        "//cloudaudit.googleapis.com/projects/local/logs/activity"
    );
    assert_eq!(
        event["subject"],
        "storage.googleapis.com/projects/_/buckets/photos/objects/cat.jpg"
    );
    assert_eq!(event["servicename"], "storage.googleapis.com");
    assert_eq!(event["methodname"], "storage.objects.create");
    assert_eq!(
        event["resourcename"],
        "projects/_/buckets/photos/objects/cat.jpg"
    );
    assert_eq!(event["specversion"], "1.0");
    assert!(
        event["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{event:#}"
    );
    let data = &event["data"];
    assert_eq!(
        data["logName"],
        "projects/local/logs/cloudaudit.googleapis.com%2Factivity"
    );
    assert_eq!(data["protoPayload"]["methodName"], "storage.objects.create");
    assert_eq!(
        data["protoPayload"]["authenticationInfo"]["principalEmail"],
        "dev@example.test"
    );
    let mut ids: Vec<&str> = received
        .iter()
        .map(|event| event["data"]["insertId"].as_str().expect("insertId"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["match-1", "match-2"], "only the matching entries");
    assert_eq!(sink_matches(&server, "trigger-jpeg-writes").await, 2);
    server.stop();
}
