//! Every e-mail Portcullis sends: its subject, plain-text and HTML bodies. Each
//! [`MailTemplate`] becomes a [`Content`] (the words, in this one file), which two askama
//! templates lay out: the HTML one escapes every value (usernames and addresses come from
//! users), and shows a link both as a button and as text, so it can be copied when the button
//! does not work. Links carry tokens: they are rendered here and never logged.

use askama::Template;

use super::{MailError, MailTemplate};

/// The product name in subjects and signatures.
pub const PRODUCT: &str = "Portcullis";

/// A rendered message.
#[derive(Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for Rendered {
    // The bodies may carry a link with a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// A button with its link.
struct Action {
    label: &'static str,
    url: String,
}

/// The words of one message.
struct Content {
    subject: String,
    /// Paragraphs before the link.
    before: Vec<String>,
    action: Option<Action>,
    /// Paragraphs after it.
    after: Vec<String>,
}

#[derive(Template)]
#[template(
    ext = "txt",
    source = "Hello {{ username }},

{% for p in before %}{{ p }}

{% endfor %}{% if let Some(a) = action %}{{ a.label }}:
{{ a.url }}

{% endif %}{% for p in after %}{{ p }}

{% endfor %}-- 
{{ product }}
"
)]
struct TextMail<'a> {
    username: &'a str,
    product: &'static str,
    before: &'a [String],
    action: &'a Option<Action>,
    after: &'a [String],
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{{ subject }}</title></head>
<body style="font-family: sans-serif; line-height: 1.5; color: #1a1a1a; max-width: 36em; margin: 0 auto; padding: 1em;">
<p>Hello {{ username }},</p>
{% for p in before %}<p>{{ p }}</p>
{% endfor %}{% if let Some(a) = action %}<p><a href="{{ a.url }}" style="display: inline-block; padding: 0.6em 1.2em; background: #1f4e8c; color: #ffffff; text-decoration: none; border-radius: 4px;">{{ a.label }}</a></p>
<p style="font-size: 0.9em;">Or copy this link into your browser:<br><span style="word-break: break-all;">{{ a.url }}</span></p>
{% endif %}{% for p in after %}<p>{{ p }}</p>
{% endfor %}<p style="color: #555555;">&mdash; {{ product }}</p>
</body>
</html>
"#
)]
struct HtmlMail<'a> {
    subject: &'a str,
    username: &'a str,
    product: &'static str,
    before: &'a [String],
    action: &'a Option<Action>,
    after: &'a [String],
}

/// Only absolute http(s) links are put in a message (a link is built by Portcullis from its
/// issuer; anything else is a bug, not something to send).
fn link(url: &str) -> Result<String, MailError> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "https" | "http") => Ok(url.to_owned()),
        _ => Err(MailError::InvalidLink),
    }
}

const NOT_YOU_IGNORE: &str = "If you did not ask for this, you can ignore this message.";
const NOT_YOU_ACT: &str =
    "If this was not you, reset your password at once and tell your administrator.";

fn content(template: &MailTemplate) -> Result<Content, MailError> {
    Ok(match template {
        MailTemplate::VerifyEmail { link: url } => Content {
            subject: format!("Confirm your e-mail address for {PRODUCT}"),
            before: vec![format!(
                "Please confirm that this is the e-mail address of your {PRODUCT} account."
            )],
            action: Some(Action {
                label: "Confirm your e-mail address",
                url: link(url)?,
            }),
            after: vec![
                "The link works once and expires soon.".to_owned(),
                NOT_YOU_IGNORE.to_owned(),
            ],
        },
        MailTemplate::AlreadyRegistered { reset_link } => Content {
            subject: format!("Sign-up attempt with your e-mail address at {PRODUCT}"),
            before: vec![format!(
                "Someone tried to create a {PRODUCT} account with this e-mail address. \
                 It already belongs to your account, so no new account was created."
            )],
            action: Some(Action {
                label: "Reset your password",
                url: link(reset_link)?,
            }),
            after: vec![
                "If it was you and you have forgotten your password, the link above lets you \
                 choose a new one. Otherwise you can ignore this message: nothing has changed."
                    .to_owned(),
            ],
        },
        MailTemplate::PasswordReset { link: url } => Content {
            subject: format!("Reset your {PRODUCT} password"),
            before: vec![format!(
                "Someone asked to reset the password of your {PRODUCT} account. \
                 To choose a new password, open this link:"
            )],
            action: Some(Action {
                label: "Choose a new password",
                url: link(url)?,
            }),
            after: vec![
                "The link works once and expires soon.".to_owned(),
                format!("{NOT_YOU_IGNORE} Your password stays as it is."),
            ],
        },
        MailTemplate::PasswordChanged => Content {
            subject: format!("Your {PRODUCT} password was changed"),
            before: vec![format!(
                "The password of your {PRODUCT} account was just changed."
            )],
            action: None,
            after: vec![NOT_YOU_ACT.to_owned()],
        },
        MailTemplate::EmailChangeConfirm {
            link: url,
            new_email,
        } => Content {
            subject: format!("Confirm your new e-mail address for {PRODUCT}"),
            before: vec![format!(
                "Someone asked to change the e-mail address of your {PRODUCT} account to \
                 {new_email}. To confirm this address, open this link:"
            )],
            action: Some(Action {
                label: "Confirm the new address",
                url: link(url)?,
            }),
            after: vec![
                "The link works once and expires soon.".to_owned(),
                format!("{NOT_YOU_IGNORE} The address stays unchanged."),
            ],
        },
        MailTemplate::EmailChanged { new_email } => Content {
            subject: format!("The e-mail address of your {PRODUCT} account was changed"),
            before: vec![format!(
                "The e-mail address of your {PRODUCT} account was changed to {new_email}. \
                 Messages about your account now go there."
            )],
            action: None,
            after: vec![NOT_YOU_ACT.to_owned()],
        },
        MailTemplate::MfaEnabled => Content {
            subject: format!("Two-step verification is on for your {PRODUCT} account"),
            before: vec![format!(
                "Two-step verification was just turned on for your {PRODUCT} account: signing \
                 in now needs a code from your authenticator app as well as your password."
            )],
            action: None,
            after: vec![NOT_YOU_ACT.to_owned()],
        },
        MailTemplate::MfaDisabled => Content {
            subject: format!("Two-step verification is off for your {PRODUCT} account"),
            before: vec![format!(
                "Two-step verification was just turned off for your {PRODUCT} account: \
                 signing in now needs only your password."
            )],
            action: None,
            after: vec![NOT_YOU_ACT.to_owned()],
        },
        MailTemplate::RecoveryCodeUsed { remaining } => Content {
            subject: format!("A recovery code was used for your {PRODUCT} account"),
            before: vec![
                format!("A recovery code was just used to sign in to your {PRODUCT} account."),
                match remaining {
                    0 => "You have no recovery codes left: create new ones now.".to_owned(),
                    1 => "You have 1 recovery code left.".to_owned(),
                    n => format!("You have {n} recovery codes left."),
                },
            ],
            action: None,
            after: vec![NOT_YOU_ACT.to_owned()],
        },
        MailTemplate::SecurityAlert { summary, facts } => Content {
            subject: format!("{PRODUCT} security alert: {summary}"),
            before: std::iter::once(format!("{PRODUCT} raised a security alert: {summary}"))
                .chain(facts.iter().cloned())
                .collect(),
            action: None,
            after: vec![
                "The alert is also in the audit log (event type alert.raised) and was sent to \
                 every enabled webhook."
                    .to_owned(),
            ],
        },
    })
}

/// Renders `template` for the account `username`.
pub fn render(username: &str, template: &MailTemplate) -> Result<Rendered, MailError> {
    let Content {
        subject,
        before,
        action,
        after,
    } = content(template)?;
    let text = TextMail {
        username,
        product: PRODUCT,
        before: &before,
        action: &action,
        after: &after,
    }
    .render()?;
    let html = HtmlMail {
        subject: &subject,
        username,
        product: PRODUCT,
        before: &before,
        action: &action,
        after: &after,
    }
    .render()?;
    Ok(Rendered {
        subject,
        text,
        html,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<MailTemplate> {
        let link = "https://id.example/ui/reset?token=abc&x=1".to_owned();
        vec![
            MailTemplate::VerifyEmail { link: link.clone() },
            MailTemplate::AlreadyRegistered {
                reset_link: link.clone(),
            },
            MailTemplate::PasswordReset { link: link.clone() },
            MailTemplate::PasswordChanged,
            MailTemplate::EmailChangeConfirm {
                link,
                new_email: "<b>new</b>@example.com".into(),
            },
            MailTemplate::EmailChanged {
                new_email: "<b>new</b>@example.com".into(),
            },
            MailTemplate::MfaEnabled,
            MailTemplate::MfaDisabled,
            MailTemplate::RecoveryCodeUsed { remaining: 3 },
            MailTemplate::SecurityAlert {
                summary: "<b>credential stuffing</b>".into(),
                facts: vec!["address block: 203.0.113.0/24".into()],
            },
        ]
    }

    #[test]
    fn every_template_renders_escaped_html_and_plain_text_with_the_link() {
        for template in all() {
            let r = render("<script>alert(1)</script>", &template).unwrap();
            assert!(r.subject.contains(PRODUCT), "{}", r.subject);
            assert!(!r.subject.contains('\n'));
            assert!(!r.html.contains("<script>"), "{}", r.html);
            assert!(r.html.contains("&#60;script&#62;"), "{}", r.html);
            assert!(!r.html.contains("<b>new</b>"), "{}", r.html);
            assert!(r.text.contains("<script>alert(1)</script>"), "{}", r.text);
            if template.link().is_some() {
                assert!(
                    r.text.contains("https://id.example/ui/reset?token=abc&x=1"),
                    "{}",
                    r.text
                );
                // In the HTML the link is shown as text too, `&` escaped as it must be.
                assert_eq!(
                    r.html
                        .matches("https://id.example/ui/reset?token=abc&#38;x=1")
                        .count(),
                    2,
                    "{}",
                    r.html
                );
            }
        }
    }

    #[test]
    fn only_absolute_http_links_are_accepted() {
        for bad in [
            "javascript:alert(1)",
            "/ui/reset?token=a",
            "",
            "data:text/html,x",
        ] {
            let err = render(
                "alice",
                &MailTemplate::PasswordReset {
                    link: bad.to_owned(),
                },
            )
            .unwrap_err();
            assert!(matches!(err, MailError::InvalidLink), "{bad}");
        }
    }
}
