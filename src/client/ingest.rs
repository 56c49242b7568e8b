//! `sluice ingest`: streams a file of LogEntries to the server's log router over
//! sluice.v1 LogIngest.StreamEntries and prints what the router did with them.
//!
//! A reader thread parses the input and groups it into batches ([`reader`]). The runtime
//! sends each batch on one stream and keeps up to [`MAX_BATCHES_IN_FLIGHT`] of them
//! unacknowledged, so reading, sending and the server's disk flushes overlap.

mod reader;
mod tally;

use std::fs::File;
use std::io::{self, IsTerminal as _, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_proto::sluice::v1::log_ingest_client::LogIngestClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use self::reader::{BatchLimits, ReadEvent};
use self::tally::{Rejection, Tally};
use super::{connect, rpc_error, run_command, ServerArgs};
use crate::cli::input::Location;
use crate::cli::write_stderr;

/// Maximum number of sent batches that wait for their ack at the same time.
const MAX_BATCHES_IN_FLIGHT: usize = 8;
/// Maximum entries per batch that sluice serve accepts.
const MAX_BATCH_ENTRIES: u32 = 10_000;
/// A batch ends before its entries exceed this many bytes, a quarter of the 16 MiB request
/// limit of sluice serve, so that large entries do not make a batch too big.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How long to wait for the server to close the stream after the last ack.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Details printed by `sluice ingest --help`.
const AFTER_LONG_HELP: &str = "\
Input: one LogEntry JSON object per line (JSON Lines), or one JSON array of
entries as `gcloud logging read --format=json` prints. Blank lines are skipped.
An invalid line (invalid JSON, or JSON that is not an object) is reported on
stderr as FILE:LINE and not sent; with --strict the run stops there instead.

Each batch is acknowledged by the server once every message that its entries
produced is flushed to disk. Up to 8 batches are sent ahead of their acks.
Entries that the server rejects are reported as FILE:LINE.

Output: a progress bar on stderr while a terminal shows it, then a summary on
stdout: entries sent, accepted, unmatched (matched no sink), rejected, invalid
lines, matches per sink (sinks without a match are not listed), elapsed time
and rate.

Exit status: 0 when every entry was sent and accepted, 1 when any line was
invalid, any entry was rejected, or the run failed.

Examples:
  sluice ingest entries.jsonl
  gcloud logging read --format=json --limit=1000 | sluice ingest - --strict";

/// Stream LogEntries from a file to the server's log router and summarize the routing.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct IngestArgs {
    /// LogEntry input file; `-` reads standard input
    #[arg(value_name = "FILE")]
    input: PathBuf,

    /// Entries per batch; the server acknowledges each batch as a whole
    #[arg(
        long,
        value_name = "N",
        default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH_ENTRIES))
    )]
    batch_size: u32,

    /// Stop at the first invalid line, before sending the batch that contains it, and exit 1
    #[arg(long)]
    strict: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// The opened input.
struct Input {
    reader: Box<dyn Read + Send>,
    /// Name for messages: the path, or `<stdin>`.
    name: String,
    /// Length in bytes when the input is a regular file.
    length: Option<u64>,
}

/// Runs `sluice ingest` and returns its exit status.
pub(crate) fn run(args: IngestArgs) -> ExitCode {
    run_command(ingest(args))
}

fn open_input(path: &PathBuf) -> anyhow::Result<Input> {
    if path.as_os_str() == "-" {
        return Ok(Input {
            reader: Box::new(io::stdin()),
            name: "<stdin>".to_owned(),
            length: None,
        });
    }
    let file = File::open(path)
        .with_context(|| format!("failed to open input file {}", path.display()))?;
    let length = file
        .metadata()
        .ok()
        .filter(|metadata| metadata.is_file())
        .map(|metadata| metadata.len());
    Ok(Input {
        reader: Box::new(file),
        name: path.display().to_string(),
        length,
    })
}

async fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let input = open_input(&args.input)?;
    let server = args.server.server;
    let mut client = LogIngestClient::new(connect(&server).await?);

    let started = Instant::now();
    let (batch_sender, batch_receiver) = mpsc::channel(MAX_BATCHES_IN_FLIGHT);
    let mut acks = client
        .stream_entries(ReceiverStream::new(batch_receiver))
        .await
        .map_err(|status| rpc_error(&server, "StreamEntries", &status))?
        .into_inner();

    // The reader stays at most one batch ahead of the batches in flight.
    let (event_sender, mut events) = mpsc::channel(1);
    let limits = BatchLimits {
        entries: args.batch_size as usize,
        bytes: MAX_BATCH_BYTES,
    };
    // The thread is not joined: it ends once `events` is dropped, and waiting for it could
    // block on a terminal's stdin after a failure.
    reader::spawn(input.reader, limits, args.strict, event_sender)
        .context("failed to start the input reader thread")?;

    let progress = Progress::new(input.length);
    let mut tally = Tally::default();
    let mut reading = true;
    let mut failure: Option<anyhow::Error> = None;
    while reading || tally.pending_batches() > 0 {
        tokio::select! {
            event = events.recv(), if reading && tally.pending_batches() < MAX_BATCHES_IN_FLIGHT => {
                match event {
                    None => reading = false,
                    Some(ReadEvent::Batch(batch)) => {
                        // The channel has room for MAX_BATCHES_IN_FLIGHT requests, more than are
                        // pending here, so this never waits. A failed stream is reported by the
                        // ack branch.
                        let _ = batch_sender.send(tally.send(batch)).await;
                    }
                    Some(ReadEvent::Invalid { location, message }) => {
                        tally.invalid += 1;
                        let place = place(&input.name, location);
                        progress.suspend(|| write_stderr(format_args!("{place}: {message}")));
                        if args.strict {
                            progress.suspend(|| write_stderr(format_args!(
                                "{place}: stopped because of --strict; the batch that contains this line and the rest of the input were not sent"
                            )));
                        }
                    }
                    Some(ReadEvent::Failed(err)) => {
                        failure = Some(anyhow::anyhow!("failed to read {}: {err}", input.name));
                        reading = false;
                    }
                }
            }
            ack = acks.message(), if tally.pending_batches() > 0 => {
                match ack {
                    Ok(Some(ack)) => match tally.apply(ack) {
                        Ok(report) => {
                            for rejection in &report.rejections {
                                let text = describe_rejection(&input.name, rejection);
                                progress.suspend(|| write_stderr(format_args!("{text}")));
                            }
                            progress.update(report.bytes_read, tally.acknowledged);
                        }
                        Err(message) => {
                            failure = Some(anyhow::Error::msg(message));
                            break;
                        }
                    },
                    Ok(None) => {
                        failure = Some(anyhow::anyhow!(
                            "the server closed the ingest stream before acknowledging every batch"
                        ));
                        break;
                    }
                    Err(status) => {
                        failure = Some(rpc_error(&server, "StreamEntries", &status));
                        break;
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed();
    progress.finish();

    // Closing the request stream lets the server end the call with status OK.
    drop(batch_sender);
    drop(events);
    if failure.is_none() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Ok(Some(_)) = acks.message().await {}
        })
        .await;
    }

    let mut out = io::stdout().lock();
    let _ = tally.write_summary(&mut out, elapsed);
    drop(out);
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(if tally.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Formats the position of an entry as `FILE:LINE`, or `FILE: entry N` for the elements of
/// a JSON array, which have no line of their own.
fn place(source: &str, location: Location) -> String {
    match location.line {
        Some(line) => format!("{source}:{line}"),
        None => format!("{source}: entry {}", location.number),
    }
}

fn describe_rejection(source: &str, rejection: &Rejection) -> String {
    match rejection.location {
        Some(location) => format!(
            "{}: rejected by the server: {}",
            place(source, location),
            rejection.message
        ),
        None => format!(
            "{source}: batch {} entry {}: rejected by the server: {}",
            rejection.sequence, rejection.index, rejection.message
        ),
    }
}

/// The progress bar on stderr: acknowledged bytes of a regular file, or acknowledged entries
/// of a stream. Hidden when stderr is not a terminal.
struct Progress {
    bar: ProgressBar,
    by_bytes: bool,
}

impl Progress {
    fn new(length: Option<u64>) -> Progress {
        if !io::stderr().is_terminal() {
            return Progress {
                bar: ProgressBar::hidden(),
                by_bytes: false,
            };
        }
        let (bar, template) = match length {
            Some(length) => (
                ProgressBar::new(length),
                "{spinner} {elapsed:>4} [{wide_bar}] {bytes}/{total_bytes} {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {elapsed:>4} {pos} entries acknowledged",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress {
            bar,
            by_bytes: length.is_some(),
        }
    }

    fn update(&self, bytes_read: u64, acknowledged_entries: u64) {
        if self.by_bytes {
            let length = self.bar.length().unwrap_or(u64::MAX);
            self.bar.set_position(bytes_read.min(length));
            self.bar
                .set_message(format!("{acknowledged_entries} entries"));
        } else {
            self.bar.set_position(acknowledged_entries);
        }
    }

    /// Runs `write` with the bar cleared, so that a message does not mix with it.
    fn suspend(&self, write: impl FnOnce()) {
        self.bar.suspend(write);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
