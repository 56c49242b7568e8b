//! Cloud Storage's naming rules for buckets and objects.
//!
//! The rules are those of the Cloud Storage docs ("Object naming guidelines" and "Bucket
//! naming requirements"). A name that passes is still never used as a file path: object
//! bytes are stored under their generation number, see the module doc of
//! [`buckets`](super).

use std::fmt;

/// The maximum length of an object name, in bytes of UTF-8.
pub const MAX_OBJECT_NAME_BYTES: usize = 1024;

/// The object name prefix that Cloud Storage reserves for ACME HTTP-01 challenges.
const ACME_CHALLENGE_PREFIX: &str = ".well-known/acme-challenge/";

/// A rule of Cloud Storage's object naming that a name breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectNameRule {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_OBJECT_NAME_BYTES`].
    TooLong {
        /// The name's length in bytes.
        bytes: usize,
    },
    /// The name contains a carriage return or a line feed.
    LineBreak,
    /// The name is `.` or `..`.
    DotName,
    /// The name starts with `.well-known/acme-challenge/`.
    AcmeChallenge,
}

impl fmt::Display for ObjectNameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(
                f,
                "object names must be 1 to {MAX_OBJECT_NAME_BYTES} bytes of UTF-8, and this one \
                 is empty"
            ),
            Self::TooLong { bytes } => write!(
                f,
                "object names must be at most {MAX_OBJECT_NAME_BYTES} bytes of UTF-8, and this \
                 one is {bytes} bytes; shorten it"
            ),
            Self::LineBreak => f.write_str(
                "object names cannot contain a carriage return or a line feed; remove them",
            ),
            Self::DotName => f.write_str("`.` and `..` are not valid object names; choose another"),
            Self::AcmeChallenge => write!(
                f,
                "object names cannot start with `{ACME_CHALLENGE_PREFIX}`, which Cloud Storage \
                 reserves; choose another prefix"
            ),
        }
    }
}

/// Checks an object name against Cloud Storage's rules.
///
/// Any other Unicode text of 1 to 1024 bytes is valid, including `/`, `..` inside a longer
/// name, a leading `/` and NUL.
///
/// # Errors
///
/// Returns the first rule the name breaks.
pub fn validate_object_name(name: &str) -> Result<(), ObjectNameRule> {
    if name.is_empty() {
        return Err(ObjectNameRule::Empty);
    }
    if name.len() > MAX_OBJECT_NAME_BYTES {
        return Err(ObjectNameRule::TooLong { bytes: name.len() });
    }
    if name.contains(['\r', '\n']) {
        return Err(ObjectNameRule::LineBreak);
    }
    if name == "." || name == ".." {
        return Err(ObjectNameRule::DotName);
    }
    if name.starts_with(ACME_CHALLENGE_PREFIX) {
        return Err(ObjectNameRule::AcmeChallenge);
    }
    Ok(())
}

/// A rule of Cloud Storage's bucket naming that a name breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketNameRule {
    /// A character other than a lowercase ASCII letter, a digit, `-`, `_` or `.`.
    Character {
        /// The first such character.
        found: char,
    },
    /// Fewer than 3 or more than 63 characters (222 for names that contain dots).
    Length {
        /// The name's length in characters.
        chars: usize,
    },
    /// A dot-separated component longer than 63 characters.
    ComponentTooLong,
    /// The first or the last character is not a letter or a digit.
    Boundary,
    /// The name is an IPv4 address in dotted-decimal notation.
    IpAddress,
    /// The name starts with `goog`.
    GoogPrefix,
    /// The name contains `google`.
    ContainsGoogle,
}

impl fmt::Display for BucketNameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Character { found } => write!(
                f,
                "bucket names may contain only lowercase letters, digits, `-`, `_` and `.`, and \
                 this one contains {found:?}"
            ),
            Self::Length { chars } => write!(
                f,
                "bucket names must be 3 to 63 characters long (up to 222 if they contain dots), \
                 and this one is {chars}"
            ),
            Self::ComponentTooLong => f.write_str(
                "each dot-separated part of a bucket name must be at most 63 characters long",
            ),
            Self::Boundary => {
                f.write_str("bucket names must start and end with a lowercase letter or a digit")
            }
            Self::IpAddress => f.write_str("bucket names cannot be IP addresses"),
            Self::GoogPrefix => f.write_str("bucket names cannot start with `goog`"),
            Self::ContainsGoogle => f.write_str("bucket names cannot contain `google`"),
        }
    }
}

/// Checks a bucket name against Cloud Storage's rules.
///
/// A valid name contains no `/` and cannot be `.` or `..`, so it is safe as one path
/// component, which is how the store uses it.
///
/// # Errors
///
/// Returns the first rule the name breaks.
pub fn validate_bucket_name(name: &str) -> Result<(), BucketNameRule> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if let Some(found) = name.chars().find(|&c| !allowed(c)) {
        return Err(BucketNameRule::Character { found });
    }
    // Every character is ASCII from here on, so bytes and characters count the same.
    let max_len = if name.contains('.') { 222 } else { 63 };
    if !(3..=max_len).contains(&name.len()) {
        return Err(BucketNameRule::Length { chars: name.len() });
    }
    if name.split('.').any(|component| component.len() > 63) {
        return Err(BucketNameRule::ComponentTooLong);
    }
    let letter_or_digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !letter_or_digit(name.chars().next()) || !letter_or_digit(name.chars().last()) {
        return Err(BucketNameRule::Boundary);
    }
    if is_dotted_decimal_ipv4(name) {
        return Err(BucketNameRule::IpAddress);
    }
    if name.starts_with("goog") {
        return Err(BucketNameRule::GoogPrefix);
    }
    // NOTE: Cloud Storage also rejects "close misspellings" of google such as `g00gle`, but
    // it does not list them, so only the exact word is rejected here.
    if name.contains("google") {
        return Err(BucketNameRule::ContainsGoogle);
    }
    Ok(())
}

/// Returns whether `name` is four dot-separated decimal numbers of at most 255, leading zeros
/// allowed.
fn is_dotted_decimal_ipv4(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && part.parse::<u32>().is_ok_and(|n| n <= 255)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_cloud_storage_rules() {
        assert_eq!(validate_object_name(""), Err(ObjectNameRule::Empty));
        assert_eq!(validate_object_name("."), Err(ObjectNameRule::DotName));
        assert_eq!(validate_object_name(".."), Err(ObjectNameRule::DotName));
        assert_eq!(validate_object_name("a\rb"), Err(ObjectNameRule::LineBreak));
        assert_eq!(
            validate_object_name(".well-known/acme-challenge/token"),
            Err(ObjectNameRule::AcmeChallenge)
        );
        assert_eq!(validate_object_name(".well-known/other"), Ok(()));
        assert_eq!(validate_object_name("../x"), Ok(()));
        assert_eq!(validate_object_name("é".repeat(512).as_str()), Ok(()));
        assert_eq!(
            validate_object_name("é".repeat(513).as_str()),
            Err(ObjectNameRule::TooLong { bytes: 1026 })
        );
    }

    #[test]
    fn bucket_names_follow_cloud_storage_rules() {
        for valid in [
            "abc",
            "my_bucket-1",
            "example.com",
            "1.2.3.4.5",
            "a.b",
            "999.1.1.1",
        ] {
            assert_eq!(validate_bucket_name(valid), Ok(()), "{valid}");
        }
        let cases = [
            ("ab", BucketNameRule::Length { chars: 2 }),
            ("Abc", BucketNameRule::Character { found: 'A' }),
            ("a/b", BucketNameRule::Character { found: '/' }),
            ("-abc", BucketNameRule::Boundary),
            ("abc.", BucketNameRule::Boundary),
            ("...", BucketNameRule::Boundary),
            ("192.168.5.4", BucketNameRule::IpAddress),
            ("googbucket", BucketNameRule::GoogPrefix),
            ("my-google-bucket", BucketNameRule::ContainsGoogle),
        ];
        for (name, rule) in cases {
            assert_eq!(validate_bucket_name(name), Err(rule), "{name}");
        }
        assert_eq!(
            validate_bucket_name(&"a".repeat(64)),
            Err(BucketNameRule::Length { chars: 64 })
        );
        assert_eq!(
            validate_bucket_name(&format!("{}.b", "a".repeat(64))),
            Err(BucketNameRule::ComponentTooLong)
        );
        assert_eq!(
            validate_bucket_name(&format!("{}.b", "a".repeat(63))),
            Ok(())
        );
    }
}
