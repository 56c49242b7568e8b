//! TLS on the one port of a real `sluice serve`: clients that trust a test CA connect over
//! gRPC (Rust and Google's Python client) and HTTP, plaintext is refused, mTLS accepts only
//! clients with a certificate from the client CA and maps it to an identity, and SIGHUP
//! swaps in a new certificate while a broken one is ignored.
//!
//! The certificates are made in each test with rcgen.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::CertificateParams;
use reqwest::StatusCode;
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::{PublishRequest, PubsubMessage};
use sluice_proto::tonic::transport::{Certificate, Channel, ClientTlsConfig};
use support::certs::{Leaf, TestCa};
use support::{python, TestServer};

/// The files of one server's TLS setup, in a temporary directory.
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new(server: &Leaf, client_ca: Option<&TestCa>) -> TlsFiles {
        let files = TlsFiles {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        files.write_server(server);
        if let Some(ca) = client_ca {
            std::fs::write(files.path("client-ca.pem"), ca.pem()).expect("write client CA");
        }
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_server(&self, server: &Leaf) {
        std::fs::write(self.path("server.pem"), &server.cert_pem).expect("write cert");
        std::fs::write(self.path("server.key"), &server.key_pem).expect("write key");
    }

    fn tls_table(&self, client_certificate: Option<&str>) -> String {
        let mut table = format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.path("server.pem"),
            self.path("server.key")
        );
        if let Some(mode) = client_certificate {
            table.push_str(&format!(
                "client_ca_file = {:?}\nclient_certificate = {mode:?}\n",
                self.path("client-ca.pem")
            ));
        }
        table
    }
}

/// An HTTPS client that trusts only `ca`, optionally with a client certificate. It keeps
/// no idle connections, so that every request makes a new handshake.
fn https_client(ca: &TestCa, identity: Option<&Leaf>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("CA PEM")])
        .timeout(Duration::from_secs(10));
    if let Some(leaf) = identity {
        let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("PEM"));
    }
    builder.build().expect("client builds")
}

fn https_url(server: &TestServer, path: &str) -> String {
    assert!(
        server.url.starts_with("https://"),
        "the server announces {}",
        server.url
    );
    format!("{}{path}", server.url)
}

async fn healthz(client: &reqwest::Client, server: &TestServer) -> Result<StatusCode, String> {
    client
        .get(https_url(server, "/healthz"))
        .send()
        .await
        .map(|response| response.status())
        .map_err(|err| format!("{err:?}"))
}

const TOPICS: &str = "[[topics]]\nname = \"orders\"\n";

#[tokio::test]
async fn clients_trusting_the_ca_connect_over_tls() {
    let ca = TestCa::new("sluice test CA");
    let files = TlsFiles::new(&ca.server(), None);
    let server = TestServer::start(Some(&format!("{TOPICS}{}", files.tls_table(None))));

    let status = healthz(&https_client(&ca, None), &server).await;
    assert_eq!(status, Ok(StatusCode::OK));

    // gRPC over TLS negotiates HTTP/2 through ALPN.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    let channel = Channel::from_shared(server.url.clone())
        .expect("URL")
        .tls_config(tls)
        .expect("TLS config")
        .connect()
        .await
        .expect("gRPC connects over TLS");
    let published = PublisherClient::new(channel)
        .publish(PublishRequest {
            topic: "projects/local/topics/orders".to_owned(),
            messages: vec![PubsubMessage {
                data: b"over tls".to_vec(),
                ..PubsubMessage::default()
            }],
        })
        .await
        .expect("publish over TLS")
        .into_inner();
    assert_eq!(published.message_ids.len(), 1);

    let stranger = TestCa::new("another CA");
    let untrusted = healthz(&https_client(&stranger, None), &server).await;
    assert!(untrusted.is_err(), "a client trusting another CA connected");
}

#[tokio::test]
async fn storage_links_use_https_over_tls() {
    let ca = TestCa::new("sluice test CA");
    let files = TlsFiles::new(&ca.server(), None);
    let config = format!(
        "{TOPICS}[[buckets]]\nname = \"uploads\"\n{}",
        files.tls_table(None)
    );
    let server = TestServer::start(Some(&config));
    let client = https_client(&ca, None);

    let upload = https_url(
        &server,
        "/upload/storage/v1/b/uploads/o?uploadType=media&name=report.txt",
    );
    let response = client
        .post(upload)
        .body("quarterly report")
        .send()
        .await
        .expect("the upload completes");
    assert_eq!(response.status(), StatusCode::OK);
    let object: serde_json::Value = response.json().await.expect("object JSON");
    let media_link = object["mediaLink"].as_str().expect("a mediaLink");
    assert!(media_link.starts_with("https://"), "{media_link}");
    let self_link = object["selfLink"].as_str().expect("a selfLink");
    assert!(self_link.starts_with("https://"), "{self_link}");

    // The client follows mediaLink to download, as Google's Python client does.
    let body = client
        .get(media_link)
        .send()
        .await
        .expect("the download completes")
        .text()
        .await
        .expect("a body");
    assert_eq!(body, "quarterly report");
}

#[tokio::test]
async fn plaintext_is_refused_on_the_tls_port() {
    let ca = TestCa::new("sluice test CA");
    let files = TlsFiles::new(&ca.server(), None);
    let server = TestServer::start(Some(&format!("{TOPICS}{}", files.tls_table(None))));
    let plain_url = server.url.replacen("https://", "http://", 1);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let result = http.get(format!("{plain_url}/healthz")).send().await;
    assert!(result.is_err(), "plaintext HTTP got an answer: {result:?}");

    let channel = Channel::from_shared(plain_url)
        .expect("URL")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("the TCP connection opens");
    let publish = PublisherClient::new(channel)
        .publish(PublishRequest {
            topic: "projects/local/topics/orders".to_owned(),
            messages: vec![PubsubMessage {
                data: b"plain".to_vec(),
                ..PubsubMessage::default()
            }],
        })
        .await;
    assert!(publish.is_err(), "plaintext gRPC published: {publish:?}");
}

#[tokio::test]
async fn mtls_requires_a_client_certificate() {
    let ca = TestCa::new("sluice test CA");
    let client_ca = TestCa::new("sluice client CA");
    let files = TlsFiles::new(&ca.server(), Some(&client_ca));
    let server = TestServer::start(Some(&format!(
        "{TOPICS}{}",
        files.tls_table(Some("required"))
    )));

    let without = healthz(&https_client(&ca, None), &server).await;
    assert!(
        without.is_err(),
        "a client without a certificate connected: {without:?}"
    );

    let worker = client_ca.client(Some("spiffe://sluice/worker"), "worker");
    let with = healthz(&https_client(&ca, Some(&worker)), &server).await;
    assert_eq!(with, Ok(StatusCode::OK));

    let foreign = TestCa::new("foreign CA").client(Some("spiffe://sluice/worker"), "worker");
    let foreign_result = healthz(&https_client(&ca, Some(&foreign)), &server).await;
    assert!(
        foreign_result.is_err(),
        "a certificate of another CA connected"
    );
}

#[tokio::test]
async fn client_certificates_authenticate_identities() {
    let ca = TestCa::new("sluice test CA");
    let client_ca = TestCa::new("sluice client CA");
    let files = TlsFiles::new(&ca.server(), Some(&client_ca));
    let config = format!(
        r#"{TOPICS}{}
[auth]
enabled = true

[[auth.identities]]
name = "worker"
client_certificate = "spiffe://sluice/worker"
[[auth.identities.grants]]
actions = ["publish"]
resources = ["topics/orders"]
"#,
        files.tls_table(Some("optional"))
    );
    let server = TestServer::start(Some(&config));
    let publish = |client: reqwest::Client| {
        let url = https_url(&server, "/v1/projects/local/topics/orders:publish");
        async move {
            client
                .post(url)
                .json(&serde_json::json!({"messages": [{"data": "b3JkZXI="}]}))
                .send()
                .await
                .expect("the request completes")
                .status()
        }
    };

    let worker = client_ca.client(Some("spiffe://sluice/worker"), "ignored CN");
    assert_eq!(
        publish(https_client(&ca, Some(&worker))).await,
        StatusCode::OK
    );

    let impostor = client_ca.client(None, "spiffe://sluice/worker");
    assert_eq!(
        publish(https_client(&ca, Some(&impostor))).await,
        StatusCode::UNAUTHORIZED,
        "a common name that spells a URI identity without a URI SAN"
    );

    let dns_params =
        CertificateParams::new(vec!["spiffe://sluice/worker".to_owned()]).expect("an IA5 DNS name");
    let dns_impostor = client_ca.sign(dns_params);
    assert_eq!(
        publish(https_client(&ca, Some(&dns_impostor))).await,
        StatusCode::UNAUTHORIZED,
        "a DNS name that spells a URI identity"
    );

    let stranger = client_ca.client(None, "stranger");
    assert_eq!(
        publish(https_client(&ca, Some(&stranger))).await,
        StatusCode::UNAUTHORIZED,
        "a certificate whose common name matches no identity"
    );
    assert_eq!(
        publish(https_client(&ca, None)).await,
        StatusCode::UNAUTHORIZED,
        "optional mode lets the connection in, but it still needs credentials"
    );
}

/// Waits until `healthz` through `client` succeeds, or panics after 10 s.
async fn wait_until_trusted(client: &reqwest::Client, server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match healthz(client, server).await {
            Ok(StatusCode::OK) => return,
            other if Instant::now() > deadline => {
                panic!("the new certificate is not served after SIGHUP: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let files = TlsFiles::new(&old_ca.server(), None);
    let mut server = TestServer::start(Some(&format!("{TOPICS}{}", files.tls_table(None))));
    let old_client = https_client(&old_ca, None);
    let new_client = https_client(&new_ca, None);
    assert_eq!(healthz(&old_client, &server).await, Ok(StatusCode::OK));

    files.write_server(&new_ca.server());
    server.signal("HUP");
    wait_until_trusted(&new_client, &server).await;
    // A new client, because a client that connected before may resume its TLS session
    // without seeing the certificate again.
    let old_client = https_client(&old_ca, None);
    assert!(
        healthz(&old_client, &server).await.is_err(),
        "the old certificate is still served"
    );

    // A broken key file keeps the certificate in use.
    std::fs::write(files.path("server.key"), "not a key").expect("write key");
    server.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(healthz(&new_client, &server).await, Ok(StatusCode::OK));

    let (_, log) = server.terminate();
    assert!(
        log.contains("TLS certificate reload failed"),
        "the failed reload is logged: {log}"
    );
}

fn sha256_hex(token: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn python_client_connects_over_tls() {
    let token = "python-token-0123456789abcdefghijklmnop";
    let ca = TestCa::new("sluice test CA");
    let files = TlsFiles::new(&ca.server(), None);
    std::fs::write(files.path("ca.pem"), ca.pem()).expect("write CA");
    let config = format!(
        r#"{}
[[auth.identities]]
name = "python@example.com"
token_sha256 = "{}"
[[auth.identities.grants]]
actions = ["admin", "publish", "subscribe"]
resources = ["**"]
"#,
        files.tls_table(None),
        sha256_hex(token)
    );
    // No [auth] enabled key: on a loopback address auth would be off, so turn it on.
    let config = config.replacen(
        "[[auth.identities]]",
        "[auth]\nenabled = true\n\n[[auth.identities]]",
        1,
    );
    let server = TestServer::start(Some(&config));
    let host = server
        .url
        .strip_prefix("https://")
        .expect("the server URL is https://HOST:PORT");
    let ca_path = files.path("ca.pem");
    let output = python::run(
        "pubsub_tls.py",
        &[],
        &[
            ("SLUICE_TLS_HOST", host),
            ("SLUICE_TLS_CA", path_str(&ca_path)),
            ("SLUICE_TOKEN", token),
        ],
    );
    python::assert_success("pubsub_tls.py", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("\"scenario\": \"tls\""), "{stdout}");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}
