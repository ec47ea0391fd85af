//! The hosted pages as askama templates (under `templates/`, compiled into the binary and
//! checked at build time): sign-in, consent, error, sign-out confirmation and signed-out.
//! Each page has one render function taking a view of plain values and returning the HTML;
//! every value is HTML-escaped by the templates, and all words come from [`super::texts`].
//! Only rendering lives here: the handlers decide which page to show and wrap it with
//! [`super::html`] for the response headers.

use askama::Template;

use super::texts;
pub use super::texts::{ErrorKind, LoginError};

/// What the sign-in page shows.
#[derive(Clone, Copy)]
pub struct LoginView<'a> {
    pub csrf_token: &'a str,
    /// Echoed as is in a hidden field (escaped).
    pub return_to: &'a str,
    /// Prefilled username (the `login_hint`, or what the user typed).
    pub username: &'a str,
    /// The client the user signs in for, when known ("to continue to …").
    pub client_name: Option<&'a str>,
    pub error: Option<LoginError>,
    /// Enabled upstream providers: (id, display name), a button each.
    pub providers: &'a [(String, String)],
}

/// What the second step of the sign-in shows.
#[derive(Clone, Copy)]
pub struct MfaView<'a> {
    pub csrf_token: &'a str,
    /// The token of the pending sign-in, re-posted in a hidden field.
    pub mfa_token: &'a str,
    pub return_to: &'a str,
    pub error: Option<LoginError>,
}

/// What the consent page shows.
#[derive(Clone, Copy)]
pub struct ConsentView<'a> {
    pub csrf_token: &'a str,
    pub return_to: &'a str,
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub username: &'a str,
    /// Each shown with [`texts::scope_description`], or as its name when unknown.
    pub scopes: &'a [String],
}

/// What the sign-out confirmation shows; each `Some` field is re-posted to
/// `POST /oauth/end_session` in a hidden field of the same name.
#[derive(Clone, Copy)]
pub struct LogoutView<'a> {
    pub csrf_token: &'a str,
    pub client_name: Option<&'a str>,
    pub id_token_hint: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
    pub client_id: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "login.html", config = "src/http/ui/askama.toml")]
struct LoginPage<'a> {
    title: &'static str,
    csrf_token: &'a str,
    return_to: &'a str,
    username: &'a str,
    continue_to: Option<String>,
    error_message: Option<&'static str>,
    providers: Vec<(&'a str, String)>,
}

#[derive(Template)]
#[template(path = "mfa.html", config = "src/http/ui/askama.toml")]
struct MfaPage<'a> {
    title: &'static str,
    csrf_token: &'a str,
    mfa_token: &'a str,
    return_to: &'a str,
    error_message: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "consent.html", config = "src/http/ui/askama.toml")]
struct ConsentPage<'a> {
    title: &'static str,
    csrf_token: &'a str,
    return_to: &'a str,
    client_id: &'a str,
    heading: String,
    signed_in_as: String,
    scopes: Vec<ScopeLine<'a>>,
}

/// One line of the consent page's list of scopes.
struct ScopeLine<'a> {
    text: &'a str,
    administrative: bool,
}

#[derive(Template)]
#[template(path = "error.html", config = "src/http/ui/askama.toml")]
struct ErrorPage<'a> {
    title: &'static str,
    message: &'static str,
    detail: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "logout.html", config = "src/http/ui/askama.toml")]
struct LogoutPage<'a> {
    title: &'static str,
    csrf_token: &'a str,
    client_line: Option<String>,
    id_token_hint: Option<&'a str>,
    post_logout_redirect_uri: Option<&'a str>,
    state: Option<&'a str>,
    client_id: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "signed_out.html", config = "src/http/ui/askama.toml")]
struct SignedOutPage {
    title: &'static str,
}

/// The sign-in page.
pub fn login(view: &LoginView<'_>) -> String {
    render(&LoginPage {
        title: texts::LOGIN_TITLE,
        csrf_token: view.csrf_token,
        return_to: view.return_to,
        username: view.username,
        continue_to: view.client_name.map(texts::login_continue_to),
        error_message: view.error.map(texts::login_error),
        providers: view
            .providers
            .iter()
            .map(|(id, name)| (id.as_str(), texts::upstream_button(name)))
            .collect(),
    })
}

/// The page where a user proves the existing account an upstream identity is linked to.
pub fn upstream_link(
    csrf_token: &str,
    link_token: &str,
    provider: &str,
    username: &str,
    needs_code: bool,
    error: Option<LoginError>,
) -> String {
    render(&UpstreamLinkPage {
        title: texts::LINK_HEADING,
        csrf_token,
        link_token,
        intro: texts::link_intro(provider, username),
        needs_code,
        error_message: error.map(texts::login_error),
    })
}

#[derive(Template)]
#[template(path = "upstream_link.html", config = "src/http/ui/askama.toml")]
struct UpstreamLinkPage<'a> {
    title: &'static str,
    csrf_token: &'a str,
    link_token: &'a str,
    intro: String,
    needs_code: bool,
    error_message: Option<&'static str>,
}

/// The second step of the sign-in: a code from the app, or a recovery code.
pub fn mfa(view: &MfaView<'_>) -> String {
    render(&MfaPage {
        title: texts::MFA_TITLE,
        csrf_token: view.csrf_token,
        mfa_token: view.mfa_token,
        return_to: view.return_to,
        error_message: view.error.map(texts::login_error),
    })
}

/// The consent page.
pub fn consent(view: &ConsentView<'_>) -> String {
    let scopes = view
        .scopes
        .iter()
        .map(|scope| ScopeLine {
            text: texts::scope_description(scope).unwrap_or(scope),
            administrative: crate::oauth::scope::scope_def(scope).is_some_and(|d| d.administrative),
        })
        .collect();
    render(&ConsentPage {
        title: texts::CONSENT_TITLE,
        csrf_token: view.csrf_token,
        return_to: view.return_to,
        client_id: view.client_id,
        heading: texts::consent_heading(view.client_name),
        signed_in_as: texts::consent_signed_in_as(view.username),
        scopes,
    })
}

/// The error page: title and message of `kind`, and `detail` (short and technical, e.g.
/// "redirect_uri is not registered for this client") in a paragraph of its own.
pub fn error(kind: ErrorKind, detail: Option<&str>) -> String {
    render(&ErrorPage {
        title: texts::error_title(kind),
        message: texts::error_message(kind),
        detail,
    })
}

/// The sign-out confirmation, posting to `/oauth/end_session`.
pub fn logout_confirm(view: &LogoutView<'_>) -> String {
    render(&LogoutPage {
        title: texts::LOGOUT_TITLE,
        csrf_token: view.csrf_token,
        client_line: view.client_name.map(texts::logout_client),
        id_token_hint: view.id_token_hint,
        post_logout_redirect_uri: view.post_logout_redirect_uri,
        state: view.state,
        client_id: view.client_id,
    })
}

/// The page shown once the user is signed out and no client is to be returned to.
pub fn signed_out() -> String {
    render(&SignedOutPage {
        title: texts::SIGNED_OUT_TITLE,
    })
}

/// A page that says what happened, with an optional link onward (`href`, label).
pub fn message(heading: &str, message: &str, link: Option<(&str, &str)>) -> String {
    render(&MessagePage {
        title: texts::ACCOUNT_TITLE,
        heading,
        message,
        link,
    })
}

#[derive(Template)]
#[template(path = "message.html", config = "src/http/ui/askama.toml")]
struct MessagePage<'a> {
    title: &'static str,
    heading: &'a str,
    message: &'a str,
    link: Option<(&'a str, &'a str)>,
}

/// The page a verification link opens: one button that posts the token (a link scanner
/// that only fetches the page confirms nothing).
pub fn verify_email(csrf_token: &str, token: &str) -> String {
    render(&VerifyEmailPage {
        title: texts::VERIFY_HEADING,
        csrf_token,
        token,
    })
}

#[derive(Template)]
#[template(path = "verify_email.html", config = "src/http/ui/askama.toml")]
struct VerifyEmailPage<'a> {
    title: &'static str,
    csrf_token: &'a str,
    token: &'a str,
}

/// A form that asks for a mailed link by address.
#[derive(Clone, Copy)]
pub enum LinkRequest {
    /// "Forgot your password?" (`/ui/password/forgot`).
    PasswordReset,
    /// A new link to confirm the address (`/ui/email/resend`).
    Verification,
}

impl LinkRequest {
    pub fn path(self) -> &'static str {
        match self {
            Self::PasswordReset => "/ui/password/forgot",
            Self::Verification => "/ui/email/resend",
        }
    }
}

/// The form of `request`: the address, and the button that mails the link.
pub fn link_request(
    request: LinkRequest,
    csrf_token: &str,
    email: &str,
    error: Option<&str>,
) -> String {
    let (title, message, submit) = match request {
        LinkRequest::PasswordReset => (
            texts::FORGOT_HEADING,
            texts::FORGOT_MESSAGE,
            texts::FORGOT_SUBMIT,
        ),
        LinkRequest::Verification => (
            texts::RESEND_HEADING,
            texts::RESEND_MESSAGE,
            texts::FORGOT_SUBMIT,
        ),
    };
    render(&LinkRequestPage {
        title,
        message,
        submit,
        action: request.path(),
        csrf_token,
        email,
        error,
    })
}

#[derive(Template)]
#[template(path = "mail_link_request.html", config = "src/http/ui/askama.toml")]
struct LinkRequestPage<'a> {
    title: &'static str,
    message: &'static str,
    submit: &'static str,
    action: &'static str,
    csrf_token: &'a str,
    email: &'a str,
    error: Option<&'a str>,
}

/// The page a reset link opens: the new password, twice.
pub fn reset_password(csrf_token: &str, token: &str, error: Option<&str>) -> String {
    render(&ResetPage {
        title: texts::RESET_HEADING,
        csrf_token,
        token,
        error,
    })
}

#[derive(Template)]
#[template(path = "reset_password.html", config = "src/http/ui/askama.toml")]
struct ResetPage<'a> {
    title: &'static str,
    csrf_token: &'a str,
    token: &'a str,
    error: Option<&'a str>,
}

/// Renders `page`, or a static error page if rendering fails (writing to a `String` with the
/// values above cannot fail; the fallback keeps the handlers free of a panic path).
fn render(page: &impl Template) -> String {
    page.render().unwrap_or_else(|error| {
        tracing::error!(%error, "a hosted page failed to render");
        texts::RENDER_FAILED_PAGE.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::scope::SCOPES;

    const HOSTILE: &str = "\"><script>alert(1)</script>";

    const ERROR_KINDS: [ErrorKind; 8] = [
        ErrorKind::InvalidRequest,
        ErrorKind::UnknownClient,
        ErrorKind::RedirectUriMismatch,
        ErrorKind::CsrfRejected,
        ErrorKind::TooManyRequests,
        ErrorKind::Busy,
        ErrorKind::NotFound,
        ErrorKind::Internal,
    ];

    fn login_view<'a>(error: Option<LoginError>) -> LoginView<'a> {
        LoginView {
            csrf_token: "csrf-123",
            return_to: "/oauth/authorize?client_id=app&state=s",
            username: "alice",
            client_name: Some("Example App"),
            error,
            providers: &[],
        }
    }

    fn logout_view<'a>() -> LogoutView<'a> {
        LogoutView {
            csrf_token: "csrf-123",
            client_name: Some("Example App"),
            id_token_hint: Some("eyJ.hint.sig"),
            post_logout_redirect_uri: Some("https://app.example/bye"),
            state: Some("st"),
            client_id: Some("app"),
        }
    }

    /// Every page, rendered with `value` in every field that takes one.
    fn every_page(value: &str) -> Vec<String> {
        let mut pages = pages_with_values(value);
        pages.push(signed_out());
        pages
    }

    /// Every page that shows values, with `value` in every field that takes one.
    fn pages_with_values(value: &str) -> Vec<String> {
        let scopes = vec!["openid".to_owned(), value.to_owned()];
        let mut pages = vec![
            login(&LoginView {
                csrf_token: value,
                return_to: value,
                username: value,
                client_name: Some(value),
                error: Some(LoginError::InvalidCredentials),
                providers: &[],
            }),
            mfa(&MfaView {
                csrf_token: value,
                mfa_token: value,
                return_to: value,
                error: Some(LoginError::WrongCode),
            }),
            consent(&ConsentView {
                csrf_token: value,
                return_to: value,
                client_name: value,
                client_id: value,
                username: value,
                scopes: &scopes,
            }),
            logout_confirm(&LogoutView {
                csrf_token: value,
                client_name: Some(value),
                id_token_hint: Some(value),
                post_logout_redirect_uri: Some(value),
                state: Some(value),
                client_id: Some(value),
            }),
        ];
        pages.extend(ERROR_KINDS.iter().map(|&kind| error(kind, Some(value))));
        pages
    }

    #[test]
    fn every_page_is_a_whole_document_with_one_heading_and_the_stylesheet() {
        for page in every_page("x") {
            assert!(
                page.starts_with("<!doctype html>\n<html lang=\"en\">"),
                "{page}"
            );
            assert!(page.contains("<meta charset=\"utf-8\">"));
            assert!(page.contains(
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            ));
            assert!(page.contains(&format!(
                "<link rel=\"stylesheet\" href=\"{}\">",
                crate::http::ui::STYLESHEET_PATH
            )));
            assert!(page.contains("<link rel=\"stylesheet\" href=\"/ui/static/portcullis.css\">"));
            assert!(page.contains("<main"));
            assert!(page.contains(">Portcullis</p>"));
            assert_eq!(page.matches("<h1").count(), 1, "{page}");
            assert!(page.contains(" · Portcullis</title>"), "{page}");
        }
    }

    #[test]
    fn values_are_escaped_on_every_page() {
        for page in pages_with_values(HOSTILE) {
            assert!(!page.contains("<script"), "{page}");
            assert!(!page.contains(HOSTILE), "{page}");
            assert!(page.contains("&#60;script&#62;"), "{page}");
        }
    }

    /// Whether `html` has an attribute like ` onclick=`.
    fn has_event_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let rest = html.get(at + 3..).unwrap_or_default();
            let name_len = rest.find(|c: char| !c.is_ascii_lowercase()).unwrap_or(0);
            name_len > 0 && rest.get(name_len..).is_some_and(|r| r.starts_with('='))
        })
    }

    #[test]
    fn the_event_handler_check_finds_one() {
        assert!(has_event_handler("<body onload=\"x()\">"));
        assert!(!has_event_handler("<p>signed on to the app</p>"));
    }

    #[test]
    fn no_page_has_script_or_inline_style() {
        for page in every_page("x") {
            let lower = page.to_ascii_lowercase();
            assert!(!lower.contains("<script"), "{page}");
            assert!(!lower.contains(" style="), "{page}");
            assert!(!lower.contains("<style"), "{page}");
            assert!(!has_event_handler(&lower), "{page}");
            assert!(!lower.contains("javascript:"), "{page}");
        }
    }

    #[test]
    fn the_login_page_has_the_form_contract() {
        let page = login(&login_view(None));
        assert!(page.contains("<title>Sign in · Portcullis</title>"));
        assert!(page.contains("<form method=\"post\" action=\"/ui/login\">"));
        assert!(page.contains("<input type=\"hidden\" name=\"csrf_token\" value=\"csrf-123\">"));
        assert!(page.contains(
            "<input type=\"hidden\" name=\"return_to\" \
             value=\"/oauth/authorize?client_id=app&#38;state=s\">"
        ));
        assert!(page.contains("<label for=\"username\">Username or e-mail</label>"));
        assert!(page.contains(
            "<input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus"
        ));
        assert!(page.contains("value=\"alice\""));
        assert!(page.contains("<label for=\"password\">Password</label>"));
        assert!(page.contains(
            "<input id=\"password\" name=\"password\" type=\"password\" \
             autocomplete=\"current-password\" required"
        ));
        assert!(page.contains("<button type=\"submit\">Sign in</button>"));
        assert!(page.contains("to continue to Example App"));
        assert!(!page.contains("login-error"));
        assert!(!page.contains("aria-invalid"));
        assert!(!page.contains("role=\"alert\""));
    }

    #[test]
    fn the_mfa_page_has_the_form_contract() {
        let page = mfa(&MfaView {
            csrf_token: "csrf-123",
            mfa_token: "tok",
            return_to: "/oauth/authorize?client_id=app",
            error: None,
        });
        assert!(page.contains("<form method=\"post\" action=\"/ui/login/mfa\">"));
        assert!(page.contains("<input type=\"hidden\" name=\"csrf_token\" value=\"csrf-123\">"));
        assert!(page.contains("<input type=\"hidden\" name=\"mfa_token\" value=\"tok\">"));
        assert!(page.contains("<label for=\"otp\">Authentication code</label>"));
        assert!(page.contains("name=\"recovery_code\""));
        assert!(page.contains("autocomplete=\"one-time-code\""));
    }

    #[test]
    fn the_login_page_without_a_client_has_no_continue_line() {
        let page = login(&LoginView {
            client_name: None,
            ..login_view(None)
        });
        assert!(!page.contains("to continue to"));
    }

    #[test]
    fn a_login_error_is_announced_before_the_fields_and_tied_to_them() {
        for (kind, message) in [
            (
                LoginError::InvalidCredentials,
                "The username or password is incorrect.",
            ),
            (
                LoginError::TooManyAttempts,
                "Too many attempts. Wait a moment and try again.",
            ),
            (
                LoginError::Busy,
                "The service is busy. Try again in a moment.",
            ),
        ] {
            let page = login(&login_view(Some(kind)));
            let alert = page
                .find("<p class=\"error\" role=\"alert\" id=\"login-error\">")
                .unwrap();
            let fields = page.find("<input id=\"username\"").unwrap();
            assert!(alert < fields);
            assert!(page.contains(message), "{page}");
            assert!(page.contains("Error:"), "not told by colour alone");
            assert_eq!(
                page.matches(" aria-describedby=\"login-error\" aria-invalid=\"true\"")
                    .count(),
                2
            );
        }
    }

    #[test]
    fn the_consent_page_lists_the_scopes_and_offers_allow_then_deny() {
        let scopes = [
            "openid".to_owned(),
            "users:admin".to_owned(),
            "custom:thing".to_owned(),
        ];
        let page = consent(&ConsentView {
            csrf_token: "csrf-123",
            return_to: "/oauth/authorize?x=1",
            client_name: "Example App",
            client_id: "app-id",
            username: "alice",
            scopes: &scopes,
        });
        assert!(page.contains("<h1>Example App wants to access your account</h1>"));
        assert!(page.contains("Signed in as alice"));
        assert!(page.contains("<code>app-id</code>"));
        assert!(page.contains("<li>Sign you in with your Portcullis account</li>"));
        assert!(page.contains("<li class=\"administrative\">Administer users"));
        assert!(
            page.contains("<li>custom:thing</li>"),
            "unknown scope shown by name"
        );
        assert!(page.contains("<form method=\"post\" action=\"/ui/consent\">"));
        assert!(page.contains("<input type=\"hidden\" name=\"csrf_token\" value=\"csrf-123\">"));
        assert!(page.contains("<input type=\"hidden\" name=\"return_to\""));
        let allow = page
            .find("<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>")
            .unwrap();
        let deny = page
            .find("<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>")
            .unwrap();
        assert!(allow < deny, "Allow comes first");
    }

    #[test]
    fn the_consent_page_without_scopes_says_so() {
        let page = consent(&ConsentView {
            csrf_token: "c",
            return_to: "/",
            client_name: "App",
            client_id: "app",
            username: "alice",
            scopes: &[],
        });
        assert!(!page.contains("<ul"));
        assert!(page.contains(texts::CONSENT_NO_SCOPES));
    }

    #[test]
    fn the_error_page_has_a_title_and_message_for_every_kind() {
        for kind in ERROR_KINDS {
            let title = texts::error_title(kind);
            let message = texts::error_message(kind);
            assert!(!title.is_empty() && !message.is_empty(), "{kind:?}");
            let page = error(kind, None);
            assert!(page.contains(&format!("<h1>{title}</h1>")), "{page}");
            assert!(page.contains(&format!("<title>{title} · Portcullis</title>")));
            assert!(page.contains(&format!("<p>{message}</p>")));
            assert!(!page.contains("class=\"detail\""));
        }
        let page = error(
            ErrorKind::RedirectUriMismatch,
            Some("redirect_uri is not registered for this client"),
        );
        assert!(
            page.contains("<p class=\"detail\">redirect_uri is not registered for this client</p>")
        );
    }

    #[test]
    fn the_logout_page_reposts_only_the_given_fields() {
        let page = logout_confirm(&logout_view());
        assert!(page.contains("<h1>Sign out of Portcullis?</h1>"));
        assert!(page.contains("You are signing out of Example App"));
        assert!(page.contains("<form method=\"post\" action=\"/oauth/end_session\">"));
        for (name, value) in [
            ("csrf_token", "csrf-123"),
            ("id_token_hint", "eyJ.hint.sig"),
            ("post_logout_redirect_uri", "https://app.example/bye"),
            ("state", "st"),
            ("client_id", "app"),
        ] {
            assert!(
                page.contains(&format!(
                    "<input type=\"hidden\" name=\"{name}\" value=\"{value}\">"
                )),
                "{name}: {page}"
            );
        }
        assert!(page.contains("<button type=\"submit\">Sign out</button>"));

        let bare = logout_confirm(&LogoutView {
            csrf_token: "csrf-123",
            client_name: None,
            id_token_hint: None,
            post_logout_redirect_uri: None,
            state: None,
            client_id: None,
        });
        assert_eq!(bare.matches("type=\"hidden\"").count(), 1, "{bare}");
        assert!(!bare.contains("You are signing out of"));
    }

    #[test]
    fn the_signed_out_page_says_the_window_can_be_closed() {
        let page = signed_out();
        assert!(page.contains("<h1>You are signed out</h1>"));
        assert!(page.contains("You can close this window."));
        assert!(page.contains("<title>Signed out · Portcullis</title>"));
        assert!(!page.contains("<form"));
    }

    #[test]
    fn every_known_scope_has_a_description_and_administrative_ones_say_so() {
        for def in SCOPES {
            let description = texts::scope_description(def.name)
                .unwrap_or_else(|| panic!("no description of {}", def.name));
            assert_eq!(
                description.contains("(administrative)"),
                def.administrative,
                "{}",
                def.name
            );
        }
        assert_eq!(
            texts::scope_description("openid"),
            Some("Sign you in with your Portcullis account")
        );
        assert_eq!(texts::scope_description("unknown:scope"), None);
    }

    #[test]
    fn the_fallback_page_is_static_and_whole() {
        let page = texts::RENDER_FAILED_PAGE;
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("lang=\"en\""));
        assert_eq!(page.matches("<h1").count(), 1);
        assert!(!page.contains("<script") && !page.contains(" style="));
    }
}
