//! Functions deployed from source: `sluice functions deploy`, `list`, `call`, `logs read`
//! and `delete`, served by [`Functions`].
//!
//! A deploy copies the source folder into `<data dir>/functions/sources/NAME/vN`, prepares
//! its runtime ([`runtime`]), starts the process under supervision ([`instance`]) and waits
//! until it accepts connections. It then wires the trigger ([`wiring`]) and starts a runner that
//! feeds the function's subscription to a [`delivery::FunctionHandler`]. The deployment
//! record, `<data dir>/functions/records/NAME.json`, is written last, and a server that
//! starts again reads the records and brings every function back.
//!
//! A redeploy starts the new version next to the old one. Once the new process is ready,
//! the old runner stops pulling and waits for its calls in flight, so deliveries pause.
//! Then the new runner starts on the same subscription, so the new version takes over and
//! drains the backlog. Only then does the old process stop. No event is acknowledged without a
//! successful call, or a failed one when retry is off, so none is lost.
//!
//! Function output becomes LogEntries ([`logs`]), routed like any other entry.

mod delivery;
mod instance;
pub(crate) mod logs;
mod records;
pub(crate) mod routes;
mod runtime;
pub(crate) mod spec;
mod synthetic;
mod wiring;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use sluice_handlers::runner::{self, RunnerHandle, RunnerOptions};
use sluice_router::deliver::Broker;
use sluice_router::storage::Storage;
use tokio::sync::oneshot;
use tracing::{info, warn};

use delivery::{CallCounters, CallResult, DeliverySettings, FunctionHandler};
use instance::{Instance, InstanceState, ProcessSpec};
use logs::LogSender;
pub(crate) use records::FunctionRecord;
use spec::{DeploySpec, Language};
pub(crate) use wiring::RouterSwitch;

/// The environment variable that moves the runtime cache out of the data directory, so that
/// servers on several data directories share installed dependencies.
pub(crate) const CACHE_DIR_VARIABLE: &str = "SLUICE_FUNCTIONS_CACHE_DIR";

/// A failed functions request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FunctionError {
    /// The request is invalid; one message per problem.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// No function has the name.
    #[error("function {0:?} not found; `sluice functions list` shows the deployed ones")]
    NotFound(String),
    /// Another deploy, delete or restore of the function is running.
    #[error("function {0:?} is being deployed, restored or deleted; try again when that finishes")]
    Busy(String),
    /// The deploy failed, such as an install error or a process that never became ready.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// One deployed function.
#[derive(Debug)]
struct Deployment {
    record: FunctionRecord,
    process: Process,
    runner: Option<FunctionRunner>,
    counters: Arc<CallCounters>,
}

/// The process of a deployed function.
#[derive(Debug)]
enum Process {
    /// A server that started again prepares the runtime before it starts the process.
    Preparing,
    /// The runtime could not be prepared after a server start, for the reason given. A
    /// redeploy or delete of the function clears it.
    Failed(String),
    /// Started under supervision, ready or not.
    Running(Instance),
}

impl Process {
    async fn stop(self) {
        if let Process::Running(instance) = self {
            instance.stop().await;
        }
    }
}

/// A runner with the sender whose drop stops its pulls.
#[derive(Debug)]
struct FunctionRunner {
    handle: RunnerHandle,
    stop: oneshot::Sender<()>,
}

impl FunctionRunner {
    /// Stops pulling and waits for the calls in flight.
    async fn stop(self, function: &str) {
        drop(self.stop);
        let mut handle = self.handle;
        if let Err(err) = handle.join().await {
            warn!(function, error = %err, "function runner ended abnormally");
        }
    }
}

/// The deployed functions and what deploys need.
#[derive(Debug, Clone)]
pub(crate) struct Functions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `<data dir>/functions`.
    dir: PathBuf,
    /// The folder of the installed runtimes, shared by every version with the same
    /// dependencies.
    cache: PathBuf,
    broker: Arc<Broker>,
    storage: Storage,
    router: RouterSwitch,
    logs: LogSender,
    client: reqwest::Client,
    deployments: tokio::sync::Mutex<BTreeMap<String, Deployment>>,
    /// Names with a deploy or delete in progress, which keeps two from overlapping.
    busy: Mutex<HashSet<String>>,
    /// Set at shutdown, after which no deploy or restore may add a process.
    stopping: AtomicBool,
}

/// Marks a function busy for as long as it lives.
struct BusyGuard<'a> {
    busy: &'a Mutex<HashSet<String>>,
    name: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.name);
    }
}

/// A function as `sluice functions list` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FunctionStatus {
    pub(crate) name: String,
    pub(crate) state: &'static str,
    pub(crate) trigger: String,
    pub(crate) version: u64,
    pub(crate) runtime: String,
    pub(crate) entry_point: String,
    pub(crate) signature_type: &'static str,
    pub(crate) retry: bool,
    pub(crate) max_instances: u32,
    pub(crate) timeout_secs: u32,
    /// Undelivered events of the function's subscription.
    pub(crate) backlog: u64,
    pub(crate) restarts: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) dropped: u64,
    pub(crate) update_time: String,
}

impl Functions {
    /// Returns the manager of the functions under `<data_dir>/functions`. It deploys
    /// nothing until [`Functions::restore`] or a deploy.
    pub(crate) fn new(
        data_dir: &Path,
        broker: Arc<Broker>,
        storage: Storage,
        router: RouterSwitch,
        ingestor: crate::server::Ingestor,
    ) -> anyhow::Result<Functions> {
        // Function processes start inside their source copy, so a relative data directory
        // would make the paths of their interpreters point nowhere.
        let dir = std::path::absolute(data_dir.join("functions"))?;
        let cache = std::env::var_os(CACHE_DIR_VARIABLE)
            .map(std::path::absolute)
            .transpose()?
            .unwrap_or_else(|| dir.join("runtimes"));
        let logs = logs::LogShipper::start(ingestor, dir.join("logs"));
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent(sluice_handlers::push::USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Functions {
            inner: Arc::new(Inner {
                dir,
                cache,
                broker,
                storage,
                router,
                logs,
                client,
                deployments: tokio::sync::Mutex::default(),
                busy: Mutex::default(),
                stopping: AtomicBool::new(false),
            }),
        })
    }

    fn claim(&self, name: &str) -> Result<BusyGuard<'_>, FunctionError> {
        let mut busy = self
            .inner
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !busy.insert(name.to_owned()) {
            return Err(FunctionError::Busy(name.to_owned()));
        }
        Ok(BusyGuard {
            busy: &self.inner.busy,
            name: name.to_owned(),
        })
    }

    /// Deploys a function, or a new version of a deployed one.
    ///
    /// # Errors
    ///
    /// [`FunctionError::Invalid`] for bad settings, [`FunctionError::Busy`] while another
    /// deploy of the name runs, and [`FunctionError::Failed`] when the runtime cannot be
    /// prepared, the process does not become ready or the wiring fails. A failed redeploy
    /// leaves the running version as it was.
    pub(crate) async fn deploy(&self, spec: DeploySpec) -> Result<FunctionStatus, FunctionError> {
        let language = spec.validate().map_err(FunctionError::Invalid)?;
        let protected = self.protected_folders();
        let source = spec.source.clone();
        tokio::task::spawn_blocking(move || runtime::check_source(language, &source, &protected))
            .await
            .map_err(|err| FunctionError::Failed(err.into()))?
            .map_err(|err| FunctionError::Invalid(vec![format!("{err:#}")]))?;
        wiring::check(&spec, &self.inner.storage)
            .map_err(|err| FunctionError::Invalid(vec![format!("{err:#}")]))?;
        let _busy = self.claim(&spec.name)?;
        let previous = {
            let deployments = self.inner.deployments.lock().await;
            deployments.get(&spec.name).map(|d| d.record.clone())
        };
        if previous.is_none() {
            wiring::check_names_free(&spec, &self.inner.broker)
                .map_err(|err| FunctionError::Invalid(vec![format!("{err:#}")]))?;
        }
        let first = previous.is_none();
        let version = previous.as_ref().map_or(1, |record| record.version + 1);
        let record = FunctionRecord::new(spec, version);
        info!(function = %record.spec.name, version, "deploying function");
        let name = record.spec.name.clone();
        let result = match self.start_version(&record, language).await {
            Ok(instance) => self
                .take_over(record, instance, Arc::default(), previous)
                .await
                .map_err(FunctionError::Failed),
            Err(err) => Err(FunctionError::Failed(err)),
        };
        if result.is_err() {
            // A failed first deploy leaves only its log, where the reason is.
            let sources = if first {
                records::sources_dir(&self.inner.dir, &name)
            } else {
                records::source_dir(&self.inner.dir, &name, version)
            };
            let _ = tokio::fs::remove_dir_all(sources).await;
        }
        result
    }

    /// Returns the canonical paths of the functions folder and the runtime cache, which a
    /// source folder may contain and which its copy leaves out.
    fn protected_folders(&self) -> Vec<PathBuf> {
        // Before the first deploy the folders may not exist yet, and only an existing folder
        // has a canonical path.
        [&self.inner.dir, &self.inner.cache]
            .into_iter()
            .filter_map(|folder| {
                std::fs::create_dir_all(folder).ok()?;
                std::fs::canonicalize(folder).ok()
            })
            .collect()
    }

    /// Copies the source, prepares the runtime, starts the process and waits until it is
    /// ready.
    async fn start_version(
        &self,
        record: &FunctionRecord,
        language: Language,
    ) -> anyhow::Result<Instance> {
        let name = &record.spec.name;
        let source_dir = records::source_dir(&self.inner.dir, name, record.version);
        let source = record.spec.source.clone();
        let dest = source_dir.clone();
        let protected = self.protected_folders();
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&dest);
            runtime::copy_source(&source, &dest, &protected)
        })
        .await??;
        let instance = self.launch(record, language).await?;
        if instance
            .wait_first_ready(instance::START_TIMEOUT)
            .await
            .is_none()
        {
            let reason = instance.failure();
            instance.stop().await;
            anyhow::bail!(
                "function {name:?} did not start: {reason}; `sluice functions logs read {name}` \
                 shows its output"
            );
        }
        Ok(instance)
    }

    /// Prepares the runtime of a copied source and starts the process, without waiting for
    /// it to respond.
    async fn launch(
        &self,
        record: &FunctionRecord,
        language: Language,
    ) -> anyhow::Result<Instance> {
        let name = &record.spec.name;
        let source_dir = records::source_dir(&self.inner.dir, name, record.version);
        let launch =
            runtime::prepare(&record.spec, language, &source_dir, &self.inner.cache).await?;
        Ok(Instance::start(
            ProcessSpec {
                function: name.clone(),
                version: record.version,
                launch,
                env: record.spec.env.clone(),
            },
            self.inner.logs.clone(),
        ))
    }

    /// Moves the function's events from the previous version, if any, to `instance`, and
    /// records the deployment.
    async fn take_over(
        &self,
        mut record: FunctionRecord,
        instance: Instance,
        counters: Arc<CallCounters>,
        previous: Option<FunctionRecord>,
    ) -> anyhow::Result<FunctionStatus> {
        let name = record.spec.name.clone();
        let mut deployments = self.inner.deployments.lock().await;
        if self.inner.stopping.load(Ordering::SeqCst) {
            drop(deployments);
            instance.stop().await;
            anyhow::bail!("the server is shutting down; deploy {name:?} again after it starts");
        }
        // Deliveries pause: the old runner finishes its calls against the old process.
        let old = match deployments.remove(&name) {
            Some(mut old) => {
                // The runner's deliveries wait up to a minute for a process that never became
                // ready. Stopping that process first ends those waits at once.
                let never_ready = matches!(&old.process, Process::Running(instance)
                    if !matches!(*instance.state().borrow(), InstanceState::Ready { .. }));
                if never_ready {
                    let replaced = std::mem::replace(
                        &mut old.process,
                        Process::Failed(
                            "it was not ready when a redeploy stopped it, and that redeploy \
                             failed"
                                .to_owned(),
                        ),
                    );
                    replaced.stop().await;
                }
                if let Some(runner) = old.runner.take() {
                    runner.stop(&name).await;
                }
                Some(old)
            }
            None => None,
        };

        let previous_wiring = previous.as_ref().map(|record| &record.wiring);
        let wired = wiring::apply(
            &record.spec,
            previous_wiring,
            &self.inner.broker,
            &self.inner.storage,
            &self.inner.router,
        )
        .await;
        let written = match wired {
            Ok(wired) => {
                record.wiring = wired;
                records::write(&self.inner.dir, &record).await
            }
            Err(err) => Err(err),
        };
        if let Err(err) = written {
            instance.stop().await;
            // The old version resumes, so a failed redeploy changes nothing.
            if let Some(mut old) = old {
                if let Process::Running(instance) = &old.process {
                    old.runner = Some(self.start_runner(&old.record, instance, &old.counters));
                }
                deployments.insert(name, old);
            }
            return Err(err);
        }

        let runner = self.start_runner(&record, &instance, &counters);
        let deployment = Deployment {
            record,
            process: Process::Running(instance),
            runner: Some(runner),
            counters,
        };
        let status = self.status(&deployment);
        deployments.insert(name.clone(), deployment);
        drop(deployments);
        if let Some(old) = old {
            old.process.stop().await;
        }
        if let Some(previous) = previous {
            let old_dir = records::source_dir(&self.inner.dir, &name, previous.version);
            let _ = tokio::fs::remove_dir_all(old_dir).await;
        }
        info!(function = %name, version = status.version, "function deployed");
        Ok(status)
    }

    fn start_runner(
        &self,
        record: &FunctionRecord,
        instance: &Instance,
        counters: &Arc<CallCounters>,
    ) -> FunctionRunner {
        let spec = &record.spec;
        let settings = DeliverySettings {
            function: spec.name.clone(),
            signature: spec.signature_type,
            retry: spec.retry,
            max_event_age: Duration::from_secs(spec.max_event_age_secs),
            timeout: Duration::from_secs(u64::from(spec.timeout_secs)),
            concurrency: spec.concurrency(),
        };
        let handler = FunctionHandler::new(
            settings,
            instance.state(),
            self.inner.client.clone(),
            counters.clone(),
            self.inner.logs.clone(),
        );
        let options = RunnerOptions {
            concurrency: spec.concurrency(),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            ..RunnerOptions::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = runner::spawn_for_deliveries(
            self.inner.broker.clone(),
            delivery::subscription_name(&spec.name),
            Arc::new(handler),
            options,
            async move {
                // Completes when the sender is used or dropped.
                let _ = stopped.await;
            },
        );
        FunctionRunner { handle, stop }
    }

    fn status(&self, deployment: &Deployment) -> FunctionStatus {
        let record = &deployment.record;
        let spec = &record.spec;
        let subscription = delivery::subscription_name(&spec.name);
        let backlog = self
            .inner
            .broker
            .stats()
            .into_iter()
            .find(|stats| stats.spec.name == subscription)
            .map_or(0, |stats| stats.backlog);
        let counters = &deployment.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (state, restarts) = match &deployment.process {
            Process::Preparing => ("STARTING", 0),
            Process::Failed(_) => ("FAILED", 0),
            Process::Running(instance) => (instance.state().borrow().name(), instance.restarts()),
        };
        FunctionStatus {
            name: spec.name.clone(),
            state,
            trigger: spec.trigger.describe(),
            version: record.version,
            runtime: spec.runtime.clone(),
            entry_point: spec.entry_point.clone(),
            signature_type: spec.signature_type.as_str(),
            retry: spec.retry,
            max_instances: spec.max_instances.unwrap_or(spec::DEFAULT_MAX_INSTANCES),
            timeout_secs: spec.timeout_secs,
            backlog,
            restarts,
            succeeded: load(&counters.succeeded),
            failed: load(&counters.failed),
            dropped: load(&counters.dropped),
            update_time: record.update_time.clone(),
        }
    }

    /// Returns every deployed function, by name.
    pub(crate) async fn list(&self) -> Vec<FunctionStatus> {
        let deployments = self.inner.deployments.lock().await;
        deployments
            .values()
            .map(|deployment| self.status(deployment))
            .collect()
    }

    /// Stops a function and removes its subscription and the wiring of its trigger. For a
    /// name whose first deploy failed, removes the log that it left.
    ///
    /// # Errors
    ///
    /// [`FunctionError::NotFound`], [`FunctionError::Busy`], or [`FunctionError::Failed`]
    /// when the wiring cannot be removed.
    pub(crate) async fn delete(&self, name: &str) -> Result<(), FunctionError> {
        let _busy = self.claim(name)?;
        let removed = self.inner.deployments.lock().await.remove(name);
        let Some(deployment) = removed else {
            let logs_dir = self.inner.dir.join("logs");
            if !is_plain_name(name) || !logs::exists(&logs_dir, name) {
                return Err(FunctionError::NotFound(name.to_owned()));
            }
            logs::remove(&logs_dir, name);
            let _ = tokio::fs::remove_dir_all(records::sources_dir(&self.inner.dir, name)).await;
            info!(function = %name, "removed the log of a failed deploy");
            return Ok(());
        };
        if let Some(runner) = deployment.runner {
            runner.stop(name).await;
        }
        deployment.process.stop().await;
        let record = deployment.record;
        wiring::remove(
            name,
            &record.wiring,
            &self.inner.broker,
            &self.inner.storage,
            &self.inner.router,
        )
        .await
        .map_err(FunctionError::Failed)?;
        records::remove(&self.inner.dir, name)
            .await
            .map_err(FunctionError::Failed)?;
        logs::remove(&self.inner.dir.join("logs"), name);
        info!(function = %name, "function deleted");
        Ok(())
    }

    /// Calls a function once with a synthetic event of its trigger's type.
    ///
    /// # Errors
    ///
    /// [`FunctionError::NotFound`], [`FunctionError::Invalid`] when `data` does not fit the
    /// trigger, and [`FunctionError::Failed`] when the process is not ready.
    pub(crate) async fn call(
        &self,
        name: &str,
        data: &serde_json::Value,
    ) -> Result<CallResult, FunctionError> {
        let (record, state) = {
            let deployments = self.inner.deployments.lock().await;
            let deployment = deployments
                .get(name)
                .ok_or_else(|| FunctionError::NotFound(name.to_owned()))?;
            let state = match &deployment.process {
                Process::Running(instance) => Some(instance.state()),
                Process::Preparing => None,
                Process::Failed(reason) => {
                    return Err(FunctionError::Failed(anyhow::anyhow!(
                        "function {name:?} could not be started: {reason}; deploy it again"
                    )))
                }
            };
            (deployment.record.clone(), state)
        };
        let delivery = synthetic::delivery(&record.spec.trigger, &record.wiring.topic, data)
            .map_err(|err| FunctionError::Invalid(vec![err]))?;
        let ready = match state {
            Some(state) => instance::wait_ready(state, delivery::READY_WAIT).await,
            None => None,
        };
        let endpoint = ready.ok_or_else(|| {
            FunctionError::Failed(anyhow::anyhow!(
                "function {name:?} is not ready; `sluice functions logs read {name}` shows \
                     its output"
            ))
        })?;
        let timeout = Duration::from_secs(u64::from(record.spec.timeout_secs));
        Ok(delivery::call_once(
            &self.inner.client,
            &endpoint,
            record.spec.signature_type,
            &delivery,
            timeout,
        )
        .await)
    }

    /// Returns the newest `limit` log entries of a function, oldest first.
    ///
    /// # Errors
    ///
    /// [`FunctionError::NotFound`] for an unknown name, [`FunctionError::Failed`] when the
    /// log file cannot be read.
    pub(crate) async fn logs(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, FunctionError> {
        if !is_plain_name(name) {
            return Err(FunctionError::NotFound(name.to_owned()));
        }
        let dir = self.inner.dir.join("logs");
        // A function whose first deploy failed has logs but no deployment.
        let deployed = self.inner.deployments.lock().await.contains_key(name);
        if !deployed && !logs::exists(&dir, name) {
            return Err(FunctionError::NotFound(name.to_owned()));
        }
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || logs::read_entries(&dir, &name, limit))
            .await
            .map_err(|err| FunctionError::Failed(err.into()))?
            .map_err(FunctionError::Failed)
    }

    /// Brings back every function of the deployment records. Each is listed at once as
    /// `STARTING`, and all of them prepare their runtimes and start in the background at the
    /// same time. A runtime that cannot be prepared leaves its function `FAILED`, with the
    /// reason in the function's log, until it is deployed again or deleted.
    pub(crate) async fn restore(&self) {
        let records = match records::read_all(&self.inner.dir).await {
            Ok(records) => records,
            Err(err) => {
                warn!(error = %format!("{err:#}"), "failed to read the function records");
                return;
            }
        };
        let mut deployments = self.inner.deployments.lock().await;
        for record in records {
            let name = record.spec.name.clone();
            // The router starts with the configured sinks only, so an audit-log trigger's
            // sink comes back here, before any entry is routed, and its events wait in the
            // subscription while the process starts.
            if let Err(err) = wiring::restore_sink(&record.spec, &self.inner.router) {
                warn!(function = %name, error = %format!("{err:#}"), "failed to restore the function's audit-log sink");
            }
            deployments.insert(
                name,
                Deployment {
                    record: record.clone(),
                    process: Process::Preparing,
                    runner: None,
                    counters: Arc::default(),
                },
            );
            let functions = self.clone();
            tokio::spawn(async move { functions.restore_one(record).await });
        }
    }

    async fn restore_one(&self, record: FunctionRecord) {
        let name = record.spec.name.clone();
        // A deploy or delete that claimed the name first replaces or removes the placeholder.
        let Ok(_busy) = self.claim(&name) else {
            return;
        };
        let is_placeholder = |deployment: &Deployment| {
            deployment.record.version == record.version
                && matches!(deployment.process, Process::Preparing)
        };
        if !self
            .inner
            .deployments
            .lock()
            .await
            .get(&name)
            .is_some_and(is_placeholder)
        {
            return;
        }
        info!(function = %name, version = record.version, "restoring function");
        let source_dir = records::source_dir(&self.inner.dir, &name, record.version);
        let launched = match spec::parse_runtime(&record.spec.runtime) {
            Ok(_) if !source_dir.is_dir() => Err(anyhow::anyhow!(
                "the source copy {} is missing",
                source_dir.display()
            )),
            Ok(language) => self.launch(&record, language).await,
            Err(err) => Err(anyhow::anyhow!(err)),
        };
        let mut deployments = self.inner.deployments.lock().await;
        let stopping = self.inner.stopping.load(Ordering::SeqCst);
        let placeholder = deployments
            .get_mut(&name)
            .filter(|deployment| is_placeholder(deployment) && !stopping);
        match (launched, placeholder) {
            (Ok(instance), Some(deployment)) => {
                deployment.runner =
                    Some(self.start_runner(&record, &instance, &deployment.counters));
                deployment.process = Process::Running(instance);
            }
            (Ok(instance), None) => {
                drop(deployments);
                instance.stop().await;
            }
            (Err(err), placeholder) => {
                let reason = format!("{err:#}");
                warn!(function = %name, error = %reason, "failed to restore the function");
                self.inner.logs.send(
                    &name,
                    logs::Stream::Stderr,
                    format!(
                        "sluice could not start the function after the server started: {reason}"
                    ),
                );
                if let Some(deployment) = placeholder {
                    deployment.process = Process::Failed(reason);
                }
            }
        }
    }

    /// Stops every runner, waiting up to `limit` for the calls in flight, then every process.
    pub(crate) async fn stop(&self, limit: Duration) {
        let mut deployments = self.inner.deployments.lock().await;
        self.inner.stopping.store(true, Ordering::SeqCst);
        let all: Vec<(String, Deployment)> =
            std::mem::take(&mut *deployments).into_iter().collect();
        drop(deployments);
        // Every function stops at the same time, so the shutdown takes as long as the slowest.
        futures::future::join_all(all.into_iter().map(|(name, deployment)| async move {
            if let Some(runner) = deployment.runner {
                if tokio::time::timeout(limit, runner.stop(&name))
                    .await
                    .is_err()
                {
                    warn!(function = %name, "function calls still running at shutdown; their events will be delivered again");
                }
            }
            deployment.process.stop().await;
        }))
        .await;
    }
}

/// Returns whether `name` can be a function's name in a file path: letters, digits, `-`
/// and `_`.
fn is_plain_name(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
