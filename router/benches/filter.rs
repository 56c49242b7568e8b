//! Filter engine benchmarks: one compiled filter on a parsed entry, and a set of 100 sink
//! filters over a stream of raw JSON entries with parsing included.
//!
//! Run with `cargo bench -p sluice-router --bench filter`; results go in docs/benchmarks.md.

// criterion_group! and criterion_main! generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;
use sluice_router::filter::{FilterSet, LogFilter};

#[path = "support/sinks.rs"]
mod sinks;
use sinks::{fixture_lines, sink_filters, THREE_CLAUSES};

fn one_filter(c: &mut Criterion) {
    let lines = fixture_lines();
    let entry: Value = serde_json::from_str(&lines[3]).expect("fixture entry is JSON");
    let filter = LogFilter::new(THREE_CLAUSES).expect("benchmark filter compiles");
    assert!(
        filter.matches(&entry),
        "the benchmark entry matches, so all three clauses run"
    );
    let mut group = c.benchmark_group("one_filter");
    group.throughput(Throughput::Elements(1));
    group.bench_function("three_clauses_parsed_1kb_entry", |b| {
        b.iter(|| black_box(filter.matches(black_box(&entry))));
    });
    group.finish();
}

fn hundred_sinks(c: &mut Criterion) {
    let lines = fixture_lines();
    let filters: Vec<LogFilter> = sink_filters()
        .iter()
        .map(|text| LogFilter::new(text).expect("sink filter compiles"))
        .collect();
    let set = FilterSet::new(filters.clone());
    let mut group = c.benchmark_group("hundred_sinks");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse_only", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(serde_json::from_str::<Value>(line).expect("valid JSON"));
            }
        });
    });
    group.bench_function("filter_set_with_parse", |b| {
        let mut matched = Vec::new();
        b.iter(|| {
            for line in &lines {
                let entry: Value = serde_json::from_str(line).expect("valid JSON");
                set.matching_into(&entry, &mut matched);
                black_box(&matched);
            }
        });
    });
    group.bench_function("each_filter_with_parse", |b| {
        b.iter(|| {
            for line in &lines {
                let entry: Value = serde_json::from_str(line).expect("valid JSON");
                for filter in &filters {
                    black_box(filter.matches(&entry));
                }
            }
        });
    });
    group.finish();
}

criterion_group!(benches, one_filter, hundred_sinks);
criterion_main!(benches);
