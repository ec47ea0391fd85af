//! The authorization endpoint's building blocks (RFC 6749 §4.1, RFC 7636, OpenID Connect Core
//! §3.1), on oxide-auth's authorization-code primitives: the request ([`request`], validated
//! by its state machine, `Registrar` and PKCE extension), the codes ([`codes`], minted through
//! its `Authorizer`) and remembered consent ([`consent`]). The flow that joins them to the
//! browser session and the pages is `ops::browser`; the code's redemption is the token
//! endpoint's `authorization_code` grant.

pub mod codes;
pub mod consent;
pub mod request;

pub use codes::{CODE_TTL_SECS, CodeGrant, CodeSlot, Codes, Found, Lookup};
pub use consent::{Consent, Consents};
pub use request::{
    AuthorizeRequest, AuthzError, ErrorRedirect, PageProblem, Prompt, Rejection, validate,
};
