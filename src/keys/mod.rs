//! Signing keys: RS256 key pairs stored in the database (private part sealed under the master
//! key), their lifecycle state (`next` → `current` → `retired`, or `revoked`), the in-memory
//! [`KeyRing`] used to sign and verify, and the pre-serialized JWKS document.

mod master;
mod ring;
mod service;

pub use self::master::{MasterKeyError, load_master_key};
pub use self::ring::{
    JwsHeader, KeyRing, KeySet, PublicJwk, SignError, SigningKey, VERIFIED_MEMO, Verified,
    VerifyError, sign_with,
};
pub use self::service::{KeyError, KeyInfo, KeyService, KeyState, Revocation, Rotation};
