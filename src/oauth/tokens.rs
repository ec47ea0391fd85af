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
    /// How the user authenticated (RFC 8176), for user tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The user must set up two-factor authentication first: Portcullis's API accepts the
    /// token only for the profile and the enrolment endpoints (`http::guard`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mfa_enrolment_required: bool,
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
    /// How the user authenticated (RFC 8176).
    #[serde(default)]
    pub amr: Vec<String>,
    pub azp: String,
    pub sid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Left half of SHA-256 of the access token, base64url (OIDC Core §3.1.3.6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the owner of `email` confirmed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// OIDC `at_hash` / `c_hash` for RS256: the left half of the SHA-256 of the value, base64url
/// without padding (OIDC Core §3.1.3.6, §3.3.2.11).
pub fn at_hash(value: &str) -> String {
    use base64::Engine;
    let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    let bytes = digest.as_ref();
    let half = bytes.get(..bytes.len() / 2).unwrap_or(bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(half)
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
        // Claims are checked here: `iss` against the issuer, `exp`/`nbf` on the service
        // clock; `exp`, `iss`, `aud` and `sub` are required by the claim types themselves.
        Self {
            issuer,
            audience,
            access_ttl,
            keys,
            store,
            clock,
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
        amr: Vec<String>,
        mfa_enrolment_required: bool,
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
            amr,
            mfa_enrolment_required,
        };
        let token = self.keys.sign("at+jwt", &claims)?;
        Ok(MintedAccess { token, claims })
    }

    pub fn mint_id_token(&self, claims: &IdClaims) -> Result<String, SignError> {
        self.keys.sign("JWT", claims)
    }

    /// Reads an `id_token_hint` (OIDC RP-Initiated Logout §2): an ID token Portcullis signed
    /// (signature with a published key, `iss`), possibly expired; never an access token.
    pub fn decode_id_token_hint(&self, token: &str) -> Result<IdClaims, TokenInvalid> {
        let data = self
            .keys
            .verify::<IdClaims>(token)
            .map_err(|_| TokenInvalid::Signature)?;
        if data.claims.iss != self.issuer {
            return Err(TokenInvalid::Signature);
        }
        let typ = data.header.typ.as_deref().unwrap_or("JWT");
        if !typ.eq_ignore_ascii_case("JWT") {
            return Err(TokenInvalid::Type);
        }
        Ok(data.claims)
    }

    /// Verifies signature, type and registered claims, without consulting the deny list.
    pub fn decode_access(&self, token: &str) -> Result<AccessClaims, TokenInvalid> {
        Ok(self.decode_access_with_kid(token)?.0)
    }

    /// [`Self::decode_access`], also returning the `kid` that signed the token. The
    /// signature is checked with the published key parsed once, the claims are read once.
    fn decode_access_with_kid(&self, token: &str) -> Result<(AccessClaims, String), TokenInvalid> {
        let data = self
            .keys
            .verify::<AccessClaims>(token)
            .map_err(|_| TokenInvalid::Signature)?;
        if data.claims.iss != self.issuer {
            return Err(TokenInvalid::Signature);
        }
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

#[cfg(test)]
mod tests {
    //! Property tests of access-token validation: no string, however built, panics it, and only
    //! tokens this service signed, typed `at+jwt` and within their lifetime are accepted.

    use std::sync::OnceLock;

    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::clock::{Clock as _, ManualClock};
    use crate::keys::{KeySet, PublicJwk, SigningKey, sign_with};
    use crate::store::MemoryStore;

    const KID: &str = "kid-1";
    const ISSUER: &str = "https://issuer.example";
    const AUDIENCE: &str = "https://issuer.example/api";

    /// PKCS#8 keys, generated once per test run: the published key, and a stranger's.
    fn keys() -> &'static (Vec<u8>, Vec<u8>) {
        static KEYS: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let der = || {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
                AsDer::<Pkcs8V1Der>::as_der(&pair)
                    .unwrap()
                    .as_ref()
                    .to_vec()
            };
            (der(), der())
        })
    }

    fn signing_key(der: &[u8], kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            pair: RsaKeyPair::from_pkcs8(der).unwrap(),
        }
    }

    fn jwk(key: &SigningKey) -> PublicJwk {
        let public = key.pair.public_key();
        PublicJwk {
            kty: "RSA".into(),
            use_: "sig".into(),
            alg: "RS256".into(),
            kid: key.kid.clone(),
            n: URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            e: URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        }
    }

    /// A service that publishes and signs with [`KID`], on a clock that stays put.
    fn service() -> (TokenService, ManualClock) {
        let key = signing_key(&keys().0, KID);
        let published = vec![jwk(&key)];
        let ring = KeyRing::default();
        ring.replace(KeySet::new(Some(Arc::new(key)), published));
        let clock = ManualClock::new();
        let service = TokenService::new(
            ISSUER.into(),
            AUDIENCE.into(),
            Duration::from_secs(900),
            ring,
            Arc::new(MemoryStore::new()),
            Arc::new(clock.clone()),
        );
        (service, clock)
    }

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: ISSUER.into(),
            sub: "user-1".into(),
            aud: AUDIENCE.into(),
            exp: now + 900,
            iat: now,
            nbf: now,
            jti: "jti-1".into(),
            client_id: "client-1".into(),
            scope: "openid".into(),
            roles: vec!["reader".into()],
            sid: Some("sid-1".into()),
            auth_time: Some(now),
            amr: vec!["pwd".into()],
            mfa_enrolment_required: false,
        }
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// JSON values of every kind, small.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A field value that is one of `names`, some other text, another JSON type, or absent.
    fn field(names: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
        proptest::option::of(prop_oneof![
            4 => prop::sample::select(names).prop_map(|s| Value::String(s.to_string())),
            1 => any::<String>().prop_map(Value::String),
            1 => json_value(),
        ])
    }

    /// JOSE headers with odd `alg`, `typ` and `kid` values and extra members.
    fn header() -> impl Strategy<Value = Value> {
        (
            field(&[
                "RS256", "rs256", "HS256", "none", "None", "ES256", "PS256", "RS512", "EdDSA", "",
            ]),
            field(&["at+jwt", "AT+JWT", "application/at+jwt", "JWT", "jwt", ""]),
            field(&[KID, "", "kid-2", "../../etc/passwd"]),
            proptest::collection::btree_map(
                prop::sample::select(vec!["jku", "x5u", "jwk", "crit", "b64", "cty", "zip"]),
                json_value(),
                0..3,
            ),
        )
            .prop_map(|(alg, typ, kid, extra)| {
                let mut header = serde_json::Map::new();
                for (name, value) in [("alg", alg), ("typ", typ), ("kid", kid)] {
                    if let Some(value) = value {
                        header.insert(name.into(), value);
                    }
                }
                for (name, value) in extra {
                    header.insert(name.into(), value);
                }
                Value::Object(header)
            })
    }

    /// Payloads: the valid claims (so only the header and signature can be at fault), the
    /// valid claims with one member changed, or any JSON.
    fn payload(now: i64) -> impl Strategy<Value = Value> {
        let valid = serde_json::to_value(claims(now)).unwrap();
        prop_oneof![
            Just(valid.clone()),
            (
                prop::sample::select(vec![
                    "iss", "aud", "exp", "nbf", "sub", "scope", "roles", "sid"
                ]),
                json_value(),
            )
                .prop_map(move |(name, value)| {
                    let mut changed = valid.clone();
                    changed[name] = value;
                    changed
                }),
            json_value(),
        ]
    }

    /// Signatures: random bytes, none, an HMAC keyed with the public key (the RS256 → HS256
    /// confusion), or a real RS256 signature by a key that is not published.
    #[derive(Debug, Clone)]
    enum Signature {
        Bytes(Vec<u8>),
        Empty,
        HmacWithPublicKey,
        Stranger,
    }

    fn signature() -> impl Strategy<Value = Signature> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Signature::Bytes),
            Just(Signature::Empty),
            Just(Signature::HmacWithPublicKey),
            Just(Signature::Stranger),
        ]
    }

    fn sign(header: &Value, payload: &Value, signature: &Signature) -> String {
        let message = format!(
            "{}.{}",
            b64(&serde_json::to_vec(header).unwrap()),
            b64(&serde_json::to_vec(payload).unwrap())
        );
        let sig = match signature {
            Signature::Bytes(bytes) => bytes.clone(),
            Signature::Empty => Vec::new(),
            Signature::HmacWithPublicKey => {
                let public = jwk(&signing_key(&keys().0, KID));
                let secret = serde_json::to_vec(&public).unwrap();
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
                ring::hmac::sign(&key, message.as_bytes()).as_ref().to_vec()
            }
            Signature::Stranger => {
                let stranger = signing_key(&keys().1, KID);
                let mut out = vec![0u8; stranger.pair.public_modulus_len()];
                stranger
                    .pair
                    .sign(
                        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                        &aws_lc_rs::rand::SystemRandom::new(),
                        message.as_bytes(),
                        &mut out,
                    )
                    .unwrap();
                out
            }
        };
        format!("{message}.{}", b64(&sig))
    }

    fn is_access_type(typ: &str) -> bool {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    }

    /// An access token for `user` from `client-1`, in sign-in `sid-1`.
    fn mint(service: &TokenService, user: &str) -> MintedAccess {
        service
            .mint_access(
                user,
                "client-1",
                None,
                "openid",
                vec![],
                Some("sid-1"),
                Some(0),
                vec![],
                false,
            )
            .unwrap()
    }

    #[test]
    fn a_withdrawn_key_refuses_the_tokens_it_verified_before() {
        let (service, _) = service();
        let minted = mint(&service, "user-1");
        assert!(service.decode_access(&minted.token).is_ok());
        assert!(service.decode_access(&minted.token).is_ok());
        assert_eq!(service.keys.snapshot().remembered(), 1);
        // The key is withdrawn: another key signs and is the only one published.
        let other = signing_key(&keys().1, "kid-2");
        let published = vec![jwk(&other)];
        service
            .keys
            .replace(KeySet::new(Some(Arc::new(other)), published));
        assert!(matches!(
            service.decode_access(&minted.token),
            Err(TokenInvalid::Signature)
        ));
        // The same kid published again with another key: a new set, a new memo.
        let impostor = signing_key(&keys().1, KID);
        let published = vec![jwk(&impostor)];
        service
            .keys
            .replace(KeySet::new(Some(Arc::new(impostor)), published));
        assert!(service.decode_access(&minted.token).is_err());
        assert_eq!(service.keys.snapshot().remembered(), 0);
    }

    #[test]
    fn the_memo_of_verified_tokens_is_bounded() {
        let (service, _) = service();
        for i in 0..=crate::keys::VERIFIED_MEMO {
            let minted = mint(&service, &format!("user-{i}"));
            assert!(service.decode_access(&minted.token).is_ok());
            assert!(service.keys.snapshot().remembered() <= crate::keys::VERIFIED_MEMO);
        }
        assert_eq!(
            service.keys.snapshot().remembered(),
            1,
            "full: started over"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn arbitrary_strings_are_refused(token in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_.=-]{0,200}",
            "([A-Za-z0-9_-]{0,40}\\.){2}[A-Za-z0-9_-]{0,40}",
        ]) {
            let (service, _) = service();
            prop_assert!(service.decode_access(&token).is_err());
        }

        #[test]
        fn crafted_tokens_are_refused(
            header in header(),
            payload in payload(ManualClock::new().now()),
            signature in signature(),
        ) {
            let (service, _) = service();
            let token = sign(&header, &payload, &signature);
            prop_assert!(service.decode_access(&token).is_err(), "{header} {payload} {signature:?}");
        }

        #[test]
        fn signed_tokens_are_accepted_only_as_access_tokens(
            typ in prop_oneof![
                prop::sample::select(vec!["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT", "JWT", "at+jwt ", "atjwt", ""]).prop_map(str::to_string),
                any::<String>(),
            ],
        ) {
            let (service, clock) = service();
            let expected = claims(clock.now());
            let token = sign_with(&signing_key(&keys().0, KID), &typ, &expected).unwrap();
            match service.decode_access(&token) {
                Ok(decoded) => {
                    prop_assert!(is_access_type(&typ), "accepted typ {typ:?}");
                    prop_assert_eq!(decoded, expected);
                }
                Err(e) => {
                    prop_assert!(!is_access_type(&typ), "refused typ {typ:?}: {e}");
                    prop_assert!(matches!(e, TokenInvalid::Type));
                }
            }
        }

        #[test]
        fn any_change_to_a_minted_token_is_refused(
            at in any::<prop::sample::Index>(),
            replacement in "[A-Za-z0-9_-]",
        ) {
            let (service, _) = service();
            let minted = mint(&service, "user-1");
            prop_assert_eq!(service.decode_access(&minted.token).ok(), Some(minted.claims.clone()));
            // The key set now remembers the token as verified: a changed token must not pass
            // for it.
            prop_assert_eq!(service.keys.snapshot().remembered(), 1);
            // Change one character of the payload or signature (not the last of a segment,
            // whose low bits base64 may ignore).
            let bytes = minted.token.as_bytes();
            let positions: Vec<usize> = (0..bytes.len())
                .filter(|&i| {
                    bytes[i] != b'.'
                        && bytes.get(i + 1).is_some_and(|&next| next != b'.')
                        && minted.token[..i].contains('.')
                })
                .collect();
            let i = positions[at.index(positions.len())];
            prop_assume!(bytes[i] != replacement.as_bytes()[0]);
            let mut changed = minted.token.clone();
            changed.replace_range(i..=i, &replacement);
            prop_assert!(service.decode_access(&changed).is_err(), "{changed}");
        }

        #[test]
        fn lifetimes_are_checked_on_the_service_clock(shift in -3_000i64..3_000) {
            let (service, clock) = service();
            let minted = mint(&service, "user-1");
            // Verified (and remembered) once within its lifetime: the memo spares the
            // signature check, never the lifetime check.
            prop_assert!(service.decode_access(&minted.token).is_ok());
            clock.advance(shift);
            let valid = (-LEEWAY..900 + LEEWAY).contains(&shift);
            match service.decode_access(&minted.token) {
                Ok(_) => prop_assert!(valid, "accepted at {shift}"),
                Err(TokenInvalid::Expired) => prop_assert!(shift >= 900 + LEEWAY),
                Err(TokenInvalid::NotYetValid) => prop_assert!(shift < -LEEWAY),
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            }
        }
    }
}
