//! `sluice rules test`: runs one Logging filter over sample entries, like grep.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use sluice_router::filter::{Explanation, LogFilter};

use super::input::{read_entries, Entry, Item, Location, ReadError};
use super::write_stderr;
use crate::config::render_warning;

/// Exit status when at least one entry matched.
const EXIT_MATCH: u8 = 0;
/// Exit status when no entry matched.
const EXIT_NO_MATCH: u8 = 1;
/// Exit status for an invalid filter, invalid input or an I/O error.
const EXIT_ERROR: u8 = 2;

/// Buffer size for reading input files and for writing stdout.
const BUFFER_BYTES: usize = 64 * 1024;

/// Details printed by `sluice rules test --help`.
const AFTER_LONG_HELP: &str = "\
Input: one LogEntry JSON object per line (JSON Lines), or one JSON array of
entries as `gcloud logging read --format=json` prints, recognized by `[` as its
first non-blank character. Blank lines are skipped.

Output: every matching entry on its own line, in input order. JSON Lines are
printed byte for byte as read. Array elements are printed as compact JSON with
their keys in input order.

Exit status: 0 if any entry matched, 1 if none did, 2 if the filter or any
input was invalid or reading failed. As in grep, an error wins over a match.
An invalid input line is reported on stderr as FILE:LINE, and the other lines
are still processed.

Examples:
  sluice rules test -f 'resource.type=\"gcs_bucket\"' entries.jsonl
  sluice rules test -f 'severity>=ERROR' --explain entries.jsonl
  gcloud logging read --format=json --limit=1000 | sluice rules test -f 'severity>=ERROR' -c";

/// Print the LogEntry JSON objects that a Logging filter matches, like grep.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct TestArgs {
    /// Filter to test, in the Logging query language, as written in a sink's `filter`
    #[arg(
        long,
        short = 'f',
        value_name = "FILTER",
        allow_hyphen_values = true,
        required_unless_present = "filter_file",
        conflicts_with = "filter_file"
    )]
    filter: Option<String>,

    /// File to read the filter from, in place of --filter, for filters over several lines
    #[arg(long, value_name = "PATH")]
    filter_file: Option<PathBuf>,

    /// Print only the number of matching entries
    #[arg(long, short = 'c', conflicts_with = "explain")]
    count: bool,

    /// Print every entry's result with the result of each clause and the values it compared
    #[arg(long)]
    explain: bool,

    /// With --explain, print one JSON object per entry in place of the clause tree
    #[arg(long, requires = "explain")]
    json: bool,

    /// LogEntry input file; `-` or no FILE reads standard input
    #[arg(value_name = "FILE")]
    input: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Print,
    Count,
    Explain,
    ExplainJson,
}

/// Runs `sluice rules test` and returns its exit status.
pub(crate) fn run(args: &TestArgs) -> ExitCode {
    let Some(filter) = load_filter(args) else {
        return ExitCode::from(EXIT_ERROR);
    };
    let (reader, source) = match open_input(args.input.as_deref()) {
        Ok(input) => input,
        Err(err) => return fail(&err),
    };
    let mode = match (args.count, args.explain, args.json) {
        (true, _, _) => Mode::Count,
        (false, true, false) => Mode::Explain,
        (false, true, true) => Mode::ExplainJson,
        (false, false, _) => Mode::Print,
    };
    let mut scan = Scan {
        filter: &filter,
        mode,
        source: &source,
        out: BufWriter::with_capacity(BUFFER_BYTES, io::stdout().lock()),
        matched: 0,
        invalid: 0,
    };

    let result = read_entries(reader, &mut |item| scan.handle(item))
        .and_then(|()| scan.finish().map_err(ReadError::Output));
    let failed = match result {
        Ok(()) => false,
        // A reader such as `head` closed the pipe, so nobody reads the rest: stop quietly.
        Err(ReadError::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => false,
        Err(ReadError::Output(err)) => {
            write_stderr(format_args!("error: failed to write output: {err}"));
            true
        }
        Err(ReadError::Input(err)) => {
            write_stderr(format_args!("error: failed to read {source}: {err}"));
            true
        }
    };

    let status = if failed || scan.invalid > 0 {
        EXIT_ERROR
    } else if scan.matched > 0 {
        EXIT_MATCH
    } else {
        EXIT_NO_MATCH
    };
    ExitCode::from(status)
}

/// Reads and compiles the filter, printing its warnings. Prints the error and returns
/// `None` when the filter cannot be read or is invalid.
fn load_filter(args: &TestArgs) -> Option<LogFilter> {
    let (text, location) = match read_filter(args) {
        Ok(filter) => filter,
        Err(err) => {
            fail(&err);
            return None;
        }
    };
    let filter = match LogFilter::new(&text) {
        Ok(filter) => filter,
        Err(err) => {
            write_stderr(format_args!("error: {location}{}", err.render(&text)));
            return None;
        }
    };
    for warning in filter.warnings() {
        let rendered = render_warning(warning, &text);
        write_stderr(format_args!("warning: {location}{rendered}"));
    }
    Some(filter)
}

fn fail(err: &anyhow::Error) -> ExitCode {
    write_stderr(format_args!("error: {err:#}"));
    ExitCode::from(EXIT_ERROR)
}

/// Returns the filter text and the prefix that locates it in messages: empty for --filter,
/// `PATH: ` for --filter-file.
fn read_filter(args: &TestArgs) -> anyhow::Result<(String, String)> {
    match (&args.filter, &args.filter_file) {
        (Some(text), _) => Ok((text.clone(), String::new())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read filter file {}", path.display()))?;
            // Without the final line break, an error at the end of the filter points at its
            // last line instead of an empty line after it.
            let text = text.trim_end_matches(['\n', '\r']).to_owned();
            Ok((text, format!("{}: ", path.display())))
        }
        (None, None) => anyhow::bail!("missing filter: pass --filter or --filter-file"),
    }
}

/// Opens the input and returns it with the name that messages use for it.
fn open_input(path: Option<&Path>) -> anyhow::Result<(Box<dyn BufRead>, String)> {
    match path {
        None => Ok((Box::new(io::stdin().lock()), "<stdin>".to_owned())),
        Some(path) if path.as_os_str() == "-" => {
            Ok((Box::new(io::stdin().lock()), "<stdin>".to_owned()))
        }
        Some(path) => {
            let file = File::open(path)
                .with_context(|| format!("failed to open input file {}", path.display()))?;
            let reader = BufReader::with_capacity(BUFFER_BYTES, file);
            Ok((Box::new(reader), path.display().to_string()))
        }
    }
}

/// State of one pass over the input.
struct Scan<'a, W: Write> {
    filter: &'a LogFilter,
    mode: Mode,
    /// Input name for error messages.
    source: &'a str,
    out: W,
    matched: u64,
    invalid: u64,
}

impl<W: Write> Scan<'_, W> {
    fn handle(&mut self, item: Item<'_>) -> io::Result<()> {
        match item {
            Item::Entry(entry) => self.handle_entry(&entry),
            Item::Invalid { location, message } => {
                self.invalid += 1;
                // Flush first so that the message follows the output of earlier entries.
                self.out.flush()?;
                let source = self.source;
                match location.line {
                    Some(line) => write_stderr(format_args!("{source}:{line}: {message}")),
                    None => write_stderr(format_args!(
                        "{source}: entry {}: {message}",
                        location.number
                    )),
                }
                Ok(())
            }
        }
    }

    fn handle_entry(&mut self, entry: &Entry<'_>) -> io::Result<()> {
        match self.mode {
            Mode::Print => {
                if self.filter.matches(&entry.value) {
                    self.matched += 1;
                    self.out.write_all(entry.text)?;
                    self.out.write_all(b"\n")?;
                }
            }
            Mode::Count => {
                if self.filter.matches(&entry.value) {
                    self.matched += 1;
                }
            }
            Mode::Explain | Mode::ExplainJson => {
                let explanation = self.filter.explain(&entry.value);
                if explanation.matched {
                    self.matched += 1;
                }
                let insert_id = entry.value.get("insertId").and_then(|id| id.as_str());
                if matches!(self.mode, Mode::ExplainJson) {
                    write_explanation_json(&mut self.out, entry.location, insert_id, &explanation)?;
                } else {
                    write_explanation(&mut self.out, entry.location, insert_id, &explanation)?;
                }
            }
        }
        Ok(())
    }

    /// Prints the count in count mode and flushes the output.
    fn finish(&mut self) -> io::Result<()> {
        if matches!(self.mode, Mode::Count) {
            writeln!(self.out, "{}", self.matched)?;
        }
        self.out.flush()
    }
}

/// Prints `entry N (line L, insertId ID): MATCH`, the clause tree and a blank line.
fn write_explanation(
    out: &mut impl Write,
    location: Location,
    insert_id: Option<&str>,
    explanation: &Explanation,
) -> io::Result<()> {
    let mut details = Vec::new();
    if let Some(line) = location.line {
        details.push(format!("line {line}"));
    }
    if let Some(id) = insert_id {
        details.push(format!("insertId {id}"));
    }
    write!(out, "entry {}", location.number)?;
    if !details.is_empty() {
        write!(out, " ({})", details.join(", "))?;
    }
    let verdict = if explanation.matched {
        "MATCH"
    } else {
        "NO MATCH"
    };
    writeln!(out, ": {verdict}")?;

    // The Display form starts with its own MATCH or NO MATCH line, which the header replaces.
    let rendered = explanation.to_string();
    let tree = match rendered.split_once('\n') {
        Some((first, tree)) if first == verdict => tree,
        _ => rendered.as_str(),
    };
    out.write_all(tree.as_bytes())?;
    writeln!(out)
}

/// One `--explain --json` output line.
#[derive(Serialize)]
struct ExplanationRecord<'a> {
    entry: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(rename = "insertId", skip_serializing_if = "Option::is_none")]
    insert_id: Option<&'a str>,
    /// `matched` and `root`, the clause tree.
    #[serde(flatten)]
    explanation: &'a Explanation,
}

fn write_explanation_json(
    out: &mut impl Write,
    location: Location,
    insert_id: Option<&str>,
    explanation: &Explanation,
) -> io::Result<()> {
    let record = ExplanationRecord {
        entry: location.number,
        line: location.line,
        insert_id,
        explanation,
    };
    serde_json::to_writer(&mut *out, &record)?;
    writeln!(out)
}
