//! The sluice configuration file, loaded in two steps.
//!
//! [`ConfigFile`] and the structs under it mirror the TOML text: serde rejects unknown keys
//! and wrong value types there, and fills in defaults. [`ConfigFile::validate`] then builds
//! the runtime [`Config`], compiling every filter, and collects every problem it finds, each
//! prefixed by the sink or exclusion at fault, so that one run reports them all.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;
use sluice_router::filter::{self, FilterError, LogFilter, Position, Warning};

/// The default configuration, `config/default.toml`, built into the binary.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// The name under which messages about [`DEFAULT_CONFIG`] refer to it.
pub(crate) const DEFAULT_CONFIG_NAME: &str = "<built-in config/default.toml>";

/// Maximum length of a sink or exclusion name, in characters.
const MAX_NAME_CHARS: usize = 100;

/// The configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// Topic for entries that no enabled sink routed. Without it they are dropped.
    #[serde(default = "default_catch_all_topic")]
    pub(crate) catch_all_topic: Option<String>,
    /// Log sinks, in file order.
    #[serde(default = "default_sinks")]
    pub(crate) sinks: Vec<SinkConfig>,
}

/// One `[[sinks]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinkConfig {
    /// Unique sink name. Required, but defaulted here so that validation can report a
    /// missing name together with every other problem.
    #[serde(default = "default_name")]
    pub(crate) name: String,
    /// Inclusion filter in the Logging query language. Empty matches every entry.
    #[serde(default = "default_sink_filter")]
    pub(crate) filter: String,
    /// Topic that receives matching entries. Required, defaulted like `name`.
    #[serde(default = "default_destination")]
    pub(crate) destination: String,
    #[serde(default = "default_disabled")]
    pub(crate) disabled: bool,
    #[serde(default = "default_exclusions")]
    pub(crate) exclusions: Vec<ExclusionConfig>,
}

/// One `[[sinks.exclusions]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExclusionConfig {
    /// Name, unique within the sink.
    #[serde(default = "default_name")]
    pub(crate) name: String,
    /// Entries that match this filter are not routed by the sink. Must not be empty.
    #[serde(default = "default_exclusion_filter")]
    pub(crate) filter: String,
    #[serde(default = "default_disabled")]
    pub(crate) disabled: bool,
}

fn default_catch_all_topic() -> Option<String> {
    None
}

fn default_sinks() -> Vec<SinkConfig> {
    Vec::new()
}

fn default_name() -> String {
    String::new()
}

fn default_sink_filter() -> String {
    String::new()
}

fn default_destination() -> String {
    String::new()
}

fn default_disabled() -> bool {
    false
}

fn default_exclusions() -> Vec<ExclusionConfig> {
    Vec::new()
}

fn default_exclusion_filter() -> String {
    String::new()
}

/// A validated configuration, with every filter compiled.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the router reads these fields once the server is wired up"
)]
pub(crate) struct Config {
    pub(crate) catch_all_topic: Option<String>,
    pub(crate) sinks: Vec<Sink>,
    /// Filters that are valid but probably not what their author meant.
    pub(crate) warnings: Vec<Diagnostic>,
}

/// A validated log sink.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the router reads these fields once the server is wired up"
)]
pub(crate) struct Sink {
    pub(crate) name: String,
    pub(crate) filter: LogFilter,
    pub(crate) destination: String,
    pub(crate) disabled: bool,
    pub(crate) exclusions: Vec<Exclusion>,
}

/// A validated exclusion of a sink.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the router reads these fields once the server is wired up"
)]
pub(crate) struct Exclusion {
    pub(crate) name: String,
    pub(crate) filter: LogFilter,
    pub(crate) disabled: bool,
}

/// One problem in the configuration, with the component at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diagnostic {
    /// The component, such as `sink "errors"` or `sink "errors": exclusion "noisy"`.
    pub(crate) component: String,
    /// Description of the problem and its fix. A filter error spans three lines: the
    /// message, the filter line and a caret under the column.
    pub(crate) message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.component, self.message)
    }
}

/// Every error that [`ConfigFile::validate`] found, and the warnings it collected so far.
#[derive(Debug)]
pub(crate) struct ValidationErrors {
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

/// Reads and parses the configuration file at `path`.
///
/// # Errors
///
/// Fails when the file cannot be read, or when its TOML is invalid or does not fit the
/// schema. The message names the file and gives the line and column of a TOML error.
pub(crate) fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read config file {}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses configuration text. `source` names the file in error messages.
///
/// # Errors
///
/// Fails on invalid TOML, unknown keys and values of the wrong type, with the line and column.
pub(crate) fn parse(text: &str, source: &str) -> anyhow::Result<ConfigFile> {
    toml::from_str(text).map_err(|err| anyhow::anyhow!("{source}: {}", err.to_string().trim_end()))
}

impl ConfigFile {
    /// Checks every setting and compiles every filter, disabled sinks and exclusions
    /// included.
    ///
    /// # Errors
    ///
    /// Returns every problem found, each naming its sink and exclusion, when there is any.
    pub(crate) fn validate(&self) -> Result<Config, ValidationErrors> {
        let mut report = Report::default();
        if self
            .catch_all_topic
            .as_deref()
            .is_some_and(|topic| topic.trim().is_empty())
        {
            report.error(
                "catch_all_topic",
                "topic name is empty: name the topic for unmatched entries, or remove the key",
            );
        }

        let mut first_use: HashMap<&str, usize> = HashMap::new();
        let mut sinks = Vec::with_capacity(self.sinks.len());
        for (index, sink) in self.sinks.iter().enumerate() {
            let label = component_label("sink", &sink.name, index);
            if let Some(&first) = first_use.get(sink.name.as_str()) {
                report.error(
                    &label,
                    format!(
                        "duplicate name: sink #{} has the same name, and sink names must be \
                         unique",
                        first + 1
                    ),
                );
            } else if !sink.name.is_empty() {
                first_use.insert(&sink.name, index);
            }
            if let Some(sink) = validate_sink(sink, &label, &mut report) {
                sinks.push(sink);
            }
        }

        if report.errors.is_empty() {
            Ok(Config {
                catch_all_topic: self.catch_all_topic.clone(),
                sinks,
                warnings: report.warnings,
            })
        } else {
            Err(ValidationErrors {
                errors: report.errors,
                warnings: report.warnings,
            })
        }
    }
}

/// Problems collected during validation.
#[derive(Debug, Default)]
struct Report {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Report {
    fn error(&mut self, component: &str, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            component: component.to_owned(),
            message: message.into(),
        });
    }

    /// Compiles `text`, recording its error or warnings under `component`.
    fn compile(&mut self, component: &str, text: &str) -> Option<LogFilter> {
        // A multi-line TOML string keeps the line break before its closing quotes. Without
        // it, an error at the end of the filter points at its last line, not an empty one.
        let text = text.trim_end_matches(['\n', '\r']);
        match LogFilter::new(text) {
            Ok(filter) => {
                for warning in filter.warnings() {
                    self.warnings.push(Diagnostic {
                        component: component.to_owned(),
                        message: render_warning(warning, text),
                    });
                }
                Some(filter)
            }
            Err(err) => {
                self.error(component, err.render(text));
                None
            }
        }
    }
}

/// Names a sink or exclusion by its name, or by its 1-based position when it has none.
fn component_label(kind: &str, name: &str, index: usize) -> String {
    if name.is_empty() {
        format!("{kind} #{}", index + 1)
    } else {
        format!("{kind} {name:?}")
    }
}

fn validate_sink(sink: &SinkConfig, label: &str, report: &mut Report) -> Option<Sink> {
    check_name(&sink.name, "sink", label, report);
    if sink.destination.trim().is_empty() {
        report.error(
            label,
            "destination is missing: set it to the name of the topic that receives matching \
             entries",
        );
    }
    let filter = report.compile(label, &sink.filter);

    let mut first_use: HashMap<&str, usize> = HashMap::new();
    let mut exclusions = Vec::with_capacity(sink.exclusions.len());
    for (index, exclusion) in sink.exclusions.iter().enumerate() {
        let exclusion_label = format!(
            "{label}: {}",
            component_label("exclusion", &exclusion.name, index)
        );
        if let Some(&first) = first_use.get(exclusion.name.as_str()) {
            report.error(
                &exclusion_label,
                format!(
                    "duplicate name: exclusion #{} of this sink has the same name, and names \
                     must be unique within a sink",
                    first + 1
                ),
            );
        } else if !exclusion.name.is_empty() {
            first_use.insert(&exclusion.name, index);
        }
        if let Some(exclusion) = validate_exclusion(exclusion, &exclusion_label, report) {
            exclusions.push(exclusion);
        }
    }

    Some(Sink {
        name: sink.name.clone(),
        filter: filter?,
        destination: sink.destination.clone(),
        disabled: sink.disabled,
        exclusions,
    })
}

fn validate_exclusion(
    exclusion: &ExclusionConfig,
    label: &str,
    report: &mut Report,
) -> Option<Exclusion> {
    check_name(&exclusion.name, "exclusion", label, report);
    // An empty filter, or one of only comments, matches every entry.
    if filter::parse(&exclusion.filter).is_ok_and(|query| query.expr.is_none()) {
        report.error(
            label,
            "filter is empty, so the exclusion would exclude every entry that the sink matches: \
             write a filter for the entries to drop, or remove the exclusion",
        );
        return None;
    }
    Some(Exclusion {
        name: exclusion.name.clone(),
        filter: report.compile(label, &exclusion.filter)?,
        disabled: exclusion.disabled,
    })
}

/// Records an error unless `name` is 1 to [`MAX_NAME_CHARS`] characters of `[A-Za-z0-9_.-]`.
fn check_name(name: &str, kind: &str, label: &str, report: &mut Report) {
    let rule = format!("use 1 to {MAX_NAME_CHARS} characters from A-Z, a-z, 0-9, '_', '.' and '-'");
    if name.is_empty() {
        report.error(
            label,
            format!("name is missing: every {kind} needs a name, {rule}"),
        );
        return;
    }
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_chars || name.chars().count() > MAX_NAME_CHARS {
        report.error(label, format!("invalid name {name:?}: {rule}"));
    }
}

/// Renders a filter warning like [`FilterError::render`]: the message with its position,
/// then the filter line and a caret under the column.
pub(crate) fn render_warning(warning: &Warning, text: &str) -> String {
    let position = Position::of_offset(text, warning.offset);
    // FilterError::render draws the same caret layout, so reuse it for the last two lines.
    let caret = FilterError::at(text, warning.offset, "", "").render(text);
    let (_, context) = caret.split_once('\n').unwrap_or(("", ""));
    format!(
        "filter at line {}, column {}: {}\n{context}",
        position.line, position.column, warning.message
    )
}

#[cfg(test)]
mod tests;
