//! Discovery (RFC 8414 / OpenID Connect Discovery 1.0) and the JWKS (RFC 7517).
//!
//! Both are served from bytes prepared ahead of time: the metadata once at start (it never
//! changes while running), the JWKS whenever the key ring changes. JWKS answers carry a strong
//! ETag (`If-None-Match` → 304) and `Cache-Control: public, max-age`.

use bytes::Bytes;
use poem_openapi::param::Header;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::http::deps::{Jwks, Metadata};
use crate::http::raw_json::RawJson;
use crate::http::tags::ApiTags;
use crate::oauth::scope::all_scopes;

/// Authorization server metadata. Only what works is advertised.
#[derive(Debug, Object)]
pub struct ServerMetadata {
    pub issuer: String,
    /// The authorization endpoint (code flow with PKCE S256).
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub userinfo_endpoint: String,
    /// OpenID Connect RP-initiated logout.
    pub end_session_endpoint: String,
    pub grant_types_supported: Vec<String>,
    /// `code` only.
    pub response_types_supported: Vec<String>,
    /// `query` only.
    pub response_modes_supported: Vec<String>,
    /// `S256` only (`plain` is refused).
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207: every authorization response carries `iss`.
    pub authorization_response_iss_parameter_supported: bool,
    /// OIDC `prompt` values understood.
    pub prompt_values_supported: Vec<String>,
    /// Request objects (RFC 9101) are not supported.
    pub request_parameter_supported: bool,
    pub request_uri_parameter_supported: bool,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub claims_supported: Vec<String>,
    pub service_documentation: String,
    /// The token endpoint takes RFC 8707 `resource`: the access token's `aud` is the resource
    /// asked for (one the client is registered for). No standard metadata name exists for
    /// this; the name follows RFC 8414's `*_supported` pattern.
    pub resource_indicators_supported: bool,
}

/// One public key of the JWKS.
#[derive(Debug, Object)]
pub struct Jwk {
    /// Always `RSA`.
    pub kty: String,
    /// Always `sig`.
    #[oai(rename = "use")]
    pub use_: String,
    /// Always `RS256`.
    pub alg: String,
    /// Key id (RFC 7638 thumbprint); matches the `kid` header of tokens.
    pub kid: String,
    /// Modulus, base64url.
    pub n: String,
    /// Public exponent, base64url.
    pub e: String,
}

/// JSON Web Key Set: the public keys that verify Portcullis tokens.
#[derive(Debug, Object)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

/// The metadata document for `issuer`, serialized.
pub fn metadata_bytes(issuer: &str) -> Bytes {
    use poem_openapi::types::ToJSON;
    let client_auth = strings(&["client_secret_basic", "client_secret_post", "none"]);
    let confidential_auth = strings(&["client_secret_basic", "client_secret_post"]);
    let doc = ServerMetadata {
        issuer: issuer.to_string(),
        token_endpoint: format!("{issuer}/oauth/token"),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        revocation_endpoint: format!("{issuer}/oauth/revoke"),
        introspection_endpoint: format!("{issuer}/oauth/introspect"),
        userinfo_endpoint: format!("{issuer}/oauth/userinfo"),
        authorization_endpoint: format!("{issuer}/oauth/authorize"),
        end_session_endpoint: format!("{issuer}/oauth/end_session"),
        grant_types_supported: strings(&[
            "authorization_code",
            "password",
            "refresh_token",
            "client_credentials",
            crate::oauth::grants::MFA_OTP_GRANT_TYPE,
        ]),
        response_types_supported: strings(&["code"]),
        response_modes_supported: strings(&["query"]),
        code_challenge_methods_supported: strings(&["S256"]),
        authorization_response_iss_parameter_supported: true,
        prompt_values_supported: strings(&["none", "login", "consent"]),
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
        token_endpoint_auth_methods_supported: client_auth.clone(),
        revocation_endpoint_auth_methods_supported: client_auth,
        introspection_endpoint_auth_methods_supported: confidential_auth,
        scopes_supported: all_scopes().iter().map(str::to_string).collect(),
        subject_types_supported: strings(&["public"]),
        id_token_signing_alg_values_supported: strings(&["RS256"]),
        claims_supported: strings(&[
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "amr",
            "nonce",
            "sid",
            "preferred_username",
            "name",
            "email",
            "email_verified",
        ]),
        service_documentation: format!("{issuer}/docs"),
        resource_indicators_supported: true,
    };
    Bytes::from(doc.to_json_string())
}

#[derive(ApiResponse)]
pub enum MetadataResponse {
    /// The metadata document.
    #[oai(status = 200)]
    Ok(
        RawJson<ServerMetadata>,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(ApiResponse)]
pub enum JwksResponse {
    /// The current key set.
    #[oai(status = 200)]
    Ok(
        RawJson<JwkSet>,
        #[oai(header = "ETag")] String,
        #[oai(header = "Cache-Control")] String,
    ),
    /// The key set has not changed since the ETag given in `If-None-Match`.
    #[oai(status = 304)]
    NotModified(
        #[oai(header = "ETag")] String,
        #[oai(header = "Cache-Control")] String,
    ),
}

pub struct DiscoveryApi;

#[OpenApi(tag = "ApiTags::Discovery")]
impl DiscoveryApi {
    /// OpenID Connect Discovery metadata.
    #[oai(
        path = "/.well-known/openid-configuration",
        method = "get",
        operation_id = "openid_configuration"
    )]
    async fn openid_configuration(&self, metadata: &Metadata) -> MetadataResponse {
        MetadataResponse::Ok(
            RawJson::new(metadata.0.clone()),
            "public, max-age=3600".into(),
        )
    }

    /// OAuth 2.0 Authorization Server Metadata (RFC 8414); the same document.
    #[oai(
        path = "/.well-known/oauth-authorization-server",
        method = "get",
        operation_id = "oauth_authorization_server"
    )]
    async fn oauth_authorization_server(&self, metadata: &Metadata) -> MetadataResponse {
        MetadataResponse::Ok(
            RawJson::new(metadata.0.clone()),
            "public, max-age=3600".into(),
        )
    }

    /// The JSON Web Key Set (RFC 7517): public keys only (`kid`, `use: sig`, `alg: RS256`).
    ///
    /// Includes the key that will sign next, so resource servers already hold it when a
    /// rotation happens. Send `If-None-Match` with the last ETag to get 304 when unchanged.
    #[oai(path = "/.well-known/jwks.json", method = "get", operation_id = "jwks")]
    async fn jwks(
        &self,
        jwks: &Jwks,
        #[oai(name = "If-None-Match")] if_none_match: Header<Option<String>>,
    ) -> JwksResponse {
        let set = jwks.ring.snapshot();
        let cache = format!("public, max-age={}", jwks.max_age.as_secs());
        let matches = if_none_match.0.as_deref().is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == set.etag || t == "*")
        });
        if matches {
            JwksResponse::NotModified(set.etag.clone(), cache)
        } else {
            JwksResponse::Ok(RawJson::new(set.jwks.clone()), set.etag.clone(), cache)
        }
    }
}
