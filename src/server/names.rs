//! Pub/Sub resource names: `projects/{project}/topics/{topic}` and
//! `projects/{project}/subscriptions/{subscription}`.

use tonic::Status;

/// The project that the topics and subscriptions of the configuration live in.
pub(crate) const PROJECT: &str = "local";

/// Returns the topic of a resource name, which must be `projects/{project}/topics/{topic}`.
pub(crate) fn topic(resource: &str) -> Result<&str, Status> {
    short_name(resource, "topics", "topic")
}

/// Returns the subscription of `projects/{project}/subscriptions/{subscription}`.
pub(crate) fn subscription(resource: &str) -> Result<&str, Status> {
    short_name(resource, "subscriptions", "subscription")
}

fn short_name<'a>(resource: &'a str, collection: &str, field: &str) -> Result<&'a str, Status> {
    let mut parts = resource.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("projects"), Some(project), Some(kind), Some(name), None)
            if project == PROJECT && kind == collection && !name.is_empty() =>
        {
            Ok(name)
        }
        (Some("projects"), Some(project), Some(kind), Some(name), None)
            if kind == collection && !name.is_empty() =>
        {
            // NOTE: only the configuration's project exists; Google's emulator instead
            // gives every project its own namespace, which sluice does not do yet.
            Err(Status::not_found(format!(
                "{field} {resource:?} not found: project {project:?} does not exist; \
                 use projects/{PROJECT}/{collection}/{name}"
            )))
        }
        _ => Err(Status::invalid_argument(format!(
            "invalid {field} name {resource:?}; use projects/{PROJECT}/{collection}/NAME"
        ))),
    }
}

/// The full resource name of a topic.
pub(crate) fn topic_resource(name: &str) -> String {
    format!("projects/{PROJECT}/topics/{name}")
}

/// The full resource name of a subscription.
pub(crate) fn subscription_resource(name: &str) -> String {
    format!("projects/{PROJECT}/subscriptions/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_parse() {
        assert_eq!(topic("projects/local/topics/audit").ok(), Some("audit"));
        assert!(topic("audit").is_err(), "bare names are rejected");
        assert!(
            topic("projects/local/subscriptions/audit").is_err(),
            "wrong collection"
        );
        assert!(topic("projects/local/topics/a/b").is_err(), "extra segment");
        let other = topic("projects/other/topics/audit").expect_err("other project");
        assert_eq!(
            other.code(),
            tonic::Code::NotFound,
            "only the local project exists"
        );
    }
}
