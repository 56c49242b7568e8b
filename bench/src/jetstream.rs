//! The same scenarios over NATS JetStream: a file-backed stream, acknowledged publishes and
//! a durable pull consumer with explicit acknowledgements.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::outcome::{
    latency_histogram, latency_outcome, stamp_of, stamped, wait_for_samples, Outcome,
};
use crate::{DeliverLoad, LatencyLoad, NatsTarget, PublishLoad};

/// Publishes awaiting their acknowledgement at once during a latency run.
const MAX_IN_FLIGHT: usize = 1000;

async fn context(url: &str) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(jetstream::new(client))
}

/// Creates the run's file-backed stream, on subject `NAME.messages`.
async fn setup(js: &jetstream::Context, name: &str) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject(name)],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating stream {name}"))
}

fn subject(name: &str) -> String {
    format!("{name}.messages")
}

async fn pull_consumer(
    stream: &stream::Stream,
    name: &str,
) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
    stream
        .get_or_create_consumer(
            name,
            consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating consumer {name}"))
}

/// Measures acknowledged publishes: each publisher sends `batch` publishes, then waits for
/// all their acknowledgements, as one acknowledged Pub/Sub request of `batch` messages does.
pub(crate) async fn publish(target: &NatsTarget, load: &PublishLoad) -> anyhow::Result<Outcome> {
    let js = context(&target.url).await?;
    setup(&js, &target.name).await?;
    let publishers = load.publishers.max(1);
    let share = load.messages / publishers;
    let mut contexts = Vec::with_capacity(publishers);
    for _ in 0..publishers {
        contexts.push(context(&target.url).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(publishers);
    for js in contexts {
        let subject = subject(&target.name);
        let (batch, size) = (load.batch.max(1), load.size);
        tasks.push(tokio::spawn(async move {
            let data = bytes_of(vec![b'x'; size]);
            let mut sent = 0;
            while sent < share {
                let count = batch.min(share - sent);
                let mut acks = Vec::with_capacity(count);
                for _ in 0..count {
                    acks.push(js.publish(subject.clone(), data.clone()).await?);
                }
                for ack in acks {
                    ack.await?;
                }
                sent += count;
            }
            anyhow::Ok(sent as u64)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.context("a publisher task panicked")??;
    }
    Ok(Outcome::throughput(
        "publish",
        &target.system,
        (publishers, load.batch, load.size),
        total,
        started.elapsed(),
    ))
}

/// Publishes the backlog untimed, then times one pull consumer that acknowledges each
/// message, until every one has been received.
pub(crate) async fn deliver(target: &NatsTarget, load: &DeliverLoad) -> anyhow::Result<Outcome> {
    let js = context(&target.url).await?;
    let stream = setup(&js, &target.name).await?;
    let data = bytes_of(vec![b'x'; load.size]);
    let mut sent = if load.no_publish { load.messages } else { 0 };
    while sent < load.messages {
        let count = 1000.min(load.messages - sent);
        let mut acks = Vec::with_capacity(count);
        for _ in 0..count {
            acks.push(js.publish(subject(&target.name), data.clone()).await?);
        }
        for ack in acks {
            ack.await.context("publishing the backlog")?;
        }
        sent += count;
    }

    let consumer = pull_consumer(&stream, &target.name).await?;
    let started = Instant::now();
    let mut messages = consumer.messages().await.context("pulling")?;
    let mut received = 0u64;
    while received < load.messages as u64 {
        let Some(message) = messages.next().await else {
            anyhow::bail!(
                "the consumer ended after {received} of {} messages",
                load.messages
            );
        };
        let message = message.map_err(|err| anyhow::anyhow!("pull: {err}"))?;
        message
            .ack()
            .await
            .map_err(|err| anyhow::anyhow!("ack: {err}"))?;
        received += 1;
    }
    Ok(Outcome::throughput(
        "deliver",
        &target.system,
        (1, 0, load.size),
        received,
        started.elapsed(),
    ))
}

/// Publishes `rate` messages a second, in groups sent every millisecond, stamped with their
/// send time, while a pull consumer receives and acknowledges them. Messages sent during
/// the first second are not counted.
pub(crate) async fn latency(target: &NatsTarget, load: &LatencyLoad) -> anyhow::Result<Outcome> {
    let js = context(&target.url).await?;
    let stream = setup(&js, &target.name).await?;
    let consumer = pull_consumer(&stream, &target.name).await?;
    let histogram = Arc::new(Mutex::new(latency_histogram()?));
    let origin = Instant::now();
    let warmup = Duration::from_secs(1);
    let measured = Duration::from_secs(load.seconds);
    let done = Arc::new(AtomicBool::new(false));

    let mut messages = consumer.messages().await.context("pulling")?;
    let receiver = {
        let histogram = histogram.clone();
        let done = done.clone();
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let Ok(Some(message)) =
                    tokio::time::timeout(Duration::from_millis(200), messages.next()).await
                else {
                    continue;
                };
                let message = message.map_err(|err| anyhow::anyhow!("pull: {err}"))?;
                let now = origin.elapsed().as_nanos() as u64;
                if let Some(stamp) = stamp_of(&message.payload) {
                    if stamp >= warmup.as_nanos() as u64 {
                        let micros = now.saturating_sub(stamp) / 1000;
                        let _ = histogram
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .record(micros.max(1));
                    }
                }
                message
                    .ack()
                    .await
                    .map_err(|err| anyhow::anyhow!("ack: {err}"))?;
            }
            anyhow::Ok(())
        })
    };

    let per_tick = (load.rate / 1000).max(1) as usize;
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let mut publishes = Vec::new();
    while origin.elapsed() < warmup + measured {
        ticks.tick().await;
        let stamp = origin.elapsed().as_nanos() as u64;
        if stamp >= warmup.as_nanos() as u64 {
            sent += per_tick as u64;
        }
        let permit =
            match tokio::time::timeout(Duration::from_secs(5), in_flight.clone().acquire_owned())
                .await
            {
                Ok(permit) => permit?,
                Err(_) => anyhow::bail!(
                    "the system fell behind the rate of {} messages/s: {MAX_IN_FLIGHT} publishes \
                 were unanswered for 5 s",
                    load.rate
                ),
            };
        let js = js.clone();
        let subject = subject(&target.name);
        let data = bytes_of(stamped(load.size, stamp));
        publishes.push(tokio::spawn(async move {
            let mut acks = Vec::with_capacity(per_tick);
            for _ in 0..per_tick {
                acks.push(js.publish(subject.clone(), data.clone()).await?);
            }
            for ack in acks {
                ack.await?;
            }
            drop(permit);
            anyhow::Ok(())
        }));
    }
    // A system that cannot keep up fails the run instead of holding it up.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        for publish in publishes {
            publish.await.context("a publish task panicked")??;
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("publishes were still unanswered 10 s after the last was sent"),
    }
    wait_for_samples(&histogram, sent).await;
    done.store(true, Ordering::Relaxed);
    receiver.await.context("the receiver panicked")??;
    latency_outcome(
        &histogram,
        sent,
        &target.system,
        (1, per_tick, load.size),
        measured,
    )
}

fn bytes_of(data: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(data)
}
