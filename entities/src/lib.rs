//! SeaORM entities for the Portcullis schema (one module per table).
//!
//! These mirror the migrations in the `migration` crate; they are storage types only and never
//! leave the service layer (HTTP types are mapped from them).

pub mod account_tokens;
pub mod alerts;
pub mod articles;
pub mod audit_events;
pub mod authorization_codes;
pub mod clients;
pub mod consents;
pub mod fences;
pub mod identity_providers;
pub mod mfa_recovery_codes;
pub mod mfa_tokens;
pub mod mfa_totp;
pub mod outbox;
pub mod permissions;
pub mod refresh_families;
pub mod refresh_replays;
pub mod refresh_tokens;
pub mod role_permissions;
pub mod roles;
pub mod signing_keys;
pub mod upstream_logins;
pub mod user_identities;
pub mod user_roles;
pub mod users;
pub mod webhook_deliveries;
pub mod webhook_endpoints;
