//! Authentication and authorization of every gRPC call and HTTP request.
//!
//! [`check`] runs as middleware in front of every route. It authenticates the caller by the
//! bearer token of the `Authorization` header, or else by the client certificate of an
//! mTLS connection, then looks the call up in the [`routes`] table to find its action and
//! resource and checks them against the identity's grants. Denied calls are written to the
//! audit log. `/healthz` and `/metrics` stay open.

mod first_message;
pub(crate) mod routes;

pub(crate) use first_message::{check_first_message_length, read_first_message};

use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use regex::Regex;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tonic::{Code, Status};
use tracing::warn;

use super::audit::{AuditLog, AuditRecord};
use super::status;
use super::tls::ConnectionInfo;
use crate::config::security::{AuthSpec, GrantSpec};
use routes::Resource;

/// The time a gRPC call has to send its first message, which names its resource, before it
/// is authorized. It bounds how long a caller without credentials can hold a partly sent
/// message in memory, while leaving a slow link time for a 10 MB publish.
const FIRST_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The kind of a call, as grants name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Publish,
    Subscribe,
    Admin,
    Upload,
    ReadObjects,
}

impl Action {
    /// Returns the name that the `actions` key of a grant uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Admin => "admin",
            Action::Upload => "upload",
            Action::ReadObjects => "read_objects",
        }
    }

    fn parse(name: &str) -> Option<Action> {
        [
            Action::Publish,
            Action::Subscribe,
            Action::Admin,
            Action::Upload,
            Action::ReadObjects,
        ]
        .into_iter()
        .find(|action| action.as_str() == name)
    }
}

/// The authenticated caller, which [`check`] adds to the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal(pub(crate) Arc<str>);

/// The identities of `[auth]`, with compiled grants.
#[derive(Debug)]
pub(crate) struct Auth {
    /// Off: every call passes and [`check`] adds no [`Principal`].
    enabled: bool,
    identities: Vec<Identity>,
    /// Receives an entry for every denied call.
    audit: Option<AuditLog>,
}

#[derive(Debug)]
struct Identity {
    name: Arc<str>,
    token_sha256: Option<[u8; 32]>,
    client_certificate: Option<String>,
    grants: Vec<Grant>,
}

#[derive(Debug)]
struct Grant {
    actions: Vec<Action>,
    /// Each resource glob as an anchored regex.
    resources: Vec<Regex>,
}

impl Auth {
    /// Compiles the `[auth]` table. `enabled` is the decision of [`auth_enabled`].
    ///
    /// # Errors
    ///
    /// Fails when a resource pattern does not compile, which validation should prevent.
    pub(crate) fn new(
        spec: &AuthSpec,
        enabled: bool,
        audit: Option<AuditLog>,
    ) -> anyhow::Result<Auth> {
        let identities = spec
            .identities
            .iter()
            .map(|identity| {
                Ok(Identity {
                    name: Arc::from(identity.name.as_str()),
                    token_sha256: identity.token_sha256,
                    client_certificate: identity.client_certificate.clone(),
                    grants: identity
                        .grants
                        .iter()
                        .map(compile_grant)
                        .collect::<anyhow::Result<_>>()?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Auth {
            enabled,
            identities,
            audit,
        })
    }

    /// Returns the identity whose token hashes to the same SHA-256. Every identity is
    /// compared in constant time, so the time taken does not reveal which one matched.
    fn by_token(&self, token: &str) -> Option<&Identity> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for identity in &self.identities {
            if let Some(expected) = &identity.token_sha256 {
                if bool::from(expected.ct_eq(&digest)) && found.is_none() {
                    found = Some(identity);
                }
            }
        }
        found
    }

    fn by_certificate(&self, certificate: &str) -> Option<&Identity> {
        self.identities
            .iter()
            .find(|identity| identity.client_certificate.as_deref() == Some(certificate))
    }

    /// Returns whether any grant of `identity` allows `action` on `resource`.
    fn allows(identity: &Identity, action: Action, resource: &str) -> bool {
        identity.grants.iter().any(|grant| {
            grant.actions.contains(&action)
                && grant
                    .resources
                    .iter()
                    .any(|pattern| pattern.is_match(resource))
        })
    }
}

/// Returns whether calls are checked: as `[auth] enabled` sets, or else on unless the
/// server listens on a loopback address only.
pub(crate) fn auth_enabled(spec: &AuthSpec, listen: std::net::SocketAddr) -> bool {
    spec.enabled.unwrap_or(!listen.ip().is_loopback())
}

fn compile_grant(grant: &GrantSpec) -> anyhow::Result<Grant> {
    let actions = grant
        .actions
        .iter()
        .filter_map(|name| Action::parse(name))
        .collect();
    let resources = grant
        .resources
        .iter()
        .map(|pattern| glob_regex(pattern))
        .collect::<Result<_, _>>()?;
    Ok(Grant { actions, resources })
}

/// Compiles a glob where `*` matches any run of characters within one `/`-separated part of a
/// name, `**` any run that may cross `/`, and `?` one character other than `/`. So
/// `topics/orders-*` covers the topics of the configured project and not `topics/orders-x/NAME`,
/// a topic of project `orders-x`.
fn glob_regex(pattern: &str) -> Result<Regex, regex::Error> {
    let mut source = String::from("^");
    let mut characters = pattern.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '*' if characters.peek() == Some(&'*') => {
                characters.next();
                source.push_str(".*");
            }
            '*' => source.push_str("[^/]*"),
            '?' => source.push_str("[^/]"),
            other => source.push_str(&regex::escape(&other.to_string())),
        }
    }
    source.push('$');
    Regex::new(&source)
}

/// The parts of a call that the audit log records.
#[derive(Debug)]
struct Call {
    method_name: String,
    action: Option<Action>,
    resource: String,
    principal: Option<Arc<str>>,
    caller_ip: Option<std::net::IpAddr>,
}

/// The reason a call was rejected.
enum Denial {
    Unauthenticated {
        message: String,
        invalid_token: bool,
    },
    Forbidden {
        principal: Arc<str>,
        action: &'static str,
        resource: String,
    },
    /// A route that has no rule in the permission table, which no grant can open.
    Unmapped {
        principal: Arc<str>,
        path: String,
    },
    Invalid(Status),
}

/// Authenticates and authorizes one request, and writes denied calls and admin calls to the
/// audit log; see the module docs.
pub(crate) async fn check(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    if !auth.enabled || routes::PUBLIC_ROUTES.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let grpc = is_grpc(&request);
    let mut call = Call {
        method_name: method_name(&request, grpc),
        action: None,
        resource: String::new(),
        principal: None,
        caller_ip: request
            .extensions()
            .get::<ConnectInfo<ConnectionInfo>>()
            .map(|info| info.0.remote.ip()),
    };
    match authorize(&auth, request, grpc, &mut call).await {
        Ok(request) => {
            let response = next.run(request).await;
            if call.action == Some(Action::Admin) {
                if let Some(audit) = &auth.audit {
                    let (code, message) = outcome(&response, grpc);
                    audit.record(audit_record(&call, code, message, true));
                }
            }
            response
        }
        Err(denial) => {
            if let Some(audit) = &auth.audit {
                let status = denial_status(&denial);
                audit.record(audit_record(
                    &call,
                    status.code(),
                    status.message().to_owned(),
                    false,
                ));
            }
            denial_response(denial, grpc)
        }
    }
}

async fn authorize(
    auth: &Auth,
    request: Request,
    grpc: bool,
    call: &mut Call,
) -> Result<Request, Denial> {
    let path = request.uri().path().to_owned();
    let rule = if grpc {
        routes::grpc_rule(&path).map(|rule| (rule.action, rule.resource))
    } else {
        request.extensions().get::<MatchedPath>().and_then(|route| {
            routes::http_rule(request.method().as_str(), route.as_str(), &path)
                .map(|rule| (rule.action, rule.resource))
        })
    };
    call.action = rule.map(|(action, _)| action);
    if let Some((
        _,
        resource @ (Resource::Fixed(_) | Resource::ConfigProject | Resource::Segment(..)),
    )) = rule
    {
        call.resource = path_resource(resource, &path);
    }
    // The first message of a gRPC call names its resource. It is read before authentication,
    // so that the audit entry of an unauthenticated call names the resource too. The size
    // limit bounds what an unauthenticated caller can make the server buffer.
    // NOTE: a StreamingPull call waits here for its first request, which names the
    // subscription. Google's clients send it at once, but a client that waits for the
    // response headers first would wait until its deadline.
    let mut request = request;
    let mut extra_grants = Vec::new();
    if let Some((_, Resource::Grpc(decode))) = rule {
        let (parts, body) = request.into_parts();
        let limit = super::limits::get().max_request_bytes;
        let read = first_message::read_first_message(body, limit);
        let (message, body) = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, read)
            .await
            .map_err(|_| {
                Denial::Invalid(Status::deadline_exceeded(format!(
                    "the request's first message did not arrive within {} s; send it at once",
                    FIRST_MESSAGE_TIMEOUT.as_secs()
                )))
            })?
            .map_err(|err| Denial::Invalid(first_message_status(&err)))?;
        call.resource = message
            .as_deref()
            .and_then(decode)
            .unwrap_or_else(|| "(unreadable request)".to_owned());
        extra_grants = message
            .as_deref()
            .map(|message| routes::extra_grants_grpc(&path, message))
            .unwrap_or_default();
        request = Request::from_parts(parts, body);
    }
    let identity = authenticate(auth, &request)?;
    call.principal = Some(identity.name.clone());
    let Some((action, _)) = rule else {
        // No HTTP route matched, so the fallback returns 404 or UNIMPLEMENTED.
        if !grpc && request.extensions().get::<MatchedPath>().is_none() {
            request
                .extensions_mut()
                .insert(Principal(identity.name.clone()));
            return Ok(request);
        }
        return Err(Denial::Unmapped {
            principal: identity.name.clone(),
            path,
        });
    };
    if !Auth::allows(identity, action, &call.resource) {
        return Err(Denial::Forbidden {
            principal: identity.name.clone(),
            action: action.as_str(),
            resource: call.resource.clone(),
        });
    }
    if let Some(route) = extra_grants_route(&request, grpc) {
        let method = request.method().as_str().to_owned();
        let (parts, body) = request.into_parts();
        let limit = super::limits::max_pubsub_rest_body_bytes();
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|err| {
            Denial::Invalid(Status::invalid_argument(format!(
                "reading the request body failed (the limit is {limit} bytes): {err}"
            )))
        })?;
        extra_grants = routes::extra_grants_json(&method, &route, &bytes);
        request = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    for (action, resource) in extra_grants {
        if !Auth::allows(identity, action, &resource) {
            call.resource = resource.clone();
            return Err(Denial::Forbidden {
                principal: identity.name.clone(),
                action: action.as_str(),
                resource,
            });
        }
    }
    request
        .extensions_mut()
        .insert(Principal(identity.name.clone()));
    Ok(request)
}

/// Returns the matched route of an HTTP request whose body names resources that need grants
/// of their own.
fn extra_grants_route(request: &Request, grpc: bool) -> Option<String> {
    if grpc {
        return None;
    }
    let route = request.extensions().get::<MatchedPath>()?.as_str();
    routes::has_extra_grants_http(request.method().as_str(), route).then(|| route.to_owned())
}

/// Returns the resource of a rule that does not need the request body.
fn path_resource(resource: Resource, path: &str) -> String {
    match resource {
        Resource::Fixed(name) => name.to_owned(),
        Resource::ConfigProject => format!("projects/{}", super::names::config_project()),
        Resource::Segment(index, collection) => routes::segment_resource(path, index, collection),
        Resource::Grpc(_) => String::new(),
    }
}

fn authenticate<'a>(auth: &'a Auth, request: &Request) -> Result<&'a Identity, Denial> {
    if let Some(header) = request.headers().get(AUTHORIZATION) {
        // The scheme name is case-insensitive (RFC 9110, section 11.1).
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(Denial::Unauthenticated {
                message: "the Authorization header is not of the form \"Bearer TOKEN\"".to_owned(),
                invalid_token: true,
            });
        };
        return auth.by_token(token).ok_or(Denial::Unauthenticated {
            message: "the bearer token is not valid".to_owned(),
            invalid_token: true,
        });
    }
    let certificate = request
        .extensions()
        .get::<ConnectInfo<ConnectionInfo>>()
        .and_then(|info| info.0.client_certificate.clone());
    if let Some(certificate) = certificate {
        return auth
            .by_certificate(&certificate)
            .ok_or_else(|| Denial::Unauthenticated {
                message: format!(
                "the client certificate identity {certificate:?} belongs to no identity in [auth]"
            ),
                invalid_token: false,
            });
    }
    Err(Denial::Unauthenticated {
        message: "the request has no credentials; send \"Authorization: Bearer TOKEN\" or a \
                  client certificate"
            .to_owned(),
        invalid_token: false,
    })
}

/// Returns the status of a gRPC request whose first message could not be read.
pub(crate) fn first_message_status(err: &first_message::FirstMessageError) -> Status {
    match err {
        first_message::FirstMessageError::TooLarge { .. } => {
            Status::invalid_argument(err.to_string())
        }
        first_message::FirstMessageError::Compressed => Status::unimplemented(err.to_string()),
        first_message::FirstMessageError::Body(_) => Status::invalid_argument(err.to_string()),
    }
}

fn audit_record(call: &Call, code: Code, message: String, granted: bool) -> AuditRecord {
    AuditRecord {
        granted,
        method_name: call.method_name.clone(),
        resource_name: call.resource.clone(),
        principal: call.principal.clone(),
        caller_ip: call.caller_ip,
        permission: call.action.map(Action::as_str),
        code,
        message,
        admin: call.action == Some(Action::Admin),
    }
}

/// Returns the status of a call that the service completed: a gRPC error travels in the
/// headers of a trailers-only response, an HTTP error as a status code.
fn outcome(response: &Response, grpc: bool) -> (Code, String) {
    if grpc {
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<i32>().ok())
            .map_or(Code::Ok, Code::from_i32);
        let message = response
            .headers()
            .get("grpc-message")
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                percent_encoding::percent_decode_str(value)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        return (code, message);
    }
    let code = status::code_of_http(response.status());
    (code, String::new())
}

fn forbidden_message(principal: &str, action: &str, resource: &str) -> String {
    format!(
        "identity {principal:?} may not {action} on {resource}; grant it {action:?} on \
         {resource:?} in [auth]"
    )
}

fn denial_status(denial: &Denial) -> Status {
    match denial {
        Denial::Unauthenticated { message, .. } => Status::unauthenticated(message.clone()),
        Denial::Forbidden {
            principal,
            action,
            resource,
        } => Status::permission_denied(forbidden_message(principal, action, resource)),
        Denial::Unmapped { principal, path } => Status::permission_denied(format!(
            "identity {principal:?} may not call {path}: the route has no rule in the \
             permission table, so no grant opens it"
        )),
        Denial::Invalid(status) => status.clone(),
    }
}

fn denial_response(denial: Denial, grpc: bool) -> Response {
    let status = denial_status(&denial);
    if grpc {
        return status.into_http::<axum::body::Body>().into_response();
    }
    let mut response = status::rest_error(status.code(), status.message(), None);
    if let Denial::Unauthenticated { invalid_token, .. } = denial {
        let challenge = if invalid_token {
            "Bearer realm=\"sluice\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"sluice\""
        };
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// Returns the method name of audit entries: the gRPC method as `google.pubsub.v1.Publisher.Publish`,
/// or the HTTP method and path.
fn method_name(request: &Request, grpc: bool) -> String {
    let path = request.uri().path();
    if grpc {
        path.trim_start_matches('/').replace('/', ".")
    } else {
        format!("{} {path}", request.method())
    }
}

/// Logs at start-up how calls are checked, and warns when bearer tokens would cross the
/// network unencrypted.
pub(crate) fn log_mode(
    auth: &Auth,
    listen: std::net::SocketAddr,
    explicit: Option<bool>,
    tls: bool,
) {
    let tokens = auth
        .identities
        .iter()
        .any(|identity| identity.token_sha256.is_some());
    if auth.enabled && tokens && !tls && !listen.ip().is_loopback() {
        warn!(
            %listen,
            "bearer tokens reach this non-loopback address in plaintext, so anyone on the \
             path can read and reuse them: configure [tls] cert_file and key_file"
        );
    }
    match (auth.enabled, explicit) {
        (false, Some(false)) if !listen.ip().is_loopback() => warn!(
            %listen,
            "AUTHENTICATION IS OFF on a non-loopback address: [auth] enabled = false lets \
             anyone who can reach this port publish, pull, upload and delete"
        ),
        (true, _) if auth.identities.is_empty() => warn!(
            %listen,
            "authentication is on but [auth] declares no identities, so every call is denied"
        ),
        (true, _) => tracing::info!(identities = auth.identities.len(), "authentication is on"),
        (false, _) => tracing::info!(%listen, "authentication is off on a loopback address"),
    }
}

#[cfg(test)]
mod tests;
