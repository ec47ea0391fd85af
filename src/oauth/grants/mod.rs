//! The grants of the token endpoint, one module each. The endpoint parses the form into a
//! [`TokenRequest`] and dispatches here after authenticating the client.

mod authorization_code;
mod client_credentials;
mod mfa_otp;
mod password;
mod refresh_token;
#[cfg(test)]
mod tests;

pub use mfa_otp::{MFA_OTP_GRANT_TYPE, check_second_factor};
pub use password::{Verified, check_credentials};

use super::error::OAuthError;
use crate::abuse::{Lockout, RateLimiter};
use crate::audit::Audit;
use crate::audit::Origin;
use crate::clients::{Client, GrantType};
use crate::domain::{Resource, Scope};
use crate::oauth::refresh::RefreshService;
use crate::oauth::tokens::TokenService;
use crate::signins::SignIns;
use crate::users::UserService;

/// The token request, parsed: one variant per grant type (RFC 6749 §4.3, §6, §4.4), each with
/// the RFC 8707 `resource` the access token is asked for (`None`: Portcullis's own API).
#[derive(Debug)]
pub enum TokenRequest {
    AuthorizationCode {
        code: secrecy::SecretString,
        redirect_uri: String,
        code_verifier: Option<secrecy::SecretString>,
    },
    Password {
        username: String,
        password: secrecy::SecretString,
        scope: Scope,
        resource: Option<Resource>,
    },
    RefreshToken {
        refresh_token: secrecy::SecretString,
        scope: Scope,
        resource: Option<Resource>,
    },
    ClientCredentials {
        scope: Scope,
        resource: Option<Resource>,
    },
    /// The second step of a password sign-in with MFA
    /// (`urn:portcullis:params:oauth:grant-type:mfa-otp`): the `mfa_token` of the
    /// `mfa_required` answer and a TOTP code or a recovery code. Scope and resource are those
    /// of the first step.
    MfaOtp {
        mfa_token: secrecy::SecretString,
        factor: crate::mfa::SecondFactor,
    },
}

/// The raw form fields the token endpoint reads (others are ignored, RFC 6749 §3.2).
pub struct RawTokenForm<'a> {
    pub grant_type: Option<&'a str>,
    pub code: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub refresh_token: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub mfa_token: Option<&'a str>,
    pub otp: Option<&'a str>,
    pub recovery_code: Option<&'a str>,
}

fn required<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str, OAuthError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(OAuthError::invalid_request(format!(
            "missing required parameter `{name}`"
        ))),
    }
}

impl TokenRequest {
    pub fn grant_type(&self) -> GrantType {
        match self {
            Self::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            Self::Password { .. } => GrantType::Password,
            Self::RefreshToken { .. } => GrantType::RefreshToken,
            Self::ClientCredentials { .. } => GrantType::ClientCredentials,
            // The second step of the password grant: allowed to every client that has it.
            Self::MfaOtp { .. } => GrantType::Password,
        }
    }

    pub fn parse(form: &RawTokenForm<'_>) -> Result<Self, OAuthError> {
        let grant_type = required(form.grant_type, "grant_type")?;
        let scope = Scope::parse(form.scope.unwrap_or(""))
            .map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
        let resource = form
            .resource
            .map(Resource::parse)
            .transpose()
            .map_err(|e| OAuthError::invalid_target(e.reason))?;
        match grant_type {
            "authorization_code" => {
                // The code's audience was fixed in the authorization request.
                if resource.is_some() {
                    return Err(OAuthError::invalid_target(
                        "name the resource in the authorization request, not with the code",
                    ));
                }
                Ok(Self::AuthorizationCode {
                    code: required(form.code, "code")?.to_string().into(),
                    redirect_uri: required(form.redirect_uri, "redirect_uri")?.to_string(),
                    code_verifier: form
                        .code_verifier
                        .filter(|v| !v.is_empty())
                        .map(|v| v.to_string().into()),
                })
            }
            "password" => Ok(Self::Password {
                username: required(form.username, "username")?.to_string(),
                password: required(form.password, "password")?.to_string().into(),
                scope,
                resource,
            }),
            "refresh_token" => Ok(Self::RefreshToken {
                refresh_token: required(form.refresh_token, "refresh_token")?
                    .to_string()
                    .into(),
                scope,
                resource,
            }),
            "client_credentials" => Ok(Self::ClientCredentials { scope, resource }),
            MFA_OTP_GRANT_TYPE => {
                let mfa_token = required(form.mfa_token, "mfa_token")?.to_string().into();
                let given = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
                let factor = match (given(form.otp), given(form.recovery_code)) {
                    (Some(otp), None) => crate::mfa::SecondFactor::Totp(otp.into()),
                    (None, Some(code)) => crate::mfa::SecondFactor::RecoveryCode(code.into()),
                    _ => {
                        return Err(OAuthError::invalid_request(
                            "send exactly one of `otp` and `recovery_code`",
                        ));
                    }
                };
                Ok(Self::MfaOtp { mfa_token, factor })
            }
            other => Err(OAuthError::new(
                super::error::ErrorCode::UnsupportedGrantType,
                format!(
                    "grant_type `{}` is not supported (supported: authorization_code, password, refresh_token, client_credentials, {MFA_OTP_GRANT_TYPE})",
                    other.escape_debug()
                ),
            )),
        }
    }
}

/// What a grant issues (RFC 6749 §5.1).
#[derive(Debug)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: i64,
    pub refresh_token: Option<String>,
    /// The granted scope (may be narrower than requested, RFC 6749 §3.3).
    pub scope: String,
    /// OpenID Connect ID token, when `openid` was granted.
    pub id_token: Option<String>,
}

/// The services the grants use, and nothing else.
#[derive(Clone)]
pub struct Grants {
    pub tokens: TokenService,
    pub refresh: RefreshService,
    pub users: UserService,
    pub sign_ins: SignIns,
    pub lockout: Lockout,
    pub limits: RateLimiter,
    pub audit: Audit,
    pub codes: crate::oauth::authorize::Codes,
    /// Whether an account must have confirmed its address to sign in.
    pub require_verified_email: bool,
    pub mfa: crate::mfa::MfaService,
    /// This instance's cache of the role table (permissions, MFA requirement).
    pub roles: crate::rbac::RoleCache,
}

/// What a grant needs besides its own parameters.
pub struct GrantContext<'a> {
    pub grants: &'a Grants,
    pub client: &'a Client,
    pub origin: &'a Origin,
}

/// Runs the grant for an authenticated client.
pub async fn handle(
    ctx: GrantContext<'_>,
    request: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    if !ctx.client.allows(request.grant_type()) {
        return Err(OAuthError::unauthorized_client(format!(
            "this client may not use the {} grant",
            request.grant_type().as_str()
        )));
    }
    match request {
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => authorization_code::grant(&ctx, &code, &redirect_uri, code_verifier.as_ref()).await,
        TokenRequest::Password {
            username,
            password,
            scope,
            resource,
        } => password::grant(&ctx, &username, &password, &scope, resource.as_ref()).await,
        TokenRequest::RefreshToken {
            refresh_token,
            scope,
            resource,
        } => refresh_token::grant(&ctx, &refresh_token, &scope, resource.as_ref()).await,
        TokenRequest::ClientCredentials { scope, resource } => {
            client_credentials::grant(&ctx, &scope, resource.as_ref()).await
        }
        TokenRequest::MfaOtp { mfa_token, factor } => {
            mfa_otp::grant(&ctx, &mfa_token, &factor).await
        }
    }
}

/// The audience of the access token for `resource` (RFC 8707): `None` (Portcullis's own API)
/// when no resource, or this API's own audience, was asked for; else the resource, which the
/// client must list among its audiences (`invalid_target` otherwise).
pub(super) fn audience_for(
    ctx: &GrantContext<'_>,
    resource: Option<&Resource>,
) -> Result<Option<String>, OAuthError> {
    match resource {
        None => Ok(None),
        Some(r) if r.as_str() == ctx.grants.tokens.audience => Ok(None),
        Some(r) if ctx.client.allows_audience(r.as_str()) => Ok(Some(r.as_str().to_string())),
        Some(_) => Err(OAuthError::invalid_target(
            "this client may not ask for tokens for this resource",
        )),
    }
}

/// The scopes `user` may grant: their roles' permissions (from the role cache) plus the
/// identity scopes.
pub(super) async fn permitted_scopes(
    ctx: &GrantContext<'_>,
    user: &crate::users::User,
) -> Result<Scope, OAuthError> {
    user_permitted_scopes(ctx.grants, user).await
}

/// The scopes `user` may grant: their roles' permissions (from the role cache,
/// `rbac::RoleCache`) plus the identity scopes.
pub async fn user_permitted_scopes(
    grants: &Grants,
    user: &crate::users::User,
) -> Result<Scope, OAuthError> {
    Ok(grants
        .roles
        .table()
        .await
        .map_err(|e| OAuthError::internal(&e))?
        .permissions(&user.roles)
        .union(&super::scope::identity_scopes()))
}

/// What the tokens of a user sign-in say about it.
pub(super) struct SignInFacts<'a> {
    /// The sign-in (refresh family) of the tokens: the `sid` of the access token.
    pub sid: &'a str,
    /// The browser session the sign-in belongs to: the `sid` of the ID token (OIDC's
    /// session), which is the sign-in itself when there is no browser session.
    pub session: Option<&'a str>,
    pub auth_time: i64,
    /// RFC 8176 authentication methods.
    pub amr: Vec<String>,
    /// The OIDC `nonce` of the authorization request, echoed in the ID token.
    pub nonce: Option<&'a str>,
}

/// Mints the access token (and the ID token when `openid` was granted) for a user sign-in.
pub(super) async fn user_tokens(
    ctx: &GrantContext<'_>,
    user: &crate::users::User,
    scope: &Scope,
    facts: &SignInFacts<'_>,
    audience: Option<&str>,
    refresh_token: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let tokens = &ctx.grants.tokens;
    // A user whose role requires MFA and who has not enrolled gets only what enrolling needs
    // (the API refuses everything else to such a token: `http::guard`).
    // Whether MFA is on is read only for a user whose role requires it.
    let required = ctx
        .grants
        .roles
        .table()
        .await
        .map_err(|e| OAuthError::internal(&e))?
        .requires_mfa(&user.roles);
    let must_enrol = required
        && !ctx
            .grants
            .mfa
            .is_on(&user.id)
            .await
            .map_err(|e| OAuthError::internal(&e))?;
    let enrolment_scope;
    let scope = if must_enrol {
        enrolment_scope = enrolment_only(scope, &ctx.client.scopes).ok_or_else(|| {
            OAuthError::invalid_scope(
                "two-factor authentication must be set up first, and this client may not ask \
                 for `profile:write`",
            )
        })?;
        &enrolment_scope
    } else {
        scope
    };
    let scope_text = scope.to_string();
    let access = tokens
        .mint_access(
            &user.id,
            &ctx.client.client_id,
            audience,
            &scope_text,
            user.roles.clone(),
            Some(facts.sid),
            Some(facts.auth_time),
            facts.amr.clone(),
            must_enrol,
        )
        .map_err(|e| OAuthError::internal(&e))?;
    let id_token = if scope.contains("openid") {
        let claims = super::tokens::IdClaims {
            iss: tokens.issuer.clone(),
            sub: user.id.clone(),
            aud: ctx.client.client_id.clone(),
            exp: access.claims.exp,
            iat: access.claims.iat,
            auth_time: facts.auth_time,
            amr: facts.amr.clone(),
            azp: ctx.client.client_id.clone(),
            sid: facts.session.unwrap_or(facts.sid).to_string(),
            nonce: facts.nonce.map(str::to_string),
            at_hash: Some(super::tokens::at_hash(&access.token)),
            preferred_username: scope.contains("profile").then(|| user.username.clone()),
            email: scope.contains("email").then(|| user.email.clone()),
            email_verified: scope.contains("email").then_some(user.email_verified),
        };
        Some(
            tokens
                .mint_id_token(&claims)
                .map_err(|e| OAuthError::internal(&e))?,
        )
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer".into(),
        expires_in: tokens.access_ttl_secs(),
        refresh_token,
        scope: scope_text,
        id_token,
    })
}

/// The scope of a user who must enrol MFA first: `profile profile:write` (reading one's
/// profile, enrolling) and `openid` when it was granted, as far as the client may ask for
/// them; `None` when the client may ask for neither `profile:write` nor anything else.
fn enrolment_only(granted: &Scope, client_scopes: &Scope) -> Option<Scope> {
    use super::scope::{OPENID, PROFILE, PROFILE_WRITE};
    if !client_scopes.contains(PROFILE_WRITE.name) {
        return None;
    }
    let mut names = vec![PROFILE.name, PROFILE_WRITE.name];
    if granted.contains(OPENID.name) {
        names.push(OPENID.name);
    }
    Some(Scope::from_tokens(names).intersect(client_scopes))
}
