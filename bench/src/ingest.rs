//! Audit-log routing: JSON log entries streamed over sluice's `LogIngest` service, each batch
//! acknowledged once its entries are routed through the sinks and flushed.

use std::collections::VecDeque;

use anyhow::Context as _;
use sluice_proto::sluice::v1::log_ingest_client::LogIngestClient;
use sluice_proto::sluice::v1::IngestBatch;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

use crate::outcome::Outcome;
use crate::IngestLoad;

/// Streams `load.entries` entries, cycling through the lines of `load.file`, in batches of
/// `load.batch`, with up to `load.window` batches awaiting their acknowledgement.
pub(crate) async fn ingest(
    endpoint: &str,
    system: &str,
    load: &IngestLoad,
) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(&load.file)
        .with_context(|| format!("cannot read {}", load.file.display()))?;
    let lines: Vec<String> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(
        !lines.is_empty(),
        "{} has no entries; give a JSON Lines file of LogEntries",
        load.file.display()
    );
    let channel = Channel::from_shared(endpoint.to_owned())
        .with_context(|| format!("{endpoint:?} is not a URL; use http://HOST:PORT"))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))?;
    let mut client = LogIngestClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let (batches, outgoing) = mpsc::channel(load.window.max(1));
    let batch_size = load.batch.max(1);
    let started = Instant::now();
    let mut acks = client
        .stream_entries(ReceiverStream::new(outgoing))
        .await
        .context("StreamEntries")?
        .into_inner();

    let mut next_line = 0;
    let mut sent = 0usize;
    let mut sequence = 0u64;
    let mut waiting = VecDeque::new();
    let mut routed = 0u64;
    while routed < load.entries as u64 {
        while sent < load.entries && waiting.len() < load.window.max(1) {
            let count = batch_size.min(load.entries - sent);
            let entries = (0..count)
                .map(|_| {
                    let line = lines[next_line % lines.len()].clone();
                    next_line += 1;
                    line
                })
                .collect();
            sequence += 1;
            batches
                .send(IngestBatch { sequence, entries })
                .await
                .context("the stream closed")?;
            waiting.push_back((sequence, count));
            sent += count;
        }
        let Some(ack) = acks.next().await else {
            anyhow::bail!(
                "the stream ended after {routed} of {} entries",
                load.entries
            );
        };
        let ack = ack.context("IngestAck")?;
        anyhow::ensure!(
            ack.errors.is_empty(),
            "the server rejected {} entries of batch {}, the first because: {}",
            ack.errors.len(),
            ack.sequence,
            ack.errors[0].message
        );
        let Some((expected, count)) = waiting.pop_front() else {
            anyhow::bail!("an ack for batch {} that was not sent", ack.sequence);
        };
        anyhow::ensure!(
            ack.sequence == expected,
            "ack for batch {} while {expected} was due",
            ack.sequence
        );
        routed += count as u64;
    }
    let mut outcome = Outcome::throughput(
        "ingest",
        system,
        (1, batch_size, 0),
        routed,
        started.elapsed(),
    );
    outcome.sinks = Some(load.sinks);
    Ok(outcome)
}
