//! What the operations are given: the use cases and the few services the HTTP layer uses
//! itself, put into each request once ([`Deps`], behind an `Arc`). An operation names only
//! what it uses, as a parameter of type `&T` (e.g. `accounts: &Accounts`): each such `&T`
//! is a poem extractor that takes its part of [`Deps`], never the whole.

use std::sync::Arc;

use bytes::Bytes;
use poem::{FromRequest, Request, RequestBody};

use crate::abuse::RateLimiter;
use crate::articles::ArticleService;
use crate::audit::Audit;
use crate::config::{AbuseSettings, ForwardedHeader};
use crate::keys::KeyRing;
use crate::oauth::tokens::TokenService;
use crate::ops::{Accounts, ClientAdmin, KeyAdmin, Readiness, TokenOps};
use crate::rbac::AuthorityService;

/// Serialized metadata, prepared once at start.
#[derive(Clone)]
pub struct Metadata(pub Bytes);

/// Where the JWKS comes from: the key ring (reloaded by every instance) and how long
/// resource servers may cache it.
#[derive(Clone)]
pub struct Jwks {
    pub ring: KeyRing,
    pub max_age: std::time::Duration,
}

/// The proxies whose forwarded header is believed (`PORTCULLIS_TRUSTED_PROXIES`), and which
/// header they write (`PORTCULLIS_FORWARDED_HEADER`).
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    pub trusted: Vec<ipnet::IpNet>,
    pub header: ForwardedHeader,
}

impl Proxies {
    pub fn new(settings: &AbuseSettings) -> Self {
        Self {
            trusted: settings.trusted_proxies.clone(),
            header: settings.forwarded_header,
        }
    }
}

/// Everything an operation may be given.
pub struct Deps {
    pub token_ops: TokenOps,
    pub accounts: Accounts,
    pub client_admin: ClientAdmin,
    pub key_admin: KeyAdmin,
    pub webhook_admin: crate::ops::WebhookAdmin,
    pub idp_admin: crate::ops::IdpAdmin,
    pub upstream_sign_in: crate::ops::UpstreamSignIn,
    pub readiness: Readiness,
    pub limits: RateLimiter,
    pub articles: ArticleService,
    pub audit: Audit,
    /// Bearer-token validation (`http::auth`).
    pub tokens: TokenService,
    /// What a caller holds now (`http::guard`).
    pub authorities: AuthorityService,
    pub proxies: Proxies,
    pub metadata: Metadata,
    pub jwks: Jwks,
    /// The browser sign-in pages (`http::browser`).
    pub browser: super::cookies::BrowserFront,
    pub session_ops: crate::ops::SessionOps,
    pub recovery: crate::ops::Recovery,
    pub mfa_ops: crate::ops::MfaOps,
}

/// The [`Deps`] of a request (a 500 if the app was assembled without them, which is a bug).
pub fn deps(req: &Request) -> poem::Result<&Deps> {
    req.data::<Arc<Deps>>().map(|d| d.as_ref()).ok_or_else(|| {
        tracing::error!("request without the operations' dependencies");
        poem::Error::from_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
    })
}

macro_rules! given {
    ($($ty:ty => $field:ident),* $(,)?) => {
        $(
            impl<'a> FromRequest<'a> for &'a $ty {
                async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
                    Ok(&deps(req)?.$field)
                }
            }
        )*
    };
}

given! {
    TokenOps => token_ops,
    Accounts => accounts,
    ClientAdmin => client_admin,
    KeyAdmin => key_admin,
    Readiness => readiness,
    RateLimiter => limits,
    ArticleService => articles,
    Audit => audit,
    Metadata => metadata,
    Jwks => jwks,
    crate::ops::SessionOps => session_ops,
    crate::ops::Recovery => recovery,
    crate::ops::MfaOps => mfa_ops,
    crate::ops::WebhookAdmin => webhook_admin,
    crate::ops::IdpAdmin => idp_admin,
    crate::ops::UpstreamSignIn => upstream_sign_in,
}
