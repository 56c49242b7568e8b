//! The parts of a REST request that every route reads: the resource name and custom method
//! from the path, the query parameters and the JSON body.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response as HttpResponse;
use percent_encoding::percent_decode_str;
use serde_json::Value;
use tonic::{Code, Status};

use super::json::{self, Encoding, JsonMessage, Kind as _};
use super::kinds::Int32;
use crate::server::status;

/// A REST request, taken apart.
#[derive(Debug)]
pub(super) struct Call {
    /// The HTTP method, for error messages.
    pub(super) method: Method,
    /// The path after `/v1/` and before the custom method, percent-decoded, such as
    /// `projects/p/topics/t` or `projects/p/topics`.
    pub(super) resource: String,
    /// The custom method after the last `:` of the path, such as `publish`.
    pub(super) verb: Option<String>,
    /// The query parameters, percent-decoded, in the order sent.
    query: Vec<(String, String)>,
    pub(super) encoding: Encoding,
    body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Call {
    type Rejection = HttpResponse;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let method = request.method().clone();
        let raw_path = request.uri().path().to_owned();
        let query = parse_query(request.uri().query().unwrap_or_default());
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    status::payload_too_large(&format!(
                        "the request body is over the limit of {} bytes; publish fewer or smaller \
                     messages per request",
                        crate::server::limits::max_pubsub_rest_body_bytes()
                    ))
                } else {
                    status::rest_error(Code::InvalidArgument, &rejection.body_text(), None)
                }
            })?;

        // The routes all start with /v1/, so the prefix is always there.
        let path = raw_path.strip_prefix("/v1/").unwrap_or(&raw_path);
        // Resource IDs cannot contain ':', so a ':' in the last segment starts the custom
        // method.
        let (path, verb) = match path.rsplit_once(':') {
            Some((path, verb)) if !verb.contains('/') => (path, Some(verb.to_owned())),
            _ => (path, None),
        };
        let resource = percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| {
                status::rest_error(
                    Code::InvalidArgument,
                    &format!("the path {raw_path:?} is not valid UTF-8 once percent-decoded"),
                    None,
                )
            })?
            .into_owned();
        let encoding = encoding_of(&query).map_err(|status| super::error_response(&status))?;
        Ok(Call {
            method,
            resource,
            verb,
            query,
            encoding,
            body,
        })
    }
}

impl Call {
    /// Parses the JSON body as `M`; an empty body is the empty message, as for `{}`.
    ///
    /// # Errors
    ///
    /// INVALID_ARGUMENT naming the field at fault.
    pub(super) fn body<M: JsonMessage>(&self) -> Result<M, Status> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(M::default());
        }
        let value: Value = serde_json::from_slice(&self.body).map_err(|err| {
            Status::invalid_argument(format!("Invalid JSON payload received. {err}."))
        })?;
        json::parse_message(&value, "").map_err(Status::invalid_argument)
    }

    /// Returns the resource name without the trailing `/{collection}`, for the list routes
    /// such as `projects/p/topics/t/subscriptions`.
    pub(super) fn parent(&self, collection: &str) -> &str {
        self.resource
            .strip_suffix(collection)
            .and_then(|parent| parent.strip_suffix('/'))
            .unwrap_or(&self.resource)
    }

    /// Returns the `pageSize` and `pageToken` query parameters of a list route.
    ///
    /// # Errors
    ///
    /// INVALID_ARGUMENT when pageSize is not a 32-bit integer.
    pub(super) fn page(&self) -> Result<(i32, String), Status> {
        let size = match self.query_parameter("pageSize", "page_size") {
            Some(text) => Int32::parse(&Value::String(text.to_owned()), "pageSize")
                .map_err(Status::invalid_argument)?,
            None => 0,
        };
        let token = self
            .query_parameter("pageToken", "page_token")
            .unwrap_or_default()
            .to_owned();
        Ok((size, token))
    }

    /// Returns the last value of a query parameter sent under its JSON or its proto name.
    fn query_parameter(&self, json_name: &str, proto_name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(name, _)| name == json_name || name == proto_name)
            .map(|(_, value)| value.as_str())
    }
}

/// Splits a query string into decoded name and value pairs, as HTML forms encode them.
fn parse_query(query: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let spaced = text.replace('+', " ");
        percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Reads the response encoding from the `$alt` or `alt` parameter: `json`, optionally with
/// `;enum-encoding=int` as Google's Rust clients send it.
fn encoding_of(query: &[(String, String)]) -> Result<Encoding, Status> {
    let mut encoding = Encoding::default();
    for (_, value) in query
        .iter()
        .filter(|(name, _)| name == "$alt" || name == "alt")
    {
        let mut options = value.split(';').map(str::trim);
        let format = options.next().unwrap_or_default();
        if !format.eq_ignore_ascii_case("json") {
            return Err(Status::invalid_argument(format!(
                "alt={value:?} is not supported; this server writes JSON, so use alt=json"
            )));
        }
        for option in options {
            if option.eq_ignore_ascii_case("enum-encoding=int") {
                encoding.enums_as_numbers = true;
            }
        }
    }
    Ok(encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded() {
        let query = parse_query("%24alt=json%3Benum-encoding%3Dint&pageSize=2&pageToken=&x=a+b");
        assert_eq!(
            query,
            [
                ("$alt".to_owned(), "json;enum-encoding=int".to_owned()),
                ("pageSize".to_owned(), "2".to_owned()),
                ("pageToken".to_owned(), String::new()),
                ("x".to_owned(), "a b".to_owned()),
            ]
        );
    }

    #[test]
    fn alt_selects_enum_numbers() {
        let query = parse_query("%24alt=json%3Benum-encoding%3Dint");
        assert!(encoding_of(&query).expect("json").enums_as_numbers);
        let query = parse_query("alt=json");
        assert!(!encoding_of(&query).expect("json").enums_as_numbers);
        let query = parse_query("alt=proto");
        let err = encoding_of(&query).expect_err("proto is rejected");
        assert_eq!(err.code(), Code::InvalidArgument);
    }
}
