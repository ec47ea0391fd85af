//! App assembly: the OpenAPI service (every endpoint is a poem-openapi operation, grouped by
//! area), Swagger UI at `/docs`, the spec at `/openapi.json`, the middleware stack, and what
//! each operation receives.

use std::sync::Arc;

use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, Route, get, post};
use poem_openapi::OpenApiService;

use super::api::account::AccountApi;
use super::api::admin::AdminApi;
use super::api::articles::ArticlesApi;
use super::api::discovery::{DiscoveryApi, metadata_bytes};
use super::api::health::OpsApi;
use super::api::mfa::MfaApi;
use super::api::oauth::OAuthApi;
use super::api::sessions::SessionsApi;
use super::api::users::UsersApi;
use super::browser;
use super::browser_account;
use super::cookies::BrowserFront;
use super::deps::{Deps, Jwks, Metadata, Proxies};
use super::middleware;
use super::routes;
use super::ui;
use crate::state::AppState;

type Apis = (
    OAuthApi,
    DiscoveryApi,
    UsersApi,
    AccountApi,
    MfaApi,
    SessionsApi,
    ArticlesApi,
    AdminApi,
    super::api::webhooks::WebhooksApi,
    super::api::upstream::UpstreamApi,
    OpsApi,
);

/// The OpenAPI service. Its document does not depend on configuration, so the committed
/// openapi/openapi.json is the same for every deployment.
pub fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            OAuthApi,
            DiscoveryApi,
            UsersApi,
            AccountApi,
            MfaApi,
            SessionsApi,
            ArticlesApi,
            AdminApi,
            super::api::webhooks::WebhooksApi,
            super::api::upstream::UpstreamApi,
            OpsApi,
        ),
        "Portcullis",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "OAuth 2.0 / OpenID Connect authorization server. To try protected operations here: \
         Authorize → OAuth2 authorizationCode flow (client_id `portcullis-spa`, PKCE, secret \
         left empty), pick the scopes and sign in; or the password flow with a registered \
         user's credentials and the same client_id.",
    )
}

/// The OpenAPI document, pretty-printed (what `portcullis openapi` prints).
pub fn openapi_json() -> String {
    api_service().spec()
}

/// The paths served outside the OpenAPI document (the browser front end, the document
/// itself, the metrics), for their labels in the metrics; `/docs` is a subtree.
const UNDOCUMENTED_PATHS: &[&str] = &[
    "/oauth/authorize",
    "/oauth/end_session",
    "/ui/login",
    "/ui/login/mfa",
    "/ui/consent",
    "/ui/email/verify",
    "/ui/email/resend",
    "/ui/password/forgot",
    "/ui/password/reset",
    ui::STYLESHEET_PATH,
    "/openapi.json",
    super::metrics::PATH,
];

/// The documented operations, from the same document `/openapi.json` serves, and the
/// other routes' paths.
fn documented_routes(api: &OpenApiService<Apis, ()>) -> routes::Routes {
    let doc = serde_json::from_str(&api.spec()).unwrap_or_default();
    routes::Routes::from_document(&doc).with_paths(UNDOCUMENTED_PATHS, &["/docs"])
}

/// The whole HTTP application over the services and use cases of `state`. Each operation
/// receives only what it uses (see `deps`), never the whole state; the dependencies go into
/// each request once, behind an `Arc`.
pub fn app(state: AppState) -> impl Endpoint {
    let api = api_service();
    let metadata = Metadata(metadata_bytes(&state.settings.server.issuer));
    let jwks = Jwks {
        ring: state.keys.ring().clone(),
        max_age: state.settings.keys.timing.jwks_max_age,
    };
    let proxies = Proxies::new(&state.settings.abuse);
    let ids = std::sync::Arc::new(middleware::RequestIds::new());
    let routes = std::sync::Arc::new(documented_routes(&api));
    let hsts_max_age = state.settings.server.hsts_max_age;
    let clients = state.clients.clone();
    let deps = Deps {
        token_ops: state.token_ops.clone(),
        accounts: state.accounts.clone(),
        client_admin: state.client_admin.clone(),
        key_admin: state.key_admin.clone(),
        readiness: state.readiness.clone(),
        limits: state.limits.clone(),
        articles: state.articles.clone(),
        audit: state.audit.clone(),
        tokens: state.tokens.clone(),
        authorities: state.authorities.clone(),
        proxies,
        metadata,
        jwks,
        browser: BrowserFront::new(
            state.browser.clone(),
            state.upstream_sign_in.clone(),
            state.csrf_key.clone(),
            &state.settings.server.issuer,
        ),
        session_ops: state.session_ops.clone(),
        recovery: state.recovery.clone(),
        mfa_ops: state.mfa_ops.clone(),
        webhook_admin: state.webhook_admin.clone(),
        idp_admin: state.idp_admin.clone(),
        upstream_sign_in: state.upstream_sign_in.clone(),
    };
    let alerts = state.alerts.clone();
    // `/metrics` is here unless PORTCULLIS_METRICS_LISTEN moves it to a listener of its own.
    let metrics = state
        .settings
        .observability
        .metrics_listen
        .is_none()
        .then(|| super::metrics::endpoint(state.metrics.clone()));
    let route = match metrics {
        Some(endpoint) => Route::new().at(super::metrics::PATH, endpoint),
        None => Route::new(),
    };
    route
        .at(
            "/oauth/authorize",
            get(browser::authorize).post(browser::authorize),
        )
        .at(
            "/oauth/end_session",
            get(browser::end_session).post(browser::end_session),
        )
        .at(
            "/ui/login",
            get(browser::login_page).post(browser::login_submit),
        )
        .at("/ui/login/mfa", post(browser::login_mfa_submit))
        .at("/ui/consent", post(browser::consent_submit))
        .at(
            "/ui/email/verify",
            get(browser_account::verify_page).post(browser_account::verify_submit),
        )
        .at(
            "/ui/email/resend",
            get(browser_account::resend_page).post(browser_account::resend_submit),
        )
        .at(
            "/ui/password/forgot",
            get(browser_account::forgot_page).post(browser_account::forgot_submit),
        )
        .at(
            "/ui/password/reset",
            get(browser_account::reset_page).post(browser_account::reset_submit),
        )
        .at(
            "/ui/upstream/:id/start",
            post(super::browser_upstream::start),
        )
        .at(
            "/ui/upstream/:id/callback",
            get(super::browser_upstream::callback),
        )
        .at(
            "/ui/upstream/link",
            post(super::browser_upstream::link_submit),
        )
        .at(ui::STYLESHEET_PATH, get(ui::stylesheet))
        .at("/openapi.json", api.spec_endpoint())
        .nest("/docs", super::swagger::endpoint(&api.swagger_ui_html()))
        .nest("/", api)
        .with(CatchPanic::new())
        .data(Arc::new(deps))
        .around(move |next, req| middleware::around(next, req, ids.clone(), routes.clone()))
        .around(move |next, req| super::cors::around(next, req, clients.clone()))
        .with(middleware::strict_transport_security(hsts_max_age))
        .around(move |next, req| super::alerting::watch_errors(next, req, alerts.clone()))
}
