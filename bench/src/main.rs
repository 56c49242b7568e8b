//! `sluice-loadgen`: drives one benchmark scenario against one system and prints its outcome
//! as one JSON line.
//!
//! The Pub/Sub scenarios speak google.pubsub.v1 over gRPC, so the same client measures
//! sluice and Google's Pub/Sub emulator; the JetStream scenarios do the same work over
//! async-nats. `scripts/bench` starts each system, runs every scenario and collects the
//! lines.

mod ingest;
mod jetstream;
mod outcome;
mod pubsub;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::outcome::Outcome;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-loadgen",
    about = "Load generator for sluice's benchmarks"
)]
struct Cli {
    /// Seconds after which a run is abandoned as stuck.
    #[arg(long, global = true, default_value_t = 300)]
    time_limit: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Acknowledged publishes over google.pubsub.v1 (sluice or the Pub/Sub emulator).
    PubsubPublish {
        #[command(flatten)]
        target: PubsubTarget,
        #[command(flatten)]
        load: PublishLoad,
    },
    /// StreamingPull with acknowledgements of a backlog published beforehand.
    PubsubDeliver {
        #[command(flatten)]
        target: PubsubTarget,
        #[command(flatten)]
        load: DeliverLoad,
    },
    /// Publish-to-receipt latency at a fixed rate, over StreamingPull.
    PubsubLatency {
        #[command(flatten)]
        target: PubsubTarget,
        #[command(flatten)]
        load: LatencyLoad,
    },
    /// JSON log entries over sluice's LogIngest stream, routed through its sinks.
    Ingest {
        /// The gRPC endpoint, such as `http://127.0.0.1:8085`.
        #[arg(long)]
        endpoint: String,
        /// The system's name in the outcome line.
        #[arg(long, default_value = "sluice")]
        system: String,
        #[command(flatten)]
        load: IngestLoad,
    },
    /// Acknowledged publishes to a file-backed JetStream stream.
    JetstreamPublish {
        #[command(flatten)]
        target: NatsTarget,
        #[command(flatten)]
        load: PublishLoad,
    },
    /// A durable pull consumer with explicit acknowledgements, over a backlog published
    /// beforehand.
    JetstreamDeliver {
        #[command(flatten)]
        target: NatsTarget,
        #[command(flatten)]
        load: DeliverLoad,
    },
    /// Publish-to-receipt latency at a fixed rate, over a pull consumer.
    JetstreamLatency {
        #[command(flatten)]
        target: NatsTarget,
        #[command(flatten)]
        load: LatencyLoad,
    },
}

/// The server of a Pub/Sub scenario.
#[derive(Debug, Args)]
struct PubsubTarget {
    /// The gRPC endpoint, such as `http://127.0.0.1:8085`.
    #[arg(long)]
    endpoint: String,
    /// The project of the benchmark's topic and subscription.
    #[arg(long, default_value = "local")]
    project: String,
    /// The system's name in the outcome line.
    #[arg(long)]
    system: String,
    /// The topic and subscription name; each run should use a new one.
    #[arg(long)]
    name: String,
}

/// The server of a JetStream scenario.
#[derive(Debug, Args)]
struct NatsTarget {
    /// The NATS server URL, such as `nats://127.0.0.1:4222`.
    #[arg(long)]
    url: String,
    /// The system's name in the outcome line.
    #[arg(long, default_value = "jetstream")]
    system: String,
    /// The stream and consumer name; each run should use a new one.
    #[arg(long)]
    name: String,
}

/// Shape of a publish run.
#[derive(Debug, Args)]
struct PublishLoad {
    /// Concurrent publishers, each on its own connection.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Messages per publish request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Bytes of each message's data.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Messages in all; each publisher sends its share.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
}

/// Shape of a delivery run.
#[derive(Debug, Args)]
struct DeliverLoad {
    /// Bytes of each message's data.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Messages published before the timed part, then received and acknowledged.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Receive from a backlog already in the subscription instead of publishing one first.
    #[arg(long)]
    no_publish: bool,
}

/// Shape of a latency run.
#[derive(Debug, Args)]
struct LatencyLoad {
    /// Messages per second, a multiple of 1000, because a request goes out every millisecond.
    #[arg(long, default_value_t = 10_000, value_parser = parse_rate)]
    rate: u64,
    /// Seconds of measurement, after one second of warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes of each message's data.
    #[arg(long, default_value_t = 1024)]
    size: usize,
}

/// Shape of an ingest run.
#[derive(Debug, Args)]
struct IngestLoad {
    /// A JSON Lines file of LogEntries, sent over and over.
    #[arg(long)]
    file: std::path::PathBuf,
    /// Entries in all.
    #[arg(long, default_value_t = 200_000)]
    entries: usize,
    /// Entries per batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Batches awaiting their acknowledgement at once.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// The number of sinks in the server's configuration, recorded in the outcome line.
    #[arg(long, default_value_t = 0)]
    sinks: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
    };
    let failure_key = cli.command.key();
    let outcome = runtime.block_on(async {
        let limit = Duration::from_secs(cli.time_limit);
        match tokio::time::timeout(limit, run(cli.command)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!(
                "the run took more than {} s; lower --messages or --seconds, or raise --time-limit",
                cli.time_limit
            )),
        }
    });
    match outcome {
        Ok(outcome) => {
            print_line(&outcome.to_json());
            ExitCode::SUCCESS
        }
        Err(err) => {
            // The failure is also recorded as an outcome line, so that the report can count
            // failed runs of each scenario.
            let mut line = failure_key;
            line["error"] = serde_json::Value::String(format!("{err:#}"));
            print_line(&line.to_string());
            fail(&format!("{err:#}"))
        }
    }
}

impl Command {
    /// The fields of the outcome line that name the run: scenario, system and shape.
    fn key(&self) -> serde_json::Value {
        let (scenario, system, publishers, batch, sinks) = match self {
            Command::PubsubPublish { target, load } => {
                ("publish", &target.system, load.publishers, load.batch, 0)
            }
            Command::JetstreamPublish { target, load } => {
                ("publish", &target.system, load.publishers, load.batch, 0)
            }
            Command::PubsubDeliver { target, .. } => ("deliver", &target.system, 1, 0, 0),
            Command::JetstreamDeliver { target, .. } => ("deliver", &target.system, 1, 0, 0),
            Command::PubsubLatency { target, .. } => ("latency", &target.system, 1, 0, 0),
            Command::JetstreamLatency { target, .. } => ("latency", &target.system, 1, 0, 0),
            Command::Ingest { system, load, .. } => ("ingest", system, 1, load.batch, load.sinks),
        };
        let mut key = serde_json::json!({
            "scenario": scenario,
            "system": system,
            "publishers": publishers,
            "batch": batch,
        });
        if sinks > 0 {
            key["sinks"] = sinks.into();
        }
        key
    }
}

async fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::PubsubPublish { target, load } => pubsub::publish(&target, &load).await,
        Command::PubsubDeliver { target, load } => pubsub::deliver(&target, &load).await,
        Command::PubsubLatency { target, load } => pubsub::latency(&target, &load).await,
        Command::Ingest {
            endpoint,
            system,
            load,
        } => ingest::ingest(&endpoint, &system, &load).await,
        Command::JetstreamPublish { target, load } => jetstream::publish(&target, &load).await,
        Command::JetstreamDeliver { target, load } => jetstream::deliver(&target, &load).await,
        Command::JetstreamLatency { target, load } => jetstream::latency(&target, &load).await,
    }
}

fn parse_rate(text: &str) -> Result<u64, String> {
    let rate: u64 = text.parse().map_err(|_| {
        format!("invalid rate {text:?}: expected a whole number of messages per second")
    })?;
    if rate == 0 || !rate.is_multiple_of(1000) {
        return Err(format!(
            "invalid rate {rate}: use a multiple of 1000, such as 1000 or 10000, because a \
             request goes out every millisecond"
        ));
    }
    Ok(rate)
}

#[allow(
    clippy::print_stdout,
    reason = "the outcome line is the program's output"
)]
fn print_line(line: &str) {
    println!("{line}");
}

#[allow(clippy::print_stderr, reason = "errors go to stderr")]
fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
