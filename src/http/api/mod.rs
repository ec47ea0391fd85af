//! The operations of the API, one module per area (combined in `http::app`).

pub mod account;
pub mod admin;
pub mod admin_views;
pub mod articles;
pub mod discovery;
pub mod health;
pub mod mfa;
pub mod oauth;
pub mod oauth_error;
pub mod sessions;
pub mod upstream;
pub mod users;
pub mod webhooks;
