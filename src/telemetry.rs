//! Logging and trace set-up.
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`), as text or, with
//! `--log-format json` (or `SLUICE_LOG_FORMAT=json`), as one JSON object per line that
//! carries the trace and span ids of the current span.
//!
//! Traces are exported over OTLP/gRPC when the standard OpenTelemetry variables ask for it:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, or
//! `OTEL_TRACES_EXPORTER=otlp`. `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true`
//! turns export off. [`otel_env`] reads those, the sampler, the endpoint, the headers
//! (`OTEL_EXPORTER_OTLP_HEADERS`), gzip compression, the export timeout and the TLS files of
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and
//! `OTEL_EXPORTER_OTLP_CLIENT_KEY`, and warns about values it ignores. [`otlp`] is the
//! exporter. The SDK reads `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_BSP_*`
//! itself. Its own warnings, such as a failed export, appear in the log under the
//! `opentelemetry_sdk` target, at most five a minute. Spans leave through the SDK's batch
//! processor: a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048 spans by default) drained by
//! its own thread, which drops spans when the queue is full, so that a slow or unreachable
//! collector never holds up routing. `RUST_LOG` filters only the logs; the spans of sluice's
//! crates are exported whatever it sets.

mod json;
mod otel_env;
mod otlp;
mod sdk_logs;

use std::env;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::layer::{Filter, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use otel_env::TraceSettings;

/// The layout of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with `trace_id` and `span_id` when a trace is recorded.
    Json,
}

/// The installed trace pipeline. [`Telemetry::shutdown`] exports the spans still queued.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    /// How long the last export may take at shutdown: the export timeout.
    shutdown_timeout: Duration,
}

impl Telemetry {
    /// Exports the queued spans and stops the exporter, waiting at most the export timeout
    /// (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or `OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by
    /// default), so an unreachable collector delays the exit by at most that.
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.tracer_provider {
            if let Err(err) = provider.shutdown_with_timeout(self.shutdown_timeout) {
                // The SDK reports a timeout of the batch processor as a debug list.
                let error = err.to_string();
                if error.contains("Timeout") {
                    tracing::warn!(
                        timeout = ?self.shutdown_timeout,
                        "the collector did not take the last spans within the export \
                         timeout, so the spans still queued are lost"
                    );
                } else {
                    tracing::warn!(error, "exporting the last spans failed");
                }
            }
        }
    }
}

/// Installs the global subscriber, with trace export when the environment configures it.
/// Call it inside a Tokio runtime, because the gRPC exporter needs one. Calling it twice
/// leaves the first subscriber in place.
pub(crate) fn init(format: LogFormat) -> Telemetry {
    let settings = TraceSettings::read(|name| env::var(name).ok());
    let built = settings.export.then(|| build_tracer_provider(&settings));
    let tracer_provider = match &built {
        Some(Ok(provider)) => Some(provider.clone()),
        _ => None,
    };
    install(format, "info", tracer_provider.as_ref());
    // Logging is installed only now, so the problems found before are reported here.
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(Err(err)) = built {
        tracing::error!(
            error = format!("{err:#}"),
            "the OTLP trace exporter failed to start; traces are not exported"
        );
    }
    Telemetry {
        tracer_provider,
        shutdown_timeout: settings.export_timeout,
    }
}

/// Installs logs with `default` as the filter when `RUST_LOG` is not set, without trace
/// export: text, or JSON when `SLUICE_LOG_FORMAT=json`.
pub(crate) fn init_with_default(default: &str) {
    // Commands without a `--log-format` option still honour the variable.
    let format = match env::var("SLUICE_LOG_FORMAT") {
        Ok(value) if value == "json" => LogFormat::Json,
        _ => LogFormat::Text,
    };
    install(format, default, None);
}

fn install(format: LogFormat, default: &str, provider: Option<&SdkTracerProvider>) {
    let filter = log_filter(env::var("RUST_LOG").ok().as_deref(), default);
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            // Colour codes only help a terminal; in a log file they are noise.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json::JsonWithTraceIds)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let traces = provider.map(|provider| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let tracer = provider.tracer("sluice");
        sluice_router::trace_context::activate(tracer.clone());
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(trace_targets())
    });
    // An error means a subscriber is already installed, which is fine.
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init();
}

/// Returns the spans that are exported: those of sluice's own crates at INFO level and
/// above, whatever `RUST_LOG` sets for the logs, so that quieter logs keep every trace.
fn trace_targets() -> Targets {
    Targets::new().with_targets([
        ("sluice", LevelFilter::INFO),
        ("sluice_router", LevelFilter::INFO),
        ("sluice_handlers", LevelFilter::INFO),
    ])
}

/// Returns the filter of the log lines: `rust_log` (the value of `RUST_LOG`) or `default` when
/// that is unset or invalid, with the SDK's crates at warn unless `rust_log` names them, and
/// the rate limit of the SDK's repeated warnings.
fn log_filter<S>(rust_log: Option<&str>, default: &str) -> impl Filter<S> {
    let mut filter = rust_log
        .and_then(|value| EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // The SDK logs at INFO when it installs a provider, which is of no use to an operator, so
    // its crates log warnings and errors only unless `RUST_LOG` names them.
    let names_sdk = rust_log.is_some_and(|value| value.contains("opentelemetry"));
    if !names_sdk {
        filter = filter.add_directive(
            "opentelemetry=warn"
                .parse()
                .expect("the directive is valid"),
        );
    }
    let limit = Arc::new(sdk_logs::SdkLogLimit::default());
    // Without a level hint, `And` reports none for the whole filter, and the global maximum
    // level becomes TRACE. Every `log` record of dependencies such as sled would then reach
    // the subscriber only to be dropped, and each disabled callsite would be checked at each
    // call, which cost several percent of routing throughput. The limit passes every level
    // that it does not count, so TRACE is its true hint.
    let rate_limit = tracing_subscriber::filter::filter_fn(move |metadata| limit.allows(metadata))
        .with_max_level_hint(LevelFilter::TRACE);
    filter.and(rate_limit)
}

/// Builds the exporter and the provider that batches spans into it.
///
/// # Errors
///
/// Fails for an endpoint without a scheme or that is no URL, and for TLS files that cannot
/// be read.
fn build_tracer_provider(settings: &TraceSettings) -> anyhow::Result<SdkTracerProvider> {
    let endpoint = collector_url(settings)?;
    let files = &settings.tls_files;
    // Certificate files for a plain-text endpoint got a warning when the settings were read.
    let channel = if !settings.uses_tls() {
        build_channel(&endpoint, None)?
    } else if files.ca.is_some() || files.client.is_some() {
        build_channel(&endpoint, Some(tls_config(files)?)).with_context(|| match &files.client {
            Some((certificate, key)) => format!(
                "check that OTEL_EXPORTER_OTLP_CLIENT_KEY ({key}) is the key of \
                 OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE ({certificate})"
            ),
            None => "check the file of OTEL_EXPORTER_OTLP_CERTIFICATE".to_owned(),
        })?
    } else {
        // A host without a system certificate store makes the native roots fail, so the
        // exporter then trusts Mozilla's roots alone.
        build_channel(&endpoint, Some(ClientTlsConfig::new().with_enabled_roots())).or_else(
            |_| build_channel(&endpoint, Some(ClientTlsConfig::new().with_webpki_roots())),
        )?
    };
    let exporter = otlp::OtlpExporter::new(otlp::ExporterConfig {
        channel,
        endpoint,
        ca_file: files.ca.clone(),
        metadata: settings.headers.clone(),
        compression: settings.gzip.then_some(CompressionEncoding::Gzip),
        timeout: settings.export_timeout,
    });
    let mut resource = Resource::builder();
    // The SDK names the service from OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES; without
    // either, "sluice" beats its "unknown_service" default.
    let named_by_environment = env::var("OTEL_SERVICE_NAME").is_ok()
        || env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|value| value.contains("service.name="));
    if !named_by_environment {
        resource = resource.with_service_name("sluice");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(settings.sampler.clone())
        .with_resource(resource.build())
        .build())
}

/// The collector of the OTLP specification's default, which the exporter reaches when
/// `OTEL_TRACES_EXPORTER=otlp` names no endpoint.
const DEFAULT_ENDPOINT: &str = "http://localhost:4317";

/// Returns the URL of the collector: the endpoint variable's value. A value without a scheme
/// gets http:// in front when `OTEL_EXPORTER_OTLP_INSECURE` is true.
///
/// # Errors
///
/// Fails for an endpoint without a scheme when the insecure variable is not set, or with a
/// scheme other than http:// and https://.
fn collector_url(settings: &TraceSettings) -> anyhow::Result<String> {
    let Some(endpoint) = &settings.endpoint else {
        return Ok(DEFAULT_ENDPOINT.to_owned());
    };
    otel_env::check_endpoint(endpoint, settings.insecure.is_some()).map_err(anyhow::Error::msg)?;
    let lower = endpoint.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(endpoint.clone());
    }
    let scheme = if settings.uses_tls() { "https" } else { "http" };
    Ok(format!("{scheme}://{endpoint}"))
}

/// Returns a channel to the collector that connects on its first request.
///
/// # Errors
///
/// Fails for an endpoint that is no URI and for TLS settings that tonic rejects.
fn build_channel(endpoint: &str, tls: Option<ClientTlsConfig>) -> anyhow::Result<Channel> {
    let mut builder = Endpoint::from_shared(endpoint.to_owned()).map_err(|err| {
        anyhow::anyhow!(
            "the OTLP endpoint {endpoint:?} is not a URL ({err}); write it as \
             http://HOST:PORT or https://HOST:PORT"
        )
    })?;
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .with_context(|| format!("TLS to the OTLP endpoint {endpoint} cannot be set up"))?;
    }
    // The OTLP exporter specification recommends a user agent that names the exporter.
    let builder = builder
        .user_agent(format!(
            "OTel-OTLP-Exporter-Rust sluice/{}",
            env!("CARGO_PKG_VERSION")
        ))
        .context("the user agent is a valid header")?;
    // The exporter bounds each export, connection and retries included, by the export
    // timeout, so the channel sets none of its own.
    Ok(builder.connect_lazy())
}

/// Returns the TLS settings of the OTLP certificate variables: the CA file in place of the
/// system's roots, and the client certificate and key.
///
/// # Errors
///
/// Fails when a file cannot be read or holds no PEM block, naming the variable and the path.
fn tls_config(files: &otel_env::TlsFiles) -> anyhow::Result<ClientTlsConfig> {
    // `label` is the end of the PEM block's label that the file must hold: a certificate
    // for the CA and the client, a private key (of any kind) for the key.
    let read_pem = |variable: &str, path: &str, label: &str| -> anyhow::Result<Vec<u8>> {
        let pem = std::fs::read(path).with_context(|| {
            format!("failed to read {variable} file {path}; point the variable at a PEM file")
        })?;
        let text = String::from_utf8_lossy(&pem);
        let holds_block = text.lines().any(|line| {
            line.starts_with("-----BEGIN ") && line.trim_end().ends_with(&format!("{label}-----"))
        });
        anyhow::ensure!(
            holds_block,
            "{variable} file {path} holds no PEM block of a {}; it must contain a \
             -----BEGIN ...{label}----- line",
            label.to_ascii_lowercase()
        );
        Ok(pem)
    };
    let mut config = ClientTlsConfig::new();
    match &files.ca {
        Some(ca) => {
            let pem = read_pem("OTEL_EXPORTER_OTLP_CERTIFICATE", ca, "CERTIFICATE")?;
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        None => config = config.with_enabled_roots(),
    }
    if let Some((certificate, key)) = &files.client {
        let certificate = read_pem(
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            certificate,
            "CERTIFICATE",
        )?;
        let key = read_pem("OTEL_EXPORTER_OTLP_CLIENT_KEY", key, "PRIVATE KEY")?;
        config = config.identity(Identity::from_pem(certificate, key));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::Registry;

    use super::*;

    fn hint(rust_log: Option<&str>) -> Option<LevelFilter> {
        Filter::<Registry>::max_level_hint(&log_filter(rust_log, "info"))
    }

    fn write_pem(dir: &std::path::Path, name: &str, label: &str) -> String {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n"),
        )
        .expect("write the PEM file");
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn tls_files_must_hold_their_kind_of_block() {
        let dir = std::env::temp_dir().join(format!("sluice-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary folder");
        let certificate = write_pem(&dir, "cert.pem", "CERTIFICATE");
        let key = write_pem(&dir, "key.pem", "PRIVATE KEY");
        let ec_key = write_pem(&dir, "ec.pem", "EC PRIVATE KEY");
        let files = |ca: &str, client: Option<(&str, &str)>| otel_env::TlsFiles {
            ca: Some(ca.to_owned()),
            client: client.map(|(c, k)| (c.to_owned(), k.to_owned())),
        };

        let key_as_ca = tls_config(&files(&key, None)).expect_err("a key is no CA");
        assert!(
            key_as_ca
                .to_string()
                .contains("OTEL_EXPORTER_OTLP_CERTIFICATE"),
            "{key_as_ca}"
        );
        assert!(key_as_ca.to_string().contains("certificate"), "{key_as_ca}");
        let swapped = tls_config(&files(&certificate, Some((&certificate, &certificate))))
            .expect_err("a certificate is no key");
        assert!(
            swapped
                .to_string()
                .contains("OTEL_EXPORTER_OTLP_CLIENT_KEY"),
            "{swapped}"
        );
        assert!(tls_config(&files(&certificate, Some((&certificate, &key)))).is_ok());
        assert!(tls_config(&files(&certificate, Some((&certificate, &ec_key)))).is_ok());
        std::fs::remove_dir_all(&dir).expect("remove the temporary folder");
    }

    #[test]
    fn log_filter_keeps_its_level_hint() {
        // Without a hint, every `log` record of every dependency would reach the subscriber.
        assert_eq!(hint(None), Some(LevelFilter::INFO));
        assert_eq!(hint(Some("warn")), Some(LevelFilter::WARN));
        assert_eq!(hint(Some("sled=debug")), Some(LevelFilter::DEBUG));
    }
}
