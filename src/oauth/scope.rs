//! The one registry of scopes, and how a request's scope is narrowed (RFC 6749 §3.3):
//! granted = requested (or the client's default scopes when none is named) ∩ what the client
//! may ask for ∩ what the user's roles permit.
//!
//! Two kinds of scope: identity scopes, which every user may grant about themself (OpenID
//! Connect's `openid profile email`, and `profile:write` to change one's own profile), and
//! permission scopes, which a user's roles must grant (seeded by the migrations; a test checks
//! the seeds against this registry). Administrative scopes are never among a client's default
//! scopes: they are granted only when asked for by name.

use crate::domain::Scope;

/// Who may grant a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    /// Every user may grant it about themself.
    Identity,
    /// A permission: the user's roles must grant it.
    Permission,
}

/// One scope the server knows.
#[derive(Debug, Clone, Copy)]
pub struct ScopeDef {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: ScopeKind,
    /// Power over other accounts, clients, keys or the audit log: never a default scope, and
    /// checked against the caller's current roles on every use.
    pub administrative: bool,
}

const fn identity(name: &'static str, description: &'static str) -> ScopeDef {
    ScopeDef {
        name,
        description,
        kind: ScopeKind::Identity,
        administrative: false,
    }
}

const fn permission(name: &'static str, description: &'static str, admin: bool) -> ScopeDef {
    ScopeDef {
        name,
        description,
        kind: ScopeKind::Permission,
        administrative: admin,
    }
}

pub const OPENID: ScopeDef = identity("openid", "OpenID Connect sign-in (ID token, userinfo)");
pub const PROFILE: ScopeDef = identity("profile", "Your username and name");
pub const EMAIL: ScopeDef = identity("email", "Your email address");
pub const PROFILE_WRITE: ScopeDef = identity("profile:write", "Change your name and email address");
pub const ARTICLES_READ: ScopeDef = permission("articles:read", "Read articles", false);
pub const ARTICLES_WRITE: ScopeDef =
    permission("articles:write", "Create articles and edit your own", false);
pub const ARTICLES_DELETE: ScopeDef = permission("articles:delete", "Delete articles", false);
pub const USERS_READ: ScopeDef = permission("users:read", "Read user accounts and roles", true);
pub const USERS_ADMIN: ScopeDef = permission(
    "users:admin",
    "Administer users, their roles and role permissions",
    true,
);
pub const CLIENTS_ADMIN: ScopeDef = permission("clients:admin", "Administer OAuth clients", true);
pub const AUDIT_READ: ScopeDef = permission("audit:read", "Read the audit log", true);
pub const KEYS_ADMIN: ScopeDef = permission("keys:admin", "Administer signing keys", true);
pub const WEBHOOKS_ADMIN: ScopeDef =
    permission("webhooks:admin", "Administer alert webhooks", true);

/// Every scope the server knows.
pub const SCOPES: [ScopeDef; 13] = [
    OPENID,
    PROFILE,
    EMAIL,
    PROFILE_WRITE,
    ARTICLES_READ,
    ARTICLES_WRITE,
    ARTICLES_DELETE,
    USERS_READ,
    USERS_ADMIN,
    CLIENTS_ADMIN,
    AUDIT_READ,
    KEYS_ADMIN,
    WEBHOOKS_ADMIN,
];

/// The scopes granted when a request names none and the client has no default scopes of
/// its own (intersected with what the client may ask for).
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// The definition of `name`, if the server knows it.
pub fn scope_def(name: &str) -> Option<&'static ScopeDef> {
    SCOPES.iter().find(|d| d.name == name)
}

/// Every scope the server knows (discovery `scopes_supported`).
pub fn all_scopes() -> Scope {
    Scope::from_tokens(SCOPES.iter().map(|d| d.name))
}

/// The scopes every user may grant about themself.
pub fn identity_scopes() -> Scope {
    Scope::from_tokens(
        SCOPES
            .iter()
            .filter(|d| d.kind == ScopeKind::Identity)
            .map(|d| d.name),
    )
}

/// The permission scopes (those the seeded `admin` role grants).
pub fn permission_scopes() -> Scope {
    Scope::from_tokens(
        SCOPES
            .iter()
            .filter(|d| d.kind == ScopeKind::Permission)
            .map(|d| d.name),
    )
}

/// Parses a space-separated scope string of `field` whose every scope must be known.
pub fn known_scopes(field: &'static str, raw: &str) -> Result<Scope, crate::domain::Invalid> {
    let scopes = Scope::parse(raw).map_err(|e| crate::domain::Invalid {
        field,
        reason: e.reason,
    })?;
    let unknown = scopes.minus(&all_scopes());
    if unknown.is_empty() {
        Ok(scopes)
    } else {
        Err(crate::domain::Invalid {
            field,
            reason: format!("unknown scopes: {unknown} (known: {})", all_scopes()),
        })
    }
}

/// Whether `name` is an administrative scope.
pub fn is_administrative(name: &str) -> bool {
    scope_def(name).is_some_and(|d| d.administrative)
}

/// The administrative scopes in `scope` (what the alert on gained power looks for).
pub fn administrative_in(scope: &Scope) -> Vec<String> {
    scope
        .iter()
        .filter(|s| is_administrative(s))
        .map(str::to_owned)
        .collect()
}

/// The scopes of `scope` that are permissions (identity scopes removed).
pub fn permissions_in(scope: &Scope) -> Scope {
    scope.minus(&identity_scopes())
}

/// The default scopes of a client allowed `allowed`: [`DEFAULT_SCOPES`] ∩ `allowed`.
pub fn standard_defaults(allowed: &Scope) -> Scope {
    Scope::from_tokens(DEFAULT_SCOPES).intersect(allowed)
}

/// Narrows `requested` (the client's `defaults` when none was requested) to `client` ∩
/// `permitted`. `None` means nothing can be granted: the client asked for scopes and none of
/// them may be granted, or it asked for none and has no default scope the user may grant
/// (`invalid_scope`, RFC 6749 §3.3).
pub fn narrow(
    requested: &Scope,
    defaults: &Scope,
    client: &Scope,
    permitted: &Scope,
) -> Option<Scope> {
    let asked = if requested.is_empty() {
        defaults
    } else {
        requested
    };
    let granted = asked.intersect(client).intersect(permitted);
    (!granted.is_empty()).then_some(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Scope {
        Scope::parse(text).unwrap()
    }

    #[test]
    fn narrowing() {
        let client = s("openid articles:read articles:write users:admin");
        let defaults = s("openid articles:read");
        let permitted = s("openid profile articles:read users:admin");
        assert_eq!(
            narrow(&s("openid articles:write"), &defaults, &client, &permitted),
            Some(s("openid"))
        );
        assert_eq!(
            narrow(&s(""), &defaults, &client, &permitted),
            Some(s("openid articles:read")),
            "no scope named: the defaults, never every allowed scope"
        );
        assert_eq!(
            narrow(&s("users:admin"), &defaults, &client, &permitted),
            Some(s("users:admin")),
            "administrative scopes when asked for by name"
        );
        assert_eq!(
            narrow(&s("articles:write"), &defaults, &client, &permitted),
            None
        );
        assert_eq!(narrow(&s("unknown"), &defaults, &client, &permitted), None);
        assert_eq!(narrow(&s(""), &s(""), &client, &permitted), None);
    }

    #[test]
    fn the_registry_is_consistent() {
        let names: std::collections::BTreeSet<&str> = SCOPES.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), SCOPES.len(), "no scope twice");
        for d in SCOPES {
            assert!(
                Scope::parse(d.name).is_ok(),
                "{} is a valid scope token",
                d.name
            );
            assert!(
                !(d.administrative && d.kind == ScopeKind::Identity),
                "{}: identity scopes are not administrative",
                d.name
            );
        }
        for name in DEFAULT_SCOPES {
            assert!(!is_administrative(name));
            assert_eq!(scope_def(name).map(|d| d.kind), Some(ScopeKind::Identity));
        }
    }
}
