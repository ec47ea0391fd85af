//! Client authentication at the token, revocation and introspection endpoints (RFC 6749
//! §2.3): `client_secret_basic` (credentials form-urlencoded before base64, §2.3.1),
//! `client_secret_post`, and `none` for public clients (client_id alone). A request may use
//! one method only.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::error::OAuthError;
use crate::clients::{Client, ClientService};
use crate::domain::ClientId;

/// Credentials as presented, before checking.
#[derive(Default)]
pub struct PresentedCredentials<'a> {
    pub authorization: Option<&'a str>,
    pub form_client_id: Option<&'a str>,
    pub form_client_secret: Option<&'a str>,
}

struct Claimed {
    client_id: String,
    secret: Option<String>,
}

/// Decodes an `application/x-www-form-urlencoded` component (`+` is a space).
fn form_decode(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&raw.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn parse_basic(header: &str) -> Result<Claimed, OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic credentials");
    let (scheme, rest) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "unsupported authentication scheme; use Basic (client_secret_basic)",
        ));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let client_id = form_decode(id).ok_or_else(bad)?;
    let secret = form_decode(secret).ok_or_else(bad)?;
    Ok(Claimed {
        client_id,
        secret: (!secret.is_empty()).then_some(secret),
    })
}

fn claimed(presented: &PresentedCredentials<'_>) -> Result<Claimed, OAuthError> {
    if let Some(header) = presented.authorization {
        let basic = parse_basic(header)?;
        if presented.form_client_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method only (Basic header or client_secret in the body)",
            ));
        }
        if let Some(form_id) = presented.form_client_id
            && form_id != basic.client_id
        {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the Authorization header",
            ));
        }
        return Ok(basic);
    }
    match presented.form_client_id {
        Some(id) if !id.is_empty() => Ok(Claimed {
            client_id: id.to_string(),
            secret: presented
                .form_client_secret
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        }),
        _ => Err(OAuthError::invalid_client(
            "client authentication is required (Basic header, client_secret_post, or client_id for public clients)",
        )),
    }
}

/// Identifies and authenticates the client. Unknown clients, wrong secrets, a secret for a
/// public client and a missing secret for a confidential client all fail as `invalid_client`.
pub async fn authenticate(
    clients: &ClientService,
    presented: &PresentedCredentials<'_>,
) -> Result<Arc<Client>, OAuthError> {
    let claimed = claimed(presented)?;
    let failed = || OAuthError::invalid_client("client authentication failed");
    let client_id = ClientId::parse(&claimed.client_id).map_err(|_| failed())?;
    let client = clients
        .get(client_id.as_str())
        .await
        .map_err(|e| OAuthError::internal(&e))?
        .ok_or_else(failed)?;
    match (client.is_public(), claimed.secret) {
        (true, None) => Ok(client),
        (false, Some(secret)) if client.secret_matches(&secret) => Ok(client),
        _ => Err(failed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        // RFC 6749 §2.3.1: id "a b" and secret "p:w+d%" are urlencoded before base64.
        let header = format!("Basic {}", STANDARD.encode("a+b:p%3Aw%2Bd%25"));
        let c = parse_basic(&header).unwrap();
        assert_eq!(c.client_id, "a b");
        assert_eq!(c.secret.as_deref(), Some("p:w+d%"));
    }

    #[test]
    fn malformed_basic_is_refused() {
        for h in [
            "Basic",
            "Basic !!!",
            "Bearer abc",
            &format!("Basic {}", STANDARD.encode("nocolon")),
        ] {
            assert!(parse_basic(h).is_err(), "{h}");
        }
    }

    #[test]
    fn one_method_only() {
        let header = format!("Basic {}", STANDARD.encode("a:b"));
        let presented = PresentedCredentials {
            authorization: Some(&header),
            form_client_id: None,
            form_client_secret: Some("b"),
        };
        assert!(claimed(&presented).is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// RFC 6749 §2.3.1: each part is `application/x-www-form-urlencoded` before base64.
        fn form_encode(raw: &str) -> String {
            url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
        }

        fn header_text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "([bB][aA][sS][iI][cC]|Bearer|Digest)?( {0,3})[A-Za-z0-9+/=:% -]{0,40}",
                "[ -~]{0,60}",
                any::<Vec<u8>>().prop_map(|b| format!("Basic {}", STANDARD.encode(b))),
                "[ -~]{0,30}".prop_map(|t| format!("Basic {}", STANDARD.encode(t))),
            ]
        }

        proptest! {
            #[test]
            fn any_authorization_header_is_parsed_or_refused(header in header_text()) {
                if let Err(e) = parse_basic(&header) {
                    prop_assert!(matches!(e.code(), crate::oauth::error::ErrorCode::InvalidClient));
                }
            }

            #[test]
            fn encoded_credentials_decode_to_the_same_pair(
                id in any::<String>(),
                secret in any::<String>(),
                scheme in "[bB][aA][sS][iI][cC]",
                gap in " {1,3}",
            ) {
                let pair = format!("{}:{}", form_encode(&id), form_encode(&secret));
                let header = format!("{scheme}{gap}{}", STANDARD.encode(pair));
                let claimed = parse_basic(&header).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert_eq!(claimed.client_id, id);
                prop_assert_eq!(claimed.secret, (!secret.is_empty()).then_some(secret));
            }

            #[test]
            fn any_combination_of_presented_credentials_is_decided(
                authorization in proptest::option::of(header_text()),
                form_client_id in proptest::option::of(any::<String>()),
                form_client_secret in proptest::option::of(any::<String>()),
            ) {
                let presented = PresentedCredentials {
                    authorization: authorization.as_deref(),
                    form_client_id: form_client_id.as_deref(),
                    form_client_secret: form_client_secret.as_deref(),
                };
                match claimed(&presented) {
                    Ok(c) => {
                        // A secret, when claimed, is never empty; the id came from somewhere.
                        prop_assert!(c.secret.as_deref() != Some(""));
                        if authorization.is_none() {
                            prop_assert_eq!(Some(c.client_id.as_str()), form_client_id.as_deref());
                        }
                    }
                    Err(e) => prop_assert!(matches!(
                        e.code(),
                        crate::oauth::error::ErrorCode::InvalidClient
                            | crate::oauth::error::ErrorCode::InvalidRequest
                    )),
                }
            }
        }
    }
}
