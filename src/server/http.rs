//! The plain HTTP routes served beside gRPC on the same port, and the request span that
//! every request, gRPC included, runs in.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use opentelemetry::propagation::Extractor;
use sluice_router::deliver::Broker;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::metrics::Metrics;

/// `GET /healthz` and `GET /metrics`.
pub(crate) fn routes(metrics: Arc<Metrics>, broker: Arc<Broker>) -> Router {
    let health = Router::new()
        .route("/healthz", get(healthz))
        .with_state(broker);
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
        .merge(health)
}

/// Responds 200 `ok` while the store can serve requests, and 503 with the store's error
/// otherwise, such as while the connection to JetStream is lost.
async fn healthz(State(broker): State<Arc<Broker>>) -> Response {
    match broker.store().check_health() {
        Ok(()) => "ok\n".into_response(),
        Err(err) => {
            let body = format!("store unreachable: {err}\n");
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
    }
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        metrics.encode(),
    )
}

/// Runs a request in a server span whose parent is the caller's `traceparent` header, if
/// any. Scrapes of `/metrics` and `/healthz` get no span, so that they add no traces.
pub(crate) async fn trace_request(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/metrics" || path == "/healthz" {
        return next.run(request).await;
    }
    let span = request_span(&request);
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    // An error means that the span is disabled, and then there is no trace to continue.
    let _ = span.set_parent(parent);
    next.run(request).instrument(span).await
}

/// Returns the span of one request, named as OpenTelemetry's conventions name RPC and HTTP
/// server spans: the gRPC method, or the HTTP method and route.
fn request_span(request: &Request) -> tracing::Span {
    let path = request.uri().path();
    let is_grpc = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if is_grpc {
        let method = path.trim_start_matches('/');
        return tracing::info_span!(
            "request",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
        );
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let route = with_custom_verb(route, path);
    tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        url.path = %path,
    )
}

/// Returns `route` with the custom verb of `path` appended, such as `:publish` in
/// `/v1/projects/p/topics/t:publish`. The Pub/Sub REST API puts the method in a verb after
/// the resource name, and one axum route serves every verb of a resource, so without it
/// publish, pull and acknowledge would share a span name. Only Pub/Sub routes get a verb:
/// their resource ids cannot contain `:`, while Cloud Storage object names can.
fn with_custom_verb(route: &str, path: &str) -> String {
    if !route.starts_with("/v1/projects/") {
        return route.to_owned();
    }
    let last_segment = path.rsplit('/').next().unwrap_or("");
    match last_segment.rsplit_once(':') {
        Some((_, verb)) if !verb.is_empty() && !route.ends_with(&format!(":{verb}")) => {
            format!("{route}:{verb}")
        }
        _ => route.to_owned(),
    }
}

/// Reads trace context from HTTP request headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_verb_joins_route() {
        let route = "/v1/projects/{project}/subscriptions/{subscription}";
        assert_eq!(
            with_custom_verb(route, "/v1/projects/local/subscriptions/orders:acknowledge"),
            format!("{route}:acknowledge")
        );
        assert_eq!(
            with_custom_verb(route, "/v1/projects/local/subscriptions/orders"),
            route
        );
    }

    #[test]
    fn object_name_colon_is_no_verb() {
        let route = "/storage/v1/b/{bucket}/o/{object}";
        assert_eq!(
            with_custom_verb(route, "/storage/v1/b/uploads/o/a:b.jpg"),
            route
        );
    }

    #[test]
    fn custom_verb_kept_once() {
        let route = "/v1/projects/{project}/topics/{topic}:publish";
        assert_eq!(
            with_custom_verb(route, "/v1/projects/local/topics/orders:publish"),
            route
        );
    }
}
