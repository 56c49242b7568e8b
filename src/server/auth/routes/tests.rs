//! Checks that the permission table covers every gRPC method and HTTP route, by reading
//! the route definitions from the source files, so that a new route without a rule fails
//! here instead of being denied to everyone at run time.

use std::collections::BTreeSet;

use regex::Regex;

use super::{grpc_rule, http_rule, segment_resource, Collection, GRPC_RULES, HTTP_RULES};
use super::{Action, PUBLIC_ROUTES};

const PROTO_BUILD: &str = include_str!("../../../../proto/build.rs");
const INGEST_PROTO: &str = include_str!("../../../../proto/proto/sluice/v1/ingest.proto");
const ADMIN_PROTO: &str = include_str!("../../../../proto/proto/sluice/v1/admin.proto");

/// The files that define HTTP routes, with the files of their custom-method handlers.
const ROUTE_FILES: [&str; 5] = [
    include_str!("../../pubsub_rest/mod.rs"),
    include_str!("../../functions/routes.rs"),
    include_str!("../../storage.rs"),
    include_str!("../../logging.rs"),
    include_str!("../../http.rs"),
];
const TOPICS_REST: &str = include_str!("../../pubsub_rest/topics.rs");
const SUBSCRIPTIONS_REST: &str = include_str!("../../pubsub_rest/subscriptions.rs");

/// Returns every gRPC method path that the server implements.
fn grpc_methods() -> Vec<String> {
    let rpc = Regex::new(r#"(?:unary\(\s*|route_name:\s*)"(\w+)""#).expect("valid regex");
    let service = Regex::new(r#"google_service\(\s*"([\w.]+)",\s*"(\w+)""#).expect("valid regex");
    let mut methods = Vec::new();
    let mut pending = Vec::new();
    let mut position = 0;
    for found in service.captures_iter(PROTO_BUILD) {
        let whole = found.get(0).expect("the whole match");
        for name in rpc.captures_iter(&PROTO_BUILD[position..whole.start()]) {
            pending.push(name[1].to_owned());
        }
        for name in pending.drain(..) {
            methods.push(format!("/{}.{}/{name}", &found[1], &found[2]));
        }
        position = whole.end();
    }
    let proto_rpc = Regex::new(r"rpc (\w+)\(").expect("valid regex");
    for (service, text) in [("LogIngest", INGEST_PROTO), ("Admin", ADMIN_PROTO)] {
        for name in proto_rpc.captures_iter(text) {
            methods.push(format!("/sluice.v1.{service}/{}", &name[1]));
        }
    }
    methods
}

/// Returns the body of `fn NAME(` in `text`, up to the first line that is a lone `}`.
fn function_body<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("fn {name} not found"));
    let end = text[start..]
        .find("\n}\n")
        .map_or(text.len(), |end| start + end);
    &text[start..end]
}

/// Returns the verbs that a custom-method handler dispatches on.
fn verbs_of(handler: &str) -> Vec<String> {
    let (text, name) = match handler {
        "topics::custom_method" => (TOPICS_REST, "custom_method"),
        "subscriptions::custom_method" => (SUBSCRIPTIONS_REST, "custom_method"),
        "subscriptions::custom_method_of_snapshot" => {
            (SUBSCRIPTIONS_REST, "custom_method_of_snapshot")
        }
        other => panic!("unknown custom-method handler {other}"),
    };
    let verb = Regex::new(r#"Some\("(\w+)"\) =>"#).expect("valid regex");
    verb.captures_iter(function_body(text, name))
        .map(|found| found[1].to_owned())
        .collect()
}

/// Returns every (method, route, verb) that the route files register.
fn http_routes() -> Vec<(String, String, Option<String>)> {
    let start = Regex::new(r"\.route\(\s*").expect("valid regex");
    let literal = Regex::new(r#""([^"]*)""#).expect("valid regex");
    let method = Regex::new(r"\b(get|post|put|patch|delete)\(([\w:]+)\)").expect("valid regex");
    let mut routes = Vec::new();
    for text in ROUTE_FILES {
        for found in start.find_iter(text) {
            let rest = &text[found.end()..];
            // The route call ends at the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(index, _)| index);
            let call = &rest[..end];
            let path = literal.captures(call).expect("a route path literal")[1]
                .replace("{projects}", "/v1/projects/{project}")
                .replace("{{", "{")
                .replace("}}", "}");
            for handler in method.captures_iter(call) {
                let http_method = handler[1].to_uppercase();
                if handler[2].contains("custom_method") {
                    for verb in verbs_of(&handler[2]) {
                        routes.push((http_method.clone(), path.clone(), Some(verb)));
                    }
                } else {
                    routes.push((http_method, path.clone(), None));
                }
            }
        }
    }
    routes
}

#[test]
fn every_grpc_method_has_a_rule() {
    let methods = grpc_methods();
    assert!(methods.len() >= 28, "found only {methods:?}");
    for method in &methods {
        assert!(
            grpc_rule(method).is_some(),
            "{method} has no permission rule"
        );
    }
}

#[test]
fn every_grpc_rule_names_a_method() {
    let methods: BTreeSet<String> = grpc_methods().into_iter().collect();
    for rule in GRPC_RULES {
        assert!(
            methods.contains(rule.path),
            "{} is not a served method",
            rule.path
        );
    }
}

#[test]
fn every_http_route_has_a_rule() {
    let routes = http_routes();
    assert!(routes.len() >= 35, "found only {routes:?}");
    for (method, route, verb) in &routes {
        if PUBLIC_ROUTES.contains(&route.as_str()) {
            continue;
        }
        let path = match verb {
            Some(verb) => format!("{route}:{verb}"),
            None => route.clone(),
        };
        assert!(
            http_rule(method, route, &path).is_some(),
            "{method} {path} has no permission rule"
        );
    }
}

#[test]
fn every_http_rule_names_a_route() {
    let routes: BTreeSet<(String, String, Option<String>)> = http_routes().into_iter().collect();
    for rule in HTTP_RULES {
        let key = (
            rule.method.to_owned(),
            rule.route.to_owned(),
            rule.verb.map(str::to_owned),
        );
        assert!(routes.contains(&key), "{key:?} is not a served route");
    }
}

#[test]
fn publish_is_the_publish_action() {
    let rule = http_rule(
        "POST",
        "/v1/projects/{project}/topics/{topic}",
        "/v1/projects/local/topics/orders:publish",
    )
    .expect("a rule");
    assert_eq!(rule.action, Action::Publish);
    let grpc = grpc_rule("/google.pubsub.v1.Publisher/Publish").expect("a rule");
    assert_eq!(grpc.action, Action::Publish);
}

#[test]
fn rest_paths_name_store_resources() {
    let topic = segment_resource(
        "/v1/projects/local/topics/orders:publish",
        4,
        Collection::Topic,
    );
    assert_eq!(topic, "topics/orders");
    let other = segment_resource(
        "/v1/projects/p2/subscriptions/s",
        4,
        Collection::Subscription,
    );
    assert_eq!(other, "subscriptions/p2/s");
    let bucket = segment_resource("/storage/v1/b/uploads/o/a%2Fb.jpg", 3, Collection::Bucket);
    assert_eq!(bucket, "buckets/uploads");
    let upload = segment_resource("/upload/storage/v1/b/photos/o", 4, Collection::Bucket);
    assert_eq!(upload, "buckets/photos");
}
