//! Pub/Sub resource names, `projects/{project}/{collection}/{name}`, and the names the store
//! keeps them under.
//!
//! The configuration's project (the `project` key, `local` by default) owns the topics,
//! subscriptions and snapshots the store names without a prefix, so data directories written
//! before projects existed keep working. Every other project id is a namespace of its own,
//! as in Google's emulator: its resources are stored as `{project}/{name}`. Pub/Sub names
//! cannot contain `/`, so the two forms never collide.
//!
//! The project is set once per process, when the server starts, because the status messages
//! and the StreamingPull code turn store names back into resource names without a handle
//! on the configuration.

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::OnceLock;

use sluice_router::store::DELETED_TOPIC;
use tonic::Status;

/// The project of the configuration, set by [`set_config_project`].
static CONFIG_PROJECT: OnceLock<String> = OnceLock::new();

/// The configuration's project before [`set_config_project`] runs, as in unit tests.
const DEFAULT_PROJECT: &str = crate::config::DEFAULT_PROJECT;

/// Valid lengths of a topic, subscription or snapshot name, in characters.
const NAME_CHARS: RangeInclusive<usize> = 3..=255;

/// The configuration's project, written with `{}` in messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConfigProject;

impl fmt::Display for ConfigProject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(config_project())
    }
}

/// The project that the topics and subscriptions of the configuration live in.
pub(crate) const PROJECT: ConfigProject = ConfigProject;

/// Sets the configuration's project for this process.
///
/// # Errors
///
/// Fails when the process already serves another project, because resource names that
/// clients hold would change meaning.
pub(crate) fn set_config_project(project: &str) -> Result<(), String> {
    let current = CONFIG_PROJECT.get_or_init(|| project.to_owned());
    if current == project {
        Ok(())
    } else {
        Err(format!(
            "this process already serves project {current:?}, so it cannot serve {project:?} \
             as well; run one server per project"
        ))
    }
}

/// Returns the configuration's project.
pub(crate) fn config_project() -> &'static str {
    CONFIG_PROJECT.get().map_or(DEFAULT_PROJECT, String::as_str)
}

/// A kind of Pub/Sub resource, named by its collection segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collection {
    Topics,
    Subscriptions,
    Snapshots,
}

impl Collection {
    fn segment(self) -> &'static str {
        match self {
            Collection::Topics => "topics",
            Collection::Subscriptions => "subscriptions",
            Collection::Snapshots => "snapshots",
        }
    }
}

/// Returns the store name of `projects/{project}/topics/{topic}`.
///
/// # Errors
///
/// INVALID_ARGUMENT when `resource` does not have that form.
pub(crate) fn topic(resource: &str) -> Result<String, Status> {
    store_name(resource, Collection::Topics)
}

/// Returns the store name of `projects/{project}/subscriptions/{subscription}`.
///
/// # Errors
///
/// INVALID_ARGUMENT when `resource` does not have that form.
pub(crate) fn subscription(resource: &str) -> Result<String, Status> {
    store_name(resource, Collection::Subscriptions)
}

/// Returns the store name of `projects/{project}/snapshots/{snapshot}`.
///
/// # Errors
///
/// INVALID_ARGUMENT when `resource` does not have that form.
pub(crate) fn snapshot(resource: &str) -> Result<String, Status> {
    store_name(resource, Collection::Snapshots)
}

/// Returns the store name of a resource to be created, whose name must also follow
/// Pub/Sub's rules: 3 to 255 characters from `A-Za-z0-9-_.~+%`, starting with a letter but
/// not with `goog`.
///
/// # Errors
///
/// INVALID_ARGUMENT, worded as Pub/Sub words it, when the form or the name is invalid.
pub(crate) fn new_resource(resource: &str, collection: Collection) -> Result<String, Status> {
    match split_resource(resource, collection) {
        Some((project, name)) if is_valid_name(name) => Ok(join(project, name)),
        _ => Err(invalid_name(resource, collection)),
    }
}

/// Returns the project id of `projects/{project}`, the parent of a list call.
///
/// # Errors
///
/// INVALID_ARGUMENT when `resource` does not have that form.
pub(crate) fn project(resource: &str) -> Result<&str, Status> {
    match resource.strip_prefix("projects/") {
        Some(project) if !project.is_empty() && !project.contains('/') => Ok(project),
        _ => Err(Status::invalid_argument(format!(
            "Invalid [projects] name: (name={resource}); use projects/{PROJECT}"
        ))),
    }
}

/// Returns whether the resource stored as `store_name` belongs to `project`.
pub(crate) fn in_project(store_name: &str, project: &str) -> bool {
    project_of(store_name).0 == project
}

/// Returns the full resource name of a topic. The topic that Pub/Sub gives the subscriptions of a
/// deleted topic, `_deleted-topic_`, is written as it is.
pub(crate) fn topic_resource(store_name: &str) -> String {
    if store_name == DELETED_TOPIC {
        return DELETED_TOPIC.to_owned();
    }
    resource(store_name, Collection::Topics)
}

/// Returns the full resource name of a subscription.
pub(crate) fn subscription_resource(store_name: &str) -> String {
    resource(store_name, Collection::Subscriptions)
}

/// Returns the full resource name of a snapshot.
pub(crate) fn snapshot_resource(store_name: &str) -> String {
    resource(store_name, Collection::Snapshots)
}

fn resource(store_name: &str, collection: Collection) -> String {
    let (project, name) = project_of(store_name);
    format!("projects/{project}/{}/{name}", collection.segment())
}

/// Splits a store name into its project and its name within the project.
fn project_of(store_name: &str) -> (&str, &str) {
    store_name
        .split_once('/')
        .unwrap_or((config_project(), store_name))
}

fn join(project: &str, name: &str) -> String {
    if project == config_project() {
        name.to_owned()
    } else {
        format!("{project}/{name}")
    }
}

fn store_name(resource: &str, collection: Collection) -> Result<String, Status> {
    split_resource(resource, collection)
        .map(|(project, name)| join(project, name))
        .ok_or_else(|| invalid_name(resource, collection))
}

/// Returns the project and the name of `projects/{project}/{collection}/{name}`, both
/// non-empty.
fn split_resource(resource: &str, collection: Collection) -> Option<(&str, &str)> {
    let mut parts = resource.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("projects"), Some(project), Some(kind), Some(name), None)
            if !project.is_empty() && kind == collection.segment() && !name.is_empty() =>
        {
            Some((project, name))
        }
        _ => None,
    }
}

/// INVALID_ARGUMENT for a malformed name, with Pub/Sub's wording and the expected form.
fn invalid_name(resource: &str, collection: Collection) -> Status {
    let segment = collection.segment();
    Status::invalid_argument(format!(
        "Invalid [{segment}] name: (name={resource}); use projects/{PROJECT}/{segment}/NAME, \
         where NAME is 3 to 255 characters from A-Z, a-z, 0-9 and '-', '_', '.', '~', '+', \
         '%', starting with a letter but not with \"goog\""
    ))
}

/// Returns whether `name` follows Pub/Sub's rules for a topic, subscription or snapshot name.
pub(crate) fn is_valid_name(name: &str) -> bool {
    NAME_CHARS.contains(&name.chars().count())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.starts_with("goog")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '%'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_project_names_unprefixed() {
        assert_eq!(
            topic("projects/local/topics/audit").ok().as_deref(),
            Some("audit")
        );
        assert_eq!(topic_resource("audit"), "projects/local/topics/audit");
        assert_eq!(
            subscription_resource("audit"),
            "projects/local/subscriptions/audit"
        );
        assert_eq!(topic_resource(DELETED_TOPIC), "_deleted-topic_");
    }

    #[test]
    fn other_projects_prefixed() {
        let name = topic("projects/other/topics/audit").expect("another project parses");
        assert_eq!(name, "other/audit", "store name");
        assert_eq!(topic_resource(&name), "projects/other/topics/audit");
        assert!(in_project(&name, "other"), "in its own project");
        assert!(!in_project(&name, "local"), "not in the config project");
        assert!(
            in_project("audit", "local"),
            "unprefixed is the config project"
        );
        assert_eq!(
            snapshot("projects/p-2/snapshots/s1").ok().as_deref(),
            Some("p-2/s1")
        );
    }

    #[test]
    fn malformed_names_rejected() {
        for resource in [
            "audit",
            "projects/local/subscriptions/audit",
            "projects/local/topics/a/b",
            "projects//topics/audit",
            "projects/local/topics/",
            "",
        ] {
            let status = topic(resource).expect_err(resource);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{resource}");
            assert!(
                status.message().starts_with("Invalid [topics] name: "),
                "{resource}: {}",
                status.message()
            );
        }
    }

    #[test]
    fn new_names_follow_pubsub_rules() {
        for valid in ["abc", "a-b_c.d~e+f%g", "Z99"] {
            let resource = format!("projects/local/topics/{valid}");
            assert!(
                new_resource(&resource, Collection::Topics).is_ok(),
                "{valid}"
            );
        }
        for invalid in ["t1", "9abc", "googabc", "abc$d", &"a".repeat(256)] {
            let resource = format!("projects/local/topics/{invalid}");
            assert!(
                new_resource(&resource, Collection::Topics).is_err(),
                "{invalid}"
            );
        }
    }

    #[test]
    fn project_parent_parses() {
        assert_eq!(project("projects/local").ok(), Some("local"));
        assert!(project("local").is_err(), "no prefix");
        assert!(project("projects/").is_err(), "empty id");
        assert!(project("projects/a/topics").is_err(), "extra segment");
    }
}
