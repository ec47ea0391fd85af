//! The in-memory view of the published keys: the parsed signing key pair (parsed once, never
//! per token), verification keys by `kid` (parsed once too: aws-lc-rs `ParsedPublicKey`s), and
//! the JWKS bytes with their strong ETag. Verification reads the header and the claims once
//! each and checks the signature with the parsed key.
//!
//! A key set also remembers the SHA-256 digests of the tokens whose signature it verified
//! (at most [`VERIFIED_MEMO`]), so a token presented again, as a resource server introspects
//! the same access token on every request, is not put through RSA again. The digest covers
//! the whole token, signature included: any other bytes miss the memo and are verified in
//! full. The memo belongs to the snapshot, so a new set of published keys (a key withdrawn)
//! starts with an empty one; expiry, audience and the deny list are the caller's, checked on
//! every presentation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no signing key is available")]
    NoKey,
    #[error("claims could not be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("the signature operation failed")]
    Sign,
}

/// Why a presented JWS was refused (all mean: not a token Portcullis signed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not a compact JWS of three base64url parts")]
    Malformed,
    #[error("the algorithm is not RS256")]
    Algorithm,
    #[error("no published key has this kid")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
    #[error("the claims are not what was expected")]
    Claims,
}

/// The JOSE header members Portcullis reads (RFC 7515 §4.1).
#[derive(Debug, Clone, Deserialize)]
pub struct JwsHeader {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
}

/// A verified token: its header and its claims.
#[derive(Debug)]
pub struct Verified<T> {
    pub header: JwsHeader,
    pub claims: T,
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

/// How many verified tokens a key set remembers; when full it forgets them all and starts
/// over (32 bytes each: a full memo is about 66 KiB with its hash table).
pub const VERIFIED_MEMO: usize = 1_024;

/// One consistent snapshot of the keys.
pub struct KeySet {
    pub signing: Option<Arc<SigningKey>>,
    /// Published public keys, parsed once, by `kid`.
    pub verifying: HashMap<String, ParsedPublicKey>,
    /// The published kids, in publication order.
    kids: Vec<String>,
    /// `{"keys": [...]}` serialized once.
    pub jwks: bytes::Bytes,
    /// Strong ETag of `jwks` (quoted).
    pub etag: String,
    /// SHA-256 digests of the tokens verified under this set (see the module docs).
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl KeySet {
    pub fn empty() -> Self {
        Self::new(None, Vec::new())
    }

    /// Builds a snapshot from the signing key and the published public JWKs (`kid`, `n`, `e`).
    pub fn new(signing: Option<Arc<SigningKey>>, published: Vec<PublicJwk>) -> Self {
        let verifying = published
            .iter()
            .filter_map(|k| parse_public(k).map(|key| (k.kid.clone(), key)))
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
            verified: Mutex::new(HashSet::new()),
        }
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a token with this digest verified under this set before.
    fn was_verified(&self, digest: &[u8; 32]) -> bool {
        self.verified().contains(digest)
    }

    fn remember_verified(&self, digest: [u8; 32]) {
        let mut verified = self.verified();
        if verified.len() >= VERIFIED_MEMO {
            verified.clear();
        }
        verified.insert(digest);
    }

    /// How many verified tokens the set remembers (for tests).
    pub fn remembered(&self) -> usize {
        self.verified().len()
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

    /// Verifies a compact JWS: RS256 only, signed by a published `kid`, with the key parsed
    /// when it was loaded, or recognised by its digest as verified before under the same
    /// keys (see the module docs). The header and the claims are each decoded once; checking
    /// the claims (issuer, lifetime) is the caller's.
    pub fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<Verified<T>, VerifyError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed);
        };
        let header: JwsHeader = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(header_b64)
                .map_err(|_| VerifyError::Malformed)?,
        )
        .map_err(|_| VerifyError::Malformed)?;
        if header.alg != "RS256" {
            return Err(VerifyError::Algorithm);
        }
        let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| VerifyError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| VerifyError::Malformed)?;
        let set = self.snapshot();
        let key = set.verifying.get(kid).ok_or(VerifyError::UnknownKey)?;
        // The signed message is the header and payload as sent.
        let signed_len = header_b64.len() + 1 + payload_b64.len();
        let message = token.get(..signed_len).ok_or(VerifyError::Malformed)?;
        let digest: [u8; 32] = ::ring::digest::digest(&::ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .map_err(|_| VerifyError::Malformed)?;
        if !set.was_verified(&digest) {
            key.verify_sig(message.as_bytes(), &signature)
                .map_err(|_| VerifyError::Signature)?;
            set.remember_verified(digest);
        }
        let claims = serde_json::from_slice(&payload).map_err(|_| VerifyError::Claims)?;
        Ok(Verified { header, claims })
    }
}

/// The published key `jwk` parsed for RS256 verification (`None` if it is no RSA key).
fn parse_public(jwk: &PublicJwk) -> Option<ParsedPublicKey> {
    let components = PublicKeyComponents {
        n: URL_SAFE_NO_PAD.decode(&jwk.n).ok()?,
        e: URL_SAFE_NO_PAD.decode(&jwk.e).ok()?,
    };
    let der = components.as_der().ok()?;
    ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_ref()).ok()
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
