//! The `[tls]`, `[auth]` and `[limits]` tables: how the listener encrypts, who may call what,
//! and the size and rate limits of requests. docs/security.md describes the model.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::Deserialize;

/// The actions that a grant allows, as `actions` names them.
pub(crate) const ACTIONS: [&str; 5] = ["publish", "subscribe", "admin", "upload", "read_objects"];

/// The `[tls]` table as written.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TlsConfig {
    /// PEM file with the server certificate chain, leaf first. Required.
    #[serde(default)]
    pub(crate) cert_file: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1). Required.
    #[serde(default)]
    pub(crate) key_file: PathBuf,
    /// PEM file of the CAs that sign client certificates. Setting it turns on mTLS.
    #[serde(default)]
    pub(crate) client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: `required` rejects connections without a client
    /// certificate in the handshake, `optional` lets them in to authenticate with a token.
    #[serde(default = "default_client_certificate")]
    pub(crate) client_certificate: String,
}

fn default_client_certificate() -> String {
    "required".to_owned()
}

/// The `[auth]` table as written.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AuthConfig {
    /// `None` leaves the choice to the listen address: off on loopback, on elsewhere.
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    /// The callers that may authenticate, in file order.
    #[serde(default)]
    pub(crate) identities: Vec<IdentityConfig>,
    /// PEM file with the RSA private key that signs push tokens; a key is generated at each
    /// start without it.
    #[serde(default)]
    pub(crate) push_signing_key_file: Option<PathBuf>,
    /// The `iss` claim of push tokens.
    #[serde(default = "default_push_token_issuer")]
    pub(crate) push_token_issuer: String,
}

fn default_push_token_issuer() -> String {
    "sluice".to_owned()
}

/// One `[[auth.identities]]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IdentityConfig {
    /// Unique name, used as the principal in audit entries. A name with `@` is written as
    /// `principalEmail`, any other as `principalSubject`.
    #[serde(default)]
    pub(crate) name: String,
    /// Lower-case hex SHA-256 of the identity's bearer token, as `sluice auth hash-token`
    /// prints it.
    #[serde(default)]
    pub(crate) token_sha256: Option<String>,
    /// The identity of an mTLS client certificate that authenticates as this identity: its
    /// first URI SAN, else its first DNS SAN, else its subject common name.
    #[serde(default)]
    pub(crate) client_certificate: Option<String>,
    /// The identity's permissions: actions on resource patterns.
    #[serde(default)]
    pub(crate) grants: Vec<GrantConfig>,
}

/// One `[[auth.identities.grants]]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GrantConfig {
    /// Some of [`ACTIONS`].
    #[serde(default)]
    pub(crate) actions: Vec<String>,
    /// Glob patterns (`*` and `?`) on resource names such as `topics/orders-*`,
    /// `subscriptions/NAME`, `buckets/NAME` or `logs`.
    #[serde(default)]
    pub(crate) resources: Vec<String>,
}

/// The `[limits]` table as written. Each default is Pub/Sub's quota where Pub/Sub has one.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LimitsConfig {
    /// Largest gRPC request message and REST request body, in bytes, uploads excepted.
    #[serde(default = "default_max_request_bytes")]
    pub(crate) max_request_bytes: i64,
    /// Largest Pub/Sub message (data, attributes and ordering key), in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub(crate) max_message_bytes: i64,
    /// Most attributes on one message.
    #[serde(default = "default_max_attributes")]
    pub(crate) max_attributes: i64,
    /// Maximum attribute key length, in bytes.
    #[serde(default = "default_max_attribute_key_bytes")]
    pub(crate) max_attribute_key_bytes: i64,
    /// Maximum attribute value length, in bytes.
    #[serde(default = "default_max_attribute_value_bytes")]
    pub(crate) max_attribute_value_bytes: i64,
    /// Largest upload request body, in bytes. `--max-upload-bytes` overrides it.
    #[serde(default)]
    pub(crate) max_upload_bytes: Option<i64>,
    /// Most open streaming calls (StreamingPull, ingest streams) per client at once.
    #[serde(default = "default_max_streams_per_client")]
    pub(crate) max_streams_per_client: i64,
    /// Messages per second that one identity may publish, REST and gRPC together. 0 turns
    /// the limit off.
    #[serde(default)]
    pub(crate) publish_messages_per_sec: i64,
    /// Messages above the steady rate that one identity may publish at once.
    #[serde(default = "default_publish_burst_messages")]
    pub(crate) publish_burst_messages: i64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_bytes: default_max_request_bytes(),
            max_message_bytes: default_max_message_bytes(),
            max_attributes: default_max_attributes(),
            max_attribute_key_bytes: default_max_attribute_key_bytes(),
            max_attribute_value_bytes: default_max_attribute_value_bytes(),
            max_upload_bytes: None,
            max_streams_per_client: default_max_streams_per_client(),
            publish_messages_per_sec: 0,
            publish_burst_messages: default_publish_burst_messages(),
        }
    }
}

fn default_max_request_bytes() -> i64 {
    16 * 1024 * 1024
}

fn default_max_message_bytes() -> i64 {
    10 * 1024 * 1024
}

fn default_max_attributes() -> i64 {
    100
}

fn default_max_attribute_key_bytes() -> i64 {
    256
}

fn default_max_attribute_value_bytes() -> i64 {
    1024
}

fn default_max_streams_per_client() -> i64 {
    100
}

fn default_publish_burst_messages() -> i64 {
    1000
}

/// The validated `[tls]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSpec {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    pub(crate) client_ca_file: Option<PathBuf>,
    /// Whether a handshake without a client certificate fails; only with `client_ca_file`.
    pub(crate) client_certificate_required: bool,
}

/// The validated `[auth]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthSpec {
    /// `None` when the file leaves the choice to the listen address.
    pub(crate) enabled: Option<bool>,
    pub(crate) identities: Vec<IdentitySpec>,
    pub(crate) push_signing_key_file: Option<PathBuf>,
    pub(crate) push_token_issuer: String,
}

impl Default for AuthSpec {
    fn default() -> Self {
        AuthSpec {
            enabled: None,
            identities: Vec::new(),
            push_signing_key_file: None,
            push_token_issuer: default_push_token_issuer(),
        }
    }
}

/// One validated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdentitySpec {
    pub(crate) name: String,
    pub(crate) token_sha256: Option<[u8; 32]>,
    pub(crate) client_certificate: Option<String>,
    pub(crate) grants: Vec<GrantSpec>,
}

/// One validated grant: the actions of [`ACTIONS`] it allows, on resources matching one of
/// its patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrantSpec {
    pub(crate) actions: Vec<String>,
    pub(crate) resources: Vec<String>,
}

/// The validated `[limits]` table, sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitsSpec {
    pub(crate) max_request_bytes: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) max_attributes: usize,
    pub(crate) max_attribute_key_bytes: usize,
    pub(crate) max_attribute_value_bytes: usize,
    pub(crate) max_upload_bytes: Option<u64>,
    pub(crate) max_streams_per_client: usize,
    /// 0 when publishing is not rate-limited.
    pub(crate) publish_messages_per_sec: u32,
    pub(crate) publish_burst_messages: u32,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        let mut errors = Vec::new();
        let spec = LimitsConfig::default().validate(&mut errors);
        debug_assert!(
            errors.is_empty(),
            "the default limits are valid: {errors:?}"
        );
        spec
    }
}

/// The validated security tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SecuritySpec {
    pub(crate) tls: Option<TlsSpec>,
    pub(crate) auth: AuthSpec,
    pub(crate) limits: LimitsSpec,
}

/// Checks the three tables, returning one `(component, message)` per problem.
pub(crate) fn validate(
    tls: Option<&TlsConfig>,
    auth: Option<&AuthConfig>,
    limits: &LimitsConfig,
) -> Result<SecuritySpec, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let tls = tls.map(|tls| tls.validate(&mut errors));
    let auth = auth.map_or_else(AuthSpec::default, |auth| auth.validate(&mut errors));
    let mut limit_errors = Vec::new();
    let limits = limits.validate(&mut limit_errors);
    errors.extend(
        limit_errors
            .into_iter()
            .map(|message| ("limits".to_owned(), message)),
    );
    if errors.is_empty() {
        Ok(SecuritySpec { tls, auth, limits })
    } else {
        Err(errors)
    }
}

impl TlsConfig {
    fn validate(&self, errors: &mut Vec<(String, String)>) -> TlsSpec {
        let mut error = |message: &str| errors.push(("tls".to_owned(), message.to_owned()));
        if self.cert_file.as_os_str().is_empty() {
            error("cert_file is missing: name the PEM file of the server certificate chain");
        }
        if self.key_file.as_os_str().is_empty() {
            error("key_file is missing: name the PEM file of the server's private key");
        }
        let required = match self.client_certificate.as_str() {
            "required" => true,
            "optional" => false,
            other => {
                error(&format!(
                    "client_certificate is {other:?}; use \"required\" or \"optional\""
                ));
                true
            }
        };
        TlsSpec {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            client_ca_file: self.client_ca_file.clone(),
            client_certificate_required: required && self.client_ca_file.is_some(),
        }
    }
}

impl AuthConfig {
    fn validate(&self, errors: &mut Vec<(String, String)>) -> AuthSpec {
        let mut names = std::collections::HashSet::new();
        // The first identity with a matching token or certificate wins, so a second one with
        // the same credential could never authenticate.
        let mut tokens = std::collections::HashMap::new();
        let mut certificates = std::collections::HashMap::new();
        let mut identities = Vec::with_capacity(self.identities.len());
        for (index, identity) in self.identities.iter().enumerate() {
            let label = if identity.name.is_empty() {
                format!("auth.identities[{}]", index + 1)
            } else {
                format!("identity {:?}", identity.name)
            };
            let mut error = |message: String| errors.push((label.clone(), message));
            if identity.name.trim().is_empty() {
                error("name is missing: name the identity, as audit entries show it".to_owned());
            } else if !names.insert(identity.name.as_str()) {
                error("the name is used by an earlier identity; names must be unique".to_owned());
            }
            let token_sha256 = identity.token_sha256.as_deref().and_then(|hash| {
                let parsed = parse_token_hash(hash);
                if parsed.is_none() {
                    error(
                        "token_sha256 is not 64 hex digits; set it to what `sluice auth \
                         hash-token` prints for the token"
                            .to_owned(),
                    );
                }
                parsed
            });
            if let Some(hash) = token_sha256 {
                if let Some(first) = tokens.insert(hash, identity.name.as_str()) {
                    error(format!(
                        "token_sha256 is the same as that of identity {first:?}; give each \
                         identity its own token"
                    ));
                }
            }
            if let Some(certificate) = &identity.client_certificate {
                if let Some(first) =
                    certificates.insert(certificate.as_str(), identity.name.as_str())
                {
                    error(format!(
                        "client_certificate {certificate:?} is also that of identity {first:?}; \
                         each certificate identity can belong to one identity only"
                    ));
                }
            }
            if identity.token_sha256.is_none() && identity.client_certificate.is_none() {
                error(
                    "the identity has neither token_sha256 nor client_certificate, so no \
                     caller can authenticate as it"
                        .to_owned(),
                );
            }
            let mut grants = Vec::with_capacity(identity.grants.len());
            for grant in &identity.grants {
                for action in &grant.actions {
                    if !ACTIONS.contains(&action.as_str()) {
                        error(format!(
                            "grant action {action:?} is unknown; use one of {}",
                            ACTIONS.join(", ")
                        ));
                    }
                }
                for pattern in &grant.resources {
                    if !can_match_a_resource(pattern) {
                        error(format!(
                            "resource pattern {pattern:?} matches no resource: resources are \
                             named topics/NAME, subscriptions/NAME and snapshots/NAME (with \
                             PROJECT/NAME for another project), buckets/NAME, projects/PROJECT \
                             or logs, and \"**\" covers all"
                        ));
                    }
                }
                if grant.actions.is_empty() || grant.resources.is_empty() {
                    error("a grant needs at least one action and one resource pattern".to_owned());
                }
                grants.push(GrantSpec {
                    actions: grant.actions.clone(),
                    resources: grant.resources.clone(),
                });
            }
            identities.push(IdentitySpec {
                name: identity.name.clone(),
                token_sha256,
                client_certificate: identity.client_certificate.clone(),
                grants,
            });
        }
        AuthSpec {
            enabled: self.enabled,
            identities,
            push_signing_key_file: self.push_signing_key_file.clone(),
            push_token_issuer: self.push_token_issuer.clone(),
        }
    }
}

/// The kinds of resource names that grants match, each with the number of `/`-separated
/// parts its names have: `topics/NAME` or `topics/PROJECT/NAME`, `buckets/NAME`,
/// `projects/PROJECT` and `logs`.
const RESOURCE_KINDS: [(&str, RangeInclusive<usize>); 6] = [
    ("topics", 2..=3),
    ("subscriptions", 2..=3),
    ("snapshots", 2..=3),
    ("buckets", 2..=2),
    ("projects", 2..=2),
    ("logs", 1..=1),
];

/// Returns whether a grant's resource pattern can match some resource name. Its first part
/// must be a kind of resource or a wildcard that can become one. Every other part must use
/// only the characters of Pub/Sub and bucket names, and the number of parts must fit the
/// kind, unless `**` spans parts.
fn can_match_a_resource(pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('/').collect();
    let kind = parts[0];
    if kind.contains(['*', '?']) {
        let literal = kind.split(['*', '?']).next().unwrap_or_default();
        return RESOURCE_KINDS
            .iter()
            .any(|(name, _)| name.starts_with(literal));
    }
    let Some((_, part_counts)) = RESOURCE_KINDS.iter().find(|(name, _)| *name == kind) else {
        return false;
    };
    let valid_name = |part: &&str| {
        !part.is_empty()
            && part.chars().all(|character| {
                character.is_ascii_alphanumeric() || "-_.~+%*?".contains(character)
            })
    };
    parts[1..].iter().all(valid_name)
        && (pattern.contains("**") || part_counts.contains(&parts.len()))
}

/// Parses 64 hex digits, either case, into a SHA-256 digest.
fn parse_token_hash(text: &str) -> Option<[u8; 32]> {
    let mut digest = [0_u8; 32];
    hex::decode_to_slice(text.trim(), &mut digest).ok()?;
    Some(digest)
}

impl LimitsConfig {
    fn validate(&self, errors: &mut Vec<String>) -> LimitsSpec {
        let mut positive = |key: &str, value: i64| -> usize {
            match usize::try_from(value) {
                Ok(value) if value > 0 => value,
                _ => {
                    errors.push(format!("{key} is {value}; it must be a positive integer"));
                    1
                }
            }
        };
        let spec = LimitsSpec {
            max_request_bytes: positive("max_request_bytes", self.max_request_bytes),
            max_message_bytes: positive("max_message_bytes", self.max_message_bytes),
            max_attributes: positive("max_attributes", self.max_attributes),
            max_attribute_key_bytes: positive(
                "max_attribute_key_bytes",
                self.max_attribute_key_bytes,
            ),
            max_attribute_value_bytes: positive(
                "max_attribute_value_bytes",
                self.max_attribute_value_bytes,
            ),
            max_upload_bytes: self
                .max_upload_bytes
                .map(|bytes| positive("max_upload_bytes", bytes) as u64),
            max_streams_per_client: positive("max_streams_per_client", self.max_streams_per_client),
            publish_messages_per_sec: 0,
            publish_burst_messages: 1,
        };
        let rate = u32::try_from(self.publish_messages_per_sec);
        let burst = u32::try_from(self.publish_burst_messages);
        let (publish_messages_per_sec, publish_burst_messages) = match (rate, burst) {
            (Ok(rate), Ok(burst)) if burst > 0 => (rate, burst),
            _ => {
                errors.push(format!(
                    "publish_messages_per_sec is {} and publish_burst_messages is {}; the rate \
                     must be 0 (no limit) or more and the burst 1 or more",
                    self.publish_messages_per_sec, self.publish_burst_messages
                ));
                (0, 1)
            }
        };
        if spec.max_message_bytes > spec.max_request_bytes {
            errors.push(format!(
                "max_message_bytes ({}) is larger than max_request_bytes ({}), so no request \
                 could carry the largest message; raise max_request_bytes",
                spec.max_message_bytes, spec.max_request_bytes
            ));
        }
        LimitsSpec {
            publish_messages_per_sec,
            publish_burst_messages,
            ..spec
        }
    }
}
