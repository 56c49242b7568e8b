//! Filter engine benchmarks: one compiled filter on a parsed entry, and a set of 100 sink
//! filters over a stream of raw JSON entries with parsing included.
//!
//! Run with `cargo bench -p sluice-router --bench filter`; results go in docs/benchmarks.md.

// criterion_group! and criterion_main! generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;
use sluice_router::filter::{FilterSet, LogFilter};

fn fixture_lines() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/audit-logs/entries.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    text.lines().map(str::to_owned).collect()
}

/// 100 sink filters of the shapes ops teams write: equalities on indexed fields, value lists,
/// method-name patterns, log ids, severities, substring tests and a few global searches.
fn sink_filters() -> Vec<String> {
    let types = [
        "gcs_bucket",
        "gce_instance",
        "gce_disk",
        "gce_network",
        "gce_firewall_rule",
        "gce_subnetwork",
        "service_account",
        "iam_role",
        "project",
        "organization",
        "cloudkms_cryptokey",
        "logging_sink",
        "dns_managed_zone",
        "k8s_cluster",
        "cloud_run_revision",
        "build",
        "bigquery_resource",
        "audited_resource",
        "pubsub_topic",
        "generic_node",
    ];
    let mut filters = Vec::new();
    for (i, ty) in types.iter().enumerate() {
        let severity = ["INFO", "NOTICE", "WARNING", "ERROR"][i % 4];
        filters.push(format!(r#"resource.type="{ty}" severity>={severity}"#));
    }
    for i in 0..20 {
        let method = ["create", "delete", "update", "insert", "setIamPolicy"][i % 5];
        filters.push(format!(
            r#"protoPayload.methodName="google.example.v{i}.Service.{method}" AND NOT severity=ERROR"#
        ));
    }
    for i in 0..15 {
        filters.push(format!(
            r#"logName="projects/project-{i}/logs/cloudaudit.googleapis.com%2Factivity""#
        ));
    }
    for i in 0..15 {
        let suffix = ["Create", "Delete", "SetIamPolicy", "insert", "patch"][i % 5];
        filters.push(format!(
            r#"protoPayload.methodName=~"\.v{}\..*{suffix}$""#,
            i % 3
        ));
    }
    for i in 0..10 {
        let service = ["storage", "compute", "iam", "logging", "bigquery"][i % 5];
        filters.push(format!(
            r#"protoPayload.serviceName=("{service}.googleapis.com" OR "{service}-{i}.googleapis.com") resource.labels.project_id:"prod""#
        ));
    }
    for i in 0..10 {
        filters.push(format!(
            r#"log_id("cloudaudit.googleapis.com/data_access") resource.labels.project_id="p-{i}""#
        ));
    }
    for i in 0..8 {
        filters.push(format!(
            r#"severity>=ERROR protoPayload.authenticationInfo.principalEmail:"@team{i}.example.com""#
        ));
    }
    filters.push(r#""permission denied""#.to_owned());
    filters.push("unicorn".to_owned());
    assert_eq!(filters.len(), 100);
    filters
}

fn one_filter(c: &mut Criterion) {
    let lines = fixture_lines();
    let entry: Value = serde_json::from_str(&lines[3]).expect("fixture entry is JSON");
    let filter = LogFilter::new(
        r#"resource.type="gcs_bucket" AND protoPayload.methodName="storage.buckets.update" AND severity>=INFO"#,
    )
    .expect("benchmark filter compiles");
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
