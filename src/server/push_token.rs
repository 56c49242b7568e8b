//! OIDC-style tokens on push requests, as Pub/Sub's authenticated push sends them: a JWT
//! signed with RS256 in `Authorization: Bearer`, whose claims name the issuer (`iss`), the
//! audience (`aud`, the endpoint URL unless the config sets one), the push service account
//! (`sub` and `email`) and the validity (`iat`, `exp`, one hour).
//!
//! The signing key comes from `[auth] push_signing_key_file` (an RSA private key in PEM),
//! or is generated at start, in which case tokens stop verifying after a restart. The public
//! key is served as a JWKS at `GET /oauth2/v3/certs`, the path of Google's own JWKS, so
//! that endpoints can verify the tokens.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::PrivateKeyDer;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use sluice_handlers::push::PushAuthorization;
use tracing::warn;

use crate::config::PushTokenSpec;

/// How long a token is valid.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// A cached token is signed again when less than this is left of its validity.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The push signing key, with its JWKS.
#[derive(Debug)]
pub(crate) struct PushSigner {
    key: EncodingKey,
    key_id: String,
    issuer: String,
    jwks: Value,
    /// Signed tokens by audience and account, with their expiry in Unix seconds. Each
    /// signature costs about a millisecond, so tokens are reused until near their expiry.
    cache: Mutex<HashMap<(String, String), (String, u64)>>,
}

impl PushSigner {
    /// Loads the key of `key_file`, or generates a 2048-bit key without one.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be read or contains no RSA private key.
    pub(crate) fn new(key_file: Option<&Path>, issuer: &str) -> anyhow::Result<PushSigner> {
        let key_pair = match key_file {
            Some(path) => load_key(path)?,
            None => KeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| anyhow::anyhow!("failed to generate the push signing key"))?,
        };
        let pkcs8 = key_pair
            .as_der()
            .map_err(|_| anyhow::anyhow!("failed to encode the push signing key"))?;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        );
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .context("the push signing key is not usable for RS256")?;
        let public = key_pair.public_key();
        let modulus = public.modulus().big_endian_without_leading_zero().to_vec();
        let exponent = public.exponent().big_endian_without_leading_zero().to_vec();
        let key_id = hex::encode(&Sha256::digest(&modulus)[..8]);
        let jwks = json!({
            "keys": [{
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": key_id,
                "n": URL_SAFE_NO_PAD.encode(&modulus),
                "e": URL_SAFE_NO_PAD.encode(&exponent),
            }]
        });
        Ok(PushSigner {
            key,
            key_id,
            issuer: issuer.to_owned(),
            jwks,
            cache: Mutex::default(),
        })
    }

    /// Returns a token for `audience` and the service account `email`, signed now or cached.
    fn token(&self, audience: &str, email: &str) -> Option<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let cache_key = (audience.to_owned(), email.to_owned());
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, expires)) = cache.get(&cache_key) {
            if *expires > now + REFRESH_MARGIN.as_secs() {
                return Some(token.clone());
            }
        }
        let expires = now + TOKEN_LIFETIME.as_secs();
        let claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": email,
            "email": email,
            "email_verified": true,
            "iat": now,
            "exp": expires,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key_id.clone());
        match jsonwebtoken::encode(&header, &claims, &self.key) {
            Ok(token) => {
                cache.insert(cache_key, (token.clone(), expires));
                Some(token)
            }
            Err(err) => {
                warn!(error = %err, audience, "signing a push token failed; pushing without one");
                None
            }
        }
    }
}

fn load_key(path: &Path) -> anyhow::Result<KeyPair> {
    let key = PrivateKeyDer::from_pem_file(path).with_context(|| {
        format!(
            "push_signing_key_file {} contains no readable PEM private key",
            path.display()
        )
    })?;
    let parsed = match &key {
        PrivateKeyDer::Pkcs8(der) => KeyPair::from_pkcs8(der.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(der) => KeyPair::from_der(der.secret_pkcs1_der()),
        _ => anyhow::bail!(
            "push_signing_key_file {} contains a key that is not RSA; RS256 needs an RSA key",
            path.display()
        ),
    };
    parsed.map_err(|err| {
        anyhow::anyhow!(
            "push_signing_key_file {} contains an invalid RSA key: {err}",
            path.display()
        )
    })
}

/// The token of one push subscription.
#[derive(Debug)]
pub(crate) struct SubscriptionToken {
    signer: Arc<PushSigner>,
    spec: PushTokenSpec,
    /// Whether an unsigned request to a changed endpoint was logged, so that it is logged once.
    warned: AtomicBool,
}

impl SubscriptionToken {
    pub(crate) fn new(signer: Arc<PushSigner>, spec: PushTokenSpec) -> SubscriptionToken {
        SubscriptionToken {
            signer,
            spec,
            warned: AtomicBool::new(false),
        }
    }
}

impl PushAuthorization for SubscriptionToken {
    /// Signs requests to the configured endpoint only. An API call that moves the
    /// subscription to another endpoint must not collect tokens that the configured
    /// function accepts.
    fn bearer_token(&self, endpoint: &str) -> Option<String> {
        if endpoint != self.spec.endpoint {
            if !self.warned.swap(true, Ordering::Relaxed) {
                warn!(
                    endpoint,
                    configured_endpoint = %self.spec.endpoint,
                    "push requests go unsigned, because the endpoint is not the one whose \
                     oidc_token the configuration file sets; restore the endpoint to sign them"
                );
            }
            return None;
        }
        let audience = self.spec.audience.as_deref().unwrap_or(endpoint);
        self.signer
            .token(audience, &self.spec.service_account_email)
    }
}

/// Returns the route that serves the JWKS of `signer`.
pub(crate) fn routes(signer: &PushSigner) -> Router {
    let jwks = signer.jwks.clone();
    Router::new().route("/oauth2/v3/certs", get(move || async move { Json(jwks) }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_handlers::push::PushAuthorization as _;

    use super::{PushSigner, SubscriptionToken};
    use crate::config::PushTokenSpec;

    #[test]
    fn token_only_for_configured_endpoint() {
        let signer = PushSigner::new(None, "https://sluice.test").expect("a signer");
        let token = SubscriptionToken::new(
            Arc::new(signer),
            PushTokenSpec {
                endpoint: "https://functions.test/orders".to_owned(),
                service_account_email: "pusher@sluice.test".to_owned(),
                audience: Some("https://functions.test".to_owned()),
            },
        );
        assert!(token
            .bearer_token("https://functions.test/orders")
            .is_some());
        assert_eq!(
            token.bearer_token("http://127.0.0.1:9/collect"),
            None,
            "an endpoint that an API call set gets no token"
        );
    }
}
