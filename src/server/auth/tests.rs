use std::net::SocketAddr;

use super::{auth_enabled, glob_regex, Action, Auth};
use crate::config::security::{AuthSpec, GrantSpec, IdentitySpec};

fn listen(address: &str) -> SocketAddr {
    address.parse().expect("a socket address")
}

#[test]
fn auth_defaults_follow_the_address() {
    let unset = AuthSpec::default();
    assert!(
        !auth_enabled(&unset, listen("127.0.0.1:8085")),
        "loopback v4"
    );
    assert!(!auth_enabled(&unset, listen("[::1]:8085")), "loopback v6");
    assert!(auth_enabled(&unset, listen("0.0.0.0:8085")), "any address");
    assert!(
        auth_enabled(&unset, listen("192.0.2.7:8085")),
        "a LAN address"
    );

    let off = AuthSpec {
        enabled: Some(false),
        ..AuthSpec::default()
    };
    assert!(
        !auth_enabled(&off, listen("0.0.0.0:8085")),
        "explicitly off"
    );
    let on = AuthSpec {
        enabled: Some(true),
        ..AuthSpec::default()
    };
    assert!(auth_enabled(&on, listen("127.0.0.1:8085")), "explicitly on");
}

#[test]
fn globs_match_whole_names() {
    let pattern = glob_regex("topics/orders-*").expect("compiles");
    assert!(pattern.is_match("topics/orders-eu"));
    assert!(pattern.is_match("topics/orders-"));
    assert!(!pattern.is_match("topics/orders"), "the dash is literal");
    assert!(
        !pattern.is_match("xtopics/orders-eu"),
        "anchored at the start"
    );

    let one = glob_regex("buckets/a?c").expect("compiles");
    assert!(one.is_match("buckets/abc"));
    assert!(!one.is_match("buckets/abbc"), "? is one character");

    let dots = glob_regex("topics/a.b").expect("compiles");
    assert!(!dots.is_match("topics/axb"), "regex characters are literal");
}

#[test]
fn globs_stay_within_one_project() {
    let pattern = glob_regex("topics/orders-*").expect("compiles");
    assert!(
        !pattern.is_match("topics/orders-evil/secret"),
        "* stops at / so another project's topic is not covered"
    );
    let one = glob_regex("topics/a?b").expect("compiles");
    assert!(!one.is_match("topics/a/b"), "? does not match /");

    let everything = glob_regex("**").expect("compiles");
    assert!(everything.is_match("topics/orders-evil/secret"));
    assert!(everything.is_match("logs"));
    let any_project = glob_regex("topics/**").expect("compiles");
    assert!(any_project.is_match("topics/orders-evil/secret"));
    assert!(any_project.is_match("topics/local-topic"));
}

#[test]
fn tokens_select_their_identity() {
    let digest = |token: &str| {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        digest
    };
    let identity = |name: &str, token: &str, actions: &[&str]| IdentitySpec {
        name: name.to_owned(),
        token_sha256: Some(digest(token)),
        client_certificate: None,
        grants: vec![GrantSpec {
            actions: actions.iter().map(|action| (*action).to_owned()).collect(),
            resources: vec!["topics/*".to_owned()],
        }],
    };
    let spec = AuthSpec {
        enabled: Some(true),
        identities: vec![
            identity("reader", "reader-token", &["subscribe"]),
            identity("writer", "writer-token", &["publish"]),
        ],
        ..AuthSpec::default()
    };
    let auth = Auth::new(&spec, true, None).expect("compiles");

    let writer = auth.by_token("writer-token").expect("the writer's token");
    assert_eq!(&*writer.name, "writer");
    assert!(Auth::allows(writer, Action::Publish, "topics/orders"));
    assert!(!Auth::allows(writer, Action::Subscribe, "topics/orders"));
    assert!(!Auth::allows(writer, Action::Publish, "buckets/orders"));
    assert!(
        auth.by_token("writer-token ").is_none(),
        "no trimming inside the hash"
    );
    assert!(auth.by_token("unknown").is_none());
}
