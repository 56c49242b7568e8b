//! Authenticated push end to end: a push subscription with `oidc_token` sends each request
//! with an RS256 JWT in `Authorization: Bearer`, and the endpoint in this test verifies it
//! against the JWKS that sluice serves at `/oauth2/v3/certs`, as a function would. A request
//! with a token that does not verify gets 403, so the message would not be acknowledged.

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::{PublishRequest, PubsubMessage};
use support::{channel, TestServer};
use tokio::net::TcpListener;

/// What the endpoint saw of one request: the verified claims, or why verification failed.
type Verified = Result<Value, String>;

#[derive(Debug, Default)]
struct Endpoint {
    /// The base URL of the sluice server, set once it has started.
    sluice_url: OnceLock<String>,
    /// The URL of this endpoint, the expected audience.
    url: OnceLock<String>,
    verified: Mutex<Vec<Verified>>,
}

async fn verify(endpoint: &Endpoint, headers: &HeaderMap) -> Verified {
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or("no bearer token")?;
    let sluice = endpoint
        .sluice_url
        .get()
        .ok_or("the server URL is not set")?;
    let jwks: JwkSet = reqwest::get(format!("{sluice}/oauth2/v3/certs"))
        .await
        .map_err(|err| format!("fetching the JWKS failed: {err}"))?
        .json()
        .await
        .map_err(|err| format!("the JWKS is not valid: {err}"))?;
    let header = jsonwebtoken::decode_header(token).map_err(|err| err.to_string())?;
    let kid = header.kid.ok_or("the token has no kid")?;
    let jwk = jwks.find(&kid).ok_or("no JWKS key has the token's kid")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|err| err.to_string())?;
    let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[endpoint.url.get().ok_or("no endpoint URL")?]);
    validation.set_issuer(&["sluice"]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|err| format!("the token does not verify: {err}"))
}

async fn receive(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> StatusCode {
    let verified = verify(&endpoint, &headers).await;
    let status = if verified.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    endpoint
        .verified
        .lock()
        .expect("the lock is not poisoned")
        .push(verified);
    status
}

#[tokio::test]
async fn push_requests_carry_a_verifiable_token() {
    let endpoint = Arc::new(Endpoint::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/push", listener.local_addr().expect("address"));
    endpoint.url.set(url.clone()).expect("set once");
    let app = axum::Router::new()
        .route("/push", axum::routing::post(receive))
        .with_state(endpoint.clone());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });

    let config = format!(
        r#"
[[topics]]
name = "orders"

[[subscriptions]]
name = "orders-push"
topic = "orders"
[subscriptions.push]
endpoint = "{url}"
[subscriptions.push.oidc_token]
service_account_email = "pusher@sluice.iam.example.com"
"#
    );
    let server = TestServer::start(Some(&config));
    endpoint
        .sluice_url
        .set(server.url.clone())
        .expect("set once");

    PublisherClient::new(channel(&server).await)
        .publish(PublishRequest {
            topic: "projects/local/topics/orders".to_owned(),
            messages: vec![PubsubMessage {
                data: b"order 1".to_vec(),
                ..PubsubMessage::default()
            }],
        })
        .await
        .expect("publish");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        let seen = endpoint
            .verified
            .lock()
            .expect("the lock is not poisoned")
            .first()
            .cloned();
        if let Some(first) = seen {
            break first;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no push request within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let claims = first.expect("the token verifies against the served JWKS");
    assert_eq!(claims["aud"], url.as_str(), "the audience is the endpoint");
    assert_eq!(claims["email"], "pusher@sluice.iam.example.com");
    assert_eq!(claims["sub"], "pusher@sluice.iam.example.com");
    let lifetime = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert_eq!(lifetime, 3600, "tokens are valid for an hour");

    serving.abort();
}

#[tokio::test]
async fn signing_key_file_survives_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
    let key_path = dir.path().join("push.key");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let config = format!(
        "[[topics]]\nname = \"orders\"\n\n[auth]\npush_signing_key_file = {:?}\n",
        key_path
    );

    let mut served = Vec::new();
    for _ in 0..2 {
        let server = TestServer::start(Some(&config));
        let jwks: Value = reqwest::get(format!("{}/oauth2/v3/certs", server.url))
            .await
            .expect("the JWKS request completes")
            .json()
            .await
            .expect("a JSON JWKS");
        served.push(jwks["keys"][0].clone());
        server.stop();
    }
    assert_eq!(served[0]["kty"], "RSA");
    assert!(served[0]["n"].is_string(), "{:?}", served[0]);
    assert_eq!(served[0], served[1], "the same key after a restart");
}
