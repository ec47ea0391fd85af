//! App assembly: the OpenAPI service (every endpoint is a poem-openapi operation, grouped by
//! area), Swagger UI at `/docs`, the spec at `/openapi.json`, and the middleware stack.

pub mod auth;
pub mod health;
pub mod middleware;
pub mod problem;
pub mod raw_json;
pub mod routes;
pub mod tls;

use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, Request, Route};
use poem_openapi::{OpenApiService, Tags};

pub use self::auth::BearerAuth;
use crate::admin::AdminApi;
use crate::articles::api::ArticlesApi;
use crate::audit::Origin;
use crate::oauth::api::OAuthApi;
use crate::oauth::discovery::{DiscoveryApi, Metadata, metadata_bytes};
use crate::state::AppState;
use crate::users::api::UsersApi;

/// Largest request body accepted (bigger ones get 413).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Tags)]
pub enum ApiTags {
    /// OAuth 2.0 / OpenID Connect endpoints
    #[oai(rename = "OAuth 2.0")]
    OAuth,
    /// Discovery metadata and signing keys
    Discovery,
    /// Accounts and profiles
    Users,
    /// The demonstration resource of the authorization model
    Articles,
    /// User, client, role and audit-log administration (permission-guarded)
    #[oai(rename = "Administration")]
    Admin,
    /// Health and readiness
    Operations,
}

type Apis = (
    OAuthApi,
    DiscoveryApi,
    UsersApi,
    ArticlesApi,
    AdminApi,
    health::OpsApi,
);

/// The OpenAPI service. Its document does not depend on configuration, so the committed
/// openapi/openapi.json is the same for every deployment.
pub fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            OAuthApi,
            DiscoveryApi,
            UsersApi,
            ArticlesApi,
            AdminApi,
            health::OpsApi,
        ),
        "Portcullis",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "OAuth 2.0 / OpenID Connect authorization server. To try protected operations here: \
         Authorize → OAuth2 password flow, with a registered user's credentials and the \
         client_id `portcullis-spa` (public client, leave the secret empty).",
    )
}

/// The OpenAPI document, pretty-printed (what `portcullis openapi` prints).
pub fn openapi_json() -> String {
    api_service().spec()
}

/// The documented operations, from the same document `/openapi.json` serves.
fn documented_routes(api: &OpenApiService<Apis, ()>) -> routes::Routes {
    let doc = serde_json::from_str(&api.spec()).unwrap_or_default();
    routes::Routes::from_document(&doc)
}

/// The whole HTTP application.
pub fn app(state: AppState) -> impl Endpoint {
    let api = api_service();
    let metadata = Metadata(metadata_bytes(&state.settings.server.issuer));
    let ids = std::sync::Arc::new(middleware::RequestIds::new());
    let routes = std::sync::Arc::new(documented_routes(&api));
    let hsts_max_age = state.settings.server.hsts_max_age;
    Route::new()
        .at("/openapi.json", api.spec_endpoint())
        .nest("/docs", api.swagger_ui())
        .nest("/", api)
        .with(CatchPanic::new())
        .data(state)
        .data(metadata)
        .around(move |next, req| middleware::around(next, req, ids.clone(), routes.clone()))
        .with(middleware::strict_transport_security(hsts_max_age))
}

/// Where a request came from, for the audit log and rate limits. The client IP is the socket
/// peer, or what a trusted proxy (`PORTCULLIS_TRUSTED_PROXIES`) forwarded in the configured
/// header (`PORTCULLIS_FORWARDED_HEADER`).
pub fn origin(req: &Request) -> Origin {
    let (trusted, header) = req
        .data::<AppState>()
        .map(|s| {
            let abuse = &s.settings.abuse;
            (abuse.trusted_proxies.as_slice(), abuse.forwarded_header)
        })
        .unwrap_or_default();
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    Origin {
        ip: crate::abuse::client_ip(peer, req.headers(), trusted, header).map(|ip| ip.to_string()),
        request_id: req
            .extensions()
            .get::<middleware::RequestId>()
            .map(|r| r.0.clone()),
    }
}
