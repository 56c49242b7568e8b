//! The standard OpenTelemetry variables that decide whether and how sluice exports traces.
//!
//! The OpenTelemetry environment variable specification (configuration/sdk-environment-
//! variables) requires enum values to be read case-insensitively, an empty value to count as
//! unset, and a value the implementation does not recognise to produce a warning and be
//! ignored. Each problem found here becomes one warning, which [`super::init`] logs once
//! logging is installed.

use std::time::Duration;

use opentelemetry_sdk::trace::Sampler;
use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};

/// The samplers that `OTEL_TRACES_SAMPLER` accepts.
const SAMPLERS: &str = "always_on, always_off, traceidratio, parentbased_always_on, \
                        parentbased_always_off, parentbased_traceidratio";

/// The export timeout when neither timeout variable is set, as the OTLP exporter
/// specification defines it.
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The trace settings read from the environment, with a warning for each value that was
/// ignored.
#[derive(Debug)]
pub(super) struct TraceSettings {
    /// Whether spans are exported over OTLP.
    pub(super) export: bool,
    pub(super) sampler: Sampler,
    /// The time one export may take, which also bounds the flush at shutdown.
    pub(super) export_timeout: Duration,
    /// The collector endpoint, when a variable sets one.
    pub(super) endpoint: Option<String>,
    /// The PEM files of the TLS connection to the collector.
    pub(super) tls_files: TlsFiles,
    /// `OTEL_EXPORTER_OTLP_TRACES_INSECURE` or `OTEL_EXPORTER_OTLP_INSECURE`, when set.
    pub(super) insecure: Option<String>,
    /// The headers of each export request, from `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or
    /// `OTEL_EXPORTER_OTLP_HEADERS`, with names in lowercase.
    pub(super) headers: MetadataMap,
    /// Whether requests are compressed with gzip (`OTEL_EXPORTER_OTLP_COMPRESSION=gzip`).
    pub(super) gzip: bool,
    pub(super) warnings: Vec<String>,
}

impl TraceSettings {
    /// Returns whether the exporter connects to the collector over TLS.
    pub(super) fn uses_tls(&self) -> bool {
        let insecure = self
            .insecure
            .as_deref()
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        self.endpoint
            .as_deref()
            .is_some_and(|endpoint| uses_tls(endpoint, insecure))
    }
}

/// The PEM files that `OTEL_EXPORTER_OTLP_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`
/// and `OTEL_EXPORTER_OTLP_CLIENT_KEY` (or their `_TRACES_` forms) name.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TlsFiles {
    /// The certificates that the collector's certificate must chain to, in place of the
    /// system's roots.
    pub(super) ca: Option<String>,
    /// The client certificate chain and its key, which the collector may require.
    pub(super) client: Option<(String, String)>,
}

impl TraceSettings {
    /// Reads the settings through `lookup`, which returns a variable's value or `None`.
    pub(super) fn read(lookup: impl Fn(&str) -> Option<String>) -> TraceSettings {
        // An empty value counts as unset.
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let mut warnings = Vec::new();
        let endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let export = export_enabled(&get, endpoint.is_some(), &mut warnings);
        let sampler = read_sampler(&get, &mut warnings);
        let export_timeout = read_timeout(&get, &mut warnings);
        let tls_files = read_tls_files(&get, &mut warnings);
        let insecure = get("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
            .or_else(|| get("OTEL_EXPORTER_OTLP_INSECURE"));
        let headers = read_headers(&get, &mut warnings);
        let gzip = read_gzip(&get, &mut warnings);
        warn_unsupported(&get, &mut warnings);
        warn_batch_settings(&get, &mut warnings);
        let settings = TraceSettings {
            export,
            sampler,
            export_timeout,
            endpoint,
            tls_files,
            insecure,
            headers,
            gzip,
            warnings,
        };
        settings.warn_unused_tls_files()
    }

    /// Adds a warning when certificate files are set for a plain-text connection.
    fn warn_unused_tls_files(mut self) -> TraceSettings {
        let files_set = self.tls_files.ca.is_some() || self.tls_files.client.is_some();
        if let Some(endpoint) = &self.endpoint {
            if self.export && files_set && !self.uses_tls() {
                self.warnings.push(format!(
                    "the OTLP certificate variables are ignored: the endpoint {endpoint:?} is \
                     reached in plain text; write https:// to connect over TLS"
                ));
            }
        }
        self
    }
}

/// Returns whether `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` and the endpoint ask for trace
/// export.
fn export_enabled(
    get: &impl Fn(&str) -> Option<String>,
    endpoint_set: bool,
    warnings: &mut Vec<String>,
) -> bool {
    if get("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true")) {
        return false;
    }
    let Some(value) = get("OTEL_TRACES_EXPORTER") else {
        return endpoint_set;
    };
    let names: Vec<String> = value
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let unsupported: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| *name != "otlp" && *name != "none")
        .collect();
    if !unsupported.is_empty() {
        warnings.push(format!(
            "OTEL_TRACES_EXPORTER={value:?} names exporters sluice does not have ({}); \
             sluice accepts otlp or none, and ignores the others",
            unsupported.join(", ")
        ));
    }
    if names.iter().any(|name| name == "otlp") {
        true
    } else if names.iter().any(|name| name == "none") {
        false
    } else {
        // Nothing usable is left, so the variable counts as unset.
        endpoint_set
    }
}

/// Returns the sampler that `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` choose, or
/// the specification's default, parent-based always-on.
fn read_sampler(get: &impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> Sampler {
    let default = || Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
    let Some(value) = get("OTEL_TRACES_SAMPLER") else {
        return default();
    };
    let ratio = |warnings: &mut Vec<String>| read_ratio(get, &value, warnings);
    match value.to_ascii_lowercase().as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio(warnings)),
        "parentbased_always_on" => default(),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio(warnings))))
        }
        _ => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER={value:?} is not a known sampler, so sluice samples with \
                 parentbased_always_on instead. Accepted values: {SAMPLERS}"
            ));
            default()
        }
    }
}

/// Returns the ratio of `OTEL_TRACES_SAMPLER_ARG`, or 1.0 when it is unset or invalid.
fn read_ratio(
    get: &impl Fn(&str) -> Option<String>,
    sampler: &str,
    warnings: &mut Vec<String>,
) -> f64 {
    let Some(argument) = get("OTEL_TRACES_SAMPLER_ARG") else {
        return 1.0;
    };
    match argument.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
        _ => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER_ARG={argument:?} is not a ratio from 0 to 1 for \
                 OTEL_TRACES_SAMPLER={sampler}; sluice samples every trace (ratio 1.0) instead"
            ));
            1.0
        }
    }
}

/// Returns the export timeout from `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or
/// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds, the same variables the exporter reads.
fn read_timeout(get: &impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> Duration {
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ] {
        let Some(value) = get(name) else {
            continue;
        };
        match value.parse::<u64>() {
            Ok(0) => warnings.push(format!(
                "{name}=0 would fail every export at once; it is ignored, so set a number of \
                 milliseconds above 0"
            )),
            Ok(millis) => return Duration::from_millis(millis),
            Err(_) => warnings.push(format!(
                "{name}={value:?} is not a whole number of milliseconds; it is ignored"
            )),
        }
    }
    DEFAULT_EXPORT_TIMEOUT
}

/// Returns the headers of `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, or of
/// `OTEL_EXPORTER_OTLP_HEADERS` when that is unset: `name=value` pairs separated by commas,
/// each value percent-decoded, as the OTLP exporter specification writes them. A pair that
/// is not a valid header is left out with a warning that names it.
fn read_headers(get: &impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> MetadataMap {
    let mut headers = MetadataMap::new();
    let Some((value, name)) = traces_first(get, "HEADERS") else {
        return headers;
    };
    for pair in value
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        // A value may be a secret, such as an API key, so warnings name the header only.
        let Some((key, raw)) = pair.split_once('=') else {
            warnings.push(format!(
                "{name} holds a pair without '=' that starts {:?}; write name=value pairs \
                 separated by commas; the pair is left out",
                pair.chars().take(3).collect::<String>()
            ));
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        match header(&key, raw) {
            Ok((key, value)) => {
                headers.append(key, value);
            }
            Err(problem) => warnings.push(format!(
                "{name} sets the header {key:?}, which {problem}; the header is left out"
            )),
        }
    }
    headers
}

/// Returns the header `key` with the percent-decoded `raw` value, or what is wrong with it.
fn header(
    key: &str,
    raw: &str,
) -> Result<(MetadataKey<Ascii>, MetadataValue<Ascii>), &'static str> {
    if key.is_empty() {
        return Err("has no name: write name=value");
    }
    // The names that gRPC sets itself, and those that HTTP/2 forbids.
    const RESERVED: [&str; 9] = [
        "te",
        "content-type",
        "user-agent",
        "connection",
        "transfer-encoding",
        "keep-alive",
        "upgrade",
        "proxy-connection",
        "host",
    ];
    if RESERVED.contains(&key) || key.starts_with("grpc-") || key.starts_with(':') {
        return Err("gRPC or HTTP/2 reserves");
    }
    if key.ends_with("-bin") {
        return Err(
            "ends in -bin, which gRPC keeps for binary values; sluice sends text \
                    headers only",
        );
    }
    let key = MetadataKey::from_bytes(key.as_bytes())
        .map_err(|_| "is not a valid name: use letters, digits and -_.")?;
    let decoded = percent_encoding::percent_decode_str(raw.trim())
        .decode_utf8()
        .map_err(|_| "has a value that is not UTF-8 once percent-decoded")?;
    let value = MetadataValue::try_from(decoded.as_ref()).map_err(|_| {
        "has a value with a character a header cannot hold, such as a line break; \
         percent-encoding does not help there"
    })?;
    Ok((key, value))
}

/// Returns whether `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION` or `OTEL_EXPORTER_OTLP_COMPRESSION`
/// selects gzip. Any value besides `gzip` and `none` gets a warning and means none.
fn read_gzip(get: &impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> bool {
    let Some((value, name)) = traces_first(get, "COMPRESSION") else {
        return false;
    };
    if value.eq_ignore_ascii_case("gzip") {
        return true;
    }
    if !value.eq_ignore_ascii_case("none") {
        warnings.push(format!(
            "{name}={value:?} is not a compression sluice knows (accepted: gzip, none); \
             spans are sent uncompressed"
        ));
    }
    false
}

/// Returns the value of `OTEL_EXPORTER_OTLP_TRACES_{setting}`, or of
/// `OTEL_EXPORTER_OTLP_{setting}` when that is unset, with the name of the variable that set it.
fn traces_first(get: &impl Fn(&str) -> Option<String>, setting: &str) -> Option<(String, String)> {
    let traces = format!("OTEL_EXPORTER_OTLP_TRACES_{setting}");
    let general = format!("OTEL_EXPORTER_OTLP_{setting}");
    get(&traces)
        .map(|value| (value, traces))
        .or_else(|| get(&general).map(|value| (value, general)))
}

/// Returns the TLS files of the trace exporter. A client certificate without its key, or a
/// key without its certificate, is ignored with a warning that names the missing variable.
fn read_tls_files(get: &impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> TlsFiles {
    let ca = traces_first(get, "CERTIFICATE").map(|(value, _)| value);
    let client = match (
        traces_first(get, "CLIENT_CERTIFICATE"),
        traces_first(get, "CLIENT_KEY"),
    ) {
        (Some((certificate, _)), Some((key, _))) => Some((certificate, key)),
        (None, None) => None,
        (Some((_, set)), None) | (None, Some((_, set))) => {
            let missing = if set.ends_with("CLIENT_KEY") {
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
            } else {
                "OTEL_EXPORTER_OTLP_CLIENT_KEY"
            };
            warnings.push(format!(
                "{set} is ignored without {missing} (or its _TRACES_ form); set both to \
                 present a client certificate to the collector"
            ));
            None
        }
    };
    TlsFiles { ca, client }
}

/// Warns about settings that sluice does not implement and would otherwise ignore silently.
fn warn_unsupported(get: &impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) {
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(value) = get(name).filter(|value| !value.eq_ignore_ascii_case("grpc")) {
            warnings.push(format!(
                "{name}={value:?} is not supported; sluice exports traces over OTLP/gRPC only \
                 (accepted: grpc), so point the endpoint at the collector's gRPC port, \
                 usually 4317"
            ));
        }
    }
    if let Some(value) = get("OTEL_METRICS_EXPORTER") {
        if !value.eq_ignore_ascii_case("prometheus") {
            warnings.push(format!(
                "OTEL_METRICS_EXPORTER={value:?} is ignored; sluice serves metrics only at \
                 /metrics in the Prometheus text format (accepted: prometheus)"
            ));
        }
    }
}

/// Warns about batch span processor settings that the SDK takes otherwise than an operator
/// would expect. A queue or batch of 0 it takes as it is: a queue of 0 spans drops nearly
/// every span, and a batch of 0 spans exports none. A value that is not a whole number it
/// replaces with its default without a word.
fn warn_batch_settings(get: &impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) {
    for (name, default, unit) in [
        ("OTEL_BSP_MAX_QUEUE_SIZE", 2048, "spans"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, "spans"),
        ("OTEL_BSP_SCHEDULE_DELAY", 5000, "ms"),
        ("OTEL_BSP_EXPORT_TIMEOUT", 30000, "ms"),
    ] {
        let Some(value) = get(name) else {
            continue;
        };
        match value.parse::<u64>() {
            Ok(0) if unit == "spans" => warnings.push(format!(
                "{name}=0 leaves no room for spans, so traces are lost; set it above 0 or \
                 unset it for the default of {default}"
            )),
            Ok(_) => {}
            Err(_) => warnings.push(format!(
                "{name}={value:?} is not a whole number, so the default of {default} {unit} \
                 is used; write a number such as {default}"
            )),
        }
    }
}

/// Checks that `endpoint` names its scheme. Without one, the specification has the exporter
/// use https:// unless `OTEL_EXPORTER_OTLP_INSECURE` is true, which is rarely what an
/// operator who wrote `HOST:4317` meant.
///
/// # Errors
///
/// Returns a message that names the value and the two ways to write it.
pub(super) fn check_endpoint(endpoint: &str, insecure_set: bool) -> Result<(), String> {
    let lower = endpoint.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(());
    }
    if let Some((scheme, rest)) = endpoint.split_once("://") {
        return Err(format!(
            "the OTLP endpoint {endpoint:?} has the scheme {scheme}://, which the exporter \
             does not know; write http://{rest} for a plain-text collector or https://{rest} \
             for one that uses TLS"
        ));
    }
    if insecure_set {
        return Ok(());
    }
    Err(format!(
        "the OTLP endpoint {endpoint:?} has no scheme; write http://{endpoint} for a \
         plain-text collector or https://{endpoint} for one that uses TLS"
    ))
}

/// Returns whether the exporter connects to `endpoint` over TLS: an https:// URL, or one
/// without a scheme when `OTEL_EXPORTER_OTLP_INSECURE` is not true.
pub(super) fn uses_tls(endpoint: &str, insecure: bool) -> bool {
    let lower = endpoint.to_ascii_lowercase();
    lower.starts_with("https://") || (!lower.starts_with("http://") && !insecure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> TraceSettings {
        TraceSettings::read(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn tls_files_read_traces_variables_first() {
        let settings = read(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                "/etc/otel/traces-ca.pem",
            ),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/otel/ca.pem"),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                "/etc/otel/client.pem",
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/otel/client.key"),
        ]);
        assert_eq!(
            settings.tls_files,
            TlsFiles {
                ca: Some("/etc/otel/traces-ca.pem".to_owned()),
                client: Some((
                    "/etc/otel/client.pem".to_owned(),
                    "/etc/otel/client.key".to_owned()
                )),
            }
        );
        assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
    }

    #[test]
    fn client_key_without_certificate_warns() {
        let settings = read(&[("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/otel/client.key")]);
        assert_eq!(settings.tls_files.client, None);
        assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
        assert!(settings.warnings[0].contains("without OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"));
    }

    #[test]
    fn client_warning_names_the_variable_set() {
        let settings = read(&[(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            "/etc/otel/client.pem",
        )]);
        assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
        assert!(
            settings.warnings[0]
                .starts_with("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE is ignored"),
            "{:?}",
            settings.warnings
        );
    }

    #[test]
    fn exporter_value_ignores_case() {
        let settings = read(&[
            ("OTEL_TRACES_EXPORTER", "NONE"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        ]);
        assert!(!settings.export);
        assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
    }

    #[test]
    fn unknown_exporter_warns_and_is_ignored() {
        let settings = read(&[("OTEL_TRACES_EXPORTER", "zipkin")]);
        assert!(!settings.export, "no endpoint, so no export");
        assert_eq!(settings.warnings.len(), 1);
        assert!(settings.warnings[0].contains("\"zipkin\""));
        assert!(settings.warnings[0].contains("otlp or none"));
    }

    #[test]
    fn exporter_list_keeps_otlp() {
        let settings = read(&[("OTEL_TRACES_EXPORTER", "otlp,console")]);
        assert!(settings.export);
        assert_eq!(settings.warnings.len(), 1);
        assert!(settings.warnings[0].contains("(console)"));
    }

    #[test]
    fn unknown_sampler_warns_with_accepted_values() {
        let settings = read(&[("OTEL_TRACES_SAMPLER", "bogus")]);
        assert_eq!(settings.warnings.len(), 1);
        assert!(settings.warnings[0].contains("\"bogus\""));
        assert!(settings.warnings[0].contains("parentbased_traceidratio"));
        assert!(matches!(settings.sampler, Sampler::ParentBased(_)));
    }

    #[test]
    fn sampler_value_ignores_case() {
        let settings = read(&[("OTEL_TRACES_SAMPLER", "ALWAYS_OFF")]);
        assert!(matches!(settings.sampler, Sampler::AlwaysOff));
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn invalid_ratio_warns() {
        let settings = read(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "abc"),
        ]);
        assert_eq!(settings.warnings.len(), 1);
        assert!(settings.warnings[0].contains("\"abc\""));
        assert!(matches!(settings.sampler, Sampler::TraceIdRatioBased(r) if r == 1.0));
    }

    #[test]
    fn valid_ratio_is_used() {
        let settings = read(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        assert!(settings.warnings.is_empty());
        assert!(matches!(settings.sampler, Sampler::ParentBased(_)));
    }

    #[test]
    fn timeout_reads_traces_variable_first() {
        let settings = read(&[
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1500"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
        ]);
        assert_eq!(settings.export_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn batch_setting_not_a_number_warns() {
        let settings = read(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "abc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "5s"),
        ]);
        assert_eq!(settings.warnings.len(), 2, "{:?}", settings.warnings);
        assert!(settings.warnings[0].starts_with("OTEL_BSP_MAX_QUEUE_SIZE=\"abc\""));
        assert!(settings.warnings[0].contains("default of 2048 spans"));
        assert!(settings.warnings[1].starts_with("OTEL_BSP_SCHEDULE_DELAY=\"5s\""));
        assert!(settings.warnings[1].contains("default of 5000 ms"));
    }

    #[test]
    fn headers_are_decoded_and_traces_variable_wins() {
        let settings = read(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "Api-Key=a%2Cb%3Dc , x-team= ops ",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "ignored=1"),
        ]);
        let value = |name: &str| settings.headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(value("api-key"), Some("a,b=c"));
        assert_eq!(value("x-team"), Some("ops"));
        assert_eq!(value("ignored"), None);
        assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
    }

    #[test]
    fn pairs_that_are_no_headers_warn() {
        for (pair, named) in [
            ("novalue", "\"nov\""),
            ("bad name=secret", "\"bad name\""),
            ("x=secret%0Abreak", "\"x\""),
            ("x=secret%FF", "\"x\""),
            ("=secret", "no name"),
            ("Grpc-Timeout=1", "\"grpc-timeout\""),
            ("content-type=text/plain", "\"content-type\""),
            ("Connection=close", "\"connection\""),
            ("x-tok-bin=abc", "-bin"),
        ] {
            let settings = read(&[("OTEL_EXPORTER_OTLP_HEADERS", &format!("ok=1,{pair}"))]);
            assert_eq!(settings.headers.len(), 1, "{pair}: the valid pair stays");
            assert_eq!(
                settings.warnings.len(),
                1,
                "{pair}: {:?}",
                settings.warnings
            );
            let warning = &settings.warnings[0];
            assert!(warning.contains(named), "{pair}: names {named}: {warning}");
            assert!(
                !warning.contains("secret"),
                "{pair}: hides the value: {warning}"
            );
        }
    }

    #[test]
    fn compression_reads_gzip_and_warns_about_others() {
        assert!(read(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP")]).gzip);
        let none = read(&[
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ]);
        assert!(!none.gzip);
        assert!(none.warnings.is_empty());
        let zstd = read(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]);
        assert!(!zstd.gzip);
        assert!(
            zstd.warnings[0].contains("\"zstd\""),
            "{}",
            zstd.warnings[0]
        );
        assert!(zstd.warnings[0].contains("gzip"), "{}", zstd.warnings[0]);
    }

    #[test]
    fn timeout_defaults_to_ten_seconds() {
        let settings = read(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "")]);
        assert_eq!(settings.export_timeout, Duration::from_secs(10));
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn zero_timeout_warns() {
        let settings = read(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "0")]);
        assert_eq!(settings.export_timeout, Duration::from_secs(10));
        assert!(settings.warnings[0].starts_with("OTEL_EXPORTER_OTLP_TIMEOUT=0"));
    }

    #[test]
    fn invalid_timeout_warns() {
        let settings = read(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "5s")]);
        assert_eq!(settings.export_timeout, Duration::from_secs(10));
        assert!(settings.warnings[0].contains("\"5s\""));
    }

    #[test]
    fn http_protocol_and_metrics_exporter_warn() {
        let settings = read(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
        ]);
        assert_eq!(settings.warnings.len(), 2, "{:?}", settings.warnings);
        assert!(settings.warnings[0].contains("\"http/protobuf\""));
        assert!(settings.warnings[1].contains("OTEL_METRICS_EXPORTER=\"otlp\""));
    }

    #[test]
    fn endpoint_without_scheme_names_fix() {
        let err = check_endpoint("127.0.0.1:4417", false).expect_err("no scheme");
        assert!(err.contains("\"127.0.0.1:4417\""), "{err}");
        assert!(err.contains("http://127.0.0.1:4417"), "{err}");
        assert!(err.contains("https://127.0.0.1:4417"), "{err}");
        assert!(check_endpoint("127.0.0.1:4417", true).is_ok());
        assert!(check_endpoint("HTTPS://collector:4317", false).is_ok());
    }

    #[test]
    fn endpoint_with_other_scheme_names_fix() {
        for insecure in [false, true] {
            let err = check_endpoint("grpc://collector:4317", insecure).expect_err("grpc://");
            assert!(err.contains("scheme grpc://"), "{err}");
            assert!(err.contains("write http://collector:4317"), "{err}");
            assert!(!err.contains("http://grpc://"), "{err}");
        }
    }

    #[test]
    fn certificate_files_for_plain_text_warn() {
        let ca = ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/otel/ca.pem");
        for plain in [
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"), ca],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
                ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
                ca,
            ],
        ] {
            let settings = read(&plain);
            assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
            assert!(settings.warnings[0].contains("certificate variables are ignored"));
        }
        let tls = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
            ca,
        ]);
        assert!(tls.warnings.is_empty(), "{:?}", tls.warnings);
    }

    #[test]
    fn empty_span_queue_warns() {
        let settings = read(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"),
        ]);
        assert_eq!(settings.warnings.len(), 2, "{:?}", settings.warnings);
        assert!(settings.warnings[0].starts_with("OTEL_BSP_MAX_QUEUE_SIZE=0"));
        assert!(read(&[("OTEL_BSP_MAX_QUEUE_SIZE", "16")])
            .warnings
            .is_empty());
    }

    #[test]
    fn tls_follows_scheme_and_insecure() {
        assert!(uses_tls("https://collector:4317", false));
        assert!(!uses_tls("http://collector:4317", false));
        assert!(uses_tls("collector:4317", false));
        assert!(!uses_tls("collector:4317", true));
    }
}
