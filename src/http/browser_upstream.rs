//! The browser side of social sign-in: `POST /ui/upstream/{id}/start` (a button of the
//! sign-in page: CSRF-checked, then a 303 to the upstream), `GET /ui/upstream/{id}/callback`
//! (the upstream's answer: only for the browser that started the round trip; then signed in,
//! the second step, or the link page) and `POST /ui/upstream/link` (the proof of the existing
//! account). Every failure ends on a page that says what happened and links back.

use poem::http::StatusCode;
use poem::web::Path;
use poem::{Body, Request, Response, handler};
use secrecy::SecretString;

use super::browser::{
    authorize_query, field, front, internal, mfa_form, not_from_an_authorization_request,
    posted_form, query_param, see_other, signed_in,
};
use super::cookies::{browser_id, cookie, form_page};
use super::origin::origin;
use super::ui::{self, pages, texts};
use crate::mfa::SecondFactor;
use crate::ops::browser::{SignInFailure, SignInStep};
use crate::ops::upstream::{UpstreamFailure, UpstreamStep};

/// The page of a failed upstream sign-in, linking back to the sign-in page of the request.
fn failed(failure: &UpstreamFailure, return_to: Option<&str>) -> Response {
    let (status, message) = match failure {
        UpstreamFailure::UnknownProvider => (StatusCode::NOT_FOUND, texts::UPSTREAM_UNKNOWN),
        UpstreamFailure::Expired => (StatusCode::BAD_REQUEST, texts::UPSTREAM_EXPIRED),
        UpstreamFailure::Denied(_) => (StatusCode::FORBIDDEN, texts::UPSTREAM_DENIED),
        UpstreamFailure::Upstream(_) => (StatusCode::BAD_GATEWAY, texts::UPSTREAM_BROKEN),
        UpstreamFailure::NoAccount => (StatusCode::FORBIDDEN, texts::UPSTREAM_NO_ACCOUNT),
        UpstreamFailure::AccountExists => (StatusCode::CONFLICT, texts::UPSTREAM_ACCOUNT_EXISTS),
        UpstreamFailure::NoEmail => (StatusCode::FORBIDDEN, texts::UPSTREAM_NO_EMAIL),
        UpstreamFailure::Unconfirmed => (StatusCode::FORBIDDEN, texts::UPSTREAM_UNCONFIRMED),
        UpstreamFailure::Disabled => (StatusCode::FORBIDDEN, texts::UPSTREAM_DISABLED),
        UpstreamFailure::SignIn(SignInFailure::TooMany) => (
            StatusCode::TOO_MANY_REQUESTS,
            texts::login_error(pages::LoginError::TooManyAttempts),
        ),
        UpstreamFailure::SignIn(SignInFailure::Busy) => (
            StatusCode::SERVICE_UNAVAILABLE,
            texts::login_error(pages::LoginError::Busy),
        ),
        UpstreamFailure::SignIn(SignInFailure::Internal) => return internal(),
        UpstreamFailure::SignIn(_) => (StatusCode::FORBIDDEN, texts::UPSTREAM_BROKEN),
    };
    let back = return_to.filter(|r| authorize_query(r).is_some()).map(|r| {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", r)
            .finish();
        format!("/ui/login?{query}")
    });
    ui::html(
        status,
        pages::message(
            texts::UPSTREAM_FAILED_HEADING,
            message,
            back.as_deref().map(|b| (b, texts::UPSTREAM_BACK)),
        ),
    )
}

/// `POST /ui/upstream/{id}/start`
#[handler]
pub async fn start(req: &Request, Path(id): Path<String>, body: Body) -> Response {
    let (front, form) = match posted_form(req, body).await {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let return_to = field(&form, "return_to").unwrap_or_default().to_string();
    if authorize_query(&return_to).is_none() {
        return not_from_an_authorization_request();
    }
    // The CSRF check found the browser cookie: the round trip is bound to it.
    let (browser, _) = browser_id(front, req);
    match front
        .upstream
        .begin(&id, &browser, &return_to, &origin(req))
        .await
    {
        Ok(url) => see_other(&url),
        Err(failure) => failed(&failure, Some(&return_to)),
    }
}

/// `GET /ui/upstream/{id}/callback?code=…&state=…` (or `error=…`)
#[handler]
pub async fn callback(req: &Request, Path(id): Path<String>) -> Response {
    let Some(front) = front(req) else {
        return internal();
    };
    let query = req.uri().query().unwrap_or_default();
    if query.len() > 8192 {
        return failed(&UpstreamFailure::Expired, None);
    }
    let param = |name: &str| query_param(query, name);
    let Some(browser) = cookie(req, &front.cookie_name("browser")).map(str::to_owned) else {
        return failed(&UpstreamFailure::Expired, None);
    };
    let origin = origin(req);
    let arrived = match front
        .upstream
        .finish(
            &id,
            param("code").as_deref(),
            param("state").as_deref(),
            param("error").as_deref(),
            &browser,
            &origin,
        )
        .await
    {
        Ok(arrived) => arrived,
        Err(failure) => return failed(&failure, None),
    };
    let return_to = arrived.return_to().to_owned();
    let Some(authorize) = authorize_query(&return_to) else {
        return not_from_an_authorization_request();
    };
    let client_id = query_param(authorize, "client_id").unwrap_or_default();
    match front.upstream.resolve(&arrived, &client_id, &origin).await {
        Ok(UpstreamStep::SignedIn(SignInStep::Started(started))) => {
            signed_in(front, req, &origin, &started, authorize).await
        }
        Ok(UpstreamStep::SignedIn(SignInStep::SecondFactor { mfa_token })) => {
            use secrecy::ExposeSecret as _;
            mfa_form(
                front,
                req,
                StatusCode::OK,
                mfa_token.expose_secret(),
                &return_to,
                None,
            )
        }
        Ok(UpstreamStep::ConfirmAddress) => ui::html(
            StatusCode::OK,
            pages::message(
                texts::UPSTREAM_CONFIRM_HEADING,
                texts::UPSTREAM_CONFIRM_ADDRESS,
                None,
            ),
        ),
        Ok(UpstreamStep::ProveAccount {
            link_token,
            username,
        }) => {
            let needs_code = front
                .upstream
                .parked_view(&link_token, &browser)
                .await
                .is_none_or(|v| v.needs_code);
            link_page(
                front,
                req,
                StatusCode::OK,
                &link_token,
                &arrived.provider.display_name,
                &username,
                needs_code,
                None,
            )
        }
        Err(failure) => failed(&failure, Some(&return_to)),
    }
}

#[allow(clippy::too_many_arguments)]
fn link_page(
    front: &super::cookies::BrowserFront,
    req: &Request,
    status: StatusCode,
    link_token: &str,
    provider: &str,
    username: &str,
    needs_code: bool,
    error: Option<pages::LoginError>,
) -> Response {
    form_page(front, req, status, |csrf| {
        pages::upstream_link(csrf, link_token, provider, username, needs_code, error)
    })
}

/// `POST /ui/upstream/link`: the existing account's password (and code), then the link.
#[handler]
pub async fn link_submit(req: &Request, body: Body) -> Response {
    let (front, form) = match posted_form(req, body).await {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let (browser, _) = browser_id(front, req);
    let link_token = field(&form, "link_token").unwrap_or_default().to_string();
    let Some(view) = front.upstream.parked_view(&link_token, &browser).await else {
        return failed(&UpstreamFailure::Expired, None);
    };
    let return_to = view.return_to.clone();
    let Some(authorize) = authorize_query(&return_to) else {
        return not_from_an_authorization_request();
    };
    let client_id = query_param(authorize, "client_id").unwrap_or_default();
    let password = SecretString::from(field(&form, "password").unwrap_or_default().to_string());
    let factor = field(&form, "otp")
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map(|otp| SecondFactor::Totp(otp.to_owned().into()));
    let origin = origin(req);
    match front
        .upstream
        .link(
            &link_token,
            &browser,
            &password,
            factor.as_ref(),
            &client_id,
            &origin,
        )
        .await
    {
        Ok(started) => signed_in(front, req, &origin, &started, authorize).await,
        Err(UpstreamFailure::SignIn(e @ (SignInFailure::Invalid | SignInFailure::WrongCode))) => {
            let error = if matches!(e, SignInFailure::WrongCode) {
                pages::LoginError::WrongCode
            } else {
                pages::LoginError::InvalidCredentials
            };
            link_page(
                front,
                req,
                StatusCode::BAD_REQUEST,
                &link_token,
                &view.provider,
                &view.username,
                view.needs_code,
                Some(error),
            )
        }
        Err(failure) => failed(&failure, Some(&return_to)),
    }
}
