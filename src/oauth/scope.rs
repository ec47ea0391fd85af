//! Which scopes exist and how a request's scope is narrowed (RFC 6749 §3.3): granted =
//! requested ∩ what the client may ask for ∩ what the user's roles permit.

use crate::domain::Scope;

/// OpenID Connect scopes every user may grant about themself.
pub const IDENTITY_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// Permission scopes, seeded by the migrations (see DESIGN.md, "Roles and permissions").
pub const PERMISSION_SCOPES: [&str; 8] = [
    "articles:read",
    "articles:write",
    "articles:delete",
    "users:read",
    "users:admin",
    "clients:admin",
    "audit:read",
    "keys:admin",
];

/// Every scope the server knows (discovery `scopes_supported`).
pub fn all_scopes() -> Scope {
    Scope::from_tokens(IDENTITY_SCOPES.into_iter().chain(PERMISSION_SCOPES))
}

pub fn identity_scopes() -> Scope {
    Scope::from_tokens(IDENTITY_SCOPES)
}

/// Narrows `requested` (all the client's scopes when none was requested) to `client` ∩
/// `permitted`. `None` means the client asked for scopes and none of them can be granted
/// (`invalid_scope`).
pub fn narrow(requested: &Scope, client: &Scope, permitted: &Scope) -> Option<Scope> {
    let asked = if requested.is_empty() {
        client
    } else {
        requested
    };
    let granted = asked.intersect(client).intersect(permitted);
    if granted.is_empty() && !requested.is_empty() {
        return None;
    }
    Some(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Scope {
        Scope::parse(text).unwrap()
    }

    #[test]
    fn narrowing() {
        let client = s("openid articles:read articles:write");
        let permitted = s("openid profile articles:read");
        assert_eq!(
            narrow(&s("openid articles:write"), &client, &permitted),
            Some(s("openid"))
        );
        assert_eq!(
            narrow(&s(""), &client, &permitted),
            Some(s("openid articles:read"))
        );
        assert_eq!(narrow(&s("articles:write"), &client, &permitted), None);
        assert_eq!(narrow(&s("unknown"), &client, &permitted), None);
    }
}
