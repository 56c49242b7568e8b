//! `sluice demo`: the upload pipeline (thumbnails and annotations), the offers pipeline and the
//! log router on bundled data, in one process.
//!
//! The demo starts the server on the built-in configuration, on a free port of 127.0.0.1 and
//! a fresh data directory. It then talks to it as any client would: it uploads the bundled
//! photos and two broken files through `POST /upload/uploads`, streams the bundled audit-log
//! entries through LogIngest, publishes the bundled seller offers, waits until the
//! `thumbnailer`, `annotator` and `offers-processor` subscriptions have handled everything,
//! and prints what happened. The annotation and offers parts are in `demo/`.

mod annotations;
mod dead_letters;
mod offers;

use std::io::Cursor;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sluice_proto::sluice::v1::admin_client::AdminClient;
use sluice_proto::sluice::v1::log_ingest_client::LogIngestClient;
use sluice_proto::sluice::v1::{IngestAck, IngestBatch, ListSubscriptionsRequest};
use sluice_router::store::StoreOptions;
use tonic::transport::Channel;

use self::dead_letters::pull_dead_letters;
use super::write_stdout;
use crate::client::connect;
use crate::server::{self, ServeOptions};

/// The bundled photos, by object name. Their sources and licence are in `demo/README.md`.
const PHOTOS: [(&str, &[u8]); 3] = [
    (
        "landscape.jpg",
        include_bytes!("../../demo/photos/landscape.jpg"),
    ),
    (
        "portrait.jpg",
        include_bytes!("../../demo/photos/portrait.jpg"),
    ),
    (
        "landscape-exif-rotated.jpg",
        include_bytes!("../../demo/photos/landscape-exif-rotated.jpg"),
    ),
];

/// The bundled audit-log entries, one JSON LogEntry per line.
const AUDIT_ENTRIES: &str = include_str!("../../demo/audit-entries.jsonl");

/// The bucket the photos are uploaded to, and the one the thumbnails appear in, as the
/// built-in configuration names them.
const UPLOADS_BUCKET: &str = "uploads";
const THUMBNAILS_BUCKET: &str = "thumbnails";
/// The subscription that runs the thumbnail handler, and the one of its dead-letter topic.
const THUMBNAILER: &str = "thumbnailer";
const THUMBNAILER_DEAD_LETTER: &str = "thumbnailer-dead-letter";
/// The subscriptions whose handlers the demo waits for.
const HANDLED_SUBSCRIPTIONS: [&str; 3] = [THUMBNAILER, "annotator", "offers-processor"];

/// Maximum wait for the handlers to handle every upload and offer.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Details printed by `sluice demo --help`.
const AFTER_LONG_HELP: &str = "\
The demo runs the server of `sluice serve` inside this process, on the built-in
configuration and a free port of 127.0.0.1, then:

  1. uploads three photos (one stored sideways with an EXIF orientation), a
     truncated JPEG and a text file to the bucket `uploads`; its notifications
     feed the `thumbnailer` subscription, whose handler writes thumbnails into
     the bucket `thumbnails`, and the `annotator` subscription, whose handler
     writes JSON annotations into the bucket `annotations`;
  2. streams 37 Cloud Audit Log entries through the log router's sinks;
  3. publishes 7 seller offers to the topic `offers` (one a copy, two
     invalid), which the `offers-processor` subscription validates, keeping
     the best offer per product in the bucket `offers-state`;
  4. waits until everything is handled, and prints a summary: entries in,
     matches per sink, thumbnails with their sizes, annotations, accepted and
     best offers, and what was dead-lettered, with the reason.

The data directory is a new temporary folder, removed at the end, unless
--data-dir names one to keep. Set RUST_LOG=info to see the server's logs.";

/// Run the upload, offers and log pipelines on bundled data, then print a summary
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct DemoArgs {
    /// Keep the server's state in DIR, which must not exist yet [default: a temporary folder,
    /// removed at the end]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Runs the demo and returns its exit status: 0 when every step worked.
pub(crate) fn run(args: DemoArgs) -> ExitCode {
    crate::telemetry::init_with_default("error");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            super::write_stderr(format_args!(
                "error: failed to start the async runtime: {err}"
            ));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            super::write_stderr(format_args!("error: {err:#}"));
            ExitCode::FAILURE
        }
    }
}

/// A data directory that is removed on drop unless the user named it.
#[derive(Debug)]
struct DataDir {
    path: PathBuf,
    keep: bool,
}

impl DataDir {
    fn new(requested: Option<PathBuf>) -> anyhow::Result<Self> {
        let (path, keep) = match requested {
            Some(path) => (path, true),
            None => {
                let unique = format!(
                    "sluice-demo-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |elapsed| elapsed.as_nanos())
                );
                (std::env::temp_dir().join(unique), false)
            }
        };
        if path.exists() {
            anyhow::bail!(
                "the data directory {} already exists; name a new folder with --data-dir, or \
                 leave the option out to use a temporary one",
                path.display()
            );
        }
        Ok(Self { path, keep })
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !self.keep {
            // A folder left behind in the temporary directory harms nothing.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = DataDir::new(args.data_dir)?;
    let config = server::load_config(None)?;
    let options = ServeOptions {
        config: None,
        data_dir: data_dir.path.clone(),
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        max_upload_bytes: None,
        store: StoreOptions::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = server::start(config, &options, async {
        let _ = stopped.await;
    })
    .await?;
    let url = format!("http://{}", running.address);
    write_stdout(format_args!(
        "sluice demo: server on {url}, data in {}{}",
        data_dir.path.display(),
        if data_dir.keep {
            ""
        } else {
            " (removed at the end)"
        }
    ));

    let result = run_steps(&url).await;
    let _ = stop.send(());
    let stopped = running.stopped().await;
    let summary = result?;
    stopped?;
    summary.print(started.elapsed());
    Ok(())
}

/// The results the demo collected, for the summary.
#[derive(Debug, Default)]
struct Summary {
    entries: usize,
    ingest: IngestAck,
    uploads: Vec<String>,
    thumbnails: Vec<ThumbnailInfo>,
    /// The object name and the reason of each dead-lettered upload.
    dead_letters: Vec<(String, String)>,
    annotations: annotations::AnnotationSummary,
    offers: offers::OfferSummary,
}

/// One thumbnail as the summary lists it.
#[derive(Debug)]
struct ThumbnailInfo {
    name: String,
    width: u32,
    height: u32,
    bytes: u64,
    content_type: String,
}

async fn run_steps(url: &str) -> anyhow::Result<Summary> {
    let http = reqwest::Client::new();
    let channel = connect(url).await?;
    let mut summary = Summary::default();

    let mut uploads: Vec<(String, Vec<u8>, &str)> = PHOTOS
        .iter()
        .map(|(name, bytes)| ((*name).to_owned(), bytes.to_vec(), "image/jpeg"))
        .collect();
    // Half a JPEG: its header promises more scan data than the file contains.
    let truncated = PHOTOS[0].1[..PHOTOS[0].1.len() / 2].to_vec();
    uploads.push(("truncated.jpg".to_owned(), truncated, "image/jpeg"));
    uploads.push((
        "notes.txt".to_owned(),
        b"Not an image: the thumbnailer skips this object.\n".to_vec(),
        "text/plain",
    ));
    upload(&http, url, &uploads).await?;
    summary.uploads = uploads.into_iter().map(|(name, ..)| name).collect();

    let (entries, ack) = ingest(channel.clone()).await?;
    summary.entries = entries;
    summary.ingest = ack;
    let published_offers = offers::publish(channel.clone()).await?;

    wait_until_handled(channel.clone()).await?;
    summary.thumbnails = thumbnails(&http, url).await?;
    summary.dead_letters = dead_letters(channel.clone()).await?;
    summary.annotations =
        annotations::AnnotationSummary::collect(&http, url, channel.clone()).await?;
    summary.offers = offers::OfferSummary::collect(&http, url, channel, published_offers).await?;
    Ok(summary)
}

async fn upload(
    http: &reqwest::Client,
    url: &str,
    files: &[(String, Vec<u8>, &str)],
) -> anyhow::Result<()> {
    let mut form = Form::new();
    for (name, bytes, content_type) in files {
        let part = Part::bytes(bytes.clone())
            .file_name(name.clone())
            .mime_str(content_type)
            .context("invalid content type")?;
        form = form.text("name", name.clone()).part("file", part);
    }
    let response = http
        .post(format!("{url}/upload/{UPLOADS_BUCKET}"))
        .multipart(form)
        .send()
        .await
        .context("the upload request failed")?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("the upload failed with HTTP {status}: {body}");
    }
    Ok(())
}

async fn ingest(channel: Channel) -> anyhow::Result<(usize, IngestAck)> {
    let entries: Vec<String> = AUDIT_ENTRIES
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let count = entries.len();
    let batch = IngestBatch {
        sequence: 1,
        entries,
    };
    let mut client = LogIngestClient::new(channel);
    let mut acks = client
        .stream_entries(tokio_stream::iter([batch]))
        .await
        .context("the ingest stream failed")?
        .into_inner();
    let ack = acks
        .message()
        .await
        .context("the ingest stream failed")?
        .context("the server closed the ingest stream without an ack")?;
    Ok((count, ack))
}

/// Waits until each subscription of [`HANDLED_SUBSCRIPTIONS`] has nothing left to deliver or
/// in flight.
async fn wait_until_handled(channel: Channel) -> anyhow::Result<()> {
    let mut admin = AdminClient::new(channel);
    let give_up = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let subscriptions = admin
            .list_subscriptions(ListSubscriptionsRequest::default())
            .await
            .context("listing the subscriptions failed")?
            .into_inner()
            .subscriptions;
        let mut busy = Vec::new();
        for name in HANDLED_SUBSCRIPTIONS {
            let subscription =
                subscriptions
                    .iter()
                    .find(|s| s.name == name)
                    .with_context(|| {
                        format!("the built-in configuration has no {name} subscription")
                    })?;
            if subscription.backlog > 0 || subscription.outstanding > 0 {
                busy.push(format!("{name} ({} messages)", subscription.backlog));
            }
        }
        if busy.is_empty() {
            return Ok(());
        }
        if Instant::now() >= give_up {
            anyhow::bail!(
                "{} still not handled after {} s; run again with RUST_LOG=info to see what \
                 the handlers do",
                busy.join(", "),
                SETTLE_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn thumbnails(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<ThumbnailInfo>> {
    let listing: Value = http
        .get(format!("{url}/storage/v1/b/{THUMBNAILS_BUCKET}/o"))
        .send()
        .await
        .context("listing the thumbnails failed")?
        .json()
        .await
        .context("the thumbnail listing is not JSON")?;
    let mut thumbnails = Vec::new();
    for object in listing["items"].as_array().into_iter().flatten() {
        let name = object["name"].as_str().unwrap_or_default().to_owned();
        let bytes = http
            .get(format!(
                "{url}/storage/v1/b/{THUMBNAILS_BUCKET}/o/{}?alt=media",
                percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC)
            ))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("reading thumbnail {name:?} failed"))?
            .bytes()
            .await
            .with_context(|| format!("reading thumbnail {name:?} failed"))?;
        let (width, height) = image::ImageReader::new(Cursor::new(&bytes))
            .with_guessed_format()
            .ok()
            .and_then(|reader| reader.into_dimensions().ok())
            .unwrap_or((0, 0));
        let content_type = object["contentType"].as_str().unwrap_or("-").to_owned();
        thumbnails.push(ThumbnailInfo {
            name,
            width,
            height,
            bytes: bytes.len() as u64,
            content_type,
        });
    }
    Ok(thumbnails)
}

/// Returns the object name and the reason of each dead-lettered upload of the thumbnailer.
async fn dead_letters(channel: Channel) -> anyhow::Result<Vec<(String, String)>> {
    let mut dead_letters: Vec<(String, String)> =
        pull_dead_letters(channel, THUMBNAILER_DEAD_LETTER)
            .await?
            .into_iter()
            .map(|dead_letter| {
                (
                    dead_letter.attribute("objectId").to_owned(),
                    dead_letter.reason,
                )
            })
            .collect();
    dead_letters.sort();
    Ok(dead_letters)
}

impl Summary {
    fn print(&self, elapsed: Duration) {
        let ack = &self.ingest;
        write_stdout(format_args!(
            "\nAudit log: {} entries in, {} routed, {} rejected, {} matched no sink",
            self.entries,
            ack.accepted,
            ack.errors.len(),
            ack.unmatched
        ));
        let mut sinks: Vec<(&String, &u32)> = ack.sink_matches.iter().collect();
        sinks.sort();
        for (sink, matches) in sinks {
            write_stdout(format_args!("  sink {sink:<16} {matches:>3} matched"));
        }

        write_stdout(format_args!(
            "\nUploads: {} objects into bucket {UPLOADS_BUCKET}",
            self.uploads.len()
        ));
        write_stdout(format_args!(
            "Thumbnails in bucket {THUMBNAILS_BUCKET}: {}",
            self.thumbnails.len()
        ));
        for thumbnail in &self.thumbnails {
            write_stdout(format_args!(
                "  {:<28} {:>9} {:>7} bytes  {}",
                thumbnail.name,
                format!("{}x{}", thumbnail.width, thumbnail.height),
                thumbnail.bytes,
                thumbnail.content_type
            ));
        }
        write_stdout(format_args!(
            "Dead-lettered to {THUMBNAILER_DEAD_LETTER}: {}",
            self.dead_letters.len()
        ));
        for (name, reason) in &self.dead_letters {
            write_stdout(format_args!("  {name}: {reason}"));
        }
        let skipped: Vec<&str> = self
            .uploads
            .iter()
            .filter(|name| {
                !self.thumbnails.iter().any(|t| &t.name == *name)
                    && !self.dead_letters.iter().any(|d| &d.0 == *name)
            })
            .map(String::as_str)
            .collect();
        write_stdout(format_args!(
            "Skipped (acknowledged, no thumbnail): {}",
            if skipped.is_empty() {
                "none".to_owned()
            } else {
                skipped.join(", ")
            }
        ));
        self.annotations.print();
        self.offers.print();
        write_stdout(format_args!("\nDone in {:.1} s.", elapsed.as_secs_f64()));
    }
}
