use serde_json::json;

use super::*;

fn storage_event() -> CloudEvent {
    let mut event = CloudEvent::new(
        "1234",
        "//storage.googleapis.com/projects/_/buckets/photos",
        "google.cloud.storage.object.v1.finalized",
    );
    event.subject = Some("objects/2024/cat.jpg".to_owned());
    event.time = Some("2024-01-02T03:04:05.123456Z".to_owned());
    event.datacontenttype = Some("application/json".to_owned());
    event
        .extensions
        .insert("bucket".to_owned(), "photos".to_owned());
    event.data = Some(json!({"bucket": "photos", "name": "2024/cat.jpg"}));
    event
}

fn header<'a>(request: &'a BinaryRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(header, _)| header == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn binary_mode_headers_and_body() {
    let request = storage_event().to_binary();

    assert_eq!(header(&request, "ce-id"), Some("1234"));
    assert_eq!(header(&request, "ce-specversion"), Some("1.0"));
    assert_eq!(
        header(&request, "ce-type"),
        Some("google.cloud.storage.object.v1.finalized")
    );
    assert_eq!(header(&request, "ce-subject"), Some("objects/2024/cat.jpg"));
    assert_eq!(header(&request, "ce-bucket"), Some("photos"));
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    assert_eq!(
        header(&request, "ce-datacontenttype"),
        None,
        "binary mode carries the media type as the content type only"
    );
    let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
    assert_eq!(body, json!({"bucket": "photos", "name": "2024/cat.jpg"}));
}

#[test]
fn binary_mode_round_trips() {
    let event = storage_event();
    let request = event.to_binary();
    let headers = request
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()));

    assert_eq!(
        CloudEvent::from_binary(headers, &request.body).expect("valid"),
        event
    );
}

#[test]
fn json_form_round_trips() {
    let event = storage_event();
    let json = event.to_json();

    assert_eq!(json["bucket"], "photos", "extensions are top-level");
    assert_eq!(CloudEvent::from_json(&json).expect("valid"), event);
}

#[test]
fn header_values_encode_what_http_cannot_carry() {
    assert_eq!(header_value("objects/a b.jpg"), "objects/a b.jpg");
    assert_eq!(header_value("objects/café"), "objects/caf%C3%A9");
    assert_eq!(header_value("line\nbreak"), "line%0Abreak");
    assert_eq!(header_value(" edge "), "%20edge%20");
    assert_eq!(header_value("  "), "%20%20");
    assert_eq!(
        header_value("projects/p/logs/cloudaudit.googleapis.com%2Factivity"),
        "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
        "a percent sign is sent as is"
    );
}

#[test]
fn from_binary_reads_mixed_case_headers() {
    let headers = [
        ("Ce-Id", "1"),
        ("CE-Source", "//pubsub.googleapis.com/projects/p/topics/t"),
        ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
        ("ce-specversion", "1.0"),
        ("Content-Type", "application/json; charset=utf-8"),
        ("ce-customext", "x"),
        ("user-agent", "test"),
    ];
    let event = CloudEvent::from_binary(headers, br#"{"message": {}}"#).expect("valid");

    assert_eq!(event.id, "1");
    assert_eq!(
        event.datacontenttype.as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        event.extensions,
        BTreeMap::from([("customext".to_owned(), "x".to_owned())])
    );
    assert_eq!(event.data, Some(json!({"message": {}})));
}

#[test]
fn from_binary_requires_source() {
    let headers = [("ce-id", "1"), ("ce-type", "t"), ("ce-specversion", "1.0")];

    assert_eq!(
        CloudEvent::from_binary(headers, b""),
        Err(EventError::MissingField {
            field: "ce-source",
            expected: "a header"
        })
    );
}

#[test]
fn text_data_sent_as_is() {
    let mut event = CloudEvent::new("1", "//example", "t");
    event.datacontenttype = Some("text/plain".to_owned());
    event.data = Some(Value::from("hello"));

    assert_eq!(event.to_binary().body, b"hello");
}

#[test]
fn invalid_extension_name_rejected() {
    let json = json!({
        "id": "1", "source": "//s", "type": "t", "specversion": "1.0",
        "serviceName": "storage.googleapis.com",
    });

    assert!(matches!(
        CloudEvent::from_json(&json),
        Err(EventError::InvalidField {
            field: "attribute name",
            ..
        })
    ));
}
