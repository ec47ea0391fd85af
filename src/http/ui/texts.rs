//! Every user-visible string of the hosted pages, in English: page titles, headings, labels,
//! buttons, messages and the plain-words description of each scope on the consent page.
//! The templates and the page renderer (`pages.rs`) take their words only from here, so a
//! translation replaces this one catalogue. Sentences with a value in them are functions; the value is

//! HTML-escaped by the template that shows the sentence, never here.

/// Why the last sign-in attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown user, wrong password or locked account: one message for all three.
    InvalidCredentials,
    TooManyAttempts,
    Busy,
    /// The second factor was wrong or already used.
    WrongCode,
    /// The second step expired or was used up: sign in again.
    Expired,
}

/// Which error page to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    UnknownClient,
    RedirectUriMismatch,
    CsrfRejected,
    TooManyRequests,
    Busy,
    NotFound,
    Internal,
}

/// The product name: in the page header and after every page title.
pub const PRODUCT: &str = "Portcullis";

/// Separates a page title from the product name in the title element ("Sign in · Portcullis").
pub const TITLE_SEPARATOR: &str = "·";

/// Spoken and shown before every error message, so an error is not told by colour alone.
pub const ERROR_PREFIX: &str = "Error:";

// ---- Sign-in page ------------------------------------------------------------------------

pub const LOGIN_TITLE: &str = "Sign in";
pub const LOGIN_HEADING: &str = "Sign in";
pub const LOGIN_USERNAME_LABEL: &str = "Username or e-mail";
pub const LOGIN_PASSWORD_LABEL: &str = "Password";
pub const LOGIN_SUBMIT: &str = "Sign in";

/// The line under the sign-in heading when the client is known.
pub fn login_continue_to(client_name: &str) -> String {
    format!("to continue to {client_name}")
}

/// The message of a failed sign-in. One text for an unknown user, a wrong password and a
/// locked account, so the page does not tell which accounts exist.
pub fn login_error(error: LoginError) -> &'static str {
    match error {
        LoginError::InvalidCredentials => "The username or password is incorrect.",
        LoginError::TooManyAttempts => "Too many attempts. Wait a moment and try again.",
        LoginError::Busy => "The service is busy. Try again in a moment.",
        LoginError::WrongCode => "The code is incorrect.",
        LoginError::Expired => "The sign-in took too long or was already used. Sign in again.",
    }
}

// ---- Second step of the sign-in (MFA) -----------------------------------------------------

pub const MFA_TITLE: &str = "Two-step verification";
pub const MFA_HEADING: &str = "Two-step verification";
pub const MFA_INTRO: &str = "Enter the code your authenticator app shows.";
pub const MFA_OTP_LABEL: &str = "Authentication code";
pub const MFA_RECOVERY_SUMMARY: &str = "Use a recovery code instead";
pub const MFA_RECOVERY_LABEL: &str = "Recovery code";
pub const MFA_SUBMIT: &str = "Verify";

// ---- Consent page ------------------------------------------------------------------------

pub const CONSENT_TITLE: &str = "Allow access";
pub const CONSENT_SCOPES_INTRO: &str = "It will be able to:";
pub const CONSENT_NO_SCOPES: &str = "It asks for no access beyond signing you in.";
pub const CONSENT_CLIENT_ID_LABEL: &str = "Client ID:";
pub const CONSENT_ALLOW: &str = "Allow";
pub const CONSENT_DENY: &str = "Deny";

/// The consent page's heading.
pub fn consent_heading(client_name: &str) -> String {
    format!("{client_name} wants to access your account")
}

/// Who is granting access on the consent page.
pub fn consent_signed_in_as(username: &str) -> String {
    format!("Signed in as {username}")
}

/// What a scope lets a client do, in plain words, or `None` for a scope Portcullis does not
/// know (the page then shows the scope's name as it is). Administrative scopes say so.
pub fn scope_description(scope: &str) -> Option<&'static str> {
    Some(match scope {
        "openid" => "Sign you in with your Portcullis account",
        "profile" => "See your username and profile",
        "email" => "See your e-mail address",
        "profile:write" => "Change your profile",
        "articles:read" => "Read articles",
        "articles:write" => "Create articles and edit your own",
        "articles:delete" => "Delete articles",
        "users:read" => "See user accounts and their roles (administrative)",
        "users:admin" => "Administer users, their roles and permissions (administrative)",
        "clients:admin" => "Administer client applications (administrative)",
        "audit:read" => "Read the audit log (administrative)",
        "keys:admin" => "Administer signing keys (administrative)",
        "webhooks:admin" => "Administer alert webhooks (administrative)",
        _ => return None,
    })
}

// ---- Sign-out pages ----------------------------------------------------------------------

pub const LOGOUT_TITLE: &str = "Sign out";
pub const LOGOUT_HEADING: &str = "Sign out of Portcullis?";
pub const LOGOUT_SUBMIT: &str = "Sign out";

/// The line under the sign-out question when the client is known.
pub fn logout_client(client_name: &str) -> String {
    format!("You are signing out of {client_name}")
}

pub const SIGNED_OUT_TITLE: &str = "Signed out";
pub const SIGNED_OUT_HEADING: &str = "You are signed out";
pub const SIGNED_OUT_MESSAGE: &str = "You can close this window.";

// ---- Error page --------------------------------------------------------------------------

/// The title (and heading) of the error page.
pub fn error_title(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "Invalid request",
        ErrorKind::UnknownClient => "Unknown application",
        ErrorKind::RedirectUriMismatch => "Invalid return address",
        ErrorKind::CsrfRejected => "Form expired",
        ErrorKind::TooManyRequests => "Too many requests",
        ErrorKind::Busy => "Service busy",
        ErrorKind::NotFound => "Page not found",
        ErrorKind::Internal => "Something went wrong",
    }
}

/// What happened and what to do, on the error page.
pub fn error_message(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => {
            "The sign-in request is not valid. Go back to the application and try again."
        }
        ErrorKind::UnknownClient => {
            "The application that sent you here is not registered with Portcullis."
        }
        ErrorKind::RedirectUriMismatch => {
            "The application asked to send you back to an address it has not registered, \
             so Portcullis will not send you there."
        }
        ErrorKind::CsrfRejected => {
            "This form has expired or did not come from Portcullis. Go back, reload the page \
             and try again."
        }
        ErrorKind::TooManyRequests => "Too many requests. Wait a moment and try again.",
        ErrorKind::Busy => "The service is busy. Try again in a moment.",
        ErrorKind::NotFound => "There is nothing at this address.",
        ErrorKind::Internal => "Portcullis could not complete the request. Try again later.",
    }
}

// ---- Account pages (links from mails) -------------------------------------------------------

pub const ACCOUNT_TITLE: &str = "Your account";
pub const VERIFY_HEADING: &str = "Confirm your e-mail address";
pub const VERIFY_MESSAGE: &str = "Press the button to confirm that this address is yours.";
pub const VERIFY_SUBMIT: &str = "Confirm my address";
pub const VERIFIED_HEADING: &str = "Address confirmed";
pub const VERIFIED_MESSAGE: &str = "Thank you: your e-mail address is confirmed.";
pub const FORGOT_HEADING: &str = "Reset your password";
pub const FORGOT_MESSAGE: &str = "Enter the e-mail address of your account and we will send you a link to choose a new password.";
pub const FORGOT_EMAIL_LABEL: &str = "E-mail address";
pub const FORGOT_SUBMIT: &str = "Send the link";
pub const FORGOT_SENT_HEADING: &str = "Check your mail";
pub const FORGOT_SENT_MESSAGE: &str = "If an account uses this address, a link to choose a new password is on its way. It works for 30 minutes.";
pub const FORGOT_LINK: &str = "Forgot your password?";
pub const RESEND_LINK: &str = "Need a new link to confirm your e-mail address?";
pub const RESEND_HEADING: &str = "Confirm your e-mail address";
pub const RESEND_MESSAGE: &str =
    "Enter the e-mail address of your account and we will send you a new link to confirm it.";
pub const RESEND_SENT_MESSAGE: &str = "If an account uses this address and has not confirmed it yet, a new link is on its way. It works for 24 hours.";

// ---- Sign-in through an upstream provider --------------------------------------------------

pub const UPSTREAM_OR: &str = "Or sign in with another account:";

/// The button of an upstream provider on the sign-in page.
pub fn upstream_button(provider: &str) -> String {
    format!("Continue with {provider}")
}

pub const LINK_HEADING: &str = "Link your account";
pub const LINK_SUBMIT: &str = "Link and sign in";

/// Why the link page asks for a password.
pub fn link_intro(provider: &str, username: &str) -> String {
    format!(
        "The e-mail address of your {provider} account belongs to the Portcullis account \
         \u{201c}{username}\u{201d}. Enter that account's password once to link the two; from \
         then on {provider} signs you in."
    )
}

pub const UPSTREAM_FAILED_HEADING: &str = "Sign-in did not complete";
pub const UPSTREAM_BACK: &str = "Back to sign-in";
pub const UPSTREAM_EXPIRED: &str = "This sign-in attempt expired, was already used, or was started in another browser. Start again from the sign-in page.";
pub const UPSTREAM_UNKNOWN: &str = "This sign-in option is not available.";
pub const UPSTREAM_DENIED: &str =
    "The other provider did not let you sign in (you may have declined).";
pub const UPSTREAM_BROKEN: &str = "The other provider could not be reached or its answer could not be trusted. Nothing was changed; try again later or sign in with your password.";
pub const UPSTREAM_NO_ACCOUNT: &str = "No account matches this sign-in, and new accounts cannot be made through this provider. Ask your administrator for an account.";
pub const UPSTREAM_ACCOUNT_EXISTS: &str = "An account with this e-mail address exists, but the other provider does not confirm the address is yours. Sign in with your password, then link the provider from your account.";
pub const UPSTREAM_DISABLED: &str =
    "The account linked to this sign-in is disabled. Ask your administrator.";
pub const UPSTREAM_UNCONFIRMED: &str = "This account's e-mail address is not confirmed yet, and this server requires a confirmed address to sign in. Follow the link we sent to it; if it has expired, ask for a new one from the sign-in page.";
pub const UPSTREAM_CONFIRM_HEADING: &str = "Confirm your e-mail address";
pub const UPSTREAM_CONFIRM_ADDRESS: &str = "Your account was made. The other provider does not confirm your e-mail address, so we sent a link to it: follow the link, then sign in again the same way.";
pub const UPSTREAM_NO_EMAIL: &str = "The other provider did not share an e-mail address, so no account can be made. Allow access to your e-mail address and try again.";
pub const RESET_HEADING: &str = "Choose a new password";
pub const RESET_PASSWORD_LABEL: &str = "New password (at least 12 characters)";
pub const RESET_AGAIN_LABEL: &str = "New password, again";
pub const RESET_SUBMIT: &str = "Set the new password";
pub const RESET_MISMATCH: &str = "The two passwords are not the same.";
pub const RESET_DONE_HEADING: &str = "Password changed";
pub const RESET_DONE_MESSAGE: &str = "Your password is changed and every session of your account has ended. Sign in again with the new password.";
pub const LINK_INVALID: &str = "This link is invalid, expired or already used. Ask for a new one.";
pub const TOO_MANY: &str = "Too many requests. Wait a while and try again.";

/// The whole page shown if a template ever fails to render (it cannot with the values the
/// pages pass): static, with no value in it.
pub const RENDER_FAILED_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Error · Portcullis</title></head><body><main><h1>Something went wrong</h1>\
<p>Portcullis could not show this page. Try again later.</p></main></body></html>\n";
