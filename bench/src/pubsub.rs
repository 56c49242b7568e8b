//! The scenarios over google.pubsub.v1, for sluice and Google's Pub/Sub emulator alike.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    PublishRequest, PubsubMessage, StreamingPullRequest, Subscription, Topic,
};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic::Code;

use crate::outcome::{
    latency_histogram, latency_outcome, stamp_of, stamped, wait_for_samples, Outcome,
};
use crate::{DeliverLoad, LatencyLoad, PublishLoad, PubsubTarget};

/// Messages a StreamingPull subscriber may hold unacknowledged.
const MAX_OUTSTANDING: i64 = 10_000;
/// Publish requests in flight at once during a latency run.
const MAX_IN_FLIGHT: usize = 1000;

async fn connect(endpoint: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(endpoint.to_owned())
        .with_context(|| format!("{endpoint:?} is not a URL; use http://HOST:PORT"))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

struct Names {
    topic: String,
    subscription: String,
}

/// Creates the run's topic and subscription; existing ones are kept.
async fn setup(target: &PubsubTarget) -> anyhow::Result<Names> {
    let names = Names {
        topic: format!("projects/{}/topics/{}", target.project, target.name),
        subscription: format!("projects/{}/subscriptions/{}", target.project, target.name),
    };
    let channel = connect(&target.endpoint).await?;
    let created = PublisherClient::new(channel.clone())
        .create_topic(Topic {
            name: names.topic.clone(),
            ..Default::default()
        })
        .await;
    if let Err(status) = created {
        if status.code() != Code::AlreadyExists {
            return Err(status).context("creating the topic");
        }
    }
    let created = SubscriberClient::new(channel)
        .create_subscription(Subscription {
            name: names.subscription.clone(),
            topic: names.topic.clone(),
            ack_deadline_seconds: 60,
            ..Default::default()
        })
        .await;
    if let Err(status) = created {
        if status.code() != Code::AlreadyExists {
            return Err(status).context("creating the subscription");
        }
    }
    Ok(names)
}

fn request(topic: &str, count: usize, size: usize) -> PublishRequest {
    PublishRequest {
        topic: topic.to_owned(),
        messages: (0..count)
            .map(|_| PubsubMessage {
                data: vec![b'x'; size],
                ..Default::default()
            })
            .collect(),
    }
}

/// Measures acknowledged publishes: each publisher sends its share of the messages in
/// requests of `batch`, one at a time, waiting for each response.
pub(crate) async fn publish(target: &PubsubTarget, load: &PublishLoad) -> anyhow::Result<Outcome> {
    let names = setup(target).await?;
    let publishers = load.publishers.max(1);
    let share = load.messages / publishers;
    let mut clients = Vec::with_capacity(publishers);
    for _ in 0..publishers {
        clients.push(PublisherClient::new(connect(&target.endpoint).await?));
    }
    let full = request(&names.topic, load.batch.max(1), load.size);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(publishers);
    for mut client in clients {
        let full = full.clone();
        let topic = names.topic.clone();
        let (batch, size) = (load.batch.max(1), load.size);
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            while sent < share {
                let count = batch.min(share - sent);
                let request = if count == batch {
                    full.clone()
                } else {
                    request(&topic, count, size)
                };
                client.publish(request).await.context("publish")?;
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

/// Publishes the backlog untimed, then times one StreamingPull stream that acknowledges
/// every message it receives, until each has been received once.
pub(crate) async fn deliver(target: &PubsubTarget, load: &DeliverLoad) -> anyhow::Result<Outcome> {
    let names = setup(target).await?;
    let mut publisher = PublisherClient::new(connect(&target.endpoint).await?);
    let mut sent = if load.no_publish { load.messages } else { 0 };
    while sent < load.messages {
        let count = 1000.min(load.messages - sent);
        publisher
            .publish(request(&names.topic, count, load.size))
            .await
            .context("publishing the backlog")?;
        sent += count;
    }

    let mut subscriber = SubscriberClient::new(connect(&target.endpoint).await?)
        .max_decoding_message_size(64 * 1024 * 1024);
    let (requests, outgoing) = mpsc::channel(64);
    requests
        .send(StreamingPullRequest {
            subscription: names.subscription.clone(),
            stream_ack_deadline_seconds: 60,
            max_outstanding_messages: MAX_OUTSTANDING,
            ..Default::default()
        })
        .await
        .context("opening the stream")?;
    let started = Instant::now();
    let mut responses = subscriber
        .streaming_pull(ReceiverStream::new(outgoing))
        .await
        .context("StreamingPull")?
        .into_inner();
    let mut seen = HashSet::with_capacity(load.messages);
    while seen.len() < load.messages {
        let Some(response) = responses.next().await else {
            anyhow::bail!(
                "the stream ended after {} of {} messages",
                seen.len(),
                load.messages
            );
        };
        let response = response.context("StreamingPull response")?;
        let mut ack_ids = Vec::with_capacity(response.received_messages.len());
        for received in response.received_messages {
            if let Some(message) = received.message {
                seen.insert(message.message_id);
            }
            ack_ids.push(received.ack_id);
        }
        requests
            .send(StreamingPullRequest {
                ack_ids,
                ..Default::default()
            })
            .await
            .context("sending acknowledgements")?;
    }
    let elapsed = started.elapsed();
    Ok(Outcome::throughput(
        "deliver",
        &target.system,
        (1, 0, load.size),
        seen.len() as u64,
        elapsed,
    ))
}

/// Publishes `rate` messages a second in requests sent every millisecond, each message
/// stamped with its send time, while one StreamingPull stream receives and acknowledges
/// them. Messages sent during the first second are not counted.
pub(crate) async fn latency(target: &PubsubTarget, load: &LatencyLoad) -> anyhow::Result<Outcome> {
    let names = setup(target).await?;
    let histogram = Arc::new(Mutex::new(latency_histogram()?));
    let origin = Instant::now();
    let warmup = Duration::from_secs(1);
    let measured = Duration::from_secs(load.seconds);
    let done = Arc::new(AtomicBool::new(false));

    let mut subscriber = SubscriberClient::new(connect(&target.endpoint).await?)
        .max_decoding_message_size(64 * 1024 * 1024);
    let (requests, outgoing) = mpsc::channel(64);
    requests
        .send(StreamingPullRequest {
            subscription: names.subscription.clone(),
            stream_ack_deadline_seconds: 60,
            max_outstanding_messages: MAX_OUTSTANDING,
            ..Default::default()
        })
        .await
        .context("opening the stream")?;
    let receiver = {
        let histogram = histogram.clone();
        let done = done.clone();
        tokio::spawn(async move {
            // The call is made here, not before publishing: Google's emulator sends the
            // response headers only with the first message.
            let mut responses = subscriber
                .streaming_pull(ReceiverStream::new(outgoing))
                .await
                .context("StreamingPull")?
                .into_inner();
            while !done.load(Ordering::Relaxed) {
                let Ok(Some(response)) =
                    tokio::time::timeout(Duration::from_millis(200), responses.next()).await
                else {
                    continue;
                };
                let response = response.context("StreamingPull response")?;
                let now = origin.elapsed().as_nanos() as u64;
                let mut ack_ids = Vec::with_capacity(response.received_messages.len());
                {
                    let mut histogram = histogram.lock().unwrap_or_else(PoisonError::into_inner);
                    for received in response.received_messages {
                        let stamp = received.message.as_ref().and_then(|m| stamp_of(&m.data));
                        if let Some(stamp) = stamp {
                            if stamp >= warmup.as_nanos() as u64 {
                                let micros = now.saturating_sub(stamp) / 1000;
                                let _ = histogram.record(micros.max(1));
                            }
                        }
                        ack_ids.push(received.ack_id);
                    }
                }
                // A server that stops reading the stream must not hold the receiver here.
                let _ = tokio::time::timeout(
                    Duration::from_millis(200),
                    requests.send(StreamingPullRequest {
                        ack_ids,
                        ..Default::default()
                    }),
                )
                .await;
            }
            anyhow::Ok(())
        })
    };

    let publisher = PublisherClient::new(connect(&target.endpoint).await?);
    let per_tick = (load.rate / 1000).max(1) as usize;
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let mut publishes = Vec::new();
    while origin.elapsed() < warmup + measured {
        ticks.tick().await;
        let stamp = origin.elapsed().as_nanos() as u64;
        let request = PublishRequest {
            topic: names.topic.clone(),
            messages: (0..per_tick)
                .map(|_| PubsubMessage {
                    data: stamped(load.size, stamp),
                    ..Default::default()
                })
                .collect(),
        };
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
        let mut client = publisher.clone();
        publishes.push(tokio::spawn(async move {
            let result = client.publish(request).await;
            drop(permit);
            result.map(drop)
        }));
    }
    // A system that cannot keep up fails the run instead of holding it up.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        for publish in publishes {
            publish
                .await
                .context("a publish task panicked")?
                .context("publish")?;
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("publishes were still unanswered 10 s after the last was sent"),
    }
    // Give the last messages time to arrive.
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
