//! `sluice-bench-report`: turns the results directory that `scripts/bench` fills into the
//! results section of docs/benchmarks.md and one PNG chart per benchmark.

mod charts;
mod page;
mod results;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

/// The markers around the part of the page that a run writes.
const BEGIN: &str = "<!-- scripts/bench results: begin -->";
const END: &str = "<!-- scripts/bench results: end -->";

#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench-report",
    about = "Writes the benchmark results section and charts from a scripts/bench results directory"
)]
struct Cli {
    /// The results directory that scripts/bench filled.
    #[arg(long)]
    results: PathBuf,
    /// The Markdown page whose results section is replaced (created when missing). The rest
    /// of the page is kept.
    #[arg(long)]
    page: PathBuf,
    /// The directory the PNG charts are written into (created when missing).
    #[arg(long)]
    charts: PathBuf,
    /// The TrueType font the charts' text is drawn in.
    #[arg(long, default_value = charts::DEFAULT_FONT)]
    font: PathBuf,
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report_error(&format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    charts::load_font(&cli.font)?;
    let results = results::Results::read(&cli.results)?;
    // The page is checked before any chart is drawn, so that charts and page never disagree.
    let old = match std::fs::read_to_string(&cli.page) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", cli.page.display())),
    };
    if replace_section(&old, "").is_none() {
        anyhow::bail!(
            "{} has no results section; add the lines {BEGIN} and {END} where it goes",
            cli.page.display()
        );
    }
    if let Some(parent) = cli.page.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::create_dir_all(&cli.charts)
        .with_context(|| format!("cannot create {}", cli.charts.display()))?;
    let section = page::render(&results, &cli.charts, &link_prefix(&cli.page, &cli.charts))?;
    let new = replace_section(&old, &section).unwrap_or(section);
    std::fs::write(&cli.page, new).with_context(|| format!("cannot write {}", cli.page.display()))
}

/// The charts directory as a link from the page: relative when it is under the page's
/// directory, absolute otherwise.
fn link_prefix(page: &Path, charts: &Path) -> String {
    let base = page.parent().unwrap_or(Path::new(""));
    let relative = charts.strip_prefix(base).unwrap_or(charts);
    let mut prefix = relative.to_string_lossy().into_owned();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    prefix
}

/// Puts `section` between the markers of `page`, or makes a page of only the section when
/// `page` is empty. `None` when a non-empty page lacks the markers.
fn replace_section(page: &str, section: &str) -> Option<String> {
    let wrapped = format!("{BEGIN}\n{section}{END}\n");
    if page.trim().is_empty() {
        return Some(wrapped);
    }
    let start = page.find(BEGIN)?;
    let end = page[start..].find(END)? + start;
    let after = page[end + END.len()..].trim_start_matches('\n');
    let separator = if after.is_empty() { "" } else { "\n" };
    Some(format!("{}{wrapped}{separator}{after}", &page[..start]))
}

#[allow(clippy::print_stderr, reason = "errors go to stderr")]
fn report_error(message: &str) {
    eprintln!("error: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_replaced_between_markers() {
        let page = format!("# Title\n\n{BEGIN}\nold\n{END}\n\n## Kept\n");
        let new = replace_section(&page, "new\n").expect("markers found");
        assert_eq!(new, format!("# Title\n\n{BEGIN}\nnew\n{END}\n\n## Kept\n"));
    }

    #[test]
    fn page_without_markers_is_rejected() {
        assert_eq!(replace_section("# Title\n", "new\n"), None);
    }

    #[test]
    fn empty_page_gets_the_section() {
        assert_eq!(
            replace_section("", "new\n"),
            Some(format!("{BEGIN}\nnew\n{END}\n"))
        );
    }

    #[test]
    fn chart_links_are_relative_to_the_page() {
        assert_eq!(
            link_prefix(
                Path::new("docs/benchmarks.md"),
                Path::new("docs/benchmarks")
            ),
            "benchmarks/"
        );
        assert_eq!(
            link_prefix(Path::new("docs/benchmarks.md"), Path::new("/tmp/charts")),
            "/tmp/charts/"
        );
    }
}
