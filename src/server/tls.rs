//! The listeners that `sluice serve` accepts connections on: plain TCP, or TLS with rustls
//! on the same port for gRPC and HTTP (ALPN offers `h2` and `http/1.1`).
//!
//! The certificate and key are read from the `[tls]` files at start and again on SIGHUP. A
//! reload that fails, such as a half-written key file, keeps the certificate in use and logs
//! why. With `client_ca_file`, clients present certificates that the CA signed (mTLS), and
//! [`ConnectionInfo::client_certificate`] carries the identity of each connection's
//! certificate: its first URI SAN, else its first DNS SAN, else its subject common name.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::security::TlsSpec;

/// Time a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// The peer of a connection, as far as the server can identify it.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    pub(crate) remote: SocketAddr,
    /// The identity of the client certificate of an mTLS connection.
    pub(crate) client_certificate: Option<String>,
    /// Whether the connection is TLS, so that links to this server use https.
    pub(crate) tls: bool,
}

/// Accepts plain TCP connections.
#[derive(Debug)]
pub(crate) struct PlainListener(pub(crate) TcpListener);

impl axum::serve::Listener for PlainListener {
    type Io = TcpStream;
    type Addr = ConnectionInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, remote) = axum::serve::Listener::accept(&mut self.0).await;
        set_nodelay(&stream);
        let info = ConnectionInfo {
            remote,
            client_certificate: None,
            tls: false,
        };
        (stream, info)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnectionInfo {
            remote: self.0.local_addr()?,
            client_certificate: None,
            tls: false,
        })
    }
}

/// Accepts TLS connections. A background task accepts TCP connections and runs each
/// handshake in a task of its own, so that a slow or hostile client cannot hold up others.
#[derive(Debug)]
pub(crate) struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, ConnectionInfo)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS on `listener` with the certificate of `certificates` and, with a client
    /// CA, client certificate checks.
    ///
    /// # Errors
    ///
    /// Fails when the client CA file cannot be read or contains no usable certificate.
    pub(crate) fn new(
        listener: TcpListener,
        spec: &TlsSpec,
        certificates: Arc<ReloadableCertificate>,
    ) -> anyhow::Result<TlsListener> {
        let config = server_config(spec, certificates)?;
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(config)),
            sender,
        ));
        Ok(TlsListener { accepted, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = ConnectionInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(connection) => connection,
            // The accept loop ends only when this listener is dropped, so this never runs
            // while the server accepts.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnectionInfo {
            remote: self.local,
            client_certificate: None,
            tls: true,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, ConnectionInfo)>,
) {
    loop {
        let (stream, remote) = tokio::select! {
            () = sender.closed() => return,
            accepted = accept_retrying(&listener) => accepted,
        };
        set_nodelay(&stream);
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        debug!(%remote, error = %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
            let client_certificate = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| certificate_identity(leaf.as_ref()));
            let info = ConnectionInfo {
                remote,
                client_certificate,
                tls: true,
            };
            let _ = sender.send((stream, info)).await;
        });
    }
}

/// Accepts the next TCP connection, retrying after errors such as too many open files.
async fn accept_retrying(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(err) => {
                warn!(error = %err, "accepting a connection failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn set_nodelay(stream: &TcpStream) {
    // Without TCP_NODELAY, a response that spans several segments waits for the client's
    // delayed ACK: a publish of 100 messages of 1 KiB took about 45 ms instead of 2 ms.
    if let Err(err) = stream.set_nodelay(true) {
        warn!(error = %err, "setting TCP_NODELAY on a connection failed");
    }
}

fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_config(
    spec: &TlsSpec,
    certificates: Arc<ReloadableCertificate>,
) -> anyhow::Result<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .context("the TLS crypto provider supports no protocol version")?;
    let builder = match &spec.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates(ca_file)? {
                roots.add(certificate).with_context(|| {
                    format!(
                        "client_ca_file {} holds an invalid CA certificate",
                        ca_file.display()
                    )
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider());
            let verifier = if spec.client_certificate_required {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            }
            .with_context(|| format!("client_ca_file {} is not usable", ca_file.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The server certificate, swapped whole on reload.
#[derive(Debug)]
pub(crate) struct ReloadableCertificate {
    current: ArcSwap<CertifiedKey>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl ReloadableCertificate {
    /// Loads the certificate chain and key of `spec`.
    ///
    /// # Errors
    ///
    /// Fails when a file cannot be read, contains no certificate or key, or the key does not
    /// match the certificate.
    pub(crate) fn load(spec: &TlsSpec) -> anyhow::Result<ReloadableCertificate> {
        let key = certified_key(&spec.cert_file, &spec.key_file)?;
        warn_on_validity(&spec.cert_file, &key);
        Ok(ReloadableCertificate {
            current: ArcSwap::from_pointee(key),
            cert_file: spec.cert_file.clone(),
            key_file: spec.key_file.clone(),
        })
    }

    /// Reads the files again and serves the new certificate to new handshakes; on failure
    /// keeps the old one and logs why.
    pub(crate) fn reload(&self) {
        match certified_key(&self.cert_file, &self.key_file) {
            Ok(key) => {
                warn_on_validity(&self.cert_file, &key);
                self.current.store(Arc::new(key));
                info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
            }
            Err(err) => warn!(
                cert_file = %self.cert_file.display(),
                key_file = %self.key_file.display(),
                error = %format!("{err:#}"),
                "TLS certificate reload failed; still serving the previous certificate"
            ),
        }
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reloads `certificates` on every SIGHUP until the process exits.
///
/// # Errors
///
/// Fails when the SIGHUP handler cannot be installed.
pub(crate) fn reload_on_sighup(certificates: Arc<ReloadableCertificate>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                info!(signal = "SIGHUP", "reloading the TLS certificate");
                certificates.reload();
            }
        });
    }
    #[cfg(not(unix))]
    let _ = certificates;
    Ok(())
}

fn certified_key(cert_file: &Path, key_file: &Path) -> anyhow::Result<CertifiedKey> {
    let chain = read_certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(readable_pem_error)
        .with_context(|| {
            format!(
                "key_file {} contains no readable PEM private key (PKCS#8, PKCS#1 or SEC1)",
                key_file.display()
            )
        })?;
    let key = CertifiedKey::from_der(chain, key, &rustls::crypto::aws_lc_rs::default_provider())
        .with_context(|| {
            format!(
                "the key in {} does not match the certificate in {}, or is of an unsupported \
                 type",
                key_file.display(),
                cert_file.display()
            )
        })?;
    Ok(key)
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(readable_pem_error)
        .with_context(|| format!("failed to read PEM certificates from {}", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!("{} contains no PEM certificate", path.display());
    }
    Ok(certificates)
}

/// Converts a PEM error to one whose message shows markers and lines as text, where the
/// error's own message shows them as lists of bytes.
fn readable_pem_error(err: rustls::pki_types::pem::Error) -> anyhow::Error {
    use rustls::pki_types::pem::Error;
    match err {
        Error::MissingSectionEnd { end_marker } => {
            // The marker is the section's label, such as `CERTIFICATE`.
            let label = String::from_utf8_lossy(&end_marker);
            anyhow::anyhow!("a PEM section has no end line \"-----END {label}-----\"")
        }
        Error::IllegalSectionStart { line } => anyhow::anyhow!(
            "a PEM section starts with an invalid line {:?}",
            String::from_utf8_lossy(&line)
        ),
        other => anyhow::Error::new(other),
    }
}

/// Days before the end of a certificate's validity from which loading it logs a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// Logs a warning when the leaf certificate of `key` is expired, not yet valid or close to
/// its expiry. Such a certificate is still served, because the key pair is sound and the
/// operator may be replacing it, but clients reject the handshake while it is out of date.
fn warn_on_validity(cert_file: &Path, key: &CertifiedKey) {
    let Some(leaf) = key.cert.first() else {
        return;
    };
    if let Some(problem) = validity_problem(leaf, time::OffsetDateTime::now_utc()) {
        warn!(
            cert_file = %cert_file.display(),
            "the TLS certificate {problem}; clients that check it reject the handshake, so \
             replace cert_file and send SIGHUP"
        );
    }
}

/// Returns what is wrong with the validity period of a DER certificate at `now`, or `None`
/// when it is valid for at least [`EXPIRY_WARNING_DAYS`] more days.
fn validity_problem(der: &[u8], now: time::OffsetDateTime) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let validity = certificate.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();
    // ASN1Time prints as OpenSSL does, such as `Jan  1 00:00:00 2027 +00:00`.
    if now > not_after {
        return Some(format!("expired at {}", validity.not_after));
    }
    if now < not_before {
        return Some(format!("is not valid before {}", validity.not_before));
    }
    let days_left = (not_after - now).whole_days();
    (days_left < EXPIRY_WARNING_DAYS)
        .then(|| format!("expires at {}, in {days_left} days", validity.not_after))
}

/// Returns the identity of a client certificate: its first URI SAN, else its first DNS SAN,
/// else its subject common name.
pub(crate) fn certificate_identity(der: &[u8]) -> Option<String> {
    use x509_parser::extensions::GeneralName;

    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Ok(Some(names)) = certificate.subject_alternative_name() {
        let general = &names.value.general_names;
        let uri = general.iter().find_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        });
        let dns = general.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) if !dns.contains("://") => Some((*dns).to_owned()),
            _ => None,
        });
        if let Some(name) = uri.or(dns) {
            return Some(name);
        }
    }
    // A URI identity, such as a SPIFFE id, counts only from a URI SAN, which a CA checks as a
    // URI. A DNS name or common name that looks like a URI is not taken for one.
    let common_name = certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .filter(|name| !name.contains("://"))
        .map(str::to_owned);
    common_name
}

#[cfg(test)]
mod tests {
    use time::{Duration, OffsetDateTime};

    use super::validity_problem;

    fn certificate(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("a key pair");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("valid names");
        params.not_before = not_before;
        params.not_after = not_after;
        params
            .self_signed(&key)
            .expect("a certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn validity_flags_expired_certificate() {
        let now = OffsetDateTime::now_utc();
        let der = certificate(now - Duration::days(30), now - Duration::days(1));
        let problem = validity_problem(&der, now).expect("a problem");
        assert!(problem.starts_with("expired at"), "{problem}");
    }

    #[test]
    fn validity_flags_future_certificate() {
        let now = OffsetDateTime::now_utc();
        let der = certificate(now + Duration::days(1), now + Duration::days(90));
        let problem = validity_problem(&der, now).expect("a problem");
        assert!(problem.starts_with("is not valid before"), "{problem}");
    }

    #[test]
    fn validity_flags_certificate_near_expiry() {
        let now = OffsetDateTime::now_utc();
        let der = certificate(now - Duration::days(80), now + Duration::days(3));
        let problem = validity_problem(&der, now).expect("a problem");
        assert!(
            problem.contains("in 2 days") || problem.contains("in 3 days"),
            "{problem}"
        );
    }

    #[test]
    fn pem_errors_show_markers_as_text() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("cut.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nMIIB\n").expect("write");
        let err = super::read_certificates(&path).expect_err("a cut PEM file");
        let message = format!("{err:#}");
        assert!(
            message.contains("no end line \"-----END CERTIFICATE-----\""),
            "{message}"
        );
    }

    #[test]
    fn validity_accepts_current_certificate() {
        let now = OffsetDateTime::now_utc();
        let der = certificate(now - Duration::days(1), now + Duration::days(90));
        assert_eq!(validity_problem(&der, now), None);
    }
}
