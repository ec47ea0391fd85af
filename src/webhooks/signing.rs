//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): the secret is
//! `whsec_` and the base64 of 32 random bytes; a message is signed as
//! `base64(HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}"))` and sent in
//! `webhook-signature` as `v1,<signature>`, several separated by spaces (during a secret's
//! rotation both the new and the previous secret sign).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::crypto::{CryptoError, random_bytes};

const PREFIX: &str = "whsec_";

/// A new secret, as shown once to the operator.
pub fn new_secret() -> Result<String, CryptoError> {
    Ok(format!(
        "{PREFIX}{}",
        STANDARD.encode(random_bytes::<32>()?)
    ))
}

/// The key bytes of a `whsec_…` secret.
pub fn secret_bytes(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(PREFIX).unwrap_or(secret))
        .ok()
}

/// The `webhook-signature` value for `body` sent as message `id` at `timestamp` (seconds),
/// one `v1,` signature per key.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &str) -> String {
    keys.iter()
        .map(|key| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
            let tag = ring::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
            format!("v1,{}", STANDARD.encode(tag.as_ref()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_the_specification_example() {
        let key = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let header = signature_header(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_new_secret_has_32_random_bytes_and_two_keys_sign_twice() {
        let a = new_secret().unwrap();
        assert!(a.starts_with("whsec_"));
        assert_eq!(secret_bytes(&a).unwrap().len(), 32);
        assert_ne!(a, new_secret().unwrap());
        let keys = [
            secret_bytes(&a).unwrap(),
            secret_bytes(&new_secret().unwrap()).unwrap(),
        ];
        let header = signature_header(&keys, "msg_1", 1, "{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|s| s.starts_with("v1,")));
    }
}
