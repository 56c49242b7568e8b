//! The admin HTTP routes of deployed functions, which the `sluice functions` commands call:
//!
//! - `GET /sluice/v1/functions`: every function with its state, trigger and backlog;
//! - `POST /sluice/v1/functions`: deploy, with a [`DeploySpec`] as the JSON body;
//! - `DELETE /sluice/v1/functions/{name}`;
//! - `POST /sluice/v1/functions/{name}/call`: one synthetic event, `{"data": ...}`;
//! - `GET /sluice/v1/functions/{name}/logs?limit=N`: the newest log entries, oldest first,
//!   at most 10,000.
//!
//! Errors are Google's JSON error body.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::Code;
use tracing::warn;

use super::spec::DeploySpec;
use super::{FunctionError, Functions};
use crate::server::status;

/// Log entries returned when the request sets no limit, as gcloud's default.
const DEFAULT_LOG_LIMIT: usize = 20;

/// The maximum number of log entries that one request returns.
const MAX_LOG_LIMIT: usize = 10_000;

/// Returns the functions routes.
pub(crate) fn routes(functions: Functions) -> Router {
    Router::new()
        .route("/sluice/v1/functions", get(list).post(deploy))
        .route(
            "/sluice/v1/functions/{name}",
            axum::routing::delete(delete_function),
        )
        .route("/sluice/v1/functions/{name}/call", post(call))
        .route("/sluice/v1/functions/{name}/logs", get(logs))
        .with_state(functions)
}

/// Returns the HTTP response of a failed request.
fn error_response(err: &FunctionError) -> Response {
    let code = match err {
        FunctionError::Invalid(_) => Code::InvalidArgument,
        FunctionError::NotFound(_) => Code::NotFound,
        FunctionError::Busy(_) => Code::Aborted,
        FunctionError::Failed(_) => {
            warn!(error = %err, "functions request failed");
            Code::FailedPrecondition
        }
    };
    status::rest_error(code, &err.to_string(), None).into_response()
}

async fn list(State(functions): State<Functions>) -> Response {
    Json(json!({ "functions": functions.list().await })).into_response()
}

async fn deploy(
    State(functions): State<Functions>,
    body: Result<Json<DeploySpec>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(spec) = match body {
        Ok(body) => body,
        Err(rejection) => {
            let message = format!("invalid deploy request: {}", rejection.body_text());
            return status::rest_error(Code::InvalidArgument, &message, None).into_response();
        }
    };
    match functions.deploy(spec).await {
        Ok(status) => Json(status).into_response(),
        Err(err) => error_response(&err),
    }
}

async fn delete_function(State(functions): State<Functions>, Path(name): Path<String>) -> Response {
    match functions.delete(&name).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(err) => error_response(&err),
    }
}

/// The body of a call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRequest {
    #[serde(default)]
    data: Value,
}

async fn call(
    State(functions): State<Functions>,
    Path(name): Path<String>,
    body: Result<Json<CallRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => {
            let message = format!("invalid call request: {}", rejection.body_text());
            return status::rest_error(Code::InvalidArgument, &message, None).into_response();
        }
    };
    match functions.call(&name, &request.data).await {
        Ok(result) => Json(result).into_response(),
        Err(err) => error_response(&err),
    }
}

/// The query of a logs request.
#[derive(Debug, Deserialize)]
struct LogsQuery {
    limit: Option<usize>,
}

async fn logs(
    State(functions): State<Functions>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(DEFAULT_LOG_LIMIT);
    if !(1..=MAX_LOG_LIMIT).contains(&limit) {
        let message = format!(
            "limit {limit} is out of range: a request returns 1 to {MAX_LOG_LIMIT} log entries; \
             use --limit 1 to {MAX_LOG_LIMIT}"
        );
        return status::rest_error(Code::InvalidArgument, &message, None).into_response();
    }
    match functions.logs(&name, limit).await {
        Ok(entries) => Json(json!({ "entries": entries })).into_response(),
        Err(err) => error_response(&err),
    }
}
