//! Typed values parsed once at the edge: a value of one of these types is valid by
//! construction (usernames, emails, passwords, client ids, scopes).

use std::collections::BTreeSet;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Why a value was refused; the message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

/// 3–32 characters of `[a-zA-Z0-9_.-]`. Compared case-insensitively (stored lowercase), so
/// `Alice` and `alice` cannot be two accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if !(3..=32).contains(&len) {
            return Err(invalid("username", "must be 3 to 32 characters"));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(invalid(
                "username",
                "may contain only letters, digits, '_', '.' and '-'",
            ));
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A syntactically valid address (`local@domain`: a local part of RFC 5322 dot-atom ASCII
/// characters, a dotted domain of valid labels, at most 254 characters). Stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let bad = || invalid("email", "is not a valid email address");
        if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = raw.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(bad());
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(bad());
        }
        // RFC 5322 dot-atom text, ASCII only: no quoted local parts, no `,` `;` `<` `>` `"`
        // or brackets that a mail header would read as another recipient or a comment, and
        // no non-ASCII letters, whose case the stored (lowercased) address would not fold.
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-.".contains(c);
        if !local.chars().all(atext) {
            return Err(bad());
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(bad());
        }
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !labels.iter().all(label_ok) {
            return Err(bad());
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 12–128 characters, not equal to the username or email. Never printed.
pub struct Password(SecretString);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

impl Password {
    pub fn parse(raw: &str, username: &Username, email: &Email) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if !(12..=128).contains(&len) {
            return Err(invalid("password", "must be 12 to 128 characters"));
        }
        let lower = raw.to_lowercase();
        if lower == username.as_str() || lower == email.as_str() {
            return Err(invalid(
                "password",
                "must not be the same as the username or email",
            ));
        }
        Ok(Self(SecretString::from(raw.to_string())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Checks a display name (of a user or a client): 1–200 characters once surrounding whitespace
/// is trimmed, no control characters and no [hidden](is_hidden) ones. Returns the trimmed name.
pub fn display_name(raw: &str) -> Result<&str, Invalid> {
    let trimmed = raw.trim();
    if trimmed.is_empty()
        || trimmed.chars().count() > 200
        || raw.chars().any(|c| c.is_control() || is_hidden(c))
    {
        return Err(invalid(
            "name",
            "must be 1 to 200 characters without control, invisible or direction-changing characters",
        ));
    }
    Ok(trimmed)
}

/// Characters that show nothing or reorder what follows, with which a name shown to others
/// (in tokens, on pages) could pass for another: the bidirectional embeddings, overrides and
/// isolates (U+202A–U+202E, U+2066–U+2069, and the Arabic letter mark), zero-width spaces and
/// invisible operators (U+200B, U+2060–U+2064, U+FEFF), and blank fillers (U+115F, U+1160,
/// U+180E, U+3164, U+FFA0, U+FFF9–U+FFFB). The joiners U+200C and U+200D (needed by some
/// scripts and emoji) and the marks U+200E and U+200F (which only set a direction) stay allowed.
pub fn is_hidden(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// A client identifier: 1–128 characters of `[A-Za-z0-9._~-]` (URL-safe, RFC 3986 unreserved).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() || raw.len() > 128 {
            return Err(invalid("client_id", "must be 1 to 128 characters"));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
        {
            return Err(invalid(
                "client_id",
                "may contain only letters, digits, '.', '_', '~' and '-'",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An RFC 8707 resource indicator: an absolute URI without a fragment, at most 512
/// characters, no whitespace or control characters. Compared exactly as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource(String);

impl Resource {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() || raw.len() > 512 {
            return Err(invalid("resource", "must be 1 to 512 characters"));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "resource",
                "must not contain whitespace or control characters",
            ));
        }
        let url = url::Url::parse(raw)
            .map_err(|_| invalid("resource", format!("`{raw}` is not an absolute URI")))?;
        if url.fragment().is_some() || raw.contains('#') {
            return Err(invalid(
                "resource",
                "must not contain a fragment (RFC 8707 §2)",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A set of scope tokens (RFC 6749 §3.3: space-delimited, each `1*( %x21 / %x23-5B / %x5D-7E )`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(BTreeSet<String>);

impl Scope {
    /// Parses a space-delimited scope string. Empty input is the empty set.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.len() > 4096 {
            return Err(invalid("scope", "is too long"));
        }
        let mut set = BTreeSet::new();
        for token in raw.split(' ') {
            if token.is_empty() {
                continue;
            }
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return Err(invalid(
                    "scope",
                    format!("`{}` is not a valid scope token", token.escape_debug()),
                ));
            }
            set.insert(token.to_string());
        }
        Ok(Self(set))
    }

    pub fn from_tokens<I: IntoIterator<Item = S>, S: Into<String>>(tokens: I) -> Self {
        Self(tokens.into_iter().map(Into::into).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn intersect(&self, other: &Scope) -> Scope {
        Scope(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn union(&self, other: &Scope) -> Scope {
        Scope(self.0.union(&other.0).cloned().collect())
    }

    pub fn minus(&self, other: &Scope) -> Scope {
        Scope(self.0.difference(&other.0).cloned().collect())
    }

    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for token in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(token)?;
            first = false;
        }
        Ok(())
    }
}

/// Page size when the caller names none.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// Largest page size a caller may ask for.
pub const MAX_PAGE_SIZE: u64 = 100;

/// How many items one page of a listing holds: 1–100, 20 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u64);

impl PageSize {
    pub fn parse(raw: Option<i64>) -> Result<Self, Invalid> {
        match raw {
            None => Ok(Self(DEFAULT_PAGE_SIZE)),
            Some(n) => u64::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .map(Self)
                .ok_or_else(|| invalid("limit", format!("must be between 1 and {MAX_PAGE_SIZE}"))),
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl Default for PageSize {
    fn default() -> Self {
        Self(DEFAULT_PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["abc", "Alice_01", "a.b-c", &"x".repeat(32)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "",
            &"x".repeat(33),
            "al ice",
            "alice!",
            "álice",
            "a\u{0}b",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Username::parse("Alice").unwrap().as_str(), "alice");
    }

    #[test]
    fn emails() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.org",
            "A@EXAMPLE.COM",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@example.com",
            "a@example",
            "a b@example.com",
            "a@exa mple.com",
            "a@-example.com",
            "a@example..com",
            ".a@example.com",
            "a..b@example.com",
            "a@example.com\n",
            // Would be two recipients, a comment or a quoted string in a mail header.
            "a,b@example.com",
            "a;b@example.com",
            "a<b>@example.com",
            "\"a b\"@example.com",
            "a(comment)@example.com",
            "a\\b@example.com",
            // Case that lowercasing would not fold: two spellings, one account.
            "\u{c9}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        let u = Username::parse("alice").unwrap();
        let e = Email::parse("alice@example.com").unwrap();
        assert!(Password::parse("correct horse battery", &u, &e).is_ok());
        assert!(Password::parse("short", &u, &e).is_err());
        assert!(Password::parse(&"x".repeat(129), &u, &e).is_err());
        assert!(Password::parse("alice@example.com", &u, &e).is_err());
        let long_user = Username::parse("alicealicealice").unwrap();
        assert!(Password::parse("AliceAliceAlice", &long_user, &e).is_err());
        assert_eq!(
            format!(
                "{:?}",
                Password::parse("correct horse battery", &u, &e).unwrap()
            ),
            "Password(<hidden>)"
        );
    }

    #[test]
    fn scopes() {
        let s = Scope::parse("openid  articles:read openid").unwrap();
        assert_eq!(s.to_string(), "articles:read openid");
        assert!(Scope::parse("").unwrap().is_empty());
        for bad in ["a\"b", "a\\b", "caf\u{e9}", "a\tb"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
        let allowed = Scope::parse("openid profile").unwrap();
        assert_eq!(s.intersect(&allowed).to_string(), "openid");
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("  Ann Lee ").unwrap(), "Ann Lee");
        for bad in ["", "   ", "a\nb", "tab\there", &"x".repeat(201)] {
            assert_eq!(display_name(bad).unwrap_err().field, "name", "{bad:?}");
        }
        assert!(display_name(&"x".repeat(200)).is_ok());
        // Hidden characters: a right-to-left override, an isolate, a zero-width space, a
        // byte-order mark, a blank filler.
        for bad in [
            "Ann\u{202E}eeL",
            "\u{2067}Ann",
            "An\u{200B}n",
            "\u{FEFF}Ann",
            "Ann\u{3164}",
        ] {
            assert_eq!(display_name(bad).unwrap_err().field, "name", "{bad:?}");
        }
        // Joiners and direction marks a real name may need.
        for good in [
            "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}",
            "Ann \u{1F469}\u{200D}\u{1F4BB}",
            "\u{05D3}\u{05E0}\u{05D4} (Dana)\u{200F}",
        ] {
            assert_eq!(display_name(good), Ok(good), "{good:?}");
        }
    }

    #[test]
    fn client_ids() {
        assert!(ClientId::parse("portcullis-spa").is_ok());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("a b").is_err());
        assert!(ClientId::parse("a:b").is_err());
    }

    mod properties {
        //! Property tests: the parsers never panic on any input, and what they accept obeys
        //! the documented rules.

        use proptest::prelude::*;

        use super::super::*;

        /// RFC 6749 §3.3 NQCHAR: %x21 / %x23-5B / %x5D-7E.
        fn nqchar(b: u8) -> bool {
            b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
        }

        /// Any text, weighted towards the characters the parsers care about.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[ -~]{0,40}",
                "[a-zA-Z0-9_.@~:+ \\t\\n\"-]{0,40}",
                "[\\PC\\s\\x00-\\x1f\\u{7f}-\\u{9f}\\u{2028}\\u{200b}]{0,20}",
            ]
        }

        proptest! {
            #[test]
            fn scope_parse_is_stable_and_tokens_are_nqchar(raw in prop_oneof![
                text(),
                "([!#-\\[\\]-~]{1,12}( {1,3})?){0,8}",
            ]) {
                let Ok(scope) = Scope::parse(&raw) else {
                    // Refused: too long, or some space-separated token is not NQCHAR.
                    prop_assert!(
                        raw.len() > 4096
                            || raw.split(' ').any(|t| !t.bytes().all(nqchar))
                    );
                    return Ok(());
                };
                for token in scope.iter() {
                    prop_assert!(!token.is_empty());
                    prop_assert!(token.bytes().all(nqchar), "{token:?}");
                }
                let printed = scope.to_string();
                prop_assert_eq!(Scope::parse(&printed), Ok(scope.clone()));
                prop_assert_eq!(
                    scope.iter().collect::<Vec<_>>(),
                    {
                        let mut tokens: Vec<&str> =
                            raw.split(' ').filter(|t| !t.is_empty()).collect();
                        tokens.sort_unstable();
                        tokens.dedup();
                        tokens
                    }
                );
            }

            #[test]
            fn usernames_obey_the_documented_rules(raw in prop_oneof![
                text(),
                "[a-zA-Z0-9_.-]{0,34}",
            ]) {
                let rule = (3..=32).contains(&raw.chars().count())
                    && raw.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                match Username::parse(&raw) {
                    Ok(u) => {
                        prop_assert!(rule, "{raw:?}");
                        prop_assert_eq!(u.as_str(), raw.to_ascii_lowercase());
                        prop_assert_eq!(Username::parse(u.as_str()), Ok(u.clone()));
                    }
                    Err(e) => {
                        prop_assert!(!rule, "{raw:?}");
                        prop_assert_eq!(e.field, "username");
                    }
                }
            }

            #[test]
            fn emails_obey_the_documented_rules(raw in prop_oneof![
                text(),
                "[a-zA-Z0-9._%+-]{1,20}@([a-zA-Z0-9-]{1,10}\\.){1,3}[a-zA-Z]{2,6}",
                "[ -~]{0,10}@[ -~]{0,12}",
            ]) {
                match Email::parse(&raw) {
                    Ok(email) => {
                        prop_assert!(raw.len() <= 254);
                        prop_assert!(!raw.chars().any(|c| c.is_whitespace() || c.is_control()));
                        let (local, domain) = email.as_str().rsplit_once('@').unwrap();
                        prop_assert!(!local.is_empty() && local.len() <= 64 && !local.contains('@'));
                        prop_assert!(!local.starts_with('.') && !local.ends_with('.'));
                        prop_assert!(!local.contains(".."));
                        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-.".contains(c);
                        prop_assert!(local.chars().all(atext), "local part {}", local);
                        let labels: Vec<&str> = domain.split('.').collect();
                        prop_assert!(labels.len() >= 2);
                        for label in labels {
                            prop_assert!(!label.is_empty() && label.len() <= 63);
                            prop_assert!(!label.starts_with('-') && !label.ends_with('-'));
                            prop_assert!(label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
                        }
                        prop_assert_eq!(email.as_str(), raw.to_ascii_lowercase());
                        prop_assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
                    }
                    Err(e) => prop_assert_eq!(e.field, "email"),
                }
            }

            #[test]
            fn well_formed_emails_are_accepted(
                local in "[a-z0-9_%+-]{1,20}(\\.[a-z0-9_%+-]{1,10}){0,2}",
                labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", 2..4),
            ) {
                let raw = format!("{local}@{}", labels.join("."));
                prop_assert!(Email::parse(&raw).is_ok(), "{raw}");
            }

            #[test]
            fn client_ids_obey_the_documented_rules(raw in prop_oneof![
                text(),
                "[A-Za-z0-9._~-]{0,130}",
            ]) {
                let rule = (1..=128).contains(&raw.chars().count())
                    && raw.chars().all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c));
                match ClientId::parse(&raw) {
                    Ok(id) => {
                        prop_assert!(rule, "{raw:?}");
                        prop_assert_eq!(id.as_str(), raw.as_str());
                        prop_assert_eq!(id.to_string(), raw);
                    }
                    Err(e) => {
                        prop_assert!(!rule, "{raw:?}");
                        prop_assert_eq!(e.field, "client_id");
                    }
                }
            }

            #[test]
            fn display_names_obey_the_documented_rules(raw in prop_oneof![
                text(),
                "\\s{0,3}[\\PC]{0,205}\\s{0,3}",
            ]) {
                let trimmed = raw.trim();
                let rule = !trimmed.is_empty()
                    && trimmed.chars().count() <= 200
                    && !raw.chars().any(|c| c.is_control() || is_hidden(c));
                match display_name(&raw) {
                    Ok(name) => {
                        prop_assert!(rule, "{raw:?}");
                        prop_assert_eq!(name, trimmed);
                        prop_assert_eq!(display_name(name), Ok(name));
                    }
                    Err(e) => {
                        prop_assert!(!rule, "{raw:?}");
                        prop_assert_eq!(e.field, "name");
                    }
                }
            }

            #[test]
            fn passwords_obey_the_documented_rules(raw in text()) {
                let user = Username::parse("alice").unwrap();
                let email = Email::parse("alice@example.com").unwrap();
                let len = raw.chars().count();
                match Password::parse(&raw, &user, &email) {
                    Ok(p) => {
                        prop_assert!((12..=128).contains(&len));
                        prop_assert_eq!(p.expose(), raw.as_str());
                        let printed = format!("{p:?}");
                        prop_assert!(!printed.contains(&raw));
                    }
                    Err(e) => prop_assert_eq!(e.field, "password"),
                }
            }

            #[test]
            fn page_sizes_are_one_to_a_hundred(raw in proptest::option::of(any::<i64>())) {
                match PageSize::parse(raw) {
                    Ok(size) => prop_assert!(
                        (1..=MAX_PAGE_SIZE).contains(&size.get())
                            && raw.is_none_or(|n| u64::try_from(n) == Ok(size.get()))
                    ),
                    Err(e) => prop_assert_eq!(e.field, "limit"),
                }
            }
        }
    }
}
