//! The HTTP client of the bucket commands, `sluice upload` and `sluice objects`: URLs of the
//! server's Cloud Storage routes, and errors worded from Google's JSON error body.

use anyhow::Context as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{RequestBuilder, Response};
use serde_json::Value;

use super::{error_chain, CONNECT_TIMEOUT};

/// Characters that stay unescaped in a URL path segment: RFC 3986's unreserved set. Every
/// other byte of an object name, `/` included, is percent-encoded, so the name stays one
/// segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A client of one server's bucket routes.
#[derive(Debug)]
pub(crate) struct StorageClient {
    http: reqwest::Client,
    /// The server's base URL, without a trailing `/`.
    server: String,
}

impl StorageClient {
    /// Builds a client of `server`, a URL that `--server` accepted.
    ///
    /// # Errors
    ///
    /// Fails when the HTTP client cannot be built.
    pub(crate) fn new(server: &str) -> anyhow::Result<Self> {
        // The server is named explicitly, so proxy variables meant for other traffic are
        // ignored, as the gRPC commands ignore them.
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("failed to build the HTTP client")?;
        Ok(Self {
            http,
            server: server.trim_end_matches('/').to_owned(),
        })
    }

    /// Returns the underlying HTTP client, to build requests with.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Returns the URL of `path` on the server, for a path that starts with `/`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// Returns the URL of `POST /upload/{bucket}`.
    pub(crate) fn upload_url(&self, bucket: &str) -> String {
        format!("{}/upload/{}", self.server, encode(bucket))
    }

    /// Returns the JSON API URL of a bucket's object list.
    pub(crate) fn objects_url(&self, bucket: &str) -> String {
        format!("{}/storage/v1/b/{}/o", self.server, encode(bucket))
    }

    /// Returns the JSON API URL of one object.
    pub(crate) fn object_url(&self, bucket: &str, name: &str) -> String {
        format!("{}/{}", self.objects_url(bucket), encode(name))
    }

    /// Sends `request` and returns the response when its status is a success.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot be reached, with a hint to start one, or when it
    /// responds with an error status, with the message of Google's JSON error body. `action`
    /// starts the message, such as `upload of "cat.jpg"`.
    pub(crate) async fn send(
        &self,
        request: RequestBuilder,
        action: &str,
    ) -> anyhow::Result<Response> {
        let response = request.send().await.map_err(|err| {
            if err.is_connect() || err.is_timeout() {
                anyhow::anyhow!(
                    "{action} failed: cannot reach {}: {}\n\
                     hint: start a server with `sluice serve`, or point --server (or SLUICE_SERVER) at a running one",
                    self.server,
                    error_chain(&err)
                )
            } else {
                anyhow::anyhow!("{action} failed: {}", error_chain(&err))
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        Err(anyhow::anyhow!(
            "{action} failed: {}",
            describe_error(status, &body)
        ))
    }
}

/// Percent-encodes `text` as one URL path segment.
pub(crate) fn encode(text: &str) -> String {
    utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

/// Formats an error response: the status name and message of Google's JSON error body, such as
/// `NOT_FOUND (HTTP 404): ...`, or the HTTP status and the start of any other body.
fn describe_error(status: reqwest::StatusCode, body: &[u8]) -> String {
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|json| json.get("error").cloned());
    let message = error
        .as_ref()
        .and_then(|error| error.get("message"))
        .and_then(Value::as_str);
    let name = error
        .as_ref()
        .and_then(|error| error.get("status"))
        .and_then(Value::as_str);
    match (name, message) {
        (Some(name), Some(message)) => format!("{name} (HTTP {}): {message}", status.as_u16()),
        (None, Some(message)) => format!("HTTP {status}: {message}"),
        _ => {
            let text = String::from_utf8_lossy(body);
            let start: String = text.trim().chars().take(200).collect();
            if start.is_empty() {
                format!("HTTP {status}; check that --server points at `sluice serve`")
            } else {
                format!("HTTP {status}: {start}; check that --server points at `sluice serve`")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_url_encodes_one_segment() {
        let client = StorageClient::new("http://127.0.0.1:8085/").expect("client builds");
        assert_eq!(
            client.object_url("uploads", "a/b c+%.jpg"),
            "http://127.0.0.1:8085/storage/v1/b/uploads/o/a%2Fb%20c%2B%25.jpg"
        );
        assert_eq!(
            client.object_url("uploads", "../x"),
            "http://127.0.0.1:8085/storage/v1/b/uploads/o/..%2Fx"
        );
    }

    #[test]
    fn error_body_gives_status_and_message() {
        let body =
            br#"{"error":{"code":404,"message":"bucket \"x\" not found","status":"NOT_FOUND"}}"#;
        assert_eq!(
            describe_error(reqwest::StatusCode::NOT_FOUND, body),
            "NOT_FOUND (HTTP 404): bucket \"x\" not found"
        );
    }

    #[test]
    fn other_error_body_quoted() {
        assert_eq!(
            describe_error(reqwest::StatusCode::BAD_GATEWAY, b"upstream down\n"),
            "HTTP 502 Bad Gateway: upstream down; check that --server points at `sluice serve`"
        );
    }
}
