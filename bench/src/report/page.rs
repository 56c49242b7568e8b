//! The Markdown section of docs/benchmarks.md that a run writes, and its charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::charts::{format_number, BarChart};
use crate::results::{median, Case, Results, Runs};

/// The systems of the messaging comparison, as the load generator names them.
const SYSTEMS: [(&str, &str); 4] = [
    ("sluice", "sluice"),
    ("emulator", "Pub/Sub emulator"),
    ("jetstream", "JetStream"),
    ("sluice-jetstream", "sluice on JetStream"),
];
/// The thumbnail commands, as scripts/bench names them in hyperfine.
const THUMBNAILERS: [&str; 3] = ["sluice", "vipsthumbnail", "convert"];

/// Rounds of a default `scripts/bench` run.
const DEFAULT_ROUNDS: usize = 5;
/// The backlog the memory goal is stated for.
const GOAL_BACKLOG_MESSAGES: u64 = 10_000_000;
/// The goals that the page marks as met or not met.
const PUBLISH_GOAL_VS_EMULATOR: f64 = 3.0;
const DELIVER_GOAL_VS_EMULATOR: f64 = 10.0;
const LATENCY_GOAL_P99_MS: f64 = 5.0;
const ROUTING_GOAL_PER_SECOND: f64 = 200_000.0;
const MEMORY_GOAL_AT_10K_MIB: f64 = 64_000_000.0 / 1_048_576.0;
const MEMORY_GOAL_BACKLOG_MIB: f64 = 256_000_000.0 / 1_048_576.0;

/// Writes the charts into `charts` and returns the Markdown section, with chart links
/// made from `link_prefix`.
pub(crate) fn render(
    results: &Results,
    charts: &Path,
    link_prefix: &str,
) -> anyhow::Result<String> {
    let mut page = String::new();
    page.push_str("## Results of the last `scripts/bench` run\n\n");
    page.push_str(
        "Written by `scripts/bench`; do not edit by hand. Messaging and routing figures are \
         medians over the rounds of the run, and a ratio divides two such medians. Thumbnail \
         times are medians over hyperfine's runs. Peak memories and the backlog come from \
         one run each.\n\n",
    );
    for line in &results.machine {
        let _ = writeln!(page, "- {line}");
    }
    let rounds = results.rounds();
    if rounds > 0 && rounds < DEFAULT_ROUNDS {
        let _ = writeln!(
            page,
            "- **{rounds} round{} only**, fewer than the {DEFAULT_ROUNDS} of a default run, so \
             the medians are weak.",
            if rounds == 1 { "" } else { "s" }
        );
    }
    page.push('\n');
    messaging(results, charts, link_prefix, &mut page)?;
    latency(results, charts, link_prefix, &mut page)?;
    routing(results, charts, link_prefix, &mut page)?;
    thumbnails(results, charts, link_prefix, &mut page)?;
    memory(results, charts, link_prefix, &mut page)?;
    Ok(page)
}

fn rate_median(runs: Option<&Runs>) -> Option<f64> {
    median(runs?.rates.clone())
}

/// `median` followed by the count of runs when some failed, such as `1,234/s (4 of 5)`.
fn rate_cell(runs: Option<&Runs>) -> String {
    let Some(runs) = runs else {
        return "not run".to_owned();
    };
    let failed = runs.failures.len();
    match median(runs.rates.clone()) {
        None if failed > 0 => format!("failed in {failed} of {failed}"),
        None => "no result".to_owned(),
        Some(rate) if failed > 0 => format!(
            "{}/s ({} of {} runs)",
            format_number(rate),
            runs.succeeded,
            runs.attempted()
        ),
        Some(rate) => format!("{}/s", format_number(rate)),
    }
}

fn ratio_cell(numerator: Option<f64>, denominator: Option<f64>) -> String {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => format!("{:.2}×", n / d),
        _ => "–".to_owned(),
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "not met",
        None => "not measured",
    }
}

fn case_label(case: &Case) -> String {
    match case.scenario.as_str() {
        "publish" => format!(
            "publish, {} publisher{}, batch {}",
            case.publishers,
            if case.publishers == 1 { "" } else { "s" },
            case.batch
        ),
        "deliver" => "deliver, one stream with acks".to_owned(),
        other => other.to_owned(),
    }
}

fn short_label(case: &Case) -> String {
    match case.scenario.as_str() {
        "publish" => format!("{}×{}", case.publishers, case.batch),
        "deliver" => "deliver".to_owned(),
        other => other.to_owned(),
    }
}

fn chart_link(page: &mut String, title: &str, link_prefix: &str, file: &str) {
    let _ = writeln!(page, "![{title}]({link_prefix}{file})\n");
}

fn messaging(
    results: &Results,
    charts: &Path,
    link_prefix: &str,
    page: &mut String,
) -> anyhow::Result<()> {
    let mut cases = results.cases("publish");
    cases.extend(results.cases("deliver"));
    if cases.is_empty() {
        return Ok(());
    }
    page.push_str("### Publish and delivery throughput\n\n");
    page.push_str(
        "1 KiB messages. Publish: acknowledged publishes, P publishers × batches of B \
         (a batch of 1 sends a tenth of the messages). Deliver: one StreamingPull stream \
         (a JetStream pull consumer) acknowledging a backlog. Goals: publish at least 3× the \
         emulator and at least JetStream; deliver at least 10× the emulator.\n\n",
    );
    chart_link(
        page,
        "Publish and delivery throughput",
        link_prefix,
        "messaging.png",
    );
    page.push_str(
        "| case | sluice | emulator | JetStream | sluice on JetStream | sluice ÷ emulator \
         | sluice ÷ JetStream | goal |\n|---|---|---|---|---|---|---|---|\n",
    );
    // Systems that took no part in the run, such as sluice on JetStream before it existed,
    // get no bars.
    let ran: Vec<&(&str, &str)> = SYSTEMS
        .iter()
        .filter(|(system, _)| {
            cases
                .iter()
                .any(|(_, systems)| systems.contains_key(*system))
        })
        .collect();
    let mut series: Vec<(String, Vec<Option<f64>>)> = ran
        .iter()
        .map(|(_, label)| ((*label).to_owned(), Vec::new()))
        .collect();
    for (case, systems) in &cases {
        let sluice = rate_median(systems.get("sluice"));
        let emulator = rate_median(systems.get("emulator"));
        let jetstream = rate_median(systems.get("jetstream"));
        let met = match (case.scenario.as_str(), sluice, emulator) {
            ("deliver", Some(s), Some(e)) => Some(s >= DELIVER_GOAL_VS_EMULATOR * e),
            ("publish", Some(s), Some(e)) if s < PUBLISH_GOAL_VS_EMULATOR * e => Some(false),
            // The goal's second half needs a JetStream figure.
            ("publish", Some(_), Some(_)) => jetstream.map(|j| s_at_least(sluice, j)),
            _ => None,
        };
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            case_label(case),
            rate_cell(systems.get("sluice")),
            rate_cell(systems.get("emulator")),
            rate_cell(systems.get("jetstream")),
            rate_cell(systems.get("sluice-jetstream")),
            ratio_cell(sluice, emulator),
            ratio_cell(sluice, jetstream),
            verdict(met),
        );
        for ((system, _), (_, values)) in ran.iter().zip(series.iter_mut()) {
            values.push(rate_median(systems.get(*system)));
        }
    }
    page.push('\n');
    failures(&cases, page);
    BarChart {
        title: "Publish (publishers × batch) and delivery, messages/s",
        y_label: "messages/s (log scale)",
        categories: cases.iter().map(|(case, _)| short_label(case)).collect(),
        series,
        log_scale: true,
        line: None,
    }
    .draw(&charts.join("messaging.png"))
}

/// Lists the first error of each system that failed a case, so a reader sees why.
fn failures(cases: &[(&Case, &BTreeMap<String, Runs>)], page: &mut String) {
    let mut any = false;
    for (case, systems) in cases {
        for (system, runs) in *systems {
            if let Some(error) = runs.failures.first() {
                if !any {
                    page.push_str("Failed runs, with the first error of each:\n\n");
                    any = true;
                }
                let _ = writeln!(
                    page,
                    "- {}, {system}: {} of {}: {}",
                    case_label(case),
                    runs.failures.len(),
                    runs.attempted(),
                    error.lines().next().unwrap_or_default()
                );
            }
        }
    }
    if any {
        page.push('\n');
    }
}

fn latency(
    results: &Results,
    charts: &Path,
    link_prefix: &str,
    page: &mut String,
) -> anyhow::Result<()> {
    let cases = results.cases("latency");
    let Some((_, systems)) = cases.first() else {
        return Ok(());
    };
    let rate = rate_label(results.latency_rate());
    let _ = writeln!(page, "### End-to-end latency at {rate} messages/s\n");
    page.push_str(
        "Publish to receipt over StreamingPull (a JetStream pull consumer), 1 KiB messages, \
         after 1 s of warm-up, on servers that have run nothing before. A run fails when \
         the system falls behind. Goal: sluice's p99 under 5 ms at 10,000 messages/s.\n\n",
    );
    chart_link(page, "Latency", link_prefix, "latency.png");
    page.push_str("| system | p50 | p99 | p99.9 | runs |\n|---|---|---|---|---|\n");
    let mut series = Vec::new();
    let mut sluice_p99 = None;
    for (system, label) in SYSTEMS {
        let Some(runs) = systems.get(system) else {
            continue;
        };
        let ms = |values: &Vec<f64>| median(values.clone()).map(|us| us / 1000.0);
        let (p50, p99, p999) = (ms(&runs.p50_us), ms(&runs.p99_us), ms(&runs.p999_us));
        if system == "sluice" {
            sluice_p99 = p99;
        }
        let cell = |value: Option<f64>| match value {
            Some(ms) => format!("{ms:.2} ms"),
            None => "–".to_owned(),
        };
        let _ = writeln!(
            page,
            "| {label} | {} | {} | {} | {} of {} kept up |",
            cell(p50),
            cell(p99),
            cell(p999),
            runs.p99_us.len(),
            runs.attempted()
        );
        series.push((label.to_owned(), vec![p50, p99, p999]));
    }
    // A run that fell behind has no percentiles, but it fails the goal all the same.
    let sluice_behind = systems.get("sluice").map_or(0, |runs| runs.failures.len());
    let met = if sluice_behind > 0 {
        Some(false)
    } else {
        sluice_p99.map(|p99| p99 < LATENCY_GOAL_P99_MS)
    };
    let _ = writeln!(
        page,
        "\nGoal (sluice's p99 under {LATENCY_GOAL_P99_MS} ms in every run): {}.\n",
        verdict(met)
    );
    failures(&cases, page);
    BarChart {
        title: &format!("Publish-to-receipt latency at {rate} messages/s"),
        y_label: "ms (log scale)",
        categories: vec!["p50".into(), "p99".into(), "p99.9".into()],
        series,
        log_scale: true,
        line: Some((LATENCY_GOAL_P99_MS, "goal: p99 under 5 ms".into())),
    }
    .draw(&charts.join("latency.png"))
}

fn routing(
    results: &Results,
    charts: &Path,
    link_prefix: &str,
    page: &mut String,
) -> anyhow::Result<()> {
    let cases = results.cases("ingest");
    if cases.is_empty() {
        return Ok(());
    }
    page.push_str("### Audit-log routing\n\n");
    page.push_str(
        "Raw JSON audit-log entries over sluice's LogIngest stream, batches of 1000, \
         8 in flight, each acknowledged after its routed messages are flushed. \
         Goal: 200,000 entries/s.\n\n",
    );
    chart_link(page, "Routing", link_prefix, "routing.png");
    page.push_str("| sinks | entries/s | of the goal | goal |\n|---|---|---|---|\n");
    let mut categories = Vec::new();
    let mut values = Vec::new();
    for (case, systems) in &cases {
        let rate = rate_median(systems.get("sluice"));
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} |",
            case.sinks,
            rate_cell(systems.get("sluice")),
            rate.map_or("–".to_owned(), |r| format!(
                "{:.0} %",
                100.0 * r / ROUTING_GOAL_PER_SECOND
            )),
            verdict(rate.map(|r| r >= ROUTING_GOAL_PER_SECOND)),
        );
        categories.push(format!("{} sinks", case.sinks));
        values.push(rate);
    }
    page.push('\n');
    failures(&cases, page);
    BarChart {
        title: "Audit-log entries routed per second",
        y_label: "entries/s",
        categories,
        series: vec![("sluice".into(), values)],
        log_scale: false,
        line: Some((ROUTING_GOAL_PER_SECOND, "goal: 200,000/s".into())),
    }
    .draw(&charts.join("routing.png"))
}

/// Returns the median time of one command in ms, divided by `per` (10 for a batch of 10 copies).
fn command_ms(timings: &crate::results::PhotoTimings, name: &str, per: f64) -> Option<f64> {
    let command = timings
        .commands
        .iter()
        .find(|command| command.command.starts_with(name))?;
    median(command.times.clone()).map(|seconds| seconds * 1000.0 / per)
}

fn thumbnails(
    results: &Results,
    charts: &Path,
    link_prefix: &str,
    page: &mut String,
) -> anyhow::Result<()> {
    if results.thumbnails.is_empty() {
        return Ok(());
    }
    page.push_str("### Thumbnails\n\n");
    page.push_str(
        "Each photo into a 256×256 box as JPEG quality 85, one process per thumbnail \
         (hyperfine), with each tool's default threads and with one thread. In the batch \
         rows vipsthumbnail renders 10 copies in one process and sluice's example runs 10 \
         times, so the time is per image. Goal: as fast and as lean as vipsthumbnail.\n\n",
    );
    chart_link(page, "Thumbnails", link_prefix, "thumbnails.png");
    page.push_str(
        "| photo | threads | sluice | vipsthumbnail | convert | vipsthumbnail ÷ sluice |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut categories = Vec::new();
    let mut series: Vec<(String, Vec<Option<f64>>)> = THUMBNAILERS
        .iter()
        .map(|tool| ((*tool).to_owned(), Vec::new()))
        .collect();
    for timings in &results.thumbnails {
        let per = if timings.mode == "batch" { 10.0 } else { 1.0 };
        let times: Vec<Option<f64>> = THUMBNAILERS
            .iter()
            .map(|tool| command_ms(timings, tool, per))
            .collect();
        let cell = |value: Option<f64>| value.map_or("–".to_owned(), |ms| format!("{ms:.0} ms"));
        let mode = match timings.mode.as_str() {
            "batch" => "default, batch of 10",
            "1" => "1",
            _ => "default",
        };
        let _ = writeln!(
            page,
            "| {} | {mode} | {} | {} | {} | {} |",
            timings.photo,
            cell(times[0]),
            cell(times[1]),
            cell(times[2]),
            ratio_cell(times[1], times[0]),
        );
        if timings.mode == "batch" {
            categories.push(
                timings
                    .photo
                    .replace("-baseline", " b")
                    .replace("-progressive", " p"),
            );
            for ((_, values), time) in series.iter_mut().zip(&times) {
                values.push(*time);
            }
        }
    }
    page.push('\n');
    if !results.thumbnail_memory.is_empty() {
        page.push_str(
            "Peak memory (maximum resident set size, default threads):\n\n\
             | photo | sluice | vipsthumbnail | convert |\n|---|---|---|---|\n",
        );
        let mut photos: Vec<&str> = results
            .thumbnail_memory
            .iter()
            .map(|peak| peak.photo.as_str())
            .collect();
        photos.dedup();
        for photo in photos {
            let peak_of = |tool: &str| {
                results
                    .thumbnail_memory
                    .iter()
                    .find(|peak| peak.photo == photo && peak.tool == tool)
                    .map_or("–".to_owned(), |peak| {
                        format!("{:.0} MiB", peak.peak_kib as f64 / 1024.0)
                    })
            };
            let _ = writeln!(
                page,
                "| {photo} | {} | {} | {} |",
                peak_of("sluice"),
                peak_of("vipsthumbnail"),
                peak_of("convert")
            );
        }
        page.push('\n');
    }
    // The chart shows the batch rows when there are any, because the thumbnail handler runs
    // in a long-lived process too. convert has no batch mode, so it has no bar there.
    if categories.is_empty() {
        for timings in results.thumbnails.iter().filter(|t| t.mode == "default") {
            categories.push(timings.photo.clone());
            for ((_, values), tool) in series.iter_mut().zip(THUMBNAILERS) {
                values.push(command_ms(timings, tool, 1.0));
            }
        }
    }
    series.retain(|(_, values)| values.iter().any(Option::is_some));
    BarChart {
        title: "Thumbnail time per image (b: baseline, p: progressive JPEG)",
        y_label: "ms",
        categories,
        series,
        log_scale: false,
        line: None,
    }
    .draw(&charts.join("thumbnails.png"))
}

fn memory(
    results: &Results,
    charts: &Path,
    link_prefix: &str,
    page: &mut String,
) -> anyhow::Result<()> {
    if results.memory.is_empty() {
        return Ok(());
    }
    page.push_str("### Memory\n\n");
    let backlog_messages = results
        .memory_field("backlog", "messages")
        .and_then(serde_json::Value::as_u64);
    let backlog_size = results
        .memory_field("backlog", "size")
        .and_then(serde_json::Value::as_u64);
    let _ = writeln!(
        page,
        "sluice's resident set (VmRSS, peaks from VmHWM). Idle and the peak come from the \
         latency runs, at {} messages/s. The backlog rows come from one server given a \
         backlog of {} messages of {} bytes in one subscription, then restarted, then \
         asked for part of it. Goals: under 64 MB at 10,000 messages/s, under 256 MB with \
         a 10,000,000-message backlog; a row measured at another rate or backlog is not \
         judged.\n",
        rate_label(results.latency_rate()),
        backlog_messages.map_or("–".to_owned(), |m| format_number(m as f64)),
        backlog_size.map_or("–".to_owned(), |s| s.to_string()),
    );
    let judged_rate = results
        .latency_rate()
        .is_some_and(|rate| (rate / 1000.0).round() == 10.0);
    let judged_backlog = backlog_messages.is_some_and(|m| m >= GOAL_BACKLOG_MESSAGES);
    chart_link(page, "Memory", link_prefix, "memory.png");
    let backlog_goal = Some((MEMORY_GOAL_BACKLOG_MIB, "256 MB"));
    let rows = [
        MemoryRow::new("idle", "idle", "memory", "rss_idle_kib", None),
        MemoryRow::new(
            "peak during the latency runs",
            "latency runs",
            "memory",
            "rss_peak_at_10k_per_s_kib",
            Some((MEMORY_GOAL_AT_10K_MIB, "64 MB")),
        ),
        MemoryRow::new(
            "peak while publishing the backlog",
            "publishing backlog",
            "backlog",
            "rss_peak_publish_kib",
            backlog_goal,
        ),
        MemoryRow::new(
            "after restarting with the backlog",
            "restarted",
            "backlog",
            "rss_after_reopen_kib",
            backlog_goal,
        ),
        MemoryRow::new(
            "peak since the restart, receiving from the backlog",
            "receiving",
            "backlog",
            "rss_peak_drain_kib",
            backlog_goal,
        ),
        MemoryRow::new(
            "data directory with the backlog",
            "",
            "backlog",
            "data_dir_kib",
            None,
        ),
    ];
    page.push_str("| moment | MiB | goal |\n|---|---|---|\n");
    let mut categories = Vec::new();
    let mut values = Vec::new();
    for row in rows {
        let MemoryRow {
            label,
            chart_label,
            kind,
            field,
            goal,
        } = row;
        let mib = results.memory_mib(kind, field);
        let judged = if kind == "backlog" {
            judged_backlog
        } else {
            judged_rate
        };
        let goal_cell = match goal {
            Some((goal, text)) if judged => format!(
                "under {text} ({goal:.0} MiB): {}",
                verdict(mib.map(|mib| mib < goal))
            ),
            Some((_, text)) => format!("under {text}: not judged"),
            None => String::new(),
        };
        let _ = writeln!(
            page,
            "| {label} | {} | {goal_cell} |",
            mib.map_or("–".to_owned(), |mib| format!("{mib:.0}"))
        );
        if !chart_label.is_empty() {
            categories.push(chart_label.to_owned());
            values.push(mib);
        }
    }
    if let Some(drained) = results
        .memory_field("backlog", "drained")
        .and_then(serde_json::Value::as_u64)
    {
        let _ = writeln!(
            page,
            "\nThe receiving row is a StreamingPull that acknowledged {} messages.",
            format_number(drained as f64)
        );
    }
    page.push('\n');
    BarChart {
        title: "sluice's resident memory",
        y_label: "MiB",
        categories,
        series: vec![("sluice".into(), values)],
        log_scale: false,
        line: Some((
            MEMORY_GOAL_BACKLOG_MIB,
            "goal with the backlog: 256 MB".into(),
        )),
    }
    .draw(&charts.join("memory.png"))
}

/// One row of the memory table: its label, its bar's label (empty for no bar), the kind and
/// field of the memory line it reads, and the goal in MiB with the goal's own wording.
struct MemoryRow {
    label: &'static str,
    chart_label: &'static str,
    kind: &'static str,
    field: &'static str,
    goal: Option<(f64, &'static str)>,
}

impl MemoryRow {
    fn new(
        label: &'static str,
        chart_label: &'static str,
        kind: &'static str,
        field: &'static str,
        goal: Option<(f64, &'static str)>,
    ) -> MemoryRow {
        MemoryRow {
            label,
            chart_label,
            kind,
            field,
            goal,
        }
    }
}

fn s_at_least(sluice: Option<f64>, other: f64) -> bool {
    sluice.is_some_and(|s| s >= other)
}

/// A rate rounded to thousands for labels, such as `10,000`.
fn rate_label(rate: Option<f64>) -> String {
    rate.map_or("–".to_owned(), |rate| {
        format_number((rate / 1000.0).round() * 1000.0)
    })
}
