//! The `[store]` table: where topics, subscriptions and messages live. The embedded sled
//! store in the data directory is the default; `kind = "jetstream"` puts them on NATS
//! JetStream, which several sluice processes can share.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sluice_router::store::jetstream::JetStreamOptions;

/// The replica counts JetStream accepts for a stream.
const REPLICAS: std::ops::RangeInclusive<i64> = 1..=5;

/// The `[store]` table as written.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StoreConfig {
    /// `sled` (the embedded store in the data directory) or `jetstream`.
    #[serde(default = "default_kind")]
    pub(crate) kind: String,
    /// JetStream server URLs, such as `nats://127.0.0.1:4222`.
    #[serde(default = "default_urls")]
    pub(crate) urls: Vec<String>,
    /// A NATS credentials file for the JetStream servers.
    #[serde(default = "default_credentials_file")]
    pub(crate) credentials_file: Option<PathBuf>,
    /// Copies of each stream in the JetStream cluster, 1 to 5.
    #[serde(default = "default_replicas")]
    pub(crate) replicas: i64,
    /// The storage of object bytes with `kind = "jetstream"`: `"jetstream"` for its object
    /// store, or the path of a folder that every node mounts.
    #[serde(default)]
    pub(crate) objects: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: default_kind(),
            urls: default_urls(),
            credentials_file: default_credentials_file(),
            replicas: default_replicas(),
            objects: None,
        }
    }
}

/// URL schemes that the NATS client connects with.
const URL_SCHEMES: [&str; 4] = ["nats", "tls", "ws", "wss"];

/// Returns an error for a URL that the NATS client cannot connect to: a scheme it does not
/// support, no host, or a port that is not 1 to 65535. A URL without a scheme, such as
/// `127.0.0.1:4222`, is valid: the client reads it as nats://.
fn check_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
    if !URL_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Some(format!(
            "urls contains {url:?}, whose scheme {scheme:?} is not one of nats://, tls://, \
             ws:// and wss://. Write it as nats://HOST:PORT"
        ));
    }
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    // An IPv6 address is written in brackets, with colons inside.
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => ("", None),
        },
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Some(format!(
            "urls contains {url:?}, which names no host. Write it as nats://HOST:PORT"
        ));
    }
    let bracketed = host_port.starts_with('[');
    let valid_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if !bracketed && !host.chars().all(valid_name) {
        return Some(format!(
            "urls contains {url:?}, whose host {host:?} is not a host name or address. Write \
             it as nats://HOST:PORT"
        ));
    }
    match port.map(str::parse::<u16>) {
        Some(Ok(0) | Err(_)) => Some(format!(
            "urls contains {url:?}, whose port {:?} is not a number from 1 to 65535. Write \
             it as nats://HOST:PORT, such as nats://{host}:4222",
            port.unwrap_or("")
        )),
        _ => None,
    }
}

fn default_kind() -> String {
    "sled".to_owned()
}

fn default_urls() -> Vec<String> {
    Vec::new()
}

fn default_credentials_file() -> Option<PathBuf> {
    None
}

fn default_replicas() -> i64 {
    1
}

/// The validated store choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreSpec {
    /// The embedded store in the data directory.
    Sled,
    /// NATS JetStream.
    JetStream {
        /// How to reach the servers.
        options: JetStreamOptions,
        /// The folder of object bytes, or `None` for JetStream's object store.
        objects_folder: Option<PathBuf>,
    },
}

impl StoreConfig {
    /// Checks the table and returns the store it selects, or one message per problem.
    pub(crate) fn validate(&self) -> Result<StoreSpec, Vec<String>> {
        let mut errors = Vec::new();
        match self.kind.as_str() {
            "sled" => {
                if !self.urls.is_empty()
                    || self.credentials_file.is_some()
                    || self.objects.is_some()
                {
                    errors.push(
                        "urls, credentials_file and objects apply only to kind = \"jetstream\"; \
                         remove them or set the kind"
                            .to_owned(),
                    );
                }
                if errors.is_empty() {
                    return Ok(StoreSpec::Sled);
                }
            }
            "jetstream" => {
                if self.urls.is_empty() {
                    errors.push(
                        "kind = \"jetstream\" needs urls, such as [\"nats://127.0.0.1:4222\"]"
                            .to_owned(),
                    );
                }
                for url in &self.urls {
                    if url.trim().is_empty() {
                        errors.push("urls contains an empty URL".to_owned());
                    } else if let Some(error) = check_url(url) {
                        errors.push(error);
                    }
                }
                if let Some(path) = &self.credentials_file {
                    if !path.is_file() {
                        errors.push(format!(
                            "credentials_file {} does not exist or is not a file. Set it to a \
                             NATS credentials file (a user JWT and NKey seed), or remove it \
                             when the servers need no credentials",
                            path.display()
                        ));
                    }
                }
                if !REPLICAS.contains(&self.replicas) {
                    errors.push(format!(
                        "replicas is {}, but JetStream keeps 1 to 5 copies of a stream",
                        self.replicas
                    ));
                }
                let objects_folder = match self.objects.as_deref() {
                    None | Some("jetstream") => None,
                    Some("") => {
                        errors.push(
                            "objects is empty; use \"jetstream\" or the path of a folder that \
                             every node mounts"
                                .to_owned(),
                        );
                        None
                    }
                    Some(path) => Some(PathBuf::from(path)),
                };
                if errors.is_empty() {
                    return Ok(StoreSpec::JetStream {
                        options: JetStreamOptions {
                            urls: self.urls.clone(),
                            credentials_file: self.credentials_file.clone(),
                            replicas: usize::try_from(self.replicas).unwrap_or(1),
                            connect_timeout: Duration::from_secs(5),
                        },
                        objects_folder,
                    });
                }
            }
            other => errors.push(format!(
                "kind {other:?} is not a store; use \"sled\" or \"jetstream\""
            )),
        }
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> StoreConfig {
        toml::from_str(text).expect("store table parses")
    }

    #[test]
    fn empty_table_selects_sled() {
        assert_eq!(parse("").validate(), Ok(StoreSpec::Sled));
    }

    #[test]
    fn jetstream_table_selects_jetstream() {
        let dir = tempfile::tempdir().expect("temp dir");
        let creds = dir.path().join("sluice.creds");
        std::fs::write(&creds, "").expect("write the credentials file");
        let spec = parse(&format!(
            "kind = \"jetstream\"\nurls = [\"nats://a:4222\", \"nats://b:4222\"]\n\
             credentials_file = {:?}\nreplicas = 3",
            creds.display().to_string()
        ))
        .validate()
        .expect("valid");

        let StoreSpec::JetStream {
            options,
            objects_folder,
        } = spec
        else {
            panic!("expected JetStream, got {spec:?}");
        };
        assert_eq!(objects_folder, None, "the object store by default");
        assert_eq!(options.urls, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(options.credentials_file, Some(creds));
        assert_eq!(options.replicas, 3);
    }

    #[test]
    fn objects_folder_is_read() {
        let spec =
            parse("kind = \"jetstream\"\nurls = [\"nats://a:4222\"]\nobjects = \"/srv/objects\"")
                .validate()
                .expect("valid");
        let StoreSpec::JetStream { objects_folder, .. } = spec else {
            panic!("expected JetStream, got {spec:?}");
        };
        assert_eq!(objects_folder, Some(PathBuf::from("/srv/objects")));

        let spec =
            parse("kind = \"jetstream\"\nurls = [\"nats://a:4222\"]\nobjects = \"jetstream\"")
                .validate()
                .expect("valid");
        assert!(matches!(
            spec,
            StoreSpec::JetStream {
                objects_folder: None,
                ..
            }
        ));

        let errors = parse("objects = \"/srv/objects\"")
            .validate()
            .expect_err("invalid");
        assert!(errors[0].contains("only to kind"), "{errors:?}");
        let errors = parse("kind = \"jetstream\"\nurls = [\"nats://a:4222\"]\nobjects = \"\"")
            .validate()
            .expect_err("invalid");
        assert!(errors[0].contains("objects is empty"), "{errors:?}");
    }

    #[test]
    fn jetstream_without_urls_is_rejected() {
        let errors = parse("kind = \"jetstream\"")
            .validate()
            .expect_err("invalid");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("needs urls"), "{errors:?}");
    }

    #[test]
    fn replicas_out_of_range_are_rejected() {
        for replicas in [0, 6, -1] {
            let errors = parse(&format!(
                "kind = \"jetstream\"\nurls = [\"nats://a:4222\"]\nreplicas = {replicas}"
            ))
            .validate()
            .expect_err("invalid");
            assert!(errors[0].contains("1 to 5"), "{replicas}: {errors:?}");
        }
    }

    #[test]
    fn url_with_other_scheme_is_rejected() {
        for url in ["http://a:4222", "https://a:4222", "tcp://a:4222"] {
            let errors = parse(&format!("kind = \"jetstream\"\nurls = [\"{url}\"]"))
                .validate()
                .expect_err("invalid");
            assert_eq!(errors.len(), 1, "{url}: {errors:?}");
            assert!(errors[0].contains(url), "{url}: {errors:?}");
            assert!(errors[0].contains("nats://"), "{url}: {errors:?}");
        }
    }

    #[test]
    fn url_with_bad_host_or_port_rejected() {
        for (url, expected) in [
            ("nats://", "names no host"),
            ("nats://:4222", "names no host"),
            ("nats://127.0.0.1:99999", "port \"99999\""),
            ("nats://127.0.0.1:0", "port \"0\""),
            ("nats://a:", "port \"\""),
            ("127.0.0.1:http", "port \"http\""),
            ("nats://[::1", "names no host"),
            ("nats:127.0.0.1:4222", "host \"nats:127.0.0.1\""),
            ("nats://a b:4222", "host \"a b\""),
        ] {
            let errors = parse(&format!("kind = \"jetstream\"\nurls = [\"{url}\"]"))
                .validate()
                .expect_err("invalid");
            assert_eq!(errors.len(), 1, "{url}: {errors:?}");
            assert!(errors[0].contains(expected), "{url}: {errors:?}");
        }
    }

    #[test]
    fn urls_with_nats_schemes_are_accepted() {
        for url in [
            "nats://a:4222",
            "tls://a:4222",
            "ws://a:80",
            "wss://a:443",
            "a:4222",
            "nats://a",
            "nats://user:secret@a:4222",
            "nats://[::1]:4222",
        ] {
            let result = parse(&format!("kind = \"jetstream\"\nurls = [\"{url}\"]")).validate();
            assert!(result.is_ok(), "{url}: {result:?}");
        }
    }

    #[test]
    fn missing_credentials_file_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing.creds");
        let text = format!(
            "kind = \"jetstream\"\nurls = [\"nats://a:4222\"]\ncredentials_file = {:?}",
            path.display().to_string()
        );

        let errors = parse(&text).validate().expect_err("invalid");

        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(&path.display().to_string()),
            "{errors:?}"
        );
        assert!(errors[0].contains("does not exist"), "{errors:?}");
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let errors = parse("kind = \"etcd\"").validate().expect_err("invalid");
        assert!(errors[0].contains("\"etcd\" is not a store"), "{errors:?}");
    }

    #[test]
    fn sled_with_urls_is_rejected() {
        let errors = parse("urls = [\"nats://a:4222\"]")
            .validate()
            .expect_err("invalid");
        assert!(errors[0].contains("only to kind"), "{errors:?}");
    }
}
