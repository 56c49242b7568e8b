//! Conversion of Cloud Logging's protobuf messages to their proto3 JSON form.
//!
//! The router's filters read a LogEntry in the JSON form of Cloud Logging's REST API, so an
//! entry written over gRPC is converted as the proto3 JSON mapping prescribes. Names are
//! lowerCamelCase, and fields at their default value are omitted, except set oneof members and
//! set message fields. 64-bit integers become strings and enums their names. Timestamps are
//! written as RFC 3339 in UTC and Durations as decimal seconds with an `s` suffix.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat};
use googleapis_tonic_google_cloud_audit::google::cloud::audit::{
    authorization_info, service_account_delegation_info, violation_info, AuditLog,
    AuthenticationInfo, AuthorizationInfo, OrgPolicyViolationInfo, PolicyViolationInfo,
    RequestMetadata, ServiceAccountDelegationInfo,
};
use googleapis_tonic_google_cloud_audit::google::rpc::context::attribute_context;
use serde_json::{Map, Number, Value};
use sluice_proto::google::api::MonitoredResource;
use sluice_proto::google::logging::r#type::{HttpRequest, LogSeverity};
use sluice_proto::google::logging::v2::{
    log_entry, LogEntry, LogEntryOperation, LogEntrySourceLocation, LogSplit,
};
use sluice_proto::google::protobuf::{value, Any, Duration, ListValue, Struct, Timestamp};
use sluice_proto::google::rpc::Status;
use sluice_proto::prost::Message as _;

/// Smallest and largest `Timestamp.seconds` that proto3 JSON can write: 0001-01-01T00:00:00Z
/// and 9999-12-31T23:59:59Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
/// Largest `Duration.seconds` magnitude that the protobuf Duration allows, about 10,000 years.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
const NANOS_PER_SECOND: i32 = 1_000_000_000;
/// Largest integer that a JSON number carries exactly in an IEEE 754 double, 2^53 - 1.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A field whose value has no proto3 JSON form, such as a Timestamp beyond year 9999.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidField {
    /// The field's path in the JSON form, such as `httpRequest.latency`.
    pub(crate) field: String,
    /// The reason the value is invalid.
    pub(crate) reason: String,
}

impl InvalidField {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        InvalidField {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path with the path of the enclosing message.
    fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

impl std::fmt::Display for InvalidField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is invalid: {}", self.field, self.reason)
    }
}

/// A JSON object under construction that leaves out proto3 default values.
#[derive(Default)]
struct JsonObject(Map<String, Value>);

impl JsonObject {
    fn insert(&mut self, key: &str, value: impl Into<Value>) {
        self.0.insert(key.to_owned(), value.into());
    }

    fn string(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.insert(key, value);
        }
    }

    fn boolean(&mut self, key: &str, value: bool) {
        if value {
            self.insert(key, true);
        }
    }

    fn int32(&mut self, key: &str, value: i32) {
        if value != 0 {
            self.insert(key, value);
        }
    }

    /// Writes an int64 as a JSON string, because a JSON number may not keep all 64 bits.
    fn int64(&mut self, key: &str, value: i64) {
        if value != 0 {
            self.insert(key, value.to_string());
        }
    }

    fn strings(&mut self, key: &str, values: &[String]) {
        if !values.is_empty() {
            self.insert(key, values.to_vec());
        }
    }

    fn string_map(&mut self, key: &str, map: &HashMap<String, String>) {
        if !map.is_empty() {
            let object: Map<String, Value> = map
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect();
            self.insert(key, object);
        }
    }

    fn message(&mut self, key: &str, value: Option<Map<String, Value>>) {
        if let Some(value) = value {
            self.insert(key, value);
        }
    }

    fn structure(&mut self, key: &str, value: Option<&Struct>) {
        self.message(key, value.map(struct_to_json));
    }

    fn timestamp(&mut self, key: &str, value: Option<&Timestamp>) -> Result<(), InvalidField> {
        if let Some(timestamp) = value {
            let text =
                format_timestamp(timestamp).map_err(|reason| InvalidField::new(key, reason))?;
            self.insert(key, text);
        }
        Ok(())
    }

    fn duration(&mut self, key: &str, value: Option<&Duration>) -> Result<(), InvalidField> {
        if let Some(duration) = value {
            let text =
                format_duration(duration).map_err(|reason| InvalidField::new(key, reason))?;
            self.insert(key, text);
        }
        Ok(())
    }

    fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// Converts a LogEntry to its JSON form.
///
/// # Errors
///
/// Fails on a Timestamp or Duration out of the protobuf range and on a protoPayload of type
/// AuditLog whose bytes do not decode.
pub(crate) fn entry_to_json(entry: &LogEntry) -> Result<Map<String, Value>, InvalidField> {
    let mut object = JsonObject::default();
    object.string("logName", &entry.log_name);
    object.message(
        "resource",
        entry.resource.as_ref().map(monitored_resource_to_json),
    );

    object.timestamp("timestamp", entry.timestamp.as_ref())?;
    object.timestamp("receiveTimestamp", entry.receive_timestamp.as_ref())?;
    if let Some(severity) = severity_to_json(entry.severity) {
        object.insert("severity", severity);
    }
    object.string("insertId", &entry.insert_id);

    if let Some(request) = &entry.http_request {
        let request = http_request_to_json(request).map_err(|err| err.within("httpRequest"))?;
        object.insert("httpRequest", request);
    }

    object.string_map("labels", &entry.labels);
    object.message("operation", entry.operation.as_ref().map(operation_to_json));
    object.string("trace", &entry.trace);
    object.string("spanId", &entry.span_id);
    object.boolean("traceSampled", entry.trace_sampled);
    object.message(
        "sourceLocation",
        entry.source_location.as_ref().map(source_location_to_json),
    );
    object.message("split", entry.split.as_ref().map(split_to_json));

    // A set oneof member is written even when it contains its type's default, such as "".
    match &entry.payload {
        Some(log_entry::Payload::TextPayload(text)) => object.insert("textPayload", text.as_str()),
        Some(log_entry::Payload::JsonPayload(payload)) => {
            object.insert("jsonPayload", struct_to_json(payload));
        }
        Some(log_entry::Payload::ProtoPayload(payload)) => {
            let payload = any_to_json(payload).map_err(|err| err.within("protoPayload"))?;
            object.insert("protoPayload", payload);
        }
        None => {}
    }
    Ok(object.into_map())
}

/// Returns the JSON form of a LogSeverity: its name, or the number when it has none.
/// DEFAULT, the enum's default value, returns `None` because proto3 JSON omits it.
pub(crate) fn severity_to_json(severity: i32) -> Option<Value> {
    match LogSeverity::try_from(severity) {
        Ok(LogSeverity::Default) => None,
        Ok(known) => Some(Value::String(known.as_str_name().to_owned())),
        Err(_) => Some(Value::from(severity)),
    }
}

/// Formats a Timestamp as RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, such as
/// `2024-05-01T12:00:00.250Z`.
///
/// # Errors
///
/// Fails when the time is outside years 1 to 9999 or `nanos` is outside 0 to 999,999,999.
pub(crate) fn format_timestamp(timestamp: &Timestamp) -> Result<String, String> {
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&timestamp.seconds) {
        return Err(format!(
            "seconds {} is outside years 1 to 9999 (seconds {MIN_TIMESTAMP_SECONDS} to \
             {MAX_TIMESTAMP_SECONDS})",
            timestamp.seconds
        ));
    }
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|nanos| *nanos < NANOS_PER_SECOND.unsigned_abs())
        .ok_or_else(|| format!("nanos {} is outside 0 to 999999999", timestamp.nanos))?;
    let time = DateTime::from_timestamp(timestamp.seconds, nanos)
        .ok_or_else(|| format!("seconds {} is not a valid time", timestamp.seconds))?;
    // AutoSi writes all non-zero sub-second digits in groups of 3, as proto3 JSON does.
    Ok(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Formats a Duration as proto3 JSON does: decimal seconds with 0, 3, 6 or 9 fractional
/// digits and an `s` suffix, such as `1.500s` or `-0.000001s`.
///
/// # Errors
///
/// Fails when `seconds` exceeds about 10,000 years, `nanos` is outside ±999,999,999 or the
/// two have opposite signs.
pub(crate) fn format_duration(duration: &Duration) -> Result<String, String> {
    let Duration { seconds, nanos } = *duration;
    if seconds.abs() > MAX_DURATION_SECONDS {
        return Err(format!(
            "seconds {seconds} is outside ±{MAX_DURATION_SECONDS}"
        ));
    }
    if nanos.abs() >= NANOS_PER_SECOND {
        return Err(format!("nanos {nanos} is outside ±999999999"));
    }
    if (seconds < 0 && nanos > 0) || (seconds > 0 && nanos < 0) {
        return Err(format!(
            "seconds {seconds} and nanos {nanos} have opposite signs"
        ));
    }
    let sign = if seconds < 0 || nanos < 0 { "-" } else { "" };
    Ok(format!(
        "{sign}{}{}s",
        seconds.unsigned_abs(),
        fraction(nanos.unsigned_abs())
    ))
}

/// Writes nanoseconds as a fraction of 0, 3, 6 or 9 digits, the fewest that keep the value.
fn fraction(nanos: u32) -> String {
    if nanos == 0 {
        String::new()
    } else if nanos.is_multiple_of(1_000_000) {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    }
}

/// Converts a `google.protobuf.Struct` to a JSON object.
pub(crate) fn struct_to_json(value: &Struct) -> Map<String, Value> {
    value
        .fields
        .iter()
        .map(|(name, value)| (name.clone(), value_to_json(value)))
        .collect()
}

/// Converts a `google.protobuf.Value` to JSON. A Value with no kind set becomes `null`.
pub(crate) fn value_to_json(value: &sluice_proto::google::protobuf::Value) -> Value {
    match &value.kind {
        None | Some(value::Kind::NullValue(_)) => Value::Null,
        Some(value::Kind::NumberValue(number)) => number_to_json(*number),
        Some(value::Kind::StringValue(text)) => Value::String(text.clone()),
        Some(value::Kind::BoolValue(flag)) => Value::Bool(*flag),
        Some(value::Kind::StructValue(object)) => Value::Object(struct_to_json(object)),
        Some(value::Kind::ListValue(list)) => list_to_json(list),
    }
}

fn list_to_json(list: &ListValue) -> Value {
    Value::Array(list.values.iter().map(value_to_json).collect())
}

/// Writes a Struct number as JSON. Integral values that a double represents exactly are
/// written without a fraction, as Google's JSON printers write them (`5`, not `5.0`).
fn number_to_json(number: f64) -> Value {
    if number.fract() == 0.0 && number.abs() <= MAX_SAFE_INTEGER {
        // The check above makes the conversion exact.
        return Value::from(number as i64);
    }
    match Number::from_f64(number) {
        Some(number) => Value::Number(number),
        // NOTE: proto3 JSON has no form for a non-finite Struct number and Google's printers
        // fail on one. These strings are the proto3 JSON spelling for double fields.
        None if number.is_nan() => Value::String("NaN".to_owned()),
        None if number > 0.0 => Value::String("Infinity".to_owned()),
        None => Value::String("-Infinity".to_owned()),
    }
}

/// Returns the JSON form of an enum value: its name, or the number when `name` is `None`
/// because the value is unknown to this build.
fn enum_to_json(number: i32, name: Option<&'static str>) -> Value {
    match name {
        Some(name) => Value::String(name.to_owned()),
        None => Value::from(number),
    }
}

fn monitored_resource_to_json(resource: &MonitoredResource) -> Map<String, Value> {
    let mut object = JsonObject::default();
    object.string("type", &resource.r#type);
    object.string_map("labels", &resource.labels);
    object.into_map()
}

fn http_request_to_json(request: &HttpRequest) -> Result<Map<String, Value>, InvalidField> {
    let mut object = JsonObject::default();
    object.string("requestMethod", &request.request_method);
    object.string("requestUrl", &request.request_url);
    object.int64("requestSize", request.request_size);
    object.int32("status", request.status);
    object.int64("responseSize", request.response_size);
    object.string("userAgent", &request.user_agent);
    object.string("remoteIp", &request.remote_ip);
    object.string("serverIp", &request.server_ip);
    object.string("referer", &request.referer);
    object.duration("latency", request.latency.as_ref())?;
    object.boolean("cacheLookup", request.cache_lookup);
    object.boolean("cacheHit", request.cache_hit);
    object.boolean(
        "cacheValidatedWithOriginServer",
        request.cache_validated_with_origin_server,
    );
    object.int64("cacheFillBytes", request.cache_fill_bytes);
    object.string("protocol", &request.protocol);
    Ok(object.into_map())
}

fn operation_to_json(operation: &LogEntryOperation) -> Map<String, Value> {
    let mut object = JsonObject::default();
    object.string("id", &operation.id);
    object.string("producer", &operation.producer);
    object.boolean("first", operation.first);
    object.boolean("last", operation.last);
    object.into_map()
}

fn source_location_to_json(location: &LogEntrySourceLocation) -> Map<String, Value> {
    let mut object = JsonObject::default();
    object.string("file", &location.file);
    object.int64("line", location.line);
    object.string("function", &location.function);
    object.into_map()
}

fn split_to_json(split: &LogSplit) -> Map<String, Value> {
    let mut object = JsonObject::default();
    object.string("uid", &split.uid);
    object.int32("index", split.index);
    object.int32("totalSplits", split.total_splits);
    object.into_map()
}

/// Converts a `google.protobuf.Any` to its proto3 JSON form: `@type` beside the fields of
/// an AuditLog, or beside `value` for the well-known types Struct, Value, ListValue,
/// Timestamp, Duration and Empty.
///
/// # Errors
///
/// Fails when the bytes of a type listed above do not decode, or decode to a Timestamp or
/// Duration out of range.
pub(crate) fn any_to_json(any: &Any) -> Result<Map<String, Value>, InvalidField> {
    let mut object = Map::new();
    object.insert("@type".to_owned(), Value::String(any.type_url.clone()));
    let bytes = any.value.as_slice();
    // Type URLs may name any host, so only the message name after the last `/` counts.
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    let undecodable = |err: sluice_proto::prost::DecodeError| {
        InvalidField::new("", format!("the bytes are not a valid {type_name}: {err}"))
    };
    let value = match type_name {
        "google.cloud.audit.AuditLog" => {
            let log = AuditLog::decode(bytes).map_err(undecodable)?;
            object.extend(audit_log_to_json(&log)?);
            None
        }
        "google.protobuf.Struct" => Some(Value::Object(struct_to_json(
            &Struct::decode(bytes).map_err(undecodable)?,
        ))),
        "google.protobuf.Value" => Some(value_to_json(
            &sluice_proto::google::protobuf::Value::decode(bytes).map_err(undecodable)?,
        )),
        "google.protobuf.ListValue" => Some(list_to_json(
            &ListValue::decode(bytes).map_err(undecodable)?,
        )),
        "google.protobuf.Timestamp" => {
            let timestamp = Timestamp::decode(bytes).map_err(undecodable)?;
            let text = format_timestamp(&timestamp)
                .map_err(|reason| InvalidField::new("value", reason))?;
            Some(Value::String(text))
        }
        "google.protobuf.Duration" => {
            let duration = Duration::decode(bytes).map_err(undecodable)?;
            let text =
                format_duration(&duration).map_err(|reason| InvalidField::new("value", reason))?;
            Some(Value::String(text))
        }
        "google.protobuf.Empty" => Some(Value::Object(Map::new())),
        // NOTE: other types have no descriptor here, so only `@type` is kept and filters on
        // their fields match nothing. Cloud Logging itself accepts only AuditLog and App
        // Engine's RequestLog as protoPayload.
        _ => None,
    };
    if let Some(value) = value {
        object.insert("value".to_owned(), value);
    }
    Ok(object)
}

fn status_to_json(status: &Status) -> Result<Map<String, Value>, InvalidField> {
    let mut object = JsonObject::default();
    object.int32("code", status.code);
    object.string("message", &status.message);
    if !status.details.is_empty() {
        let mut details = Vec::with_capacity(status.details.len());
        for (index, detail) in status.details.iter().enumerate() {
            let detail =
                any_to_json(detail).map_err(|err| err.within(&format!("details[{index}]")))?;
            details.push(Value::Object(detail));
        }
        object.insert("details", details);
    }
    Ok(object.into_map())
}

/// Converts an AuditLog to the fields of its JSON form, without `@type`.
fn audit_log_to_json(log: &AuditLog) -> Result<Map<String, Value>, InvalidField> {
    let mut object = JsonObject::default();
    object.string("serviceName", &log.service_name);
    object.string("methodName", &log.method_name);
    object.string("resourceName", &log.resource_name);
    if let Some(location) = &log.resource_location {
        let mut json = JsonObject::default();
        json.strings("currentLocations", &location.current_locations);
        json.strings("originalLocations", &location.original_locations);
        object.insert("resourceLocation", json.into_map());
    }
    object.structure(
        "resourceOriginalState",
        log.resource_original_state.as_ref(),
    );
    object.int64("numResponseItems", log.num_response_items);

    if let Some(status) = &log.status {
        object.insert(
            "status",
            status_to_json(status).map_err(|err| err.within("status"))?,
        );
    }
    if let Some(info) = &log.authentication_info {
        object.insert("authenticationInfo", authentication_info_to_json(info));
    }

    if !log.authorization_info.is_empty() {
        let mut infos = Vec::with_capacity(log.authorization_info.len());
        for (index, info) in log.authorization_info.iter().enumerate() {
            let info = authorization_info_to_json(info)
                .map_err(|err| err.within(&format!("authorizationInfo[{index}]")))?;
            infos.push(Value::Object(info));
        }
        object.insert("authorizationInfo", infos);
    }

    object.message(
        "policyViolationInfo",
        log.policy_violation_info
            .as_ref()
            .map(policy_violation_info_to_json),
    );
    if let Some(metadata) = &log.request_metadata {
        let metadata =
            request_metadata_to_json(metadata).map_err(|err| err.within("requestMetadata"))?;
        object.insert("requestMetadata", metadata);
    }

    object.structure("request", log.request.as_ref());
    object.structure("response", log.response.as_ref());
    object.structure("metadata", log.metadata.as_ref());

    // serviceData is deprecated in favour of metadata, but services still write it.
    #[allow(deprecated)]
    let service_data = log.service_data.as_ref();
    if let Some(service_data) = service_data {
        let service_data = any_to_json(service_data).map_err(|err| err.within("serviceData"))?;
        object.insert("serviceData", service_data);
    }
    Ok(object.into_map())
}

fn authentication_info_to_json(info: &AuthenticationInfo) -> Map<String, Value> {
    let mut object = JsonObject::default();
    object.string("principalEmail", &info.principal_email);
    object.string("authoritySelector", &info.authority_selector);
    object.structure("thirdPartyPrincipal", info.third_party_principal.as_ref());
    object.string("serviceAccountKeyName", &info.service_account_key_name);
    if !info.service_account_delegation_info.is_empty() {
        let delegations: Vec<Value> = info
            .service_account_delegation_info
            .iter()
            .map(|delegation| Value::Object(delegation_to_json(delegation)))
            .collect();
        object.insert("serviceAccountDelegationInfo", delegations);
    }
    object.string("principalSubject", &info.principal_subject);
    object.into_map()
}

fn delegation_to_json(delegation: &ServiceAccountDelegationInfo) -> Map<String, Value> {
    let mut object = JsonObject::default();
    object.string("principalSubject", &delegation.principal_subject);
    match &delegation.authority {
        Some(service_account_delegation_info::Authority::FirstPartyPrincipal(principal)) => {
            let mut json = JsonObject::default();
            json.string("principalEmail", &principal.principal_email);
            json.structure("serviceMetadata", principal.service_metadata.as_ref());
            object.insert("firstPartyPrincipal", json.into_map());
        }
        Some(service_account_delegation_info::Authority::ThirdPartyPrincipal(principal)) => {
            let mut json = JsonObject::default();
            json.structure("thirdPartyClaims", principal.third_party_claims.as_ref());
            object.insert("thirdPartyPrincipal", json.into_map());
        }
        None => {}
    }
    object.into_map()
}

fn authorization_info_to_json(
    info: &AuthorizationInfo,
) -> Result<Map<String, Value>, InvalidField> {
    let mut object = JsonObject::default();
    object.string("resource", &info.resource);
    object.string("permission", &info.permission);
    object.boolean("granted", info.granted);
    if let Some(resource) = &info.resource_attributes {
        let resource = resource_attributes_to_json(resource)
            .map_err(|err| err.within("resourceAttributes"))?;
        object.insert("resourceAttributes", resource);
    }
    if info.permission_type != 0 {
        let name = authorization_info::PermissionType::try_from(info.permission_type)
            .ok()
            .map(|known| known.as_str_name());
        object.insert("permissionType", enum_to_json(info.permission_type, name));
    }
    Ok(object.into_map())
}

fn resource_attributes_to_json(
    resource: &attribute_context::Resource,
) -> Result<Map<String, Value>, InvalidField> {
    let mut object = JsonObject::default();
    object.string("service", &resource.service);
    object.string("name", &resource.name);
    object.string("type", &resource.r#type);
    object.string_map("labels", &resource.labels);
    object.string("uid", &resource.uid);
    object.string_map("annotations", &resource.annotations);
    object.string("displayName", &resource.display_name);
    object.timestamp("createTime", resource.create_time.as_ref())?;
    object.timestamp("updateTime", resource.update_time.as_ref())?;
    object.timestamp("deleteTime", resource.delete_time.as_ref())?;
    object.string("etag", &resource.etag);
    object.string("location", &resource.location);
    Ok(object.into_map())
}

fn policy_violation_info_to_json(info: &PolicyViolationInfo) -> Map<String, Value> {
    let mut object = JsonObject::default();
    object.message(
        "orgPolicyViolationInfo",
        info.org_policy_violation_info
            .as_ref()
            .map(org_policy_violation_info_to_json),
    );
    object.into_map()
}

fn org_policy_violation_info_to_json(info: &OrgPolicyViolationInfo) -> Map<String, Value> {
    let mut object = JsonObject::default();
    object.structure("payload", info.payload.as_ref());
    object.string("resourceType", &info.resource_type);
    object.string_map("resourceTags", &info.resource_tags);
    if !info.violation_info.is_empty() {
        let violations: Vec<Value> = info
            .violation_info
            .iter()
            .map(|violation| {
                let mut json = JsonObject::default();
                json.string("constraint", &violation.constraint);
                json.string("errorMessage", &violation.error_message);
                json.string("checkedValue", &violation.checked_value);
                if violation.policy_type != 0 {
                    let name = violation_info::PolicyType::try_from(violation.policy_type)
                        .ok()
                        .map(|known| known.as_str_name());
                    json.insert("policyType", enum_to_json(violation.policy_type, name));
                }
                Value::Object(json.into_map())
            })
            .collect();
        object.insert("violationInfo", violations);
    }
    object.into_map()
}

fn request_metadata_to_json(
    metadata: &RequestMetadata,
) -> Result<Map<String, Value>, InvalidField> {
    let mut object = JsonObject::default();
    object.string("callerIp", &metadata.caller_ip);
    object.string(
        "callerSuppliedUserAgent",
        &metadata.caller_supplied_user_agent,
    );
    object.string("callerNetwork", &metadata.caller_network);
    if let Some(request) = &metadata.request_attributes {
        let request =
            request_attributes_to_json(request).map_err(|err| err.within("requestAttributes"))?;
        object.insert("requestAttributes", request);
    }
    object.message(
        "destinationAttributes",
        metadata.destination_attributes.as_ref().map(peer_to_json),
    );
    Ok(object.into_map())
}

fn request_attributes_to_json(
    request: &attribute_context::Request,
) -> Result<Map<String, Value>, InvalidField> {
    let mut object = JsonObject::default();
    object.string("id", &request.id);
    object.string("method", &request.method);
    object.string_map("headers", &request.headers);
    object.string("path", &request.path);
    object.string("host", &request.host);
    object.string("scheme", &request.scheme);
    object.string("query", &request.query);
    object.timestamp("time", request.time.as_ref())?;
    object.int64("size", request.size);
    object.string("protocol", &request.protocol);
    object.string("reason", &request.reason);
    if let Some(auth) = &request.auth {
        let mut json = JsonObject::default();
        json.string("principal", &auth.principal);
        json.strings("audiences", &auth.audiences);
        json.string("presenter", &auth.presenter);
        json.structure("claims", auth.claims.as_ref());
        json.strings("accessLevels", &auth.access_levels);
        object.insert("auth", json.into_map());
    }
    Ok(object.into_map())
}

fn peer_to_json(peer: &attribute_context::Peer) -> Map<String, Value> {
    let mut object = JsonObject::default();
    object.string("ip", &peer.ip);
    object.int64("port", peer.port);
    object.string_map("labels", &peer.labels);
    object.string("principal", &peer.principal);
    object.string("regionCode", &peer.region_code);
    object.into_map()
}

#[cfg(test)]
mod tests {
    use googleapis_tonic_google_cloud_audit::google::cloud::audit::{
        ResourceLocation, ViolationInfo,
    };
    use serde_json::json;
    use sluice_proto::google::protobuf::NullValue;

    use super::*;

    fn timestamp(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    fn struct_of(fields: Vec<(&str, value::Kind)>) -> Struct {
        Struct {
            fields: fields
                .into_iter()
                .map(|(name, kind)| {
                    (
                        name.to_owned(),
                        sluice_proto::google::protobuf::Value { kind: Some(kind) },
                    )
                })
                .collect(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn to_json(entry: &LogEntry) -> Value {
        Value::Object(entry_to_json(entry).expect("the entry converts"))
    }

    #[test]
    fn entry_with_every_field() {
        let entry = LogEntry {
            log_name: "projects/demo/logs/app".to_owned(),
            resource: Some(MonitoredResource {
                r#type: "gcs_bucket".to_owned(),
                labels: labels(&[("bucket_name", "photos"), ("location", "eu")]),
            }),
            timestamp: Some(timestamp(1_714_564_800, 250_000_000)),
            receive_timestamp: Some(timestamp(1_714_564_801, 0)),
            severity: LogSeverity::Warning as i32,
            insert_id: "id-1".to_owned(),
            http_request: Some(HttpRequest {
                request_method: "GET".to_owned(),
                request_url: "https://example.com/a?b=c".to_owned(),
                request_size: 1234,
                status: 404,
                response_size: 9_007_199_254_740_993,
                user_agent: "curl/8.0".to_owned(),
                remote_ip: "192.0.2.1".to_owned(),
                server_ip: "198.51.100.2".to_owned(),
                referer: "https://example.com/".to_owned(),
                latency: Some(Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }),
                cache_lookup: true,
                cache_hit: true,
                cache_validated_with_origin_server: true,
                cache_fill_bytes: -7,
                protocol: "HTTP/1.1".to_owned(),
            }),
            labels: labels(&[("env", "prod")]),
            operation: Some(LogEntryOperation {
                id: "op-1".to_owned(),
                producer: "github.com/demo/app".to_owned(),
                first: true,
                last: true,
            }),
            trace: "projects/demo/traces/abc".to_owned(),
            span_id: "000000000000004a".to_owned(),
            trace_sampled: true,
            source_location: Some(LogEntrySourceLocation {
                file: "main.rs".to_owned(),
                line: 42,
                function: "main".to_owned(),
            }),
            split: Some(LogSplit {
                uid: "split-1".to_owned(),
                index: 1,
                total_splits: 3,
            }),
            payload: Some(log_entry::Payload::TextPayload("hello".to_owned())),
        };
        let expected = json!({
            "logName": "projects/demo/logs/app",
            "resource": {
                "type": "gcs_bucket",
                "labels": {"bucket_name": "photos", "location": "eu"}
            },
            "timestamp": "2024-05-01T12:00:00.250Z",
            "receiveTimestamp": "2024-05-01T12:00:01Z",
            "severity": "WARNING",
            "insertId": "id-1",
            "httpRequest": {
                "requestMethod": "GET",
                "requestUrl": "https://example.com/a?b=c",
                "requestSize": "1234",
                "status": 404,
                "responseSize": "9007199254740993",
                "userAgent": "curl/8.0",
                "remoteIp": "192.0.2.1",
                "serverIp": "198.51.100.2",
                "referer": "https://example.com/",
                "latency": "1.500s",
                "cacheLookup": true,
                "cacheHit": true,
                "cacheValidatedWithOriginServer": true,
                "cacheFillBytes": "-7",
                "protocol": "HTTP/1.1"
            },
            "labels": {"env": "prod"},
            "operation": {
                "id": "op-1",
                "producer": "github.com/demo/app",
                "first": true,
                "last": true
            },
            "trace": "projects/demo/traces/abc",
            "spanId": "000000000000004a",
            "traceSampled": true,
            "sourceLocation": {"file": "main.rs", "line": "42", "function": "main"},
            "split": {"uid": "split-1", "index": 1, "totalSplits": 3},
            "textPayload": "hello"
        });
        assert_eq!(to_json(&entry), expected);
    }

    #[test]
    fn default_fields_are_omitted() {
        assert_eq!(to_json(&LogEntry::default()), json!({}));
    }

    #[test]
    fn set_messages_with_default_fields_are_empty_objects() {
        let entry = LogEntry {
            resource: Some(MonitoredResource::default()),
            http_request: Some(HttpRequest::default()),
            operation: Some(LogEntryOperation::default()),
            source_location: Some(LogEntrySourceLocation::default()),
            split: Some(LogSplit::default()),
            ..LogEntry::default()
        };
        let expected = json!({
            "resource": {},
            "httpRequest": {},
            "operation": {},
            "sourceLocation": {},
            "split": {}
        });
        assert_eq!(to_json(&entry), expected);
    }

    #[test]
    fn empty_text_payload_is_kept() {
        let entry = LogEntry {
            payload: Some(log_entry::Payload::TextPayload(String::new())),
            ..LogEntry::default()
        };
        assert_eq!(to_json(&entry), json!({"textPayload": ""}));
    }

    #[test]
    fn timestamp_fraction_digits() {
        let cases = [
            (timestamp(0, 0), "1970-01-01T00:00:00Z"),
            (timestamp(1_714_564_800, 0), "2024-05-01T12:00:00Z"),
            (
                timestamp(1_714_564_800, 250_000_000),
                "2024-05-01T12:00:00.250Z",
            ),
            (
                timestamp(1_714_564_800, 123_456_000),
                "2024-05-01T12:00:00.123456Z",
            ),
            (
                timestamp(1_714_564_800, 1),
                "2024-05-01T12:00:00.000000001Z",
            ),
            (
                timestamp(1_714_564_800, 999_999_999),
                "2024-05-01T12:00:00.999999999Z",
            ),
            (timestamp(-1, 0), "1969-12-31T23:59:59Z"),
            (timestamp(MIN_TIMESTAMP_SECONDS, 0), "0001-01-01T00:00:00Z"),
            (
                timestamp(MAX_TIMESTAMP_SECONDS, 999_999_999),
                "9999-12-31T23:59:59.999999999Z",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                format_timestamp(&input).as_deref(),
                Ok(expected),
                "{input:?}"
            );
        }
    }

    #[test]
    fn timestamp_out_of_range_is_invalid() {
        let cases = [
            timestamp(MIN_TIMESTAMP_SECONDS - 1, 0),
            timestamp(MAX_TIMESTAMP_SECONDS + 1, 0),
            timestamp(0, -1),
            timestamp(0, 1_000_000_000),
        ];
        for input in cases {
            assert!(format_timestamp(&input).is_err(), "{input:?} was accepted");
        }
        let entry = LogEntry {
            timestamp: Some(timestamp(0, -5)),
            ..LogEntry::default()
        };
        let err = entry_to_json(&entry).expect_err("negative nanos are invalid");
        assert_eq!(err.field, "timestamp");
    }

    #[test]
    fn duration_forms() {
        let cases = [
            (0, 0, "0s"),
            (1, 500_000_000, "1.500s"),
            (-1, -500_000_000, "-1.500s"),
            (0, -1_000, "-0.000001s"),
            (3, 1, "3.000000001s"),
            (90, 120_000, "90.000120s"),
            (MAX_DURATION_SECONDS, 0, "315576000000s"),
        ];
        for (seconds, nanos, expected) in cases {
            let duration = Duration { seconds, nanos };
            assert_eq!(format_duration(&duration).as_deref(), Ok(expected));
        }
    }

    #[test]
    fn duration_out_of_range_is_invalid() {
        let cases = [
            (MAX_DURATION_SECONDS + 1, 0),
            (0, 1_000_000_000),
            (1, -1),
            (-1, 1),
        ];
        for (seconds, nanos) in cases {
            let duration = Duration { seconds, nanos };
            assert!(
                format_duration(&duration).is_err(),
                "{duration:?} was accepted"
            );
        }
        let entry = LogEntry {
            http_request: Some(HttpRequest {
                latency: Some(Duration {
                    seconds: 1,
                    nanos: -1,
                }),
                ..HttpRequest::default()
            }),
            ..LogEntry::default()
        };
        let err = entry_to_json(&entry).expect_err("mixed signs are invalid");
        assert_eq!(err.field, "httpRequest.latency");
    }

    #[test]
    fn severity_names() {
        let cases = [
            (0, None),
            (100, Some(json!("DEBUG"))),
            (200, Some(json!("INFO"))),
            (300, Some(json!("NOTICE"))),
            (400, Some(json!("WARNING"))),
            (500, Some(json!("ERROR"))),
            (600, Some(json!("CRITICAL"))),
            (700, Some(json!("ALERT"))),
            (800, Some(json!("EMERGENCY"))),
            (450, Some(json!(450))),
            (-1, Some(json!(-1))),
        ];
        for (number, expected) in cases {
            assert_eq!(severity_to_json(number), expected, "severity {number}");
        }
    }

    #[test]
    fn struct_nesting_and_numbers() {
        let inner = struct_of(vec![
            ("deep", value::Kind::StringValue("yes".to_owned())),
            (
                "list",
                value::Kind::ListValue(ListValue {
                    values: vec![
                        sluice_proto::google::protobuf::Value {
                            kind: Some(value::Kind::NumberValue(1.0)),
                        },
                        sluice_proto::google::protobuf::Value {
                            kind: Some(value::Kind::StructValue(struct_of(vec![(
                                "k",
                                value::Kind::BoolValue(false),
                            )]))),
                        },
                        sluice_proto::google::protobuf::Value { kind: None },
                    ],
                }),
            ),
        ]);
        let payload = struct_of(vec![
            ("integral", value::Kind::NumberValue(5.0)),
            ("negative", value::Kind::NumberValue(-3.0)),
            ("fraction", value::Kind::NumberValue(1.5)),
            ("huge", value::Kind::NumberValue(1e300)),
            (
                "past_safe",
                value::Kind::NumberValue(9_007_199_254_740_992.0),
            ),
            ("nan", value::Kind::NumberValue(f64::NAN)),
            ("infinity", value::Kind::NumberValue(f64::INFINITY)),
            (
                "minus_infinity",
                value::Kind::NumberValue(f64::NEG_INFINITY),
            ),
            ("null", value::Kind::NullValue(NullValue::NullValue as i32)),
            ("flag", value::Kind::BoolValue(true)),
            ("text", value::Kind::StringValue("hi".to_owned())),
            ("inner", value::Kind::StructValue(inner)),
            ("empty", value::Kind::StructValue(Struct::default())),
        ]);
        let entry = LogEntry {
            payload: Some(log_entry::Payload::JsonPayload(payload)),
            ..LogEntry::default()
        };
        let expected = json!({
            "jsonPayload": {
                "integral": 5,
                "negative": -3,
                "fraction": 1.5,
                "huge": 1e300,
                "past_safe": 9_007_199_254_740_992.0,
                "nan": "NaN",
                "infinity": "Infinity",
                "minus_infinity": "-Infinity",
                "null": null,
                "flag": true,
                "text": "hi",
                "inner": {"deep": "yes", "list": [1, {"k": false}, null]},
                "empty": {}
            }
        });
        assert_eq!(to_json(&entry), expected);
        let text = serde_json::to_string(&to_json(&entry)).expect("serializes");
        assert!(text.contains(r#""integral":5,"#), "{text}");
    }

    fn sample_audit_log() -> AuditLog {
        #[allow(deprecated)]
        AuditLog {
            service_name: "storage.googleapis.com".to_owned(),
            method_name: "storage.objects.delete".to_owned(),
            resource_name: "projects/_/buckets/photos/objects/cat.jpg".to_owned(),
            resource_location: Some(ResourceLocation {
                current_locations: vec!["eu".to_owned()],
                original_locations: Vec::new(),
            }),
            resource_original_state: Some(struct_of(vec![(
                "size",
                value::Kind::NumberValue(10.0),
            )])),
            num_response_items: 12,
            status: Some(Status {
                code: 7,
                message: "PERMISSION_DENIED".to_owned(),
                details: vec![Any {
                    type_url: "type.googleapis.com/google.protobuf.Struct".to_owned(),
                    value: struct_of(vec![("why", value::Kind::StringValue("iam".to_owned()))])
                        .encode_to_vec(),
                }],
            }),
            authentication_info: Some(AuthenticationInfo {
                principal_email: "alice@example.com".to_owned(),
                service_account_delegation_info: vec![ServiceAccountDelegationInfo {
                    principal_subject: "serviceAccount:sa@example.com".to_owned(),
                    authority: Some(
                        service_account_delegation_info::Authority::FirstPartyPrincipal(
                            service_account_delegation_info::FirstPartyPrincipal {
                                principal_email: "sa@example.com".to_owned(),
                                service_metadata: None,
                            },
                        ),
                    ),
                }],
                principal_subject: "user:alice@example.com".to_owned(),
                ..AuthenticationInfo::default()
            }),
            authorization_info: vec![
                AuthorizationInfo {
                    resource: "projects/_/buckets/photos/objects/cat.jpg".to_owned(),
                    permission: "storage.objects.delete".to_owned(),
                    granted: false,
                    resource_attributes: Some(attribute_context::Resource {
                        service: "storage.googleapis.com".to_owned(),
                        create_time: Some(timestamp(1_714_564_800, 0)),
                        ..attribute_context::Resource::default()
                    }),
                    permission_type: authorization_info::PermissionType::DataWrite as i32,
                },
                AuthorizationInfo {
                    permission: "storage.objects.get".to_owned(),
                    granted: true,
                    permission_type: 99,
                    ..AuthorizationInfo::default()
                },
            ],
            policy_violation_info: Some(PolicyViolationInfo {
                org_policy_violation_info: Some(OrgPolicyViolationInfo {
                    resource_type: "storage.googleapis.com/Bucket".to_owned(),
                    violation_info: vec![ViolationInfo {
                        constraint: "constraints/storage.publicAccessPrevention".to_owned(),
                        policy_type: violation_info::PolicyType::BooleanConstraint as i32,
                        ..ViolationInfo::default()
                    }],
                    ..OrgPolicyViolationInfo::default()
                }),
            }),
            request_metadata: Some(RequestMetadata {
                caller_ip: "192.0.2.7".to_owned(),
                caller_supplied_user_agent: "gsutil/5".to_owned(),
                request_attributes: Some(attribute_context::Request {
                    time: Some(timestamp(1_714_564_800, 5_000_000)),
                    size: 2048,
                    auth: Some(attribute_context::Auth {
                        principal: "alice".to_owned(),
                        audiences: vec!["storage".to_owned()],
                        ..attribute_context::Auth::default()
                    }),
                    ..attribute_context::Request::default()
                }),
                destination_attributes: Some(attribute_context::Peer {
                    ip: "203.0.113.9".to_owned(),
                    port: 443,
                    ..attribute_context::Peer::default()
                }),
                ..RequestMetadata::default()
            }),
            request: Some(struct_of(vec![(
                "@type",
                value::Kind::StringValue("type.googleapis.com/storage.objects.delete".to_owned()),
            )])),
            response: None,
            metadata: Some(struct_of(vec![(
                "reason",
                value::Kind::StringValue("cleanup".to_owned()),
            )])),
            service_data: Some(Any {
                type_url: "type.googleapis.com/google.cloud.bigquery.logging.v1.AuditData"
                    .to_owned(),
                value: vec![1, 2, 3],
            }),
        }
    }

    #[test]
    fn audit_log_payload_is_decoded() {
        let entry = LogEntry {
            payload: Some(log_entry::Payload::ProtoPayload(Any {
                type_url: "type.googleapis.com/google.cloud.audit.AuditLog".to_owned(),
                value: sample_audit_log().encode_to_vec(),
            })),
            ..LogEntry::default()
        };
        let expected = json!({
            "protoPayload": {
                "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "serviceName": "storage.googleapis.com",
                "methodName": "storage.objects.delete",
                "resourceName": "projects/_/buckets/photos/objects/cat.jpg",
                "resourceLocation": {"currentLocations": ["eu"]},
                "resourceOriginalState": {"size": 10},
                "numResponseItems": "12",
                "status": {
                    "code": 7,
                    "message": "PERMISSION_DENIED",
                    "details": [{
                        "@type": "type.googleapis.com/google.protobuf.Struct",
                        "value": {"why": "iam"}
                    }]
                },
                "authenticationInfo": {
                    "principalEmail": "alice@example.com",
                    "serviceAccountDelegationInfo": [{
                        "principalSubject": "serviceAccount:sa@example.com",
                        "firstPartyPrincipal": {"principalEmail": "sa@example.com"}
                    }],
                    "principalSubject": "user:alice@example.com"
                },
                "authorizationInfo": [
                    {
                        "resource": "projects/_/buckets/photos/objects/cat.jpg",
                        "permission": "storage.objects.delete",
                        "resourceAttributes": {
                            "service": "storage.googleapis.com",
                            "createTime": "2024-05-01T12:00:00Z"
                        },
                        "permissionType": "DATA_WRITE"
                    },
                    {
                        "permission": "storage.objects.get",
                        "granted": true,
                        "permissionType": 99
                    }
                ],
                "policyViolationInfo": {
                    "orgPolicyViolationInfo": {
                        "resourceType": "storage.googleapis.com/Bucket",
                        "violationInfo": [{
                            "constraint": "constraints/storage.publicAccessPrevention",
                            "policyType": "BOOLEAN_CONSTRAINT"
                        }]
                    }
                },
                "requestMetadata": {
                    "callerIp": "192.0.2.7",
                    "callerSuppliedUserAgent": "gsutil/5",
                    "requestAttributes": {
                        "time": "2024-05-01T12:00:00.005Z",
                        "size": "2048",
                        "auth": {"principal": "alice", "audiences": ["storage"]}
                    },
                    "destinationAttributes": {"ip": "203.0.113.9", "port": "443"}
                },
                "request": {"@type": "type.googleapis.com/storage.objects.delete"},
                "metadata": {"reason": "cleanup"},
                "serviceData": {
                    "@type": "type.googleapis.com/google.cloud.bigquery.logging.v1.AuditData"
                }
            }
        });
        assert_eq!(to_json(&entry), expected);
    }

    #[test]
    fn audit_log_with_bad_bytes_is_invalid() {
        let entry = LogEntry {
            payload: Some(log_entry::Payload::ProtoPayload(Any {
                type_url: "type.googleapis.com/google.cloud.audit.AuditLog".to_owned(),
                value: vec![0xff, 0xff, 0xff],
            })),
            ..LogEntry::default()
        };
        let err = entry_to_json(&entry).expect_err("garbage does not decode");
        assert_eq!(err.field, "protoPayload");
        assert!(
            err.reason.contains("google.cloud.audit.AuditLog"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn audit_log_timestamp_error_names_the_path() {
        let log = AuditLog {
            request_metadata: Some(RequestMetadata {
                request_attributes: Some(attribute_context::Request {
                    time: Some(timestamp(0, -1)),
                    ..attribute_context::Request::default()
                }),
                ..RequestMetadata::default()
            }),
            ..AuditLog::default()
        };
        let entry = LogEntry {
            payload: Some(log_entry::Payload::ProtoPayload(Any {
                type_url: "type.googleapis.com/google.cloud.audit.AuditLog".to_owned(),
                value: log.encode_to_vec(),
            })),
            ..LogEntry::default()
        };
        let err = entry_to_json(&entry).expect_err("negative nanos are invalid");
        assert_eq!(
            err.field,
            "protoPayload.requestMetadata.requestAttributes.time"
        );
    }

    #[test]
    fn well_known_and_unknown_any_types() {
        let cases = [
            (
                Any {
                    type_url: "type.googleapis.com/google.protobuf.Timestamp".to_owned(),
                    value: timestamp(1_714_564_800, 0).encode_to_vec(),
                },
                json!({
                    "@type": "type.googleapis.com/google.protobuf.Timestamp",
                    "value": "2024-05-01T12:00:00Z"
                }),
            ),
            (
                Any {
                    type_url: "type.googleapis.com/google.protobuf.Duration".to_owned(),
                    value: Duration {
                        seconds: 2,
                        nanos: 0,
                    }
                    .encode_to_vec(),
                },
                json!({"@type": "type.googleapis.com/google.protobuf.Duration", "value": "2s"}),
            ),
            (
                Any {
                    type_url: "type.googleapis.com/google.protobuf.Empty".to_owned(),
                    value: Vec::new(),
                },
                json!({"@type": "type.googleapis.com/google.protobuf.Empty", "value": {}}),
            ),
            (
                Any {
                    type_url: "type.googleapis.com/google.appengine.logging.v1.RequestLog"
                        .to_owned(),
                    value: vec![10, 3, 97, 98, 99],
                },
                json!({"@type": "type.googleapis.com/google.appengine.logging.v1.RequestLog"}),
            ),
        ];
        for (any, expected) in cases {
            let json = any_to_json(&any).expect("converts");
            assert_eq!(Value::Object(json), expected, "{}", any.type_url);
        }
    }
}
