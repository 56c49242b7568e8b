//! A subset of Cloud Storage's JSON API v1, under Google's paths, so that its clients can
//! point at sluice: `objects.list`, `objects.get` (metadata, or the bytes with
//! `alt=media`), `objects.patch` of `metadata` and `contentType`, and `objects.delete`.
//!
//! Object names arrive percent-encoded as one path segment (`a%2Fb` for `a/b`), as Google's
//! clients send them. The routes capture the rest of the path, so an unencoded `/` in a name
//! works too.
//!
//! Precondition parameters (`ifGenerationMatch` and the like) are rejected with 400, because
//! the bucket store cannot check them in the same step as the change. So are the list
//! parameters whose filtering sluice does not do (`matchGlob`, `startOffset`, `endOffset`,
//! `includeTrailingDelimiter`, `includeFoldersAsPrefixes`).
//!
//! A download honours a single byte range in `Range` with 206, as Cloud Storage does, and
//! sends the object's CRC32C and MD5 in `x-goog-hash`, which the clients check.
//!
//! NOTE: listings are not paginated, so `maxResults` and `pageToken` are ignored and every
//! matching object is returned at once.

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT_RANGES, CONTENT_RANGE, CONTENT_TYPE, ETAG, RANGE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response as HttpResponse};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_router::buckets::DEFAULT_CONTENT_TYPE;

use super::errors::{invalid, range_not_satisfiable, storage_error};
use super::links::{object_json, BaseUrl};
use super::patch::parse_patch;
use super::ranges::{select_range, Selection};
use super::StorageState;

/// The query parameters of `objects.list` that sluice reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListParams {
    #[serde(default)]
    prefix: String,
    delimiter: Option<String>,
    #[serde(default)]
    versions: bool,
    #[serde(rename = "matchGlob")]
    match_glob: Option<String>,
    #[serde(rename = "startOffset")]
    start_offset: Option<String>,
    #[serde(rename = "endOffset")]
    end_offset: Option<String>,
    #[serde(rename = "includeTrailingDelimiter", default)]
    include_trailing_delimiter: bool,
    #[serde(rename = "includeFoldersAsPrefixes", default)]
    include_folders_as_prefixes: bool,
}

impl ListParams {
    /// Returns the name of the first parameter whose filtering sluice does not do.
    fn unsupported(&self) -> Option<&'static str> {
        [
            ("matchGlob", self.match_glob.is_some()),
            ("startOffset", self.start_offset.is_some()),
            ("endOffset", self.end_offset.is_some()),
            ("includeTrailingDelimiter", self.include_trailing_delimiter),
            ("includeFoldersAsPrefixes", self.include_folders_as_prefixes),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
    }
}

/// The query parameters of `objects.get`, `objects.patch` and `objects.delete` that sluice
/// reads.
#[derive(Debug, Deserialize)]
pub(super) struct ObjectParams {
    generation: Option<i64>,
    /// `json` (the default) for the metadata, `media` for the bytes.
    alt: Option<String>,
    #[serde(rename = "ifGenerationMatch")]
    if_generation_match: Option<String>,
    #[serde(rename = "ifGenerationNotMatch")]
    if_generation_not_match: Option<String>,
    #[serde(rename = "ifMetagenerationMatch")]
    if_metageneration_match: Option<String>,
    #[serde(rename = "ifMetagenerationNotMatch")]
    if_metageneration_not_match: Option<String>,
}

impl ObjectParams {
    /// Returns the name of the first precondition parameter of the request.
    fn precondition(&self) -> Option<&'static str> {
        [
            ("ifGenerationMatch", &self.if_generation_match),
            ("ifGenerationNotMatch", &self.if_generation_not_match),
            ("ifMetagenerationMatch", &self.if_metageneration_match),
            (
                "ifMetagenerationNotMatch",
                &self.if_metageneration_not_match,
            ),
        ]
        .into_iter()
        .find_map(|(name, value)| value.is_some().then_some(name))
    }
}

type ObjectPath = Result<Path<(String, String)>, PathRejection>;
type ObjectQuery = Result<Query<ObjectParams>, QueryRejection>;

/// `GET /storage/v1/b/{bucket}/o`: lists objects as `storage#objects`. As in Cloud Storage,
/// `items` and `prefixes` are left out when empty.
pub(super) async fn list_objects(
    State(state): State<StorageState>,
    bucket: Result<Path<String>, PathRejection>,
    params: Result<Query<ListParams>, QueryRejection>,
    base: BaseUrl,
) -> HttpResponse {
    let (Path(bucket), Query(params)) = match (bucket, params) {
        (Ok(bucket), Ok(params)) => (bucket, params),
        (Err(rejection), _) => return invalid(&rejection.body_text()),
        (_, Err(rejection)) => return invalid(&rejection.body_text()),
    };
    if let Some(name) = params.unsupported() {
        return invalid(&format!(
            "{name} is not supported: sluice filters listings only by prefix and delimiter, so \
             leave it out and filter the items yourself"
        ));
    }
    let listing = state
        .storage
        .list(
            &bucket,
            &params.prefix,
            params.delimiter.as_deref(),
            params.versions,
        )
        .await;
    let listing = match listing {
        Ok(listing) => listing,
        Err(err) => return storage_error(&err),
    };
    let mut response = json!({ "kind": "storage#objects" });
    if !listing.objects.is_empty() {
        let items: Vec<Value> = listing
            .objects
            .iter()
            .map(|object| object_json(object, &base))
            .collect();
        response["items"] = Value::Array(items);
    }
    if !listing.prefixes.is_empty() {
        response["prefixes"] = json!(listing.prefixes);
    }
    Json(response).into_response()
}

/// `GET /storage/v1/b/{bucket}/o/{object}`: the object resource, or with `alt=media` its
/// bytes.
pub(super) async fn get_object(
    State(state): State<StorageState>,
    path: ObjectPath,
    params: ObjectQuery,
    base: BaseUrl,
    headers: HeaderMap,
) -> HttpResponse {
    let ((bucket, name), params) = match object_request(path, params) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match params.alt.as_deref() {
        None | Some("json") => match state.storage.get(&bucket, &name, params.generation).await {
            Ok(object) => Json(object_json(&object, &base)).into_response(),
            Err(err) => storage_error(&err),
        },
        Some("media") => media(&state, &bucket, &name, params.generation, &headers).await,
        Some(other) => invalid(&format!(
            "invalid alt {other:?}: use alt=json for the metadata or alt=media for the bytes"
        )),
    }
}

/// `GET /download/storage/v1/b/{bucket}/o/{object}`: the object's bytes.
pub(super) async fn download_object(
    State(state): State<StorageState>,
    path: ObjectPath,
    params: ObjectQuery,
    headers: HeaderMap,
) -> HttpResponse {
    let ((bucket, name), params) = match object_request(path, params) {
        Ok(request) => request,
        Err(response) => return response,
    };
    if params.alt.as_deref().is_some_and(|alt| alt != "media") {
        return invalid("the download path returns only the bytes: use alt=media or leave it out");
    }
    media(&state, &bucket, &name, params.generation, &headers).await
}

/// `DELETE /storage/v1/b/{bucket}/o/{object}`: deletes the live version, or one generation,
/// and responds with 204 and no body.
pub(super) async fn delete_object(
    State(state): State<StorageState>,
    path: ObjectPath,
    params: ObjectQuery,
) -> HttpResponse {
    let ((bucket, name), params) = match object_request(path, params) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match state
        .storage
        .delete(&bucket, &name, params.generation)
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => storage_error(&err),
    }
}

/// `PATCH /storage/v1/b/{bucket}/o/{object}`: changes the custom metadata and the content
/// type of the live version.
///
/// In the JSON body, each key of `metadata` set to a string is set and each set to `null`
/// is removed, and `"metadata": null` removes every key, as in Cloud Storage. Other writable
/// fields of Cloud Storage, such as `cacheControl`, are rejected, because sluice does not
/// store them.
pub(super) async fn patch_object(
    State(state): State<StorageState>,
    path: ObjectPath,
    params: ObjectQuery,
    base: BaseUrl,
    body: Result<Json<Value>, JsonRejection>,
) -> HttpResponse {
    let ((bucket, name), params) = match object_request(path, params) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let patch = match body {
        Ok(Json(body)) => parse_patch(&body),
        Err(rejection) => Err(rejection.body_text()),
    };
    let patch = match patch {
        Ok(patch) => patch,
        Err(message) => return invalid(&message),
    };
    let needs_live = patch.clear_metadata || params.generation.is_some();
    let live = if needs_live {
        match state.storage.get(&bucket, &name, None).await {
            Ok(live) => Some(live),
            Err(err) => return storage_error(&err),
        }
    } else {
        None
    };
    if let (Some(live), Some(generation)) = (&live, params.generation) {
        if live.generation != generation {
            return invalid(&format!(
                "generation {generation} is not the live version ({}) of object {name:?}: only \
                 the live version can be patched",
                live.generation
            ));
        }
    }
    let mut changes = patch.metadata;
    if patch.clear_metadata {
        // NOTE: a key added by another request between the read above and the patch below
        // stays, because only the keys read here are removed.
        for key in live.iter().flat_map(|live| live.metadata.keys()) {
            changes.entry(key.clone()).or_insert(None);
        }
    }
    let patched = state
        .storage
        .patch_metadata(&bucket, &name, changes, patch.content_type)
        .await;
    match patched {
        Ok(object) => Json(object_json(&object, &base)).into_response(),
        Err(err) => storage_error(&err),
    }
}

/// Extracts bucket, object name and query parameters, or returns the 400 response for them
/// or for a precondition parameter.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished HTTP response, returned at once"
)]
fn object_request(
    path: ObjectPath,
    params: ObjectQuery,
) -> Result<((String, String), ObjectParams), HttpResponse> {
    let Path(path) = path.map_err(|rejection| invalid(&rejection.body_text()))?;
    let Query(params) = params.map_err(|rejection| invalid(&rejection.body_text()))?;
    if let Some(name) = params.precondition() {
        return Err(invalid(&format!(
            "{name} is not supported: sluice cannot check preconditions yet, so leave it out \
             of the request"
        )));
    }
    Ok((path, params))
}

/// Returns the response with an object's bytes, or the part that a Range header selects,
/// and Cloud Storage's `x-goog-*` headers.
async fn media(
    state: &StorageState,
    bucket: &str,
    name: &str,
    generation: Option<i64>,
    request_headers: &HeaderMap,
) -> HttpResponse {
    let (object, mut bytes) = match state.storage.read(bucket, name, generation).await {
        Ok(read) => read,
        Err(err) => return storage_error(&err),
    };
    let range = request_headers
        .get(RANGE)
        .and_then(|value| value.to_str().ok());
    let mut content_range = None;
    if let Some(range) = range {
        match select_range(range, object.size) {
            Selection::All => {}
            Selection::Part { first, last } => {
                let (first, last) = (to_index(first), to_index(last));
                bytes = bytes
                    .get(first..=last)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                content_range = Some(format!("bytes {first}-{last}/{}", object.size));
            }
            Selection::Unsatisfiable => return range_not_satisfiable(range, object.size),
        }
    }
    let content_type = HeaderValue::from_str(&object.content_type)
        .unwrap_or(HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
    let headers = [
        ("x-goog-generation", object.generation.to_string()),
        ("x-goog-metageneration", object.metageneration.to_string()),
        (
            "x-goog-hash",
            format!("crc32c={},md5={}", object.crc32c, object.md5_hash),
        ),
        ("x-goog-stored-content-length", object.size.to_string()),
        ("x-goog-storage-class", object.storage_class.clone()),
    ];
    let mut response = Body::from(bytes).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(CONTENT_TYPE, content_type);
    response_headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", object.etag())) {
        response_headers.insert(ETAG, etag);
    }
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response_headers.insert(HeaderName::from_static(name), value);
        }
    }
    if let Some(content_range) = content_range.and_then(|value| HeaderValue::from_str(&value).ok())
    {
        response_headers.insert(CONTENT_RANGE, content_range);
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    response
}

/// Converts a byte offset within an object that was read into memory, so it fits a usize.
fn to_index(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}
