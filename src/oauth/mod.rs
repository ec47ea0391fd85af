//! OAuth 2.0 and OpenID Connect: the token endpoint and its grants, client authentication,
//! token minting and validation, refresh-token families, revocation, introspection, userinfo
//! and discovery.

pub mod authorize;
pub mod client_auth;
pub mod error;
pub mod grants;
pub mod refresh;
pub mod scope;
pub mod tokens;
