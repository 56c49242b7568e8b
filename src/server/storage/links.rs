//! Resources in their JSON API form, with links to this server.
//!
//! [`ObjectResource::to_json`] writes `selfLink` and `mediaLink` under Google's endpoint,
//! as Cloud Storage does. Google's Python client downloads an object it has read through its
//! `mediaLink`, so the responses of this server link to the server itself instead, at the
//! address the client used (its `Host`).

use std::convert::Infallible;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::HOST;
use axum::http::request::Parts;
use serde_json::{json, Value};
use sluice_router::buckets::{BucketInfo, ObjectResource, STORAGE_CLASS};

use crate::server::tls::ConnectionInfo;

/// The root of the links that [`ObjectResource`] writes.
const GOOGLE_API_ROOT: &str = "https://www.googleapis.com";

/// The base URL of this server as the client addressed it, such as `http://127.0.0.1:8085`,
/// with `https` on a TLS connection, or `None` when the request named no valid host.
#[derive(Debug, Clone)]
pub(super) struct BaseUrl(Option<String>);

impl BaseUrl {
    /// Returns the base URL of a request's host, from the URI's authority (HTTP/2) or the
    /// `Host` header (HTTP/1.1). Hosts with characters outside those of a host name, an IP
    /// address and a port are ignored, so that no link can be bent elsewhere.
    fn from_parts(parts: &Parts) -> Self {
        let host = parts
            .uri
            .authority()
            .map(|authority| authority.as_str().to_owned())
            .or_else(|| {
                let value = parts.headers.get(HOST)?.to_str().ok()?;
                Some(value.to_owned())
            });
        let valid = |host: &String| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
        };
        let tls = parts
            .extensions
            .get::<ConnectInfo<ConnectionInfo>>()
            .is_some_and(|info| info.0.tls);
        let scheme = if tls { "https" } else { "http" };
        BaseUrl(host.filter(valid).map(|host| format!("{scheme}://{host}")))
    }

    /// Returns the server's base URL, or Google's when the request named no host.
    pub(super) fn root(&self) -> &str {
        self.0.as_deref().unwrap_or(GOOGLE_API_ROOT)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BaseUrl {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(BaseUrl::from_parts(parts))
    }
}

/// Returns the object resource as the JSON API returns it, linking to this server.
pub(super) fn object_json(object: &ObjectResource, base: &BaseUrl) -> Value {
    let mut json = object.to_json();
    for (field, link) in [
        ("selfLink", object.self_link()),
        ("mediaLink", object.media_link()),
    ] {
        if let Some(path) = link.strip_prefix(GOOGLE_API_ROOT) {
            json[field] = Value::String(format!("{}{path}", base.root()));
        }
    }
    json
}

/// Returns the bucket resource (`storage#bucket`) with the fields that sluice keeps.
///
/// A bucket's settings have no metageneration in the bucket store, so it is always 1, with
/// its etag `CAE=`.
pub(super) fn bucket_json(bucket: &BucketInfo, base: &BaseUrl) -> Value {
    let created = chrono::DateTime::<chrono::Utc>::from(bucket.time_created)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({
        "kind": "storage#bucket",
        "id": bucket.name,
        "selfLink": format!("{}/storage/v1/b/{}", base.root(), bucket.name),
        "name": bucket.name,
        "metageneration": "1",
        "etag": "CAE=",
        "storageClass": STORAGE_CLASS,
        "timeCreated": created,
        "updated": created,
        "versioning": {"enabled": bucket.versioning},
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use axum::http::Request;

    use super::*;

    fn base_of(request: Request<()>) -> BaseUrl {
        BaseUrl::from_parts(&request.into_parts().0)
    }

    fn object() -> ObjectResource {
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        ObjectResource {
            name: "photos/a b.jpg".to_owned(),
            bucket: "uploads".to_owned(),
            generation: 7,
            metageneration: 1,
            content_type: "image/jpeg".to_owned(),
            storage_class: STORAGE_CLASS.to_owned(),
            size: 3,
            md5_hash: String::new(),
            crc32c: String::new(),
            time_created: time,
            updated: time,
            time_deleted: None,
            time_storage_class_updated: time,
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn links_point_at_the_host() {
        let request = Request::builder()
            .uri("/storage/v1/b/uploads/o")
            .header(HOST, "127.0.0.1:8085")
            .body(())
            .expect("a valid request");
        let json = object_json(&object(), &base_of(request));
        assert_eq!(
            json["mediaLink"],
            "http://127.0.0.1:8085/download/storage/v1/b/uploads/o/photos%2Fa%20b.jpg\
             ?generation=7&alt=media"
        );
        assert_eq!(
            json["selfLink"],
            "http://127.0.0.1:8085/storage/v1/b/uploads/o/photos%2Fa%20b.jpg"
        );
    }

    #[test]
    fn odd_host_keeps_google_links() {
        let request = Request::builder()
            .uri("/storage/v1/b/uploads/o")
            .header(HOST, "evil.example/x?")
            .body(())
            .expect("a valid request");
        let json = object_json(&object(), &base_of(request));
        let link = json["mediaLink"].as_str().expect("a link");
        assert!(link.starts_with(GOOGLE_API_ROOT), "{link}");
    }
}
