//! The hosted pages the links in mails lead to, and the "forgot your password" form:
//! `/ui/email/verify?token=…` (a button that posts the token: fetching the page, as link
//! scanners do, confirms nothing), `/ui/email/resend` (a new such link), `/ui/password/forgot`,
//! `/ui/password/reset?token=…`.
//! Forms carry the CSRF token of `http::cookies` like every page; every decision is
//! `ops::Recovery`'s.

use poem::http::StatusCode;
use poem::{Body, Request, Response, handler};
use secrecy::SecretString;

use super::browser::{field, front, internal, posted_form};
use super::cookies::form_page;
use super::deps::deps;
use super::origin::origin;
use super::ui::pages::LinkRequest;
use super::ui::{self, pages, texts};
use crate::ops::OpError;

fn token_param(req: &Request) -> String {
    req.uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

fn page_with_browser_cookie(
    req: &Request,
    status: StatusCode,
    render: impl FnOnce(&str) -> String,
) -> Response {
    let Some(front) = front(req) else {
        return internal();
    };
    form_page(front, req, status, render)
}

fn link_invalid() -> Response {
    ui::html(
        StatusCode::BAD_REQUEST,
        pages::message(
            texts::LINK_INVALID,
            texts::LINK_INVALID,
            Some(("/ui/password/forgot", texts::FORGOT_LINK)),
        ),
    )
}

/// `GET /ui/email/verify?token=…`
#[handler]
pub async fn verify_page(req: &Request) -> Response {
    let token = token_param(req);
    page_with_browser_cookie(req, StatusCode::OK, |csrf| {
        pages::verify_email(csrf, &token)
    })
}

/// `POST /ui/email/verify`
#[handler]
pub async fn verify_submit(req: &Request, body: Body) -> Response {
    let Ok(deps) = deps(req) else {
        return internal();
    };
    let form = match posted_form(req, body).await {
        Ok((_, form)) => form,
        Err(refused) => return *refused,
    };
    let token = field(&form, "token").unwrap_or_default();
    match deps.recovery.confirm_email(&origin(req), token).await {
        Ok(()) => ui::html(
            StatusCode::OK,
            pages::message(texts::VERIFIED_HEADING, texts::VERIFIED_MESSAGE, None),
        ),
        Err(OpError::Invalid(_) | OpError::NotFound(_) | OpError::Conflict(_)) => link_invalid(),
        Err(e) => {
            tracing::error!(error = %e, "could not confirm an address");
            internal()
        }
    }
}

/// `GET /ui/password/forgot`
#[handler]
pub async fn forgot_page(req: &Request) -> Response {
    link_request_page(req, LinkRequest::PasswordReset)
}

/// `POST /ui/password/forgot`: the same answer whether or not the address has an account.
#[handler]
pub async fn forgot_submit(req: &Request, body: Body) -> Response {
    link_request_submit(req, body, LinkRequest::PasswordReset).await
}

/// `GET /ui/email/resend`
#[handler]
pub async fn resend_page(req: &Request) -> Response {
    link_request_page(req, LinkRequest::Verification)
}

/// `POST /ui/email/resend`: the same answer whether or not the address has an account, or
/// has confirmed it already.
#[handler]
pub async fn resend_submit(req: &Request, body: Body) -> Response {
    link_request_submit(req, body, LinkRequest::Verification).await
}

fn link_request_page(req: &Request, request: LinkRequest) -> Response {
    page_with_browser_cookie(req, StatusCode::OK, |csrf| {
        pages::link_request(request, csrf, "", None)
    })
}

async fn link_request_submit(req: &Request, body: Body, request: LinkRequest) -> Response {
    let Ok(deps) = deps(req) else {
        return internal();
    };
    let form = match posted_form(req, body).await {
        Ok((_, form)) => form,
        Err(refused) => return *refused,
    };
    let email = field(&form, "email").unwrap_or_default().trim().to_string();
    let (asked, sent) = match request {
        LinkRequest::PasswordReset => (
            deps.recovery.request_reset(&origin(req), &email).await,
            texts::FORGOT_SENT_MESSAGE,
        ),
        LinkRequest::Verification => (
            deps.recovery
                .request_verification(&origin(req), &email)
                .await,
            texts::RESEND_SENT_MESSAGE,
        ),
    };
    match asked {
        Ok(()) => ui::html(
            StatusCode::OK,
            pages::message(texts::FORGOT_SENT_HEADING, sent, None),
        ),
        Err(OpError::Limited(_)) => {
            page_with_browser_cookie(req, StatusCode::TOO_MANY_REQUESTS, |csrf| {
                pages::link_request(request, csrf, &email, Some(texts::TOO_MANY))
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "could not ask for a mailed link");
            internal()
        }
    }
}

/// `GET /ui/password/reset?token=…`
#[handler]
pub async fn reset_page(req: &Request) -> Response {
    let token = token_param(req);
    page_with_browser_cookie(req, StatusCode::OK, |csrf| {
        pages::reset_password(csrf, &token, None)
    })
}

/// `POST /ui/password/reset`
#[handler]
pub async fn reset_submit(req: &Request, body: Body) -> Response {
    let Ok(deps) = deps(req) else {
        return internal();
    };
    let form = match posted_form(req, body).await {
        Ok((_, form)) => form,
        Err(refused) => return *refused,
    };
    let token = field(&form, "token").unwrap_or_default().to_string();
    let password = field(&form, "new_password").unwrap_or_default();
    let again = field(&form, "new_password_again").unwrap_or_default();
    let retry = |status, message: String| {
        page_with_browser_cookie(req, status, |csrf| {
            pages::reset_password(csrf, &token, Some(&message))
        })
    };
    if password != again {
        return retry(StatusCode::BAD_REQUEST, texts::RESET_MISMATCH.to_string());
    }
    match deps
        .recovery
        .confirm_reset(
            &origin(req),
            &token,
            &SecretString::from(password.to_string()),
        )
        .await
    {
        Ok(()) => ui::html(
            StatusCode::OK,
            pages::message(texts::RESET_DONE_HEADING, texts::RESET_DONE_MESSAGE, None),
        ),
        Err(OpError::Invalid(e)) if e.field == "token" => link_invalid(),
        Err(OpError::Invalid(e)) => retry(StatusCode::BAD_REQUEST, e.reason),
        Err(e) => {
            tracing::error!(error = %e, "could not reset a password");
            internal()
        }
    }
}
