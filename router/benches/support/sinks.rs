//! Inputs shared by the filter benchmark and the throughput example: the fixture entries
//! and 100 sink filters of the shapes ops teams write.
#![allow(dead_code, reason = "each including target uses a different part")]

use std::path::PathBuf;

/// A three-clause filter that the fourth fixture entry (about 1 KB) matches, so that every
/// clause is evaluated.
pub(crate) const THREE_CLAUSES: &str = r#"resource.type="gcs_bucket" AND protoPayload.methodName="storage.buckets.update" AND severity>=INFO"#;

/// The fixture entries, one JSON LogEntry per line.
pub(crate) fn fixture_lines() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/audit-logs/entries.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    text.lines().map(str::to_owned).collect()
}

/// 100 sink filters of the shapes ops teams write: equalities on indexed fields, value lists,
/// method-name patterns, log ids, severities, substring tests and a few global searches.
pub(crate) fn sink_filters() -> Vec<String> {
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
