//! Access tokens (RFC 9068 JWT profile, RS256, `typ: at+jwt`) and ID tokens: minting with the
//! current key, and validation of presented access tokens (signature, `typ`, `iss`,
//! `exp`/`nbf` on the service clock, and the deny list for revoked tokens and sign-ins).
//!
//! Audience (RFC 8707): a token's `aud` is the resource it was asked for, or Portcullis's own
//! API (`PORTCULLIS_AUDIENCE`, by default the issuer). Portcullis's own API accepts only tokens
//! for its own audience ([`TokenService::validate_for_api`]); introspection answers for every
//! token Portcullis issued ([`TokenService::validate_access`]), with its `aud`.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::{CLOCK_SKEW, SharedClock};
use crate::keys::{KeyRing, SignError};
use crate::store::{Store, StoreError};

/// Allowed clock skew when checking `exp` and `nbf`, seconds ([`CLOCK_SKEW`]; a few seconds,
/// so the conversion is exact).
pub const LEEWAY: i64 = CLOCK_SKEW.as_secs() as i64;

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    /// The user id, or the client id for client_credentials tokens (RFC 9068 §2.2).
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The sign-in (refresh-token family) the token belongs to, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

impl AccessClaims {
    /// Whether the token was issued to a user (not to a client for itself).
    pub fn is_user_token(&self) -> bool {
        self.sid.is_some()
    }

    /// The user the token was issued to; `None` for a client acting for itself.
    pub fn user_id(&self) -> Option<&str> {
        self.is_user_token().then_some(self.sub.as_str())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

/// Claims of an OpenID Connect ID token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    pub azp: String,
    pub sid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Why a presented access token is refused (all answered as `invalid_token`).
#[derive(Debug, thiserror::Error)]
pub enum TokenInvalid {
    #[error("the token is malformed or its signature does not verify")]
    Signature,
    #[error("the token is not an access token (typ must be at+jwt)")]
    Type,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is not meant for this API (aud)")]
    Audience,
    #[error("the token has been revoked")]
    Revoked,
    #[error("revocation state is unavailable: {0}")]
    Store(#[from] StoreError),
}

/// What the deny list stores for a revoked access token and for a revoked sign-in.
pub fn deny_key_for_jti(jti: &str) -> String {
    format!("jti:{jti}")
}

pub fn deny_key_for_sid(sid: &str) -> String {
    format!("sid:{sid}")
}

/// What the deny list stores for a revoked signing key: every token it signed is refused at
/// once on every instance sharing the store, before the instances reload their keys.
pub fn deny_key_for_kid(kid: &str) -> String {
    format!("kid:{kid}")
}

/// Mints and validates tokens.
#[derive(Clone)]
pub struct TokenService {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    keys: KeyRing,
    store: Arc<dyn Store>,
    clock: SharedClock,
    validation: Arc<Validation>,
}

/// A freshly minted access token.
pub struct MintedAccess {
    pub token: String,
    pub claims: AccessClaims,
}

impl TokenService {
    pub fn new(
        issuer: String,
        audience: String,
        access_ttl: Duration,
        keys: KeyRing,
        store: Arc<dyn Store>,
        clock: SharedClock,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer.as_str()]);
        // The audience is checked by the caller that cares (see the module docs).
        validation.validate_aud = false;
        // Time is checked against the service clock below, not the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect();
        Self {
            issuer,
            audience,
            access_ttl,
            keys,
            store,
            clock,
            validation: Arc::new(validation),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn access_ttl_secs(&self) -> i64 {
        i64::try_from(self.access_ttl.as_secs()).unwrap_or(i64::MAX)
    }

    /// Mints an access token for `audience` (`None`: Portcullis's own API).
    #[allow(clippy::too_many_arguments)]
    pub fn mint_access(
        &self,
        sub: &str,
        client_id: &str,
        audience: Option<&str>,
        scope: &str,
        roles: Vec<String>,
        sid: Option<&str>,
        auth_time: Option<i64>,
    ) -> Result<MintedAccess, SignError> {
        let now = self.clock.now();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: sub.to_string(),
            aud: audience.unwrap_or(&self.audience).to_string(),
            exp: now.saturating_add(self.access_ttl_secs()),
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: client_id.to_string(),
            scope: scope.to_string(),
            roles,
            sid: sid.map(str::to_string),
            auth_time,
        };
        let token = self.keys.sign("at+jwt", &claims)?;
        Ok(MintedAccess { token, claims })
    }

    pub fn mint_id_token(&self, claims: &IdClaims) -> Result<String, SignError> {
        self.keys.sign("JWT", claims)
    }

    /// Verifies signature, type and registered claims, without consulting the deny list.
    pub fn decode_access(&self, token: &str) -> Result<AccessClaims, TokenInvalid> {
        Ok(self.decode_access_with_kid(token)?.0)
    }

    /// [`Self::decode_access`], also returning the `kid` that signed the token.
    fn decode_access_with_kid(&self, token: &str) -> Result<(AccessClaims, String), TokenInvalid> {
        let data = self
            .keys
            .verify::<AccessClaims>(token, &self.validation)
            .map_err(|_| TokenInvalid::Signature)?;
        let typ = data.header.typ.as_deref().unwrap_or("");
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return Err(TokenInvalid::Type);
        }
        let now = self.clock.now();
        if data.claims.exp <= now - LEEWAY {
            return Err(TokenInvalid::Expired);
        }
        if data.claims.nbf > now + LEEWAY {
            return Err(TokenInvalid::NotYetValid);
        }
        Ok((data.claims, data.header.kid.unwrap_or_default()))
    }

    /// Validation for Portcullis's own API: [`Self::validate_access`], and the token must be
    /// meant for this API (`aud`), so a token asked for another resource cannot be replayed
    /// here.
    pub async fn validate_for_api(&self, token: &str) -> Result<AccessClaims, TokenInvalid> {
        let (claims, kid) = self.decode_access_with_kid(token)?;
        if claims.aud != self.audience {
            return Err(TokenInvalid::Audience);
        }
        self.check_deny_list(claims, &kid).await
    }

    /// Full validation, whatever the audience: [`Self::decode_access`] plus the deny list (the
    /// token's `jti`, its sign-in `sid` and its signing key `kid`), in one store round trip.
    pub async fn validate_access(&self, token: &str) -> Result<AccessClaims, TokenInvalid> {
        let (claims, kid) = self.decode_access_with_kid(token)?;
        self.check_deny_list(claims, &kid).await
    }

    async fn check_deny_list(
        &self,
        claims: AccessClaims,
        kid: &str,
    ) -> Result<AccessClaims, TokenInvalid> {
        let jti = deny_key_for_jti(&claims.jti);
        let kid = deny_key_for_kid(kid);
        let sid = claims.sid.as_deref().map(deny_key_for_sid);
        let mut keys = vec![jti.as_str(), kid.as_str()];
        if let Some(sid) = &sid {
            keys.push(sid.as_str());
        }
        if self.store.any_denied(&keys).await? {
            return Err(TokenInvalid::Revoked);
        }
        Ok(claims)
    }

    /// Puts an access token on the deny list until it expires.
    pub async fn revoke_access(&self, claims: &AccessClaims) -> Result<(), StoreError> {
        let remaining = (claims.exp - self.clock.now() + LEEWAY).max(1);
        self.store
            .deny(
                &deny_key_for_jti(&claims.jti),
                Duration::from_secs(u64::try_from(remaining).unwrap_or(1)),
            )
            .await
    }

    /// Makes every access token of a sign-in inactive (they live at most one access TTL).
    /// Ending a sign-in is `signins::SignIns::end`, which also revokes it in the database.
    pub async fn revoke_sign_in(&self, sid: &str) -> Result<(), StoreError> {
        self.deny_sign_in_for(sid, self.access_ttl + CLOCK_SKEW)
            .await
    }

    /// Refuses the access tokens of a sign-in for `ttl`.
    pub async fn deny_sign_in_for(&self, sid: &str, ttl: Duration) -> Result<(), StoreError> {
        self.store.deny(&deny_key_for_sid(sid), ttl).await
    }
}
