//! The HTTP front end: the API operations (`api`), grouped by area, are thin adapters that
//! parse a request, call one use case (`ops`) or service, and render the answer; around them
//! the guard (`guard`), the middleware (request ids, body limit, error rendering, headers),
//! TLS, and the app assembly (`app`). Nothing below this module imports it.

pub mod alerting;
pub mod api;
pub mod app;
pub mod auth;
pub mod browser;
pub mod browser_account;
pub mod browser_upstream;
pub mod cookies;
pub mod cors;
pub mod deps;
pub mod guard;
pub mod metrics;
pub mod middleware;
pub mod origin;
pub mod problem;
pub mod raw_json;
pub mod routes;
pub mod swagger;
pub mod tags;
pub mod tls;
pub mod ui;

pub use self::app::{api_service, app, openapi_json};
pub use self::auth::BearerAuth;
pub use self::middleware::MAX_BODY_BYTES;
