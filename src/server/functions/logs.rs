//! Function output as Cloud Logging entries.
//!
//! Each line a function process writes becomes one LogEntry, as Cloud Functions (1st gen)
//! writes them: `resource.type` `cloud_function` with the function's name in
//! `resource.labels.function_name`, severity INFO for stdout and ERROR for stderr, and a
//! `textPayload`. A line that is a JSON object becomes a `jsonPayload` instead, with the
//! severity taken from its `severity` field. [`LogShipper`] routes the entries through the
//! server's log router, so sinks match them like any other entry, and appends them to
//! `NAME.jsonl` in the logs folder, which `sluice functions logs read` reads.
//!
//! sluice adds entries of its own to a function's log: a WARNING with the number of lines
//! dropped while the queue was full, and an ERROR for each failed call of an event.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::warn;

use crate::server::names;
use crate::server::Ingestor;

/// Lines buffered between the function processes and the shipper. Lines beyond it are
/// dropped and counted, so that a function that floods its output cannot grow memory.
pub(crate) const QUEUE_LINES: usize = 10_000;

/// Most lines routed in one batch.
const BATCH_LINES: usize = 500;

/// How long the shipper waits to fill a batch after its first line.
const BATCH_WAIT: Duration = Duration::from_millis(100);

/// Maximum length of a line, in bytes. A longer line is cut at a character boundary at or
/// below it, and [`truncation_marker`] is appended.
pub(crate) const MAX_LINE_BYTES: usize = 256 * 1024;

/// The minimum interval between two dropped-lines warnings of a function while its output
/// keeps the queue full. Once the queue drains, the pending count is written at once.
const DROPPED_NOTICE_INTERVAL: Duration = Duration::from_secs(5);

/// The size at which a function's log file is moved to `NAME.jsonl.1`, replacing the older
/// one, so that the logs of a function take at most twice this on disk.
const MAX_LOG_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The severities of the Logging API, which a structured line's `severity` may name.
const SEVERITIES: [&str; 9] = [
    "DEFAULT",
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "ALERT",
    "EMERGENCY",
];

/// The source of a line: an output stream of the function, or sluice itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
    /// An entry that sluice writes about the function, such as a failed call, with its
    /// Logging severity. Its text is always a `textPayload`.
    Sluice {
        severity: &'static str,
    },
}

/// One line of a function's output.
#[derive(Debug)]
pub(crate) struct LogLine {
    pub(crate) function: String,
    pub(crate) stream: Stream,
    pub(crate) text: String,
}

/// The sending side of the shipper, cloned into every function process.
#[derive(Debug, Clone)]
pub(crate) struct LogSender {
    lines: mpsc::Sender<LogLine>,
    dropped: Arc<DroppedLines>,
}

/// Lines dropped because the queue was full, shared by the senders and the shipper.
#[derive(Debug, Default)]
struct DroppedLines {
    /// Every line dropped since the server started, for the rate limit of the server's
    /// warning.
    total: AtomicU64,
    /// Lines dropped per function and not yet reported in the function's log.
    pending: Mutex<BTreeMap<String, u64>>,
}

impl DroppedLines {
    fn add(&self, function: &str) {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        if total.is_power_of_two() {
            warn!(
                function,
                dropped = total,
                "function log queue full; lines dropped"
            );
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        *pending.entry(function.to_owned()).or_default() += 1;
    }

    /// Takes the pending counts and returns one WARNING line per function.
    fn take_notices(&self) -> Vec<LogLine> {
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        pending
            .into_iter()
            .map(|(function, count)| LogLine {
                function,
                stream: Stream::Sluice {
                    severity: "WARNING",
                },
                text: dropped_notice(count),
            })
            .collect()
    }

    fn has_pending(&self) -> bool {
        !self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// Returns the text of the entry that reports `count` dropped lines.
fn dropped_notice(count: u64) -> String {
    let lines = if count == 1 { "line" } else { "lines" };
    format!(
        "{count} {lines} of output dropped: the function wrote faster than sluice stores its \
         logs, and the log queue of {QUEUE_LINES} lines was full"
    )
}

/// Returns the text appended to a line cut at [`MAX_LINE_BYTES`], with the number of bytes
/// cut off.
pub(crate) fn truncation_marker(cut_bytes: usize) -> String {
    format!("\u{2026} [truncated {cut_bytes} bytes]")
}

/// Cuts `text` to at most [`MAX_LINE_BYTES`] at a character boundary and appends
/// [`truncation_marker`]; shorter text stays as it is.
fn truncate_line(text: &mut String) {
    if text.len() <= MAX_LINE_BYTES {
        return;
    }
    let mut end = MAX_LINE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut_bytes = text.len() - end;
    text.truncate(end);
    text.push_str(&truncation_marker(cut_bytes));
}

impl LogSender {
    /// Queues one line of the function's output; drops and counts it when the queue is full.
    pub(crate) fn send(&self, function: &str, stream: Stream, text: String) {
        self.send_cut(function, stream, text, 0);
    }

    /// Queues one line of which the reader kept only the start, after it cut `cut_bytes`.
    /// The marker then gives that count. A line with nothing cut is cut here if too long.
    pub(crate) fn send_cut(
        &self,
        function: &str,
        stream: Stream,
        mut text: String,
        cut_bytes: usize,
    ) {
        if cut_bytes == 0 {
            truncate_line(&mut text);
        } else {
            text.push_str(&truncation_marker(cut_bytes));
        }
        let line = LogLine {
            function: function.to_owned(),
            stream,
            text,
        };
        if self.lines.try_send(line).is_err() {
            self.dropped.add(function);
        }
    }

    /// Queues an entry that sluice writes into the function's log, with `severity`.
    pub(crate) fn report(&self, function: &str, severity: &'static str, text: String) {
        self.send(function, Stream::Sluice { severity }, text);
    }
}

/// Routes function output through the log router and into the per-function log files.
#[derive(Debug)]
pub(crate) struct LogShipper;

impl LogShipper {
    /// Starts the shipper task, which ends when every [`LogSender`] is dropped.
    pub(crate) fn start(ingestor: Ingestor, dir: PathBuf) -> LogSender {
        let (lines, mut received) = mpsc::channel::<LogLine>(QUEUE_LINES);
        let dropped = Arc::new(DroppedLines::default());
        let shipper_dropped = dropped.clone();
        tokio::spawn(async move {
            let sequence = AtomicU64::new(0);
            let mut failures: u64 = 0;
            let mut last_notice = tokio::time::Instant::now();
            while let Some(batch) =
                next_batch(&mut received, &shipper_dropped, &mut last_notice).await
            {
                if batch.is_empty() {
                    continue;
                }
                let entries: Vec<(String, String)> = batch
                    .iter()
                    .map(|line| {
                        let id = sequence.fetch_add(1, Ordering::Relaxed);
                        (line.function.clone(), to_entry(line, id).to_string())
                    })
                    .collect();
                let folder = dir.clone();
                let written = entries.clone();
                let appended =
                    tokio::task::spawn_blocking(move || append_entries(&folder, &written)).await;
                if let Ok(Err(err)) = appended {
                    warn!(error = %err, "failed to write function logs");
                }
                let texts = entries.into_iter().map(|(_, entry)| entry).collect();
                if let Err(status) = ingestor.ingest(texts).await {
                    failures += 1;
                    if failures.is_power_of_two() {
                        warn!(error = %status, failures, "failed to route function logs");
                    }
                }
            }
        });
        LogSender { lines, dropped }
    }
}

/// Waits for the next batch: up to [`BATCH_LINES`] lines, collected for up to
/// [`BATCH_WAIT`] after the first. Adds the pending dropped-lines notices once the queue has
/// drained, or every [`DROPPED_NOTICE_INTERVAL`] while it stays full. The notices go into
/// the batch directly, so they need no room in the queue. Returns `None` once every
/// [`LogSender`] is gone.
async fn next_batch(
    received: &mut mpsc::Receiver<LogLine>,
    dropped: &DroppedLines,
    last_notice: &mut tokio::time::Instant,
) -> Option<Vec<LogLine>> {
    // With notices pending, an empty queue must not hold them back until the next line.
    let first = if dropped.has_pending() {
        match tokio::time::timeout(BATCH_WAIT, received.recv()).await {
            Ok(line) => Some(line?),
            Err(_) => None,
        }
    } else {
        Some(received.recv().await?)
    };
    let mut batch = Vec::new();
    if let Some(first) = first {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH_LINES {
            match tokio::time::timeout_at(deadline, received.recv()).await {
                Ok(Some(line)) => batch.push(line),
                Ok(None) | Err(_) => break,
            }
        }
    }
    let drained = batch.len() < BATCH_LINES;
    if dropped.has_pending() && (drained || last_notice.elapsed() >= DROPPED_NOTICE_INTERVAL) {
        batch.extend(dropped.take_notices());
        *last_notice = tokio::time::Instant::now();
    }
    Some(batch)
}

/// Builds the LogEntry of one line; `id` makes the entry's `insertId` unique.
pub(crate) fn to_entry(line: &LogLine, id: u64) -> Value {
    let project = names::config_project();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut entry = json!({
        "logName": format!("projects/{project}/logs/cloudfunctions.googleapis.com%2Fcloud-functions"),
        "resource": {
            "type": "cloud_function",
            "labels": {
                "function_name": line.function,
                "project_id": project,
                "region": "local",
            }
        },
        "timestamp": now,
        "receiveTimestamp": now,
        "insertId": format!("{:x}-{id}", std::process::id()),
    });
    let mut severity = match line.stream {
        Stream::Stdout => "INFO",
        Stream::Stderr => "ERROR",
        Stream::Sluice { severity } => severity,
    }
    .to_owned();
    let parsed = match line.stream {
        Stream::Sluice { .. } => None,
        Stream::Stdout | Stream::Stderr => serde_json::from_str::<Value>(&line.text).ok(),
    };
    match parsed {
        Some(Value::Object(mut payload)) => {
            if let Some(named) = take_severity(&mut payload) {
                severity = named;
            }
            take_special_fields(&mut payload, &mut entry);
            entry["jsonPayload"] = Value::Object(payload);
        }
        _ => entry["textPayload"] = Value::String(line.text.clone()),
    }
    entry["severity"] = Value::String(severity);
    entry
}

/// The special fields of a structured line, as Cloud Logging's structured logging names them,
/// with the LogEntry field that each one sets.
const SPECIAL_FIELDS: [(&str, &str); 8] = [
    ("logging.googleapis.com/insertId", "insertId"),
    ("logging.googleapis.com/labels", "labels"),
    ("logging.googleapis.com/operation", "operation"),
    ("logging.googleapis.com/sourceLocation", "sourceLocation"),
    ("logging.googleapis.com/spanId", "spanId"),
    ("logging.googleapis.com/trace", "trace"),
    ("logging.googleapis.com/trace_sampled", "traceSampled"),
    ("httpRequest", "httpRequest"),
];

/// Moves the special fields of a structured line from its payload into the entry. A field
/// whose value has the wrong type stays in the payload, as Cloud Logging leaves it.
fn take_special_fields(payload: &mut Map<String, Value>, entry: &mut Value) {
    for (field, entry_field) in SPECIAL_FIELDS {
        let Some(value) = payload.get(field) else {
            continue;
        };
        let fits = match entry_field {
            "insertId" | "spanId" | "trace" => value.is_string(),
            "traceSampled" => value.is_boolean(),
            "labels" => value
                .as_object()
                .is_some_and(|labels| labels.values().all(Value::is_string)),
            _ => value.is_object(),
        };
        if fits {
            if let Some(value) = payload.remove(field) {
                entry[entry_field] = value;
            }
        }
    }
}

/// Removes a structured line's `severity` and returns it when it names a Logging severity,
/// in any case.
fn take_severity(payload: &mut Map<String, Value>) -> Option<String> {
    let named = payload.get("severity")?.as_str()?.to_ascii_uppercase();
    if !SEVERITIES.contains(&named.as_str()) {
        return None;
    }
    payload.remove("severity");
    Some(named)
}

fn log_file(dir: &Path, function: &str) -> PathBuf {
    dir.join(format!("{function}.jsonl"))
}

/// Appends each `(function, entry)` to its function's file, rotating a full file first.
fn append_entries(dir: &Path, entries: &[(String, String)]) -> anyhow::Result<()> {
    // Functions may print their secrets, so only sluice's user reads the logs, as the records.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("failed to create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("failed to make {} private", dir.display()))?;
    let mut functions: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    functions.sort_unstable();
    functions.dedup();
    for function in functions {
        let path = log_file(dir, function);
        if std::fs::metadata(&path).is_ok_and(|meta| meta.len() > MAX_LOG_FILE_BYTES) {
            std::fs::rename(&path, path.with_extension("jsonl.1"))
                .with_context(|| format!("failed to rotate {}", path.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        let mut text = String::new();
        for (_, entry) in entries.iter().filter(|(name, _)| name == function) {
            text.push_str(entry);
            text.push('\n');
        }
        file.write_all(text.as_bytes())
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

/// Returns the newest `limit` entries of a function, oldest first.
///
/// # Errors
///
/// Fails when a log file exists but cannot be read.
pub(crate) fn read_entries(dir: &Path, function: &str, limit: usize) -> anyhow::Result<Vec<Value>> {
    let current = log_file(dir, function);
    let mut newest: VecDeque<Value> = VecDeque::with_capacity(limit.min(10_000));
    for path in [current.with_extension("jsonl.1"), current] {
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("failed to read {}", path.display()))
            }
        };
        for line in std::io::BufReader::new(file).lines() {
            let line = line.with_context(|| format!("failed to read {}", path.display()))?;
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                // A line cut short by a crash during the write.
                continue;
            };
            if newest.len() == limit {
                newest.pop_front();
            }
            if limit > 0 {
                newest.push_back(entry);
            }
        }
    }
    Ok(newest.into())
}

/// Returns whether a function has a log file.
pub(crate) fn exists(dir: &Path, function: &str) -> bool {
    log_file(dir, function).is_file()
}

/// Deletes a function's log files.
pub(crate) fn remove(dir: &Path, function: &str) {
    let current = log_file(dir, function);
    for path in [current.with_extension("jsonl.1"), current] {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: Stream, text: &str) -> LogLine {
        LogLine {
            function: "thumbs".to_owned(),
            stream,
            text: text.to_owned(),
        }
    }

    #[test]
    fn plain_lines_take_stream_severity() {
        let out = to_entry(&line(Stream::Stdout, "hello"), 1);
        assert_eq!(out["severity"], "INFO");
        assert_eq!(out["textPayload"], "hello");
        assert_eq!(out["resource"]["type"], "cloud_function");
        assert_eq!(out["resource"]["labels"]["function_name"], "thumbs");
        let err = to_entry(&line(Stream::Stderr, "boom"), 2);
        assert_eq!(err["severity"], "ERROR");
    }

    #[test]
    fn structured_lines_take_their_severity() {
        let entry = to_entry(
            &line(
                Stream::Stdout,
                r#"{"severity": "warning", "message": "slow"}"#,
            ),
            1,
        );
        assert_eq!(entry["severity"], "WARNING");
        assert_eq!(entry["jsonPayload"], json!({"message": "slow"}));
        assert!(entry.get("textPayload").is_none());
    }

    #[test]
    fn special_fields_move_to_entry() {
        let entry = to_entry(
            &line(
                Stream::Stdout,
                r#"{"message":"done","logging.googleapis.com/labels":{"order":"42"},"logging.googleapis.com/trace":"projects/local/traces/4bf92f3577b34da6a3ce929d0e0e4736","logging.googleapis.com/spanId":"00f067aa0ba902b7","logging.googleapis.com/trace_sampled":true}"#,
            ),
            1,
        );
        assert_eq!(entry["labels"], json!({"order": "42"}));
        assert_eq!(
            entry["trace"],
            "projects/local/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(entry["spanId"], "00f067aa0ba902b7");
        assert_eq!(entry["traceSampled"], true);
        assert_eq!(entry["jsonPayload"], json!({"message": "done"}));
    }

    #[test]
    fn special_field_of_wrong_type_stays_in_payload() {
        let entry = to_entry(
            &line(
                Stream::Stdout,
                r#"{"logging.googleapis.com/labels":{"count":3}}"#,
            ),
            1,
        );
        assert!(entry.get("labels").is_none(), "{entry}");
        assert_eq!(
            entry["jsonPayload"]["logging.googleapis.com/labels"],
            json!({"count": 3})
        );
    }

    #[test]
    fn unknown_severity_stays_in_payload() {
        let entry = to_entry(&line(Stream::Stderr, r#"{"severity": "LOUD"}"#), 1);
        assert_eq!(entry["severity"], "ERROR");
        assert_eq!(entry["jsonPayload"]["severity"], "LOUD");
    }

    fn test_sender(capacity: usize) -> (LogSender, mpsc::Receiver<LogLine>) {
        let (lines, received) = mpsc::channel(capacity);
        let sender = LogSender {
            lines,
            dropped: Arc::default(),
        };
        (sender, received)
    }

    #[test]
    fn long_line_ends_with_marker() {
        let (sender, mut received) = test_sender(4);
        // One ASCII byte first, so that MAX_LINE_BYTES falls inside a two-byte character.
        let text = format!("x{}", "é".repeat(MAX_LINE_BYTES / 2));
        sender.send("thumbs", Stream::Stdout, text.clone());
        let line = received.try_recv().expect("the line is queued");
        let marker_at = line.text.find('\u{2026}').expect("a truncation marker");
        assert_eq!(
            marker_at,
            MAX_LINE_BYTES - 1,
            "cut at the character boundary"
        );
        assert!(text.starts_with(&line.text[..marker_at]));
        let cut_bytes = text.len() - marker_at;
        assert!(
            line.text
                .ends_with(&format!("[truncated {cut_bytes} bytes]")),
            "{}",
            &line.text[marker_at..]
        );
    }

    #[test]
    fn line_cut_by_reader_counts_its_cut() {
        let (sender, mut received) = test_sender(4);
        let kept = "x".repeat(MAX_LINE_BYTES);
        sender.send_cut("thumbs", Stream::Stdout, kept.clone(), 737_856);
        let line = received.try_recv().expect("the line is queued");
        assert_eq!(line.text, format!("{kept}{}", truncation_marker(737_856)));
    }

    #[test]
    fn log_files_are_private() {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().join("logs");
        append_entries(&dir, &[("thumbs".to_owned(), "{}".to_owned())]).expect("append");
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&dir), 0o700, "the logs folder");
        assert_eq!(mode(&dir.join("thumbs.jsonl")), 0o600, "the log file");
    }

    #[test]
    fn short_line_stays_whole() {
        let (sender, mut received) = test_sender(4);
        let text = "x".repeat(MAX_LINE_BYTES);
        sender.send("thumbs", Stream::Stdout, text.clone());
        let line = received.try_recv().expect("the line is queued");
        assert_eq!(line.text, text);
    }

    #[test]
    fn dropped_lines_become_one_warning() {
        let (sender, _received) = test_sender(1);
        for i in 0..4 {
            sender.send("thumbs", Stream::Stdout, format!("line {i}"));
        }
        sender.send("other", Stream::Stdout, "late".to_owned());
        let notices = sender.dropped.take_notices();
        assert_eq!(notices.len(), 2, "one notice per function");
        let notice = &notices[1];
        assert_eq!(notice.function, "thumbs");
        assert!(
            notice.text.starts_with("3 lines of output dropped"),
            "{}",
            notice.text
        );
        let entry = to_entry(notice, 1);
        assert_eq!(entry["severity"], "WARNING");
        assert!(
            sender.dropped.take_notices().is_empty(),
            "a count is reported once"
        );
    }

    #[tokio::test]
    async fn notice_follows_full_last_batch() {
        let (sender, mut received) = test_sender(BATCH_LINES);
        for i in 0..BATCH_LINES + 3 {
            sender.send("thumbs", Stream::Stdout, format!("line {i}"));
        }
        let mut last_notice = tokio::time::Instant::now();
        let first = next_batch(&mut received, &sender.dropped, &mut last_notice)
            .await
            .expect("a batch");
        assert_eq!(
            first.len(),
            BATCH_LINES,
            "a full batch waits for the queue to drain"
        );
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            next_batch(&mut received, &sender.dropped, &mut last_notice),
        );
        let second = waited
            .await
            .expect("the notice does not wait for another line")
            .expect("a batch");
        assert_eq!(second.len(), 1, "the notice comes without another line");
        assert_eq!(second[0].text, dropped_notice(3));
    }

    #[test]
    fn sluice_entries_keep_their_severity() {
        let entry = to_entry(
            &line(
                Stream::Sluice { severity: "ERROR" },
                r#"{"severity": "INFO"}"#,
            ),
            1,
        );
        assert_eq!(entry["severity"], "ERROR");
        assert_eq!(entry["textPayload"], r#"{"severity": "INFO"}"#);
    }

    #[test]
    fn read_entries_returns_newest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let entries: Vec<(String, String)> = (0..5)
            .map(|i| ("f".to_owned(), json!({ "n": i }).to_string()))
            .collect();
        append_entries(dir.path(), &entries).expect("append");
        let read = read_entries(dir.path(), "f", 2).expect("read");
        assert_eq!(read, vec![json!({"n": 3}), json!({"n": 4})]);
        assert!(read_entries(dir.path(), "other", 2)
            .expect("read")
            .is_empty());
    }
}
