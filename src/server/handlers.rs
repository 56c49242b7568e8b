//! The built-in handlers: one runner per subscription whose configuration names a handler.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sluice_handlers::annotate::{AnnotateConfig, AnnotateHandler, AnnotateOptions};
use sluice_handlers::contract::Handler;
use sluice_handlers::offers::{OffersConfig, OffersHandler};
use sluice_handlers::runner::{self, RunnerHandle, RunnerOptions};
use sluice_handlers::thumbnail::{ThumbnailConfig, ThumbnailHandler, ThumbnailOptions};
use sluice_router::deliver::Broker;
use sluice_router::storage::Storage;
use tracing::{info, warn};

use super::metrics::Metrics;
use crate::config::{HandlerSpec, SubscriptionHandler};

/// The runners of the configured handlers.
#[derive(Debug, Default)]
pub(crate) struct Runners {
    runners: Vec<(String, RunnerHandle)>,
}

/// Starts one runner per configured handler. Each stops pulling when `shutdown` completes.
pub(crate) fn start<F>(
    handlers: &[SubscriptionHandler],
    broker: &Arc<Broker>,
    storage: &Storage,
    metrics: &Metrics,
    shutdown: impl Fn() -> F,
) -> Runners
where
    F: Future<Output = ()> + Send + 'static,
{
    let runners = handlers
        .iter()
        .map(|configured| {
            let (handler, options) = build(&configured.handler, broker, storage);
            info!(
                subscription = %configured.subscription,
                handler = handler.name(),
                concurrency = options.concurrency,
                "handler started"
            );
            let name = handler.name().to_owned();
            let runner = runner::spawn(
                broker.clone(),
                configured.subscription.clone(),
                handler,
                options,
                shutdown(),
            );
            metrics.add_handler(&configured.subscription, &name, runner.stats().clone());
            (configured.subscription.clone(), runner)
        })
        .collect();
    Runners { runners }
}

fn build(
    spec: &HandlerSpec,
    broker: &Arc<Broker>,
    storage: &Storage,
) -> (Arc<dyn Handler>, RunnerOptions) {
    match spec {
        HandlerSpec::Thumbnail {
            destination_bucket,
            name_prefix,
            max_width,
            max_height,
            max_pixels,
            jpeg_quality,
            concurrency,
        } => {
            let config = ThumbnailConfig {
                destination_bucket: destination_bucket.clone(),
                name_prefix: name_prefix.clone(),
                options: ThumbnailOptions {
                    max_width: *max_width,
                    max_height: *max_height,
                    max_pixels: *max_pixels,
                    jpeg_quality: *jpeg_quality,
                },
            };
            (
                Arc::new(ThumbnailHandler::new(storage.clone(), config)),
                runner_options(*concurrency),
            )
        }
        HandlerSpec::Annotate {
            destination_bucket,
            name_prefix,
            max_pixels,
            max_colors,
            concurrency,
        } => {
            let config = AnnotateConfig {
                destination_bucket: destination_bucket.clone(),
                name_prefix: name_prefix.clone(),
                options: AnnotateOptions {
                    max_pixels: *max_pixels,
                    max_colors: *max_colors,
                },
            };
            (
                Arc::new(AnnotateHandler::new(storage.clone(), config)),
                runner_options(*concurrency),
            )
        }
        HandlerSpec::Offers {
            state_bucket,
            accepted_topic,
            concurrency,
        } => {
            let config = OffersConfig {
                state_bucket: state_bucket.clone(),
                accepted_topic: accepted_topic.clone(),
            };
            (
                Arc::new(OffersHandler::new(broker.clone(), storage.clone(), config)),
                runner_options(*concurrency),
            )
        }
    }
}

fn runner_options(concurrency: usize) -> RunnerOptions {
    RunnerOptions {
        concurrency,
        ..RunnerOptions::default()
    }
}

impl Runners {
    /// Waits up to `limit` for the runners to finish the events they hold, then stops them.
    /// Events not finished by then keep their leases, which lapse, so they are delivered again
    /// after the next start.
    pub(crate) async fn stop(self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        for (subscription, mut runner) in self.runners {
            let waited = tokio::time::timeout_at(deadline, runner.join()).await;
            match waited {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    warn!(%subscription, error = %err, "handler runner ended abnormally");
                }
                Err(_) => {
                    runner.abort();
                    warn!(%subscription, "handler runner still busy at shutdown; its events will be delivered again");
                }
            }
        }
    }
}
