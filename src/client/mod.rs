//! Client commands that talk to a running `sluice serve` over gRPC: `ingest`, `publish`,
//! `pull`, `topics list` and `subscriptions list`; and over HTTP, to the server's bucket
//! routes: `upload` and `objects`, and to its functions routes: `functions`.
//!
//! Each command builds its own Tokio runtime. The gRPC commands connect once with
//! [`connect`] and report failures through [`rpc_error`], so every command words connection
//! and gRPC errors alike. The HTTP commands share [`http::StorageClient`], which formats the
//! server's JSON errors.

pub(crate) mod catalog;
pub(crate) mod functions;
mod http;
pub(crate) mod ingest;
pub(crate) mod objects;
pub(crate) mod publish;
pub(crate) mod pull;
pub(crate) mod upload;

use std::error::Error as StdError;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::cli::write_stderr;

/// Server address used when neither --server nor SLUICE_SERVER is set, which is the default
/// listen address of `sluice serve`.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:8085";

/// The project of every resource name that `sluice serve` accepts.
const PROJECT: &str = "local";

/// How long to wait for the TCP connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `--server` option shared by every client command.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// URL of the sluice server, which serves gRPC and HTTP on one port, as `sluice serve`
    /// prints it at start-up
    #[arg(
        long,
        value_name = "URL",
        env = "SLUICE_SERVER",
        default_value = DEFAULT_SERVER,
        value_parser = parse_server_url
    )]
    pub(crate) server: String,
}

/// Accepts `http://HOST:PORT` and `HOST:PORT`, which gets `http://` prepended.
fn parse_server_url(value: &str) -> Result<String, String> {
    let url = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    if url.starts_with("https://") {
        return Err(
            "https is not supported because sluice serve speaks plain-text HTTP/2; use http://"
                .to_owned(),
        );
    }
    if !url.starts_with("http://") {
        return Err(format!(
            "invalid server URL {value:?}; use http://HOST:PORT, for example {DEFAULT_SERVER}"
        ));
    }
    match Endpoint::from_shared(url.clone()) {
        Ok(_) => Ok(url),
        Err(err) => Err(format!(
            "invalid server URL {value:?}: {}; use http://HOST:PORT, for example {DEFAULT_SERVER}",
            error_chain(&err)
        )),
    }
}

/// Runs `command` on a new multi-threaded runtime and turns its error into exit status 1.
pub(crate) fn run_command<F>(command: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            write_stderr(format_args!(
                "error: failed to start the async runtime: {err}"
            ));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(err) => {
            write_stderr(format_args!("error: {err:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Opens a connection to the server at `server`, a URL that [`parse_server_url`] accepted.
///
/// # Errors
///
/// Fails with a message that names the URL and the next step when the server cannot be
/// reached within [`CONNECT_TIMEOUT`].
pub(crate) async fn connect(server: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|err| anyhow::anyhow!("invalid server URL {server:?}: {}", error_chain(&err)))?
        .connect_timeout(CONNECT_TIMEOUT);
    endpoint.connect().await.map_err(|err| {
        anyhow::anyhow!(
            "failed to connect to {server}: {}\n\
             hint: start a server with `sluice serve`, or point --server (or SLUICE_SERVER) at a running one",
            error_chain(&err)
        )
    })
}

/// Describes a failed call of gRPC method `method` on `server`, with the status code and
/// message, and a hint for the codes that usually mean the wrong server or a stopped one.
pub(crate) fn rpc_error(server: &str, method: &str, status: &Status) -> anyhow::Error {
    let mut message = format!(
        "{method} failed: {}: {}",
        code_name(status.code()),
        status.message()
    );
    // tonic 0.14 attaches a source error only to statuses that it made from a failure of the
    // connection, never to a status that the server sent.
    let connection_failed = StdError::source(status).is_some();
    if status.code() == Code::Unimplemented {
        message.push_str(&format!(
            "\nhint: check that --server ({server}) points at `sluice serve` and not at another gRPC service"
        ));
    } else if status.code() == Code::Unavailable || connection_failed {
        message.push_str(&format!(
            "\nhint: the server at {server} is unreachable or shutting down; check that `sluice serve` is still running"
        ));
    }
    anyhow::Error::msg(message)
}

/// Returns the canonical name of a gRPC status code, as the gRPC specification writes it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Joins an error and its sources with `: `, leaving out tonic's bare "transport error",
/// which adds nothing to the cause below it.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(err) = current {
        let text = err.to_string();
        if text != "transport error" && !parts.iter().any(|part| part.ends_with(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

/// Returns the full resource name `projects/local/topics/NAME` for a short topic name, and
/// any name that already starts with `projects/` unchanged.
pub(crate) fn topic_resource(name: &str) -> String {
    resource_name(name, "topics")
}

/// Returns `projects/local/subscriptions/NAME` for a short name, like [`topic_resource`].
pub(crate) fn subscription_resource(name: &str) -> String {
    resource_name(name, "subscriptions")
}

fn resource_name(name: &str, collection: &str) -> String {
    if name.starts_with("projects/") {
        name.to_owned()
    } else {
        format!("projects/{PROJECT}/{collection}/{name}")
    }
}

/// Returns the short topic name of `projects/local/topics/NAME`, and any other name
/// unchanged.
pub(crate) fn short_topic_name(name: &str) -> &str {
    name.strip_prefix("projects/")
        .and_then(|rest| rest.strip_prefix(PROJECT))
        .and_then(|rest| rest.strip_prefix("/topics/"))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_gets_scheme() {
        assert_eq!(
            parse_server_url("127.0.0.1:9000").as_deref(),
            Ok("http://127.0.0.1:9000")
        );
        assert_eq!(
            parse_server_url("http://localhost:8085").as_deref(),
            Ok("http://localhost:8085")
        );
    }

    #[test]
    fn server_url_rejects_other_schemes() {
        let https = parse_server_url("https://127.0.0.1:8085");
        assert!(
            https.as_ref().is_err_and(|e| e.contains("https")),
            "{https:?}"
        );
        let ftp = parse_server_url("ftp://127.0.0.1");
        assert!(ftp.is_err(), "{ftp:?}");
    }

    #[test]
    fn resource_names_expand_short_names() {
        assert_eq!(topic_resource("audit"), "projects/local/topics/audit");
        assert_eq!(
            topic_resource("projects/other/topics/audit"),
            "projects/other/topics/audit"
        );
        assert_eq!(
            subscription_resource("audit"),
            "projects/local/subscriptions/audit"
        );
    }

    #[test]
    fn short_topic_name_strips_local_project() {
        assert_eq!(short_topic_name("projects/local/topics/audit"), "audit");
        assert_eq!(short_topic_name("audit"), "audit");
        assert_eq!(
            short_topic_name("projects/other/topics/audit"),
            "projects/other/topics/audit"
        );
    }

    #[test]
    fn status_error_names_code() {
        let error = rpc_error(
            DEFAULT_SERVER,
            "Publish",
            &Status::not_found("Topic not found: projects/local/topics/x"),
        );
        assert_eq!(
            error.to_string(),
            "Publish failed: NOT_FOUND: Topic not found: projects/local/topics/x"
        );
    }
}
