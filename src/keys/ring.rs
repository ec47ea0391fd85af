//! The in-memory view of the published keys: the parsed signing key pair (parsed once, never
//! per token), verification keys by `kid`, and the JWKS bytes with their strong ETag.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, TokenData, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no signing key is available")]
    NoKey,
    #[error("claims could not be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("the signature operation failed")]
    Sign,
}

/// The key that signs: its id and the parsed key pair.
pub struct SigningKey {
    pub kid: String,
    pub pair: RsaKeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// One consistent snapshot of the keys.
pub struct KeySet {
    pub signing: Option<Arc<SigningKey>>,
    pub verifying: HashMap<String, DecodingKey>,
    /// The published kids, in publication order.
    kids: Vec<String>,
    /// `{"keys": [...]}` serialized once.
    pub jwks: bytes::Bytes,
    /// Strong ETag of `jwks` (quoted).
    pub etag: String,
}

impl KeySet {
    pub fn empty() -> Self {
        Self::new(None, Vec::new())
    }

    /// Builds a snapshot from the signing key and the published public JWKs (`kid`, `n`, `e`).
    pub fn new(signing: Option<Arc<SigningKey>>, published: Vec<PublicJwk>) -> Self {
        let verifying = published
            .iter()
            .filter_map(|k| {
                DecodingKey::from_rsa_components(&k.n, &k.e)
                    .ok()
                    .map(|d| (k.kid.clone(), d))
            })
            .collect();
        let kids = published.iter().map(|k| k.kid.clone()).collect();
        let jwks = serde_json::to_vec(&Jwks { keys: &published }).unwrap_or_default();
        let digest = ::ring::digest::digest(&::ring::digest::SHA256, &jwks);
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(digest));
        Self {
            signing,
            verifying,
            kids,
            jwks: jwks.into(),
            etag,
        }
    }
}

impl KeySet {
    /// The published kids, in publication order.
    pub fn published_kids(&self) -> impl Iterator<Item = &str> {
        self.kids.iter().map(String::as_str)
    }
}

#[derive(Serialize)]
struct Jwks<'a> {
    keys: &'a [PublicJwk],
}

/// A public RSA JWK as published (RFC 7517 / RFC 7518 §6.3.1).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PublicJwk {
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub kid: String,
    pub n: String,
    pub e: String,
}

/// Shared, swappable key snapshot. Readers clone an `Arc` under a short read lock.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<RwLock<Arc<KeySet>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing")
    }
}

impl Default for KeyRing {
    fn default() -> Self {
        Self {
            inner: Arc::new(RwLock::new(Arc::new(KeySet::empty()))),
        }
    }
}

impl KeyRing {
    pub fn snapshot(&self) -> Arc<KeySet> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, set: KeySet) {
        *self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
    }

    /// Signs `claims` as a compact JWS with header `{"alg":"RS256","typ":typ,"kid":...}`.
    /// The header and payload are assembled here; the signature is aws-lc-rs's RSA PKCS#1 v1.5
    /// SHA-256 with the key pair parsed once at load time.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, SignError> {
        let set = self.snapshot();
        let key = set.signing.as_ref().ok_or(SignError::NoKey)?;
        sign_with(key, typ, claims)
    }

    /// Verifies signature (RS256 only, `kid` must be published) and the registered claims in
    /// `validation`; returns the header and claims.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<TokenData<T>, jsonwebtoken::errors::Error> {
        use jsonwebtoken::errors::ErrorKind;
        let header = jsonwebtoken::decode_header(token)?;
        if header.alg != Algorithm::RS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        let kid = header.kid.ok_or(ErrorKind::InvalidToken)?;
        let set = self.snapshot();
        let key = set.verifying.get(&kid).ok_or(ErrorKind::InvalidToken)?;
        jsonwebtoken::decode(token, key, validation)
    }
}

/// Signs with a given key (also used by the micro benchmark).
pub fn sign_with<T: Serialize>(
    key: &SigningKey,
    typ: &str,
    claims: &T,
) -> Result<String, SignError> {
    let header = serde_json::json!({"alg": "RS256", "typ": typ, "kid": key.kid});
    let mut message = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
    message.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut message);
    let mut signature = vec![0u8; key.pair.public_modulus_len()];
    key.pair
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            message.as_bytes(),
            &mut signature,
        )
        .map_err(|_| SignError::Sign)?;
    message.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut message);
    Ok(message)
}
