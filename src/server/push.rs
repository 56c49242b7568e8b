//! Push subscriptions: one runner with a [`PushHandler`] per subscription that has a push
//! config.
//!
//! The supervisor reads the broker's subscriptions every [`SCAN_INTERVAL`]. It starts a runner
//! for each subscription with a push config, whether the config came from the configuration
//! file or from the Pub/Sub API, and stops the runner once the subscription lost its config
//! or was deleted. A change of the endpoint, the format or the ack deadline needs no restart,
//! because the handler reads them at each delivery. A stopped runner stops pulling at once
//! and finishes the requests it has in flight, in the background.
//!
//! NOTE: a push config set through the API takes effect at the next scan, up to
//! [`SCAN_INTERVAL`] later, because the broker has no change notification to wait on.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sluice_handlers::push::{EndpointLimits, PushAuthorization, PushHandler, USER_AGENT};
use sluice_handlers::runner::{self, RunnerHandle, RunnerOptions};
use sluice_router::deliver::Broker;
use sluice_router::store::PushConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::metrics::Metrics;
use super::names;

/// How often the supervisor compares the running push runners with the subscriptions.
pub(crate) const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// The push runners and the task that starts and stops them.
#[derive(Debug)]
pub(crate) struct PushSupervisor {
    /// Ends with the runners that were still running or draining when the shutdown came.
    task: JoinHandle<Vec<(String, RunnerHandle)>>,
}

/// One push runner, with the sender whose drop stops its pulls.
#[derive(Debug)]
struct PushRunner {
    runner: RunnerHandle,
    stop: oneshot::Sender<()>,
}

/// The supervisor task's state: its push runners and the parts it starts them with.
#[derive(Debug)]
struct Supervisor {
    broker: Arc<Broker>,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    limits: EndpointLimits,
    /// The signers of the subscriptions whose requests carry a token, by subscription.
    tokens: HashMap<String, Arc<dyn PushAuthorization>>,
    running: HashMap<String, PushRunner>,
    /// Stopped runners that may still finish requests in flight.
    draining: Vec<(String, RunnerHandle)>,
}

/// Starts the supervisor, which keeps one push runner per push subscription until `shutdown`
/// completes.
///
/// # Errors
///
/// Fails when the HTTP client cannot be built, which happens when the TLS backend cannot
/// load the system's root certificates.
pub(crate) fn start(
    broker: Arc<Broker>,
    metrics: Arc<Metrics>,
    tokens: HashMap<String, Arc<dyn PushAuthorization>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<PushSupervisor> {
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        // Pub/Sub does not follow redirects: a 3xx response is a failure.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("failed to build the HTTP client of push subscriptions")?;
    let supervisor = Supervisor {
        broker,
        metrics,
        client,
        limits: EndpointLimits::new(sluice_handlers::push::DEFAULT_MAX_REQUESTS_PER_ENDPOINT),
        tokens,
        running: HashMap::new(),
        draining: Vec::new(),
    };
    let task = tokio::spawn(supervisor.run(shutdown));
    Ok(PushSupervisor { task })
}

impl Supervisor {
    async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Vec<(String, RunnerHandle)> {
        tokio::pin!(shutdown);
        let mut ticks = tokio::time::interval(SCAN_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                _ = ticks.tick() => self.scan(),
            }
        }
        // Dropping each stop sender ends the runner's pulls.
        let mut runners: Vec<(String, RunnerHandle)> = self
            .running
            .drain()
            .map(|(subscription, push)| (subscription, push.runner))
            .collect();
        runners.append(&mut self.draining);
        runners
    }

    /// Starts and stops runners so that exactly the subscriptions with a push config have one.
    fn scan(&mut self) {
        let wanted: HashMap<String, PushConfig> = self
            .broker
            .store()
            .subscriptions()
            .into_iter()
            .filter_map(|record| Some((record.spec.name, record.spec.push?)))
            .collect();

        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|subscription| !wanted.contains_key(*subscription))
            .cloned()
            .collect();
        for subscription in gone {
            if let Some(push) = self.running.remove(&subscription) {
                info!(%subscription, "push stopped: the subscription has no push config any more");
                drop(push.stop);
                self.draining.push((subscription, push.runner));
            }
        }
        self.draining.retain(|(_, runner)| !runner.is_finished());

        // A runner whose task ended (it panicked) is started again.
        self.running.retain(|subscription, push| {
            let alive = !push.runner.is_finished();
            if !alive {
                warn!(%subscription, "push runner ended unexpectedly; starting it again");
            }
            alive
        });
        for (subscription, config) in &wanted {
            if !self.running.contains_key(subscription) {
                let push = self.spawn(subscription, config);
                self.running.insert(subscription.clone(), push);
            }
        }

        let endpoints: HashSet<&str> = wanted.values().map(|c| c.endpoint.as_str()).collect();
        self.limits.retain(&endpoints);
    }

    fn spawn(&self, subscription: &str, config: &PushConfig) -> PushRunner {
        let handler = PushHandler::new(
            self.client.clone(),
            subscription.to_owned(),
            names::subscription_resource(subscription),
            names::topic_resource,
            config.clone(),
            self.limits.clone(),
            self.metrics.push_stats(subscription),
        );
        let handler = match self.tokens.get(subscription) {
            Some(token) => handler.with_authorization(token.clone()),
            None => handler,
        };
        // More events in flight than the endpoint bound would only wait for a permit.
        let options = RunnerOptions {
            concurrency: self.limits.max_requests(),
            ..RunnerOptions::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let runner = runner::spawn_for_deliveries(
            self.broker.clone(),
            subscription.to_owned(),
            Arc::new(handler),
            options,
            async move {
                // Completes when the sender is used or dropped.
                let _ = stopped.await;
            },
        );
        info!(
            %subscription,
            endpoint = %config.endpoint,
            max_requests = self.limits.max_requests(),
            "push started"
        );
        PushRunner { runner, stop }
    }
}

impl PushSupervisor {
    /// Waits for the supervisor to stop its runners after the shutdown, then up to `limit`
    /// for the runners to finish their requests in flight, and aborts the rest. Their leases
    /// lapse, so those messages are delivered again after the next start.
    pub(crate) async fn stop(self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let runners = match tokio::time::timeout_at(deadline, self.task).await {
            Ok(Ok(runners)) => runners,
            Ok(Err(err)) => {
                warn!(error = %err, "push supervisor ended abnormally");
                return;
            }
            Err(_) => {
                warn!("push supervisor still busy at shutdown");
                return;
            }
        };
        for (subscription, mut runner) in runners {
            match tokio::time::timeout_at(deadline, runner.join()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    warn!(%subscription, error = %err, "push runner ended abnormally");
                }
                Err(_) => {
                    runner.abort();
                    warn!(
                        %subscription,
                        "push runner still busy at shutdown; its messages will be delivered again"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::{StatusCode, Uri};
    use sluice_router::store::{
        NewMessage, PushFormat, SledStore, Store, SubscriptionSpec, TopicMessage,
    };
    use tokio::net::TcpListener;

    use super::*;

    /// The paths of the requests that the mock endpoint received.
    type Paths = Arc<Mutex<Vec<String>>>;

    /// Starts an endpoint on 127.0.0.1 that records each request's path and responds 204.
    async fn start_endpoint() -> (String, Paths) {
        async fn record(State(paths): State<Paths>, uri: Uri) -> StatusCode {
            paths
                .lock()
                .expect("not poisoned")
                .push(uri.path().to_owned());
            StatusCode::NO_CONTENT
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let paths = Paths::default();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(paths.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, paths)
    }

    /// Waits until the endpoint has received `count` requests.
    async fn wait_for_requests(paths: &Paths, count: usize) -> Vec<String> {
        for _ in 0..2000 {
            let received = paths.lock().expect("not poisoned").clone();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the endpoint did not receive {count} requests");
    }

    async fn publish(broker: &Broker, data: &str) {
        let message = TopicMessage {
            topic: "orders".to_owned(),
            message: NewMessage {
                data: data.as_bytes().to_vec(),
                ..NewMessage::default()
            },
        };
        broker.publish(vec![message]).await.expect("publish");
    }

    fn push_spec(endpoint: Option<String>) -> SubscriptionSpec {
        let mut spec = SubscriptionSpec::new("orders-push", "orders");
        spec.push = endpoint.map(|endpoint| PushConfig {
            endpoint,
            attributes: Default::default(),
            format: PushFormat::Wrapped,
            max_event_age_secs: None,
        });
        spec
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn scan_follows_push_config_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("store opens"));
        let broker = Arc::new(Broker::open(store).expect("broker opens"));
        broker.create_topic("orders").await.expect("topic");
        let (url, paths) = start_endpoint().await;
        let mut supervisor = Supervisor {
            broker: broker.clone(),
            metrics: Arc::new(Metrics::new(broker.clone())),
            client: reqwest::Client::new(),
            limits: EndpointLimits::new(4),
            tokens: HashMap::new(),
            running: HashMap::new(),
            draining: Vec::new(),
        };

        broker
            .create_subscription(push_spec(Some(format!("{url}/first"))))
            .await
            .expect("create");
        supervisor.scan();
        assert!(supervisor.running.contains_key("orders-push"), "started");
        publish(&broker, "one").await;
        assert_eq!(wait_for_requests(&paths, 1).await, ["/first"]);

        broker
            .create_subscription(push_spec(Some(format!("{url}/second"))))
            .await
            .expect("update");
        supervisor.scan();
        publish(&broker, "two").await;
        assert_eq!(
            wait_for_requests(&paths, 2).await,
            ["/first", "/second"],
            "the new endpoint applies without a restart"
        );

        broker
            .create_subscription(push_spec(None))
            .await
            .expect("remove push");
        supervisor.scan();
        assert!(supervisor.running.is_empty(), "stopped");
        for (_, mut runner) in supervisor.draining.drain(..) {
            runner.join().await.expect("the runner ends");
        }
        publish(&broker, "three").await;
        let pulled = broker
            .pull("orders-push", 10, Duration::from_secs(5))
            .await
            .expect("pull");
        assert_eq!(pulled.len(), 1, "a pull client gets the message");
        assert_eq!(paths.lock().expect("not poisoned").len(), 2, "not pushed");

        broker
            .create_subscription(push_spec(Some(format!("{url}/third"))))
            .await
            .expect("restore push");
        supervisor.scan();
        assert!(supervisor.running.contains_key("orders-push"), "restarted");
        broker
            .delete_subscription("orders-push")
            .await
            .expect("delete");
        supervisor.scan();
        assert!(supervisor.running.is_empty(), "stopped after the delete");
        assert_eq!(supervisor.draining.len(), 1, "draining");
    }
}
