//! Cryptographic building blocks shared by the services: random secrets, digests of stored
//! secrets, constant-time comparison, and AES-256-GCM sealing under the master key.
//!
//! Everything here delegates to ring; nothing is a hand-written primitive.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

/// Failure of a cryptographic operation. Deliberately carries no detail that could help an
/// attacker (or leak a secret into a log).
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the system random number generator failed")]
    Random,
    #[error("sealed data could not be opened (wrong master key or corrupted data)")]
    Open,
    #[error("data could not be sealed")]
    Seal,
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CryptoError::Random)?;
    Ok(out)
}

/// A fresh opaque token: 256 bits from the system CSPRNG, base64url without padding.
pub fn random_token() -> Result<String, CryptoError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// The digest under which a high-entropy secret (refresh token, generated client secret) is
/// stored: SHA-256, base64url. A fast digest is right here because these secrets carry ≥ 256
/// bits of entropy; brute force over the digest is hopeless, so bcrypt would only cost time.
pub fn secret_digest(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, secret.as_bytes()))
}

/// Constant-time equality of two byte strings (length may leak, content does not).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    #[allow(deprecated)]
    ring::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The 32-byte master key that seals private signing keys (and, later, TOTP secrets).
pub struct MasterKey {
    key: LessSafeKey,
    /// HKDF-SHA256 of the key bytes, for keys of other purposes ([`MasterKey::hmac_key`]).
    prk: ring::hkdf::Prk,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<hidden>)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::Seal)?;
        let prk = ring::hkdf::Salt::new(
            ring::hkdf::HKDF_SHA256,
            b"portcullis master-key derivation v1",
        )
        .extract(bytes);
        Ok(Self {
            key: LessSafeKey::new(key),
            prk,
        })
    }

    /// Seals `plaintext`, binding it to `context` (e.g. the key id) as associated data, so a
    /// sealed value moved to another row does not open. Output: base64(nonce || ct || tag).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
        seal(&self.key, context, plaintext)
    }

    /// An HMAC-SHA256 key for `purpose`, derived with HKDF (the same on every instance that
    /// shares the master key; unrelated to the sealing key and to other purposes).
    pub fn hmac_key(&self, purpose: &[u8]) -> Result<ring::hmac::Key, CryptoError> {
        let info = [purpose];
        let okm = self
            .prk
            .expand(&info, ring::hmac::HMAC_SHA256)
            .map_err(|_| CryptoError::Seal)?;
        Ok(ring::hmac::Key::from(okm))
    }

    /// Opens a value produced by [`MasterKey::seal`] with the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        open(&self.key, context, sealed)
    }
}

/// AES-256-GCM under `key` with a random nonce, `context` as associated data:
/// base64(nonce || ciphertext || tag).
pub fn seal(key: &LessSafeKey, context: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
    let nonce_bytes = random_bytes::<NONCE_LEN>()?;
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce_bytes),
        Aad::from(context.as_bytes()),
        &mut buf,
    )
    .map_err(|_| CryptoError::Seal)?;
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&buf);
    Ok(STANDARD.encode(out))
}

/// Opens what [`seal`] produced with the same key and `context`.
pub fn open(key: &LessSafeKey, context: &str, sealed: &str) -> Result<Vec<u8>, CryptoError> {
    let raw = STANDARD.decode(sealed).map_err(|_| CryptoError::Open)?;
    if raw.len() < NONCE_LEN {
        return Err(CryptoError::Open);
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
    let mut buf = ct.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
        .map_err(|_| CryptoError::Open)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = key.seal("kid-1", b"private key").unwrap();
        assert_eq!(key.open("kid-1", &sealed).unwrap(), b"private key");
        assert!(key.open("kid-2", &sealed).is_err(), "context is bound");
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open("kid-1", &sealed).is_err(), "another key fails");
        assert!(key.open("kid-1", "not base64!").is_err());
        assert!(key.open("kid-1", "AAAA").is_err(), "too short");
    }

    #[test]
    fn sealing_is_randomised() {
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        assert_ne!(key.seal("c", b"x").unwrap(), key.seal("c", b"x").unwrap());
    }

    #[test]
    fn tokens_are_256_bit_and_unique() {
        let a = random_token().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_ne!(a, random_token().unwrap());
    }

    #[test]
    fn constant_time_eq_compares_content() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
