//! Property tests of the token form parser: any field values are parsed or refused with an
//! RFC 6749 §5.2 error (never a panic), unknown grant types are `unsupported_grant_type`, and
//! well-formed forms keep their fields.

use proptest::prelude::*;
use secrecy::ExposeSecret as _;

use super::{RawTokenForm, TokenRequest};
use crate::domain::Scope;
use crate::oauth::error::ErrorCode;

const GRANTS: [&str; 3] = ["password", "refresh_token", "client_credentials"];

fn form<'a>(
    grant_type: Option<&'a str>,
    username: Option<&'a str>,
    password: Option<&'a str>,
    refresh_token: Option<&'a str>,
    scope: Option<&'a str>,
) -> RawTokenForm<'a> {
    RawTokenForm {
        grant_type,
        code: None,
        redirect_uri: None,
        code_verifier: None,
        username,
        password,
        refresh_token,
        scope,
        resource: None,
        mfa_token: None,
        otp: None,
        recovery_code: None,
    }
}

/// Field values: anything, and values close to the real ones.
fn value() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        any::<String>(),
        Just(String::new()),
        prop::sample::select(GRANTS.to_vec()).prop_map(str::to_string),
        "[ -~]{0,30}",
    ])
}

/// A scope string that `Scope::parse` accepts.
fn valid_scope() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("([!#-\\[\\]-~]{1,12}( {1,2})?){0,6}")
}

fn non_empty() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("non-empty", |s| !s.is_empty())
}

proptest! {
    #[test]
    fn any_form_is_parsed_or_refused_with_an_rfc_6749_error(
        grant_type in value(),
        username in value(),
        password in value(),
        refresh_token in value(),
        scope in value(),
    ) {
        let raw = form(
            grant_type.as_deref(),
            username.as_deref(),
            password.as_deref(),
            refresh_token.as_deref(),
            scope.as_deref(),
        );
        match TokenRequest::parse(&raw) {
            Ok(request) => {
                prop_assert!(GRANTS.contains(&request.grant_type().as_str()));
                prop_assert_eq!(grant_type.as_deref(), Some(request.grant_type().as_str()));
            }
            Err(e) => {
                prop_assert!(matches!(
                    e.code(),
                    ErrorCode::InvalidRequest | ErrorCode::InvalidScope | ErrorCode::UnsupportedGrantType
                ));
                let description = match &e {
                    crate::oauth::error::OAuthError::Refused { description, .. } => description,
                    other => return Err(TestCaseError::fail(format!("not a refusal: {other:?}"))),
                };
                // The description quotes input escaped: no raw control characters.
                prop_assert!(!description.chars().any(char::is_control));
            }
        }
    }

    #[test]
    fn other_grant_types_are_unsupported(
        grant_type in non_empty().prop_filter("not supported", |g| !GRANTS.contains(&g.as_str())),
        username in value(),
        password in value(),
        scope in valid_scope(),
    ) {
        let raw = form(Some(&grant_type), username.as_deref(), password.as_deref(), None, scope.as_deref());
        let e = TokenRequest::parse(&raw).err();
        prop_assert_eq!(e.map(|e| e.code()), Some(ErrorCode::UnsupportedGrantType));
    }

    #[test]
    fn a_password_form_keeps_its_fields(
        username in non_empty(),
        password in non_empty(),
        scope in valid_scope(),
    ) {
        let raw = form(Some("password"), Some(&username), Some(&password), None, scope.as_deref());
        match TokenRequest::parse(&raw) {
            Ok(TokenRequest::Password { username: u, password: p, scope: s, resource: None }) => {
                prop_assert_eq!(u, username);
                prop_assert_eq!(p.expose_secret(), password.as_str());
                prop_assert_eq!(Ok(s), Scope::parse(scope.as_deref().unwrap_or("")));
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    #[test]
    fn a_refresh_form_keeps_its_token(token in non_empty(), scope in valid_scope()) {
        let raw = form(Some("refresh_token"), None, None, Some(&token), scope.as_deref());
        match TokenRequest::parse(&raw) {
            Ok(TokenRequest::RefreshToken { refresh_token, scope: s, resource: None }) => {
                prop_assert_eq!(refresh_token.expose_secret(), token.as_str());
                prop_assert_eq!(Ok(s), Scope::parse(scope.as_deref().unwrap_or("")));
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    #[test]
    fn a_password_form_missing_a_field_is_invalid_request(
        username in proptest::option::of(Just(String::new())),
        password in non_empty(),
        swap in any::<bool>(),
    ) {
        // One of username / password is absent or empty.
        let (u, p) = if swap {
            (Some(password.as_str()), username.as_deref())
        } else {
            (username.as_deref(), Some(password.as_str()))
        };
        let e = TokenRequest::parse(&form(Some("password"), u, p, None, None)).err();
        prop_assert_eq!(e.map(|e| e.code()), Some(ErrorCode::InvalidRequest));
    }
}
