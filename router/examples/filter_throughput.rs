//! Fixed-work throughput run of the filter engine, for machines too busy for criterion's
//! wall-clock figures: run it under `time` and divide the work by the user CPU time.
//!
//! `cargo run --release -p sluice-router --example filter_throughput -- [ROUNDS [PASSES]]`
//! evaluates one three-clause filter on a parsed entry `ROUNDS` million times, then parses
//! and routes the fixture entries through a set of 100 sink filters `PASSES` times (default
//! `ROUNDS` thousand), and prints the work done and the wall time of each part. Under
//! `valgrind --tool=callgrind`, small counts give instruction totals that a busy machine does
//! not disturb.

use std::hint::black_box;
use std::time::Instant;

use serde_json::Value;
use sluice_router::filter::{FilterSet, LogFilter};

#[path = "../benches/support/sinks.rs"]
mod sinks;

fn main() {
    let arg = |n: usize| {
        std::env::args()
            .nth(n)
            .and_then(|arg| arg.parse::<u64>().ok())
    };
    let rounds = arg(1).unwrap_or(1);
    let passes = arg(2).unwrap_or(rounds * 1_000);
    let lines = sinks::fixture_lines();
    let entry: Value = serde_json::from_str(&lines[3]).expect("fixture entry is JSON");
    let filter = LogFilter::new(sinks::THREE_CLAUSES).expect("filter compiles");

    let evaluations = rounds * 1_000_000;
    let start = Instant::now();
    for _ in 0..evaluations {
        black_box(filter.matches(black_box(&entry)));
    }
    report("three-clause filter evaluations", evaluations, start);

    let set = FilterSet::new(
        sinks::sink_filters()
            .iter()
            .map(|text| LogFilter::new(text).expect("compiles"))
            .collect(),
    );
    let all: Vec<&str> = lines.iter().map(String::as_str).collect();
    route(
        &set,
        &all,
        passes,
        "entries parsed and routed through 100 sinks",
    );

    // The fixture entries average about 1.8 KB; this part uses the ones near 1 KB.
    let small: Vec<&str> = all
        .iter()
        .copied()
        .filter(|line| (900..1200).contains(&line.len()))
        .collect();
    let small_passes = passes * all.len() as u64 / small.len().max(1) as u64;
    route(
        &set,
        &small,
        small_passes,
        "1 KB entries parsed and routed through 100 sinks",
    );
}

/// Parses and routes `lines` through `set` `passes` times, then reports the rate.
fn route(set: &FilterSet, lines: &[&str], passes: u64, label: &str) {
    let start = Instant::now();
    let mut matched = Vec::new();
    for _ in 0..passes {
        for line in lines {
            let entry: Value = serde_json::from_str(line).expect("valid JSON");
            set.matching_into(&entry, &mut matched);
            black_box(&matched);
        }
    }
    report(label, passes * lines.len() as u64, start);
}

fn report(label: &str, count: u64, start: Instant) {
    let seconds = start.elapsed().as_secs_f64();
    let rate = count as f64 / seconds;
    // The example is a measuring tool whose output is its purpose.
    #[allow(clippy::print_stdout)]
    {
        println!("{label}: {count} in {seconds:.3} s wall, {rate:.0}/s wall");
    }
}
