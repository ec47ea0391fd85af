//! The application layer: one type per area of use cases, shared by every front end (the HTTP
//! API and the command line are thin adapters that parse, call one use case and render).
//!
//! A use case holds the rule (including the escalation rule, `rbac::Authority`), the audit
//! record and the side effects (ending sign-ins, deny-listing a key), is keyed by who acts
//! ([`Caller`]: an administrator or user through the API, a client for itself, or the operator
//! at the command line), and returns a domain error ([`OpError`]). Each area holds only the
//! services it needs. Imports go down only: front ends → `ops` → services → stores.

pub mod accounts;
pub mod browser;
mod caller;
pub mod clients;
mod error;
pub mod keys;
pub mod mfa;
pub mod readiness;
pub mod recovery;
pub mod sessions;
pub mod tokens;
pub mod upstream;
pub mod webhooks;

pub use self::accounts::Accounts;
pub use self::browser::BrowserSignIn;
pub use self::caller::Caller;
pub use self::clients::ClientAdmin;
pub use self::error::OpError;
pub use self::keys::KeyAdmin;
pub use self::mfa::MfaOps;
pub use self::readiness::Readiness;
pub use self::recovery::Recovery;
pub use self::sessions::SessionOps;
pub use self::tokens::TokenOps;
pub use self::upstream::{IdpAdmin, UpstreamSignIn};
pub use self::webhooks::WebhookAdmin;
