//! `sluice serve`: the gRPC and HTTP service on one port.
//!
//! Start-up loads and validates the configuration (every problem reported at once), opens
//! the store, creates the configured topics and subscriptions, opens the buckets under
//! `<data dir>/buckets` with their configured notifications, and serves:
//!
//! - gRPC: sluice.v1 LogIngest and Admin, google.pubsub.v1 Publisher and Subscriber,
//!   google.logging.v2 WriteLogEntries;
//! - HTTP: `POST /v2/entries:write` (Cloud Logging's REST write), `POST /upload/{bucket}`
//!   and a subset of Cloud Storage's JSON API (see [`storage`]), Pub/Sub's REST API under
//!   `/v1/projects/` (see [`pubsub_rest`]), `GET /healthz` and `GET /metrics`.
//!
//! It also starts one runner per subscription that names a built-in handler (see
//! [`handlers`]), which pulls the subscription's messages inside the process, and one per
//! subscription with a push config, which POSTs them to its endpoint (see [`push`]). The
//! functions deployed with `sluice functions deploy` come back with their own processes and
//! runners (see [`functions`]).
//!
//! SIGINT or SIGTERM stops accepting connections and the runners' pulls, lets open requests
//! and the events being handled finish for up to [`GRACE_PERIOD`] each, stops the lease timers and flushes the store before the process exits.
//! Leased but unacknowledged messages need no release: their pending entries are on disk, so
//! they are delivered again after the next start.

mod admin;
mod audit;
mod auth;
mod functions;
pub(crate) mod fuzzing;
mod handlers;
mod http;
mod ingest;
mod limits;
mod logging;
pub(crate) mod metrics;
mod names;
mod pubsub;
mod pubsub_rest;
mod push;
mod push_token;
mod status;
mod storage;
mod tls;

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::{Listener, ListenerExt as _};
use sluice_proto::google::pubsub::v1::publisher_server::PublisherServer;
use sluice_proto::google::pubsub::v1::subscriber_server::SubscriberServer;
use sluice_proto::sluice::v1::admin_server::AdminServer;
use sluice_proto::sluice::v1::log_ingest_server::LogIngestServer;
use sluice_router::deliver::Broker;
use sluice_router::route::LogRouter;
use sluice_router::storage::Storage;
use sluice_router::store::jetstream::JetStreamStore;
use sluice_router::store::{SledStore, Store, StoreError, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{self, Config, StoreSpec};
pub(crate) use ingest::Ingestor;
use metrics::Metrics;
pub(crate) use storage::DEFAULT_MAX_UPLOAD_BYTES;

/// How long open requests and streams may run on after a shutdown signal.
pub(crate) const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// What `sluice serve` needs to start.
#[derive(Debug, Clone)]
pub(crate) struct ServeOptions {
    /// The configuration file; the embedded default when absent.
    pub(crate) config: Option<PathBuf>,
    /// Where the store keeps its files.
    pub(crate) data_dir: PathBuf,
    /// The address to listen on; port 0 picks a free port.
    pub(crate) listen: SocketAddr,
    /// The largest request body of an upload, in bytes; `None` takes `[limits]
    /// max_upload_bytes`, or else [`DEFAULT_MAX_UPLOAD_BYTES`].
    pub(crate) max_upload_bytes: Option<u64>,
    /// The store's disk reserve and publish budget.
    pub(crate) store: StoreOptions,
}

/// Loads and validates the configuration, joining every problem into one error.
///
/// # Errors
///
/// Fails when the file cannot be read or parsed, or lists every validation problem.
pub(crate) fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let (file, source) = match path {
        Some(path) => (config::load(path)?, path.display().to_string()),
        None => (
            config::parse(config::DEFAULT_CONFIG, config::DEFAULT_CONFIG_NAME)?,
            config::DEFAULT_CONFIG_NAME.to_owned(),
        ),
    };
    match file.validate() {
        Ok(config) => {
            for warning in &config.warnings {
                warn!(config = %source, "{warning}");
            }
            Ok(config)
        }
        Err(invalid) => {
            let problems: Vec<String> = invalid
                .errors
                .iter()
                .map(|d| format!("  {source}: {d}"))
                .collect();
            anyhow::bail!(
                "the configuration has {} problem{}; fix them and start again:\n{}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                problems.join("\n")
            )
        }
    }
}

/// The running service's shared parts.
struct Service {
    broker: Arc<Broker>,
    ingestor: Ingestor,
    metrics: Arc<Metrics>,
    /// The buckets with the broker that carries their notifications. The HTTP routes change
    /// objects through it, and handlers that write objects, such as the thumbnail handler,
    /// need it too.
    pub(crate) storage: Storage,
    /// The subscriptions whose messages built-in handlers consume.
    handlers: Vec<crate::config::SubscriptionHandler>,
    /// TLS, authentication and limits.
    security: crate::config::SecuritySpec,
    /// The push subscriptions that sign their requests.
    push_tokens: std::collections::HashMap<String, crate::config::PushTokenSpec>,
    /// The functions deployed from source.
    functions: functions::Functions,
}

/// Opens the store that `[store]` selects, and the broker over it.
/// Also returns the bucket backend that goes with the store.
async fn open_broker(
    spec: &StoreSpec,
    data_dir: &Path,
    store_options: StoreOptions,
) -> anyhow::Result<(Broker, storage::BucketBackend)> {
    match spec {
        StoreSpec::Sled => {
            let store = SledStore::open_with(data_dir, store_options)
                .map_err(|err| open_error(data_dir, &err))?;
            let store: Arc<dyn Store> = Arc::new(store);
            Ok((Broker::open(store)?, storage::BucketBackend::Folder))
        }
        StoreSpec::JetStream {
            options,
            objects_folder,
        } => {
            // The error names the URLs and says what to check.
            let store = JetStreamStore::connect(options).await?;
            let buckets = storage::BucketBackend::JetStream {
                store: Box::new(store.clone()),
                replicas: options.replicas,
                objects_folder: objects_folder.clone(),
            };
            Ok((Broker::open_shared(Arc::new(store)), buckets))
        }
    }
}

/// Explains why the store did not open and what the operator can do, so that a supervisor
/// restarting sluice shows the cause instead of a crash loop.
fn open_error(data_dir: &Path, err: &StoreError) -> anyhow::Error {
    let dir = data_dir.display();
    if matches!(err, StoreError::Lost { .. }) {
        return anyhow::anyhow!("failed to open the store: {err}");
    }
    if err.is_permission_denied() {
        return anyhow::anyhow!(
            "failed to open the store in {dir}: {err}. This user may not read or write the files, \
             which may well be intact: run sluice as the directory's owner, or fix its permissions"
        );
    }
    if err.is_locked() {
        anyhow::anyhow!(
            "failed to open the store in {dir}: another process holds its lock, most likely \
             another sluice on the same --data-dir; stop that one first or choose another \
             directory ({err})"
        )
    } else {
        anyhow::anyhow!(
            "failed to open the store in {dir}: {err}. The files are damaged. To start again, \
             stop sluice, move {dir} aside (keep it: it holds the messages not yet \
             acknowledged) and start with an empty data directory"
        )
    }
}

async fn build(
    config: Config,
    data_dir: &Path,
    store_options: StoreOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Service> {
    names::set_config_project(&config.project).map_err(anyhow::Error::msg)?;
    limits::set(config.security.limits).map_err(anyhow::Error::msg)?;
    if data_dir.exists() && !data_dir.is_dir() {
        anyhow::bail!(
            "--data-dir {} is not a directory: choose a directory, or a path that does not \
             exist yet",
            data_dir.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create the data directory {}", data_dir.display()))?;
    // The global meter provider is in place before the store opens, so that the store's
    // first commits are measured.
    let metrics = Arc::new(Metrics::unattached());
    metrics.install_global();
    let (broker, bucket_backend) = open_broker(&config.store, data_dir, store_options).await?;
    let broker = Arc::new(broker);
    for topic in &config.topics {
        let record = broker
            .create_topic(topic)
            .await
            .with_context(|| format!("failed to create topic {topic:?}"))?;
        let settings = config
            .topic_settings
            .get(topic)
            .copied()
            .unwrap_or_default();
        if record.settings != settings {
            broker
                .update_topic(topic, settings)
                .await
                .with_context(|| format!("failed to update the settings of topic {topic:?}"))?;
        }
    }
    for subscription in &config.subscriptions {
        let spec = broker.store().declared_subscription(subscription.clone());
        broker
            .create_subscription(spec)
            .await
            .with_context(|| format!("failed to create subscription {:?}", subscription.name))?;
    }
    let storage = storage::open(data_dir, bucket_backend, config.buckets, broker.clone()).await?;
    let handlers = config.handlers;
    let security = config.security;
    let push_tokens = config.push_tokens;
    let router = Arc::new(arc_swap::ArcSwap::from_pointee(LogRouter::new(
        config.sinks.clone(),
        config.catch_all_topic.clone(),
    )));
    metrics.observe_broker(broker.clone());
    let ingestor = Ingestor {
        router: router.clone(),
        broker: broker.clone(),
        metrics: metrics.clone(),
        shutdown,
    };
    let functions = functions::Functions::new(
        data_dir,
        broker.clone(),
        storage.clone(),
        functions::RouterSwitch::new(router, config.sinks, config.catch_all_topic),
        ingestor.clone(),
    )?;
    Ok(Service {
        broker,
        ingestor,
        metrics,
        storage,
        handlers,
        security,
        push_tokens,
        functions,
    })
}

fn app(
    service: &Service,
    max_upload_bytes: u64,
    auth: Arc<auth::Auth>,
    push_signer: Option<&push_token::PushSigner>,
) -> axum::Router {
    let pubsub =
        pubsub::PubsubService::new(service.broker.clone(), service.ingestor.shutdown.clone());
    let admin = admin::AdminService {
        broker: service.broker.clone(),
    };
    let max_request_bytes = limits::get().max_request_bytes;
    let grpc = tonic::service::Routes::new(
        LogIngestServer::new(service.ingestor.clone()).max_decoding_message_size(max_request_bytes),
    )
    .add_service(AdminServer::new(admin))
    .add_service(PublisherServer::new(pubsub.clone()).max_decoding_message_size(max_request_bytes))
    .add_service(SubscriberServer::new(pubsub.clone()).max_decoding_message_size(max_request_bytes))
    .add_service(logging::grpc_service(service.ingestor.clone()));
    grpc.into_axum_router()
        .merge(http::routes(
            service.metrics.clone(),
            service.broker.clone(),
        ))
        .merge(logging::routes(service.ingestor.clone()))
        .merge(storage::routes(service.storage.clone(), max_upload_bytes))
        .merge(pubsub_rest::routes(pubsub))
        .merge(functions::routes::routes(service.functions.clone()))
        .merge(push_signer.map(push_token::routes).unwrap_or_default())
        .fallback(unknown_route)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(limits::Enforcer::new()),
            limits::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(auth, auth::check))
        .layer(axum::middleware::from_fn(http::trace_request))
}

/// Responds to a request that no route matches. A gRPC call gets UNIMPLEMENTED as gRPC status,
/// which is what gRPC clients expect for an unknown method. Anything else gets HTTP 404
/// with Google's JSON error body.
async fn unknown_route(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse as _;

    let is_grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if is_grpc {
        let method = request.uri().path().to_owned();
        return tonic::Status::unimplemented(format!(
            "unknown gRPC method {method}; this server implements sluice.v1, \
             google.pubsub.v1 Publisher and Subscriber, and google.logging.v2 WriteLogEntries"
        ))
        .into_http::<axum::body::Body>()
        .into_response();
    }
    let message = format!(
        "no route for {} {}; see the README for the HTTP routes",
        request.method(),
        request.uri().path()
    );
    status::rest_error(tonic::Code::NotFound, &message, None).into_response()
}

/// Runs the service until SIGINT or SIGTERM.
///
/// # Errors
///
/// Fails when the configuration is invalid, the store cannot be opened or the address
/// cannot be bound.
pub(crate) async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let config = load_config(options.config.as_deref())?;
    // The handlers are installed before the address is announced, so that a signal that
    // arrives right after start-up still shuts the server down cleanly.
    let shutdown = ShutdownSignal::install()?;
    let running = start(config, &options, shutdown.recv()).await?;
    // Scripts and tests read the chosen port from this line.
    crate::cli::write_stdout(format_args!(
        "sluice listening on {}://{}",
        if running.tls { "https" } else { "http" },
        running.address
    ));
    running.stopped().await
}

/// A service started by [`start`].
#[derive(Debug)]
pub(crate) struct Running {
    /// The address it listens on.
    pub(crate) address: SocketAddr,
    /// Whether it serves TLS.
    pub(crate) tls: bool,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the service has shut down and flushed its store.
    ///
    /// # Errors
    ///
    /// Fails when serving or the final flush failed.
    pub(crate) async fn stopped(self) -> anyhow::Result<()> {
        self.task.await.context("the server task failed")?
    }
}

/// Opens the store and buckets, binds the address and serves in a background task until
/// `shutdown` completes, then drains and flushes as [`serve`] describes.
///
/// # Errors
///
/// Fails when the store cannot be opened or the address cannot be bound.
pub(crate) async fn start(
    config: Config,
    options: &ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let (stop, stopped) = watch::channel(false);
    let service = build(config, &options.data_dir, options.store, stopped.clone()).await?;
    let listener = TcpListener::bind(options.listen).await.with_context(|| {
        format!(
            "failed to listen on {}; pick another address with --listen",
            options.listen
        )
    })?;
    let address = listener.local_addr()?;
    info!(%address, data_dir = %options.data_dir.display(), "sluice listening");
    let security = service.security.clone();
    let auth = Arc::new(auth::Auth::new(
        &security.auth,
        auth::auth_enabled(&security.auth, address),
        Some(audit::AuditLog::start(
            service.ingestor.clone(),
            names::config_project(),
        )),
    )?);
    auth::log_mode(
        &auth,
        address,
        security.auth.enabled,
        security.tls.is_some(),
    );

    let maintenance = tokio::spawn(
        service
            .broker
            .clone()
            .run_maintenance(wait_for(stopped.clone())),
    );
    let runners = handlers::start(
        &service.handlers,
        &service.broker,
        &service.storage,
        &service.metrics,
        || wait_for(stopped.clone()),
    );
    let push_signer = push_signer(&service)?;
    let pushes = push::start(
        service.broker.clone(),
        service.metrics.clone(),
        push_authorizations(&service, push_signer.as_ref()),
        wait_for(stopped.clone()),
    )?;
    service.functions.restore().await;
    let functions = service.functions.clone();
    let max_upload_bytes = options
        .max_upload_bytes
        .or(security.limits.max_upload_bytes)
        .unwrap_or(DEFAULT_MAX_UPLOAD_BYTES);
    let app = app(&service, max_upload_bytes, auth, push_signer.as_deref());
    let server = match &security.tls {
        Some(spec) => {
            let certificates = Arc::new(tls::ReloadableCertificate::load(spec)?);
            tls::reload_on_sighup(certificates.clone())?;
            let listener = tls::TlsListener::new(listener, spec, certificates)?;
            spawn_server(listener, app, shutdown, stop)
        }
        None => spawn_server(tls::PlainListener(listener), app, shutdown, stop),
    };
    let task = tokio::spawn(async move {
        let mut drained = server;
        tokio::select! {
            result = &mut drained => result?,
            () = grace_expired(stopped) => {
                warn!(grace_period_secs = GRACE_PERIOD.as_secs(), "grace period ran out; closing open requests");
            }
        }
        // The runners stopped pulling at the signal. Their events in flight get up to one
        // more grace period to finish, while the lease timers still run.
        tokio::join!(
            runners.stop(GRACE_PERIOD),
            pushes.stop(GRACE_PERIOD),
            functions.stop(GRACE_PERIOD)
        );
        maintenance.abort();
        service
            .broker
            .store()
            .flush()
            .await
            .context("the final flush of the store failed")?;
        info!("sluice stopped");
        Ok(())
    });
    Ok(Running {
        address,
        tls: security.tls.is_some(),
        task,
    })
}

/// Returns the signer of push tokens when a push subscription signs its requests or the
/// configuration names a signing key.
fn push_signer(service: &Service) -> anyhow::Result<Option<Arc<push_token::PushSigner>>> {
    let auth = &service.security.auth;
    if service.push_tokens.is_empty() && auth.push_signing_key_file.is_none() {
        return Ok(None);
    }
    let signer = push_token::PushSigner::new(
        auth.push_signing_key_file.as_deref(),
        &auth.push_token_issuer,
    )?;
    Ok(Some(Arc::new(signer)))
}

fn push_authorizations(
    service: &Service,
    signer: Option<&Arc<push_token::PushSigner>>,
) -> std::collections::HashMap<String, Arc<dyn sluice_handlers::push::PushAuthorization>> {
    let Some(signer) = signer else {
        return std::collections::HashMap::new();
    };
    service
        .push_tokens
        .iter()
        .map(|(subscription, spec)| {
            let token = push_token::SubscriptionToken::new(signer.clone(), spec.clone());
            let token: Arc<dyn sluice_handlers::push::PushAuthorization> = Arc::new(token);
            (subscription.clone(), token)
        })
        .collect()
}

/// Serves `app` on `listener` until `shutdown` completes, then tells the service to stop
/// through `stop`. The future completes when every connection has closed.
fn spawn_server<L>(
    listener: L,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    stop: watch::Sender<bool>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>
where
    L: Listener<Addr = tls::ConnectionInfo>,
{
    // tap_io makes axum hand each connection's ConnectionInfo to the routes.
    let listener = listener.tap_io(|_| {});
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<tls::ConnectionInfo>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    Box::pin(async move { server.into_future().await.context("the server failed") })
}

async fn wait_for(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn grace_expired(stopped: watch::Receiver<bool>) {
    wait_for(stopped).await;
    tokio::time::sleep(GRACE_PERIOD).await;
}

/// SIGINT and SIGTERM handlers.
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
            let terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
            Ok(ShutdownSignal {
                interrupt,
                terminate,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignal {})
    }

    /// Completes at the first SIGINT or SIGTERM.
    async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => info!(signal = "SIGINT", "shutting down"),
            _ = self.terminate.recv() => info!(signal = "SIGTERM", "shutting down"),
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            info!(signal = "ctrl-c", "shutting down");
        }
    }
}
