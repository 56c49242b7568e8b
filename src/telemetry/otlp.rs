//! The OTLP/gRPC span exporter behind the SDK's batch span processor.
//!
//! It does the job of opentelemetry-otlp's tonic exporter at a fraction of its CPU cost:
//! each batch is encoded once, straight from the SDK's span data into the protobuf body
//! ([`encode`]), and a retry sends the same bytes again. opentelemetry-otlp 0.33 cloned every
//! span of a batch, converted the copies into opentelemetry-proto's structs and let prost
//! measure each nested message again for every level above it. With every routed entry
//! traced, that was half of what tracing added to routing (docs/benchmarks.md, "Tracing
//! overhead").
//!
//! The request is the `Export` call of `opentelemetry.proto.collector.trace.v1.TraceService`
//! over a lazily connected tonic channel, with the headers of `OTEL_EXPORTER_OTLP_HEADERS`,
//! optional gzip compression and a deadline of the export timeout. Failures that the OTLP
//! specification calls transient (UNAVAILABLE and the like) are retried with exponential
//! backoff within that deadline. The batch processor logs the error of a batch that still
//! fails, or that the collector accepted only in part, under the rate limit of the SDK's
//! lines.

mod encode;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use prost::Message as _;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

use encode::EncodedResource;

/// The method of the OTLP trace service.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The first wait before a retry, doubled after each one up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Maximum wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(1600);

/// Retries after the first attempt, as in opentelemetry-otlp's default policy.
const MAX_RETRIES: u32 = 3;

/// The connection to the collector and the settings of each request.
#[derive(Debug)]
pub(super) struct ExporterConfig {
    pub(super) channel: Channel,
    /// The collector's URL, which error messages name.
    pub(super) endpoint: String,
    /// The file of `OTEL_EXPORTER_OTLP_CERTIFICATE`, which error messages name.
    pub(super) ca_file: Option<String>,
    /// The headers of every request.
    pub(super) metadata: MetadataMap,
    pub(super) compression: Option<CompressionEncoding>,
    /// The time one export may take, retries included.
    pub(super) timeout: Duration,
}

/// Sends batches of spans to an OTLP/gRPC collector.
#[derive(Debug)]
pub(super) struct OtlpExporter {
    client: Arc<Client>,
    resource: EncodedResource,
    /// The runtime that runs the requests. The batch processor calls
    /// [`SpanExporter::export`] on a thread of its own, outside any runtime, and tonic's
    /// channel and timers need one.
    runtime: tokio::runtime::Handle,
    shut_down: AtomicBool,
}

#[derive(Debug)]
struct Client {
    grpc: tonic::client::Grpc<Channel>,
    /// The collector's URL, for error messages.
    endpoint: String,
    /// The file of `OTEL_EXPORTER_OTLP_CERTIFICATE`, for error messages.
    ca_file: Option<String>,
    metadata: MetadataMap,
    timeout: Duration,
}

impl OtlpExporter {
    /// Returns an exporter that runs its requests on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Panics outside a Tokio runtime.
    pub(super) fn new(config: ExporterConfig) -> OtlpExporter {
        let mut grpc = tonic::client::Grpc::new(config.channel);
        if let Some(encoding) = config.compression {
            grpc = grpc.send_compressed(encoding).accept_compressed(encoding);
        }
        OtlpExporter {
            client: Arc::new(Client {
                grpc,
                endpoint: config.endpoint,
                ca_file: config.ca_file,
                metadata: config.metadata,
                timeout: config.timeout,
            }),
            resource: EncodedResource::default(),
            runtime: tokio::runtime::Handle::current(),
            shut_down: AtomicBool::new(false),
        }
    }
}

impl SpanExporter for OtlpExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let shut_down = self.shut_down.load(Ordering::Acquire);
        // The batch is encoded here, on the batch processor's thread, rather than on the
        // runtime's workers, which route.
        let body = (!shut_down && !batch.is_empty())
            .then(|| Bytes::from(encode::export_request(&self.resource, &batch)));
        drop(batch);
        let client = Arc::clone(&self.client);
        let sent = body.map(|body| {
            let client = Arc::clone(&client);
            self.runtime.spawn(async move { client.send(body).await })
        });
        async move {
            if shut_down {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            match sent {
                None => Ok(()),
                // The runtime cancels the task when sluice stops during an export.
                Some(task) => task.await.unwrap_or_else(|_| {
                    Err(OTelSdkError::InternalFailure(format!(
                        "exporting spans to {} stopped because sluice is shutting down",
                        client.endpoint
                    )))
                }),
            }
        }
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }
}

impl Client {
    /// Sends one encoded request, retrying transient failures until the export timeout.
    async fn send(&self, body: Bytes) -> OTelSdkResult {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut retries = 0;
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.call(body.clone())).await;
            // tonic enforces the request's own timeout too, and it may fire first, as a
            // CANCELLED or DEADLINE_EXCEEDED status, so a failure at the deadline counts as
            // the timeout.
            let at_deadline = tokio::time::Instant::now() + DEADLINE_SLACK >= deadline;
            let timed_out = |status: &tonic::Status| {
                at_deadline
                    && matches!(
                        status.code(),
                        tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
                    )
            };
            let status = match attempt {
                Ok(Ok(None)) => return Ok(()),
                // The specification requires a partial success to be logged and not retried.
                // As an error it reaches the log through the batch processor, under the
                // rate limit of the SDK's lines.
                Ok(Ok(Some(rejected))) => return Err(OTelSdkError::InternalFailure(rejected)),
                Ok(Err(status)) if !timed_out(&status) => status,
                Ok(Err(_)) | Err(_) => {
                    return Err(OTelSdkError::InternalFailure(format!(
                        "exporting spans to {} timed out after {:?}{}; check that the \
                         collector answers, or raise OTEL_EXPORTER_OTLP_TIMEOUT",
                        self.endpoint,
                        self.timeout,
                        retried(retries)
                    )))
                }
            };
            let cause = describe(&status);
            let certificate = is_certificate_problem(&cause);
            let wait = jittered(backoff);
            let in_time = tokio::time::Instant::now() + wait < deadline;
            if certificate || !is_transient(status.code()) || retries == MAX_RETRIES || !in_time {
                return Err(OTelSdkError::InternalFailure(format!(
                    "exporting spans to {} failed: {cause} ({:?}){}{}",
                    self.endpoint,
                    status.code(),
                    retried(retries),
                    self.advice(status.code(), &cause, certificate)
                )));
            }
            tokio::time::sleep(wait).await;
            retries += 1;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Makes one `Export` call. Returns a description of the spans the collector rejected
    /// when it accepted only part of them.
    async fn call(&self, body: Bytes) -> Result<Option<String>, tonic::Status> {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|err| tonic::Status::unavailable(error_chain(&err)))?;
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        let response = grpc
            .unary(request, PathAndQuery::from_static(EXPORT_PATH), ExportCodec)
            .await?;
        let rejected = response.into_inner().partial_success.and_then(|partial| {
            (partial.rejected_spans > 0 || !partial.error_message.is_empty()).then(|| {
                let reason = if partial.error_message.is_empty() {
                    "it gave no reason".to_owned()
                } else {
                    // The text is the collector's: quoted, so that it cannot start a log
                    // line of its own, and cut short.
                    format!("{:?}", shortened(&partial.error_message))
                };
                format!(
                    "the OTLP collector at {} rejected {} of the spans: {reason}",
                    self.endpoint, partial.rejected_spans
                )
            })
        });
        Ok(rejected)
    }
}

impl Client {
    /// Returns what an operator can do about a failure with `code` and `cause`, after a
    /// semicolon, or nothing.
    fn advice(&self, code: tonic::Code, cause: &str, certificate: bool) -> String {
        if certificate {
            return match &self.ca_file {
                Some(file) => format!(
                    "; the collector's certificate does not chain to the CA in \
                     OTEL_EXPORTER_OTLP_CERTIFICATE ({file}), or does not name the endpoint's \
                     host: set the variable to the PEM file of the CA that signed it"
                ),
                None => "; the collector's certificate is not trusted: set \
                         OTEL_EXPORTER_OTLP_CERTIFICATE to the PEM file of its CA, and check \
                         that the certificate names the endpoint's host"
                    .to_owned(),
            };
        }
        let transport = cause.contains("transport error") || cause.contains("connection error");
        match code {
            tonic::Code::Unavailable | tonic::Code::Unknown if transport => {
                "; check that the collector runs and listens at that address, and that the \
                 scheme matches it: http:// for plain text, https:// for TLS"
                    .to_owned()
            }
            tonic::Code::Unimplemented => "; the endpoint serves no OTLP trace service: point \
                                           it at the collector's OTLP/gRPC port, usually 4317"
                .to_owned(),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                "; check the credentials in OTEL_EXPORTER_OTLP_HEADERS".to_owned()
            }
            _ => String::new(),
        }
    }
}

/// The margin before the export deadline within which a failed attempt counts as timed out.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// Most characters of a collector's message that a log line repeats.
const MAX_REASON_CHARS: usize = 300;

/// Returns `text` cut to [`MAX_REASON_CHARS`] characters, with an ellipsis when cut.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(MAX_REASON_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Returns `" after N retries"` once the request was retried, and nothing before.
fn retried(retries: u32) -> String {
    if retries == 0 {
        String::new()
    } else {
        format!(", after {retries} retries")
    }
}

/// Returns the message of `status` with the causes of the transport error behind it, such
/// as "tcp connect error: Connection refused", which the message alone leaves out.
fn describe(status: &tonic::Status) -> String {
    with_causes(
        shortened(status.message()),
        std::error::Error::source(status),
    )
}

/// Returns `err` and its causes, joined by colons.
fn error_chain(err: &dyn std::error::Error) -> String {
    with_causes(err.to_string(), err.source())
}

/// Appends to `text` each error of the chain from `source` that it does not already hold.
fn with_causes(mut text: String, mut source: Option<&dyn std::error::Error>) -> String {
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Returns whether `cause` is a TLS certificate problem, which no retry mends.
fn is_certificate_problem(cause: &str) -> bool {
    let lower = cause.to_ascii_lowercase();
    lower.contains("certificate") || lower.contains("unknownissuer")
}

/// Returns whether the OTLP specification lets an exporter retry a request that failed with
/// `code`. RESOURCE_EXHAUSTED counts only with a retry delay from the server, which this
/// exporter does not read, so it is not retried.
fn is_transient(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
            | tonic::Code::OutOfRange
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    )
}

/// Returns `backoff` with up to a quarter added, so that several exporters that failed
/// together do not retry together.
fn jittered(backoff: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    backoff + backoff.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// The codec of the `Export` call: the request is the body [`encode`] wrote, and the
/// response is decoded with opentelemetry-proto's type.
#[derive(Debug, Clone, Copy, Default)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = ExportCodec;
    type Decoder = ExportCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ExportCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        ExportCodec
    }
}

impl Encoder for ExportCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ExportCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        let response = ExportTraceServiceResponse::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|err| {
                tonic::Status::internal(format!("the collector's answer is not OTLP: {err}"))
            })?;
        Ok(Some(response))
    }
}
