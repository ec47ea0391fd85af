//! The browser front end of sign-in: the authorization endpoint (`GET|POST /oauth/authorize`),
//! the hosted sign-in and consent forms (`/ui/login`, its second step `/ui/login/mfa` for users
//! with MFA on, `/ui/consent`) and RP-initiated logout
//! (`GET|POST /oauth/end_session`). These answer browsers with pages and redirects, not JSON,
//! so they are plain poem handlers outside the OpenAPI document; every decision is
//! `ops::BrowserSignIn`'s, and this module owns only what is about browsers:
//!
//! - Cookies: a browser cookie (random, the anchor of CSRF tokens) and the session cookie
//!   (names it; the database keeps only its digest). Both `HttpOnly`, `SameSite=Lax`, `Path=/`;
//!   with an `https` issuer they are `Secure` and `__Host-` prefixed (browsers refuse that
//!   prefix without `Secure`, so a plain-http development issuer gets unprefixed names).
//! - CSRF: every form carries HMAC-SHA256(key derived from the master key, browser cookie),
//!   checked in constant time, so a token from another browser, or none, is refused (403);
//!   form posts whose `Origin` is neither the issuer's nor the addressed host, or that the
//!   browser's Fetch Metadata (`Sec-Fetch-Site`) marks as not same-origin, are refused too.
//! - Pages are rendered by `ui` with its protective headers; redirects are `303 See Other`
//!   with `Cache-Control: no-store` and `Referrer-Policy: no-referrer`.

use poem::http::{Method, StatusCode, header};
use poem::{Body, Request, Response, handler};
use secrecy::{ExposeSecret, SecretString};

use super::cookies::{BrowserFront, cookie, form_page, with_cookies};
use super::deps::deps;
use super::origin::origin;
use super::ui::{self, pages};
use crate::mfa::SecondFactor;
use crate::oauth::authorize::PageProblem;
use crate::oauth::authorize::request::MAX_QUERY_LEN;
use crate::ops::browser::{AuthorizeStep, LogoutRequest, LogoutStep, SignInFailure, SignInStep};
use crate::sessions::Started;

/// Where an authorization request resumes after the sign-in page.
const AUTHORIZE_PREFIX: &str = "/oauth/authorize?";

pub(crate) fn see_other(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::REFERRER_POLICY, "no-referrer")
        .finish()
}

pub(crate) fn error_page(
    status: StatusCode,
    kind: pages::ErrorKind,
    detail: Option<&str>,
) -> Response {
    ui::html(status, pages::error(kind, detail))
}

fn problem_kind(problem: PageProblem) -> pages::ErrorKind {
    match problem {
        PageProblem::InvalidRequest => pages::ErrorKind::InvalidRequest,
        PageProblem::UnknownClient => pages::ErrorKind::UnknownClient,
        PageProblem::RedirectUriMismatch => pages::ErrorKind::RedirectUriMismatch,
    }
}

pub(crate) fn front(req: &Request) -> Option<&BrowserFront> {
    deps(req).ok().map(|d| &d.browser)
}

pub(crate) fn internal() -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::ErrorKind::Internal,
        None,
    )
}

/// A form body, parsed (`None`: not a form, or too large).
pub(crate) async fn form(req: &Request, body: Body) -> Result<Vec<(String, String)>, Response> {
    let is_form = req
        .header(header::CONTENT_TYPE)
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| {
            ct.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            pages::ErrorKind::InvalidRequest,
            Some("the form must be sent as application/x-www-form-urlencoded"),
        ));
    }
    match body.into_bytes().await {
        Ok(bytes) => Ok(url::form_urlencoded::parse(&bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()),
        Err(_) => Err(error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            pages::ErrorKind::InvalidRequest,
            Some("the form is too large"),
        )),
    }
}

pub(crate) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut values = form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    match (values.next(), values.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

/// A form post must come from Portcullis's own pages: the CSRF token of this browser, and no
/// foreign `Origin`.
pub(crate) fn check_post(
    front: &BrowserFront,
    req: &Request,
    form: &[(String, String)],
) -> Result<(), Box<Response>> {
    // A browser names the page's origin; a cross-site page cannot claim ours. Ours is the
    // issuer's, or the one the browser addressed (`Host`), as when the server is reached
    // under another name in development. Our pages send `Referrer-Policy: no-referrer`, so
    // browsers post their forms with `Origin: null`: then the Fetch Metadata the browser
    // adds (`Sec-Fetch-Site`) must say the post came from our own origin.
    let same_site_fetch = match req.header("sec-fetch-site") {
        None => true,
        Some(site) => site == "same-origin",
    };
    let origin_ok = match req.header(header::ORIGIN) {
        None | Some("null") => same_site_fetch,
        Some(o) if o == front.issuer_origin => true,
        Some(o) => {
            let authority = o.split_once("://").map(|(_, rest)| rest);
            authority.is_some() && authority == req.header(header::HOST)
        }
    };
    let browser = cookie(req, &front.cookie_name("browser"));
    if origin_ok && front.csrf_valid(browser, field(form, "csrf_token")) {
        Ok(())
    } else {
        Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            pages::ErrorKind::CsrfRejected,
            None,
        )))
    }
}

/// A form post from one of our pages, once its CSRF token and origin are checked (see
/// [`check_post`]); the answer to send otherwise.
pub(crate) async fn posted_form(
    req: &Request,
    body: Body,
) -> Result<(&BrowserFront, Vec<(String, String)>), Box<Response>> {
    let Some(front) = front(req) else {
        return Err(Box::new(internal()));
    };
    let form = form(req, body).await.map_err(Box::new)?;
    check_post(front, req, &form)?;
    Ok((front, form))
}

/// The page for a form that does not come from an authorization request.
pub(crate) fn not_from_an_authorization_request() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        pages::ErrorKind::InvalidRequest,
        Some("this page is reached from an authorization request"),
    )
}

/// The authorization request a `return_to` names (its query), if it is one.
pub(crate) fn authorize_query(return_to: &str) -> Option<&str> {
    return_to
        .strip_prefix(AUTHORIZE_PREFIX)
        .filter(|q| q.len() <= MAX_QUERY_LEN && !q.contains('#'))
}

pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The authorization request to resume after a sign-in: `prompt=login` and `max_age` are
/// satisfied by the sign-in that just happened (and would ask for it again a second later).
fn resumed_after_sign_in(query: &str) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == "max_age" {
            continue;
        }
        if k == "prompt" {
            let rest: Vec<&str> = v
                .split(' ')
                .filter(|p| *p != "login" && !p.is_empty())
                .collect();
            if !rest.is_empty() {
                out.append_pair("prompt", &rest.join(" "));
            }
        } else {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

/// `GET|POST /oauth/authorize` (RFC 6749 §4.1.1; OIDC Core §3.1.2.1 asks for both methods).
#[handler]
pub async fn authorize(req: &Request, body: Body) -> Response {
    let Some(front) = front(req) else {
        return internal();
    };
    let query = if req.method() == Method::POST {
        match form(req, body).await {
            Ok(pairs) => {
                let mut out = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in &pairs {
                    out.append_pair(k, v);
                }
                out.finish()
            }
            Err(resp) => return resp,
        }
    } else {
        req.uri().query().unwrap_or("").to_string()
    };
    let session = front
        .browser
        .session(cookie(req, &front.cookie_name("session")))
        .await;
    let step = front
        .browser
        .authorize(&query, session.as_ref(), &origin(req))
        .await;
    render_step(front, req, step, &query)
}

fn render_step(front: &BrowserFront, req: &Request, step: AuthorizeStep, query: &str) -> Response {
    let return_to = format!("{AUTHORIZE_PREFIX}{query}");
    match step {
        AuthorizeStep::SignIn { .. } => {
            let target: String =
                url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
            see_other(&format!("/ui/login?return_to={target}"))
        }
        AuthorizeStep::Consent {
            client,
            username,
            scopes,
        } => {
            let scopes: Vec<String> = scopes.iter().map(str::to_string).collect();
            form_page(front, req, StatusCode::OK, |csrf_token| {
                pages::consent(&pages::ConsentView {
                    csrf_token,
                    return_to: &return_to,
                    client_name: &client.name,
                    client_id: &client.client_id,
                    username: &username,
                    scopes: &scopes,
                })
            })
        }
        AuthorizeStep::Redirect(location) => see_other(&location),
        AuthorizeStep::Page { problem, detail } => error_page(
            StatusCode::BAD_REQUEST,
            problem_kind(problem),
            Some(&detail),
        ),
    }
}

/// `GET /ui/login?return_to=…`: the sign-in form.
#[handler]
pub async fn login_page(req: &Request) -> Response {
    let Some(front) = front(req) else {
        return internal();
    };
    let return_to = req
        .uri()
        .query()
        .and_then(|q| query_param(q, "return_to"))
        .unwrap_or_default();
    let Some(query) = authorize_query(&return_to) else {
        return not_from_an_authorization_request();
    };
    let client_name = match query_param(query, "client_id") {
        Some(id) => front.browser.client_name(&id).await,
        None => None,
    };
    let hint = query_param(query, "login_hint").unwrap_or_default();
    login_form(
        front,
        req,
        StatusCode::OK,
        &return_to,
        &hint,
        client_name.as_deref(),
        None,
    )
    .await
}

async fn login_form(
    front: &BrowserFront,
    req: &Request,
    status: StatusCode,
    return_to: &str,
    username: &str,
    client_name: Option<&str>,
    error: Option<pages::LoginError>,
) -> Response {
    let providers = front.upstream.buttons().await;
    form_page(front, req, status, |csrf_token| {
        pages::login(&pages::LoginView {
            csrf_token,
            return_to,
            username,
            client_name,
            error,
            providers: &providers,
        })
    })
}

/// `POST /ui/login`: checks the password, starts a browser session and resumes the
/// authorization request.
#[handler]
pub async fn login_submit(req: &Request, body: Body) -> Response {
    let (front, form) = match posted_form(req, body).await {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let return_to = field(&form, "return_to").unwrap_or_default().to_string();
    let Some(query) = authorize_query(&return_to) else {
        return not_from_an_authorization_request();
    };
    let username = field(&form, "username")
        .unwrap_or_default()
        .trim()
        .to_string();
    let password = SecretString::from(field(&form, "password").unwrap_or_default().to_string());
    let client_id = query_param(query, "client_id").unwrap_or_default();
    let client_name = front.browser.client_name(&client_id).await;
    let failed = |status, error| {
        login_form(
            front,
            req,
            status,
            &return_to,
            &username,
            client_name.as_deref(),
            Some(error),
        )
    };
    if username.is_empty() || password.expose_secret().is_empty() || username.len() > 320 {
        return failed(
            StatusCode::BAD_REQUEST,
            pages::LoginError::InvalidCredentials,
        )
        .await;
    }
    let origin = origin(req);
    match front
        .browser
        .sign_in(&username, &password, &client_id, &origin)
        .await
    {
        Ok(SignInStep::Started(started)) => signed_in(front, req, &origin, &started, query).await,
        Ok(SignInStep::SecondFactor { mfa_token }) => mfa_form(
            front,
            req,
            StatusCode::OK,
            mfa_token.expose_secret(),
            &return_to,
            None,
        ),
        Err(SignInFailure::Invalid | SignInFailure::WrongCode | SignInFailure::Expired) => {
            failed(
                StatusCode::BAD_REQUEST,
                pages::LoginError::InvalidCredentials,
            )
            .await
        }
        Err(SignInFailure::TooMany) => {
            failed(
                StatusCode::TOO_MANY_REQUESTS,
                pages::LoginError::TooManyAttempts,
            )
            .await
        }
        Err(SignInFailure::Busy) => {
            failed(StatusCode::SERVICE_UNAVAILABLE, pages::LoginError::Busy).await
        }
        Err(SignInFailure::UnknownClient) => error_page(
            StatusCode::BAD_REQUEST,
            pages::ErrorKind::UnknownClient,
            None,
        ),
        Err(SignInFailure::Internal) => internal(),
    }
}

/// A browser session started: the session cookie set (a session the browser had before is
/// ended: one browser, one session) and the authorization request `query` resumed.
pub(crate) async fn signed_in(
    front: &BrowserFront,
    req: &Request,
    origin: &crate::audit::Origin,
    started: &Started,
    query: &str,
) -> Response {
    if let Some(previous) = front
        .browser
        .session(cookie(req, &front.cookie_name("session")))
        .await
    {
        front.browser.end_session(&previous.id, origin).await;
    }
    let cookie = front.set_cookie(
        "session",
        started.cookie.expose_secret(),
        Some(front.browser.session_lifetime_secs()),
    );
    let next = format!("{AUTHORIZE_PREFIX}{}", resumed_after_sign_in(query));
    with_cookies(see_other(&next), &[cookie])
}

pub(crate) fn mfa_form(
    front: &BrowserFront,
    req: &Request,
    status: StatusCode,
    mfa_token: &str,
    return_to: &str,
    error: Option<pages::LoginError>,
) -> Response {
    form_page(front, req, status, |csrf_token| {
        pages::mfa(&pages::MfaView {
            csrf_token,
            mfa_token,
            return_to,
            error,
        })
    })
}

/// `POST /ui/login/mfa`: the second step of a sign-in with MFA (a TOTP code in `otp`, or a
/// `recovery_code`); starts the browser session and resumes the authorization request.
#[handler]
pub async fn login_mfa_submit(req: &Request, body: Body) -> Response {
    let (front, form) = match posted_form(req, body).await {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let return_to = field(&form, "return_to").unwrap_or_default().to_string();
    let Some(query) = authorize_query(&return_to) else {
        return not_from_an_authorization_request();
    };
    let mfa_token = field(&form, "mfa_token").unwrap_or_default().to_string();
    let given = |name: &str| {
        field(&form, name)
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 64)
            .map(str::to_string)
    };
    let factor = match (given("otp"), given("recovery_code")) {
        (Some(otp), _) => SecondFactor::Totp(otp.into()),
        (None, Some(code)) => SecondFactor::RecoveryCode(code.into()),
        (None, None) => {
            return mfa_form(
                front,
                req,
                StatusCode::BAD_REQUEST,
                &mfa_token,
                &return_to,
                Some(pages::LoginError::WrongCode),
            );
        }
    };
    let client_id = query_param(query, "client_id").unwrap_or_default();
    let origin = origin(req);
    let retry = |status, error| mfa_form(front, req, status, &mfa_token, &return_to, Some(error));
    match front
        .browser
        .second_factor(
            &SecretString::from(mfa_token.clone()),
            &factor,
            &client_id,
            &origin,
        )
        .await
    {
        Ok(started) => signed_in(front, req, &origin, &started, query).await,
        Err(SignInFailure::WrongCode | SignInFailure::Invalid) => {
            retry(StatusCode::BAD_REQUEST, pages::LoginError::WrongCode)
        }
        Err(SignInFailure::TooMany) => retry(
            StatusCode::TOO_MANY_REQUESTS,
            pages::LoginError::TooManyAttempts,
        ),
        Err(SignInFailure::Busy) => retry(StatusCode::SERVICE_UNAVAILABLE, pages::LoginError::Busy),
        Err(SignInFailure::Expired | SignInFailure::UnknownClient) => {
            let client_name = front.browser.client_name(&client_id).await;
            login_form(
                front,
                req,
                StatusCode::BAD_REQUEST,
                &return_to,
                "",
                client_name.as_deref(),
                Some(pages::LoginError::Expired),
            )
            .await
        }
        Err(SignInFailure::Internal) => internal(),
    }
}

/// `POST /ui/consent`: the user's answer to the consent page.
#[handler]
pub async fn consent_submit(req: &Request, body: Body) -> Response {
    let (front, form) = match posted_form(req, body).await {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let return_to = field(&form, "return_to").unwrap_or_default();
    let Some(query) = authorize_query(return_to) else {
        return not_from_an_authorization_request();
    };
    let allow = match field(&form, "decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                pages::ErrorKind::InvalidRequest,
                Some("decision must be allow or deny"),
            );
        }
    };
    let session = front
        .browser
        .session(cookie(req, &front.cookie_name("session")))
        .await;
    let step = front
        .browser
        .consent(query, session.as_ref(), allow, &origin(req))
        .await;
    render_step(front, req, step, query)
}

/// `GET|POST /oauth/end_session` (OpenID Connect RP-Initiated Logout 1.0).
#[handler]
pub async fn end_session(req: &Request, body: Body) -> Response {
    let Some(front) = front(req) else {
        return internal();
    };
    let (params, confirmed) = if req.method() == Method::POST {
        let form = match form(req, body).await {
            Ok(f) => f,
            Err(resp) => return resp,
        };
        // Our confirmation form carries a CSRF token; a relying party's post does not.
        let confirmed = if field(&form, "csrf_token").is_some() {
            if let Err(refused) = check_post(front, req, &form) {
                return *refused;
            }
            true
        } else {
            false
        };
        (form, confirmed)
    } else {
        let query = req.uri().query().unwrap_or("");
        if query.len() > MAX_QUERY_LEN {
            return error_page(
                StatusCode::BAD_REQUEST,
                pages::ErrorKind::InvalidRequest,
                Some("the request is too long"),
            );
        }
        let pairs = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        (pairs, false)
    };
    let get = |name: &str| {
        field(&params, name)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let request = LogoutRequest {
        id_token_hint: get("id_token_hint"),
        post_logout_redirect_uri: get("post_logout_redirect_uri"),
        state: get("state"),
        client_id: get("client_id"),
    };
    let session = front
        .browser
        .session(cookie(req, &front.cookie_name("session")))
        .await;
    let clear = front.set_cookie("session", "", Some(0));
    match front
        .browser
        .logout(&request, session.as_ref(), confirmed, &origin(req))
        .await
    {
        LogoutStep::Confirm { client_name } => {
            form_page(front, req, StatusCode::OK, |csrf_token| {
                pages::logout_confirm(&pages::LogoutView {
                    csrf_token,
                    client_name: client_name.as_deref(),
                    id_token_hint: request.id_token_hint.as_deref(),
                    post_logout_redirect_uri: request.post_logout_redirect_uri.as_deref(),
                    state: request.state.as_deref(),
                    client_id: request.client_id.as_deref(),
                })
            })
        }
        LogoutStep::Redirect(location) => with_cookies(see_other(&location), &[clear]),
        LogoutStep::SignedOut => {
            with_cookies(ui::html(StatusCode::OK, pages::signed_out()), &[clear])
        }
        LogoutStep::Page { problem, detail } => error_page(
            StatusCode::BAD_REQUEST,
            problem_kind(problem),
            Some(&detail),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_drops_only_what_the_sign_in_satisfied() {
        assert_eq!(
            resumed_after_sign_in("client_id=a&prompt=login+consent&state=x&max_age=0"),
            "client_id=a&prompt=consent&state=x"
        );
        assert_eq!(resumed_after_sign_in("prompt=login&x=1"), "x=1");
    }

    #[test]
    fn only_authorization_requests_are_resumed() {
        assert_eq!(authorize_query("/oauth/authorize?a=1"), Some("a=1"));
        assert_eq!(
            authorize_query("https://evil.example/oauth/authorize?a=1"),
            None
        );
        assert_eq!(authorize_query("//evil.example/oauth/authorize?a=1"), None);
        assert_eq!(authorize_query("/oauth/authorize"), None);
    }
}
