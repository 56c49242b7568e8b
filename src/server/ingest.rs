//! Ingest of LogEntries: the sluice.v1 LogIngest stream, shared by every front door that
//! receives entries.

use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::Stream;
use opentelemetry::trace::TraceContextExt as _;
use sluice_proto::sluice::v1::log_ingest_server::LogIngest;
use sluice_proto::sluice::v1::{EntryError, IngestAck, IngestBatch};
use sluice_router::deliver::Broker;
use sluice_router::route::{LogRouter, RoutedBatch};
use sluice_router::trace_context;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn, Instrument};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::metrics::Metrics;
use super::status;

/// Most entries accepted in one batch.
pub(crate) const MAX_BATCH_ENTRIES: usize = 10_000;
/// Acknowledgements buffered per stream before the server stops reading new batches.
const ACKS_IN_FLIGHT: usize = 8;

/// Routes batches of entries and publishes the matches.
#[derive(Debug, Clone)]
pub(crate) struct Ingestor {
    /// The sinks in force. Deploying a function with an audit-log trigger swaps in a router
    /// with the function's sink added; a batch routes with the router it loaded first.
    pub(crate) router: Arc<ArcSwap<LogRouter>>,
    pub(crate) broker: Arc<Broker>,
    pub(crate) metrics: Arc<Metrics>,
    /// Becomes true when the server shuts down; open ingest streams then stop taking new
    /// batches, so that the graceful shutdown does not wait on a client that keeps sending.
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Ingestor {
    /// Routes `entries` (JSON LogEntries) and returns once every resulting message is
    /// flushed to disk.
    ///
    /// # Errors
    ///
    /// Returns INVALID_ARGUMENT for an oversized batch and the store's status when publishing
    /// fails; then none of the batch's messages are published.
    pub(crate) async fn ingest(&self, entries: Vec<String>) -> Result<RoutedBatch, Status> {
        let span = tracing::info_span!("ingest", entries = entries.len() as i64);
        self.ingest_in(entries, span).await
    }

    /// [`Ingestor::ingest`] for one batch of a stream. The batch's span starts a trace of its
    /// own, linked to the span of the stream, so that a long stream is not one endless trace.
    async fn ingest_streamed(
        &self,
        entries: Vec<String>,
        stream: &tracing::Span,
    ) -> Result<RoutedBatch, Status> {
        let span = tracing::info_span!(parent: None, "ingest", entries = entries.len() as i64);
        let stream_context = stream.context().span().span_context().clone();
        if stream_context.is_valid() {
            span.add_link(stream_context);
        }
        self.ingest_in(entries, span).await
    }

    async fn ingest_in(
        &self,
        entries: Vec<String>,
        span: tracing::Span,
    ) -> Result<RoutedBatch, Status> {
        if entries.len() > MAX_BATCH_ENTRIES {
            return Err(Status::invalid_argument(format!(
                "the batch has {} entries, over the limit of {MAX_BATCH_ENTRIES}; send smaller batches",
                entries.len()
            )));
        }
        self.ingest_batch(entries).instrument(span).await
    }

    async fn ingest_batch(&self, entries: Vec<String>) -> Result<RoutedBatch, Status> {
        let router = self.router.load_full();
        let received = entries.len() as u64;
        // Parsing and filter evaluation cost about 10 µs per entry, too long to hold a
        // runtime thread for a whole batch.
        let mut routed = tokio::task::spawn_blocking(move || router.route_batch(&entries))
            .instrument(tracing::info_span!("route"))
            .await
            .map_err(|err| Status::internal(format!("routing the batch failed: {err}")))?;
        record_sink_spans(&routed);
        let mut messages = std::mem::take(&mut routed.messages);
        // Each entry is one event, so each gets a trace of its own.
        let contexts = trace_context::start_entry_traces(
            &tracing::Span::current(),
            &mut messages,
            &routed.message_entries,
        );
        if !messages.is_empty() {
            self.broker
                .publish_routed(messages, contexts)
                .await
                .map_err(|err| status::from_store(&err))?;
        }
        self.metrics.count_entries(
            received,
            routed.errors.len() as u64,
            u64::from(routed.unmatched),
        );
        for (sink, count) in &routed.sink_matches {
            self.metrics.count_sink_matches(sink, u64::from(*count));
        }
        Ok(routed)
    }
}

/// Records one span per sink that took entries of the batch, with the number it took.
// NOTE: the router evaluates every sink on each entry in one pass, so these spans only mark
// the batch's matches after the fact. The time of the evaluation is on the `route` span.
fn record_sink_spans(routed: &RoutedBatch) {
    for (sink, count) in &routed.sink_matches {
        let _matched = tracing::info_span!(
            "sink",
            otel.name = %format_args!("sink {sink}"),
            sink = %sink,
            matched_entries = i64::from(*count),
        )
        .entered();
    }
}

fn ack(sequence: u64, routed: RoutedBatch) -> IngestAck {
    IngestAck {
        sequence,
        accepted: routed.accepted,
        unmatched: routed.unmatched,
        errors: routed
            .errors
            .into_iter()
            .map(|(index, message)| EntryError { index, message })
            .collect(),
        sink_matches: routed.sink_matches.into_iter().collect(),
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<IngestAck, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl LogIngest for Ingestor {
    type StreamEntriesStream = AckStream;

    async fn stream_entries(
        &self,
        request: Request<Streaming<IngestBatch>>,
    ) -> Result<Response<Self::StreamEntriesStream>, Status> {
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let (acks, outbound) = mpsc::channel(ACKS_IN_FLIGHT);
        let ingestor = self.clone();
        let mut shutdown = self.shutdown.clone();
        let span = tracing::info_span!("ingest_stream", peer = ?peer);
        let stream_span = span.clone();
        tokio::spawn(
            async move {
                loop {
                    let next = tokio::select! {
                        biased;
                        _ = shutdown.wait_for(|stop| *stop) => None,
                        next = inbound.message() => Some(next),
                    };
                    let Some(next) = next else {
                        debug!("ingest stream closed for shutdown");
                        let closing = Status::unavailable(
                            "the server is shutting down; send the remaining batches again to a running server",
                        );
                        let _ = acks.send(Err(closing)).await;
                        break;
                    };
                    let batch = match next {
                        Ok(Some(batch)) => batch,
                        Ok(None) => break,
                        Err(status) => {
                            debug!(error = %status, "ingest stream ended by the client");
                            break;
                        }
                    };
                    let sequence = batch.sequence;
                    let result = match super::audit::first_forged_entry(&batch.entries) {
                        Some(index) => Err(Status::invalid_argument(format!(
                            "entry {index} of batch {sequence}: {}",
                            super::audit::FORGED_AUDIT_ENTRY
                        ))),
                        None => ingestor
                            .ingest_streamed(batch.entries, &stream_span)
                            .await
                            .map(|routed| ack(sequence, routed)),
                    };
                    if let Err(status) = &result {
                        warn!(sequence, error = %status, "ingest batch failed");
                    }
                    let failed = result.is_err();
                    if acks.send(result).await.is_err() || failed {
                        break;
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }
}
