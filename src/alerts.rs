//! Security alert rules over the event stream. [`Alerts`] watches every audit event (it is the
//! audit log's [`Observer`]) and a few signals the event stream does not carry (answers 500,
//! store outages, overdue key rotation):
//!
//! | Rule (`alert.<name>`) | Fires when |
//! |---|---|
//! | `credential_stuffing` | failed sign-ins on N different accounts from one /24 (IPv4) or /64 (IPv6) within the period |
//! | `brute_force` | failed sign-ins on one account from N different addresses within the period |
//! | `refresh_token_reuse` | a rotated refresh token is presented again (a stolen token) |
//! | `privilege_granted` | a user, role or client gains an administrative permission or scope |
//! | `signing_key_revoked` | a signing key is revoked |
//! | `key_rotation_overdue` | the signing key is older than the rotation interval plus a grace |
//! | `mfa_disabled_on_admin` | MFA is turned off on an account holding administrative power |
//! | `server_errors` | N answers 500 within the period |
//! | `store_unavailable` | the store (Redis) cannot be reached by the background duties |
//!
//! Counts live in the store, so every instance adds to the same ones (fixed windows on the
//! server clock). Raising an alert inserts its row into `alerts` keyed by rule, subject and
//! deduplication window: however many instances see the incident, one insert wins, and in
//! that same transaction the webhook deliveries and the alert mail are queued (both outboxes:
//! delivered at least once, never lost). The alert is then audited (`alert.raised`) and its
//! webhooks are tried at once; the duties retry what fails.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entities::alerts;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, EntityTrait, Set};
use serde_json::{Value, json};

use crate::audit::{Audit, Event, EventType, Observer, Origin, Outcome};
use crate::clock::SharedClock;
use crate::config::AlertSettings;
use crate::keys::KeyInfo;
use crate::mail::{Mail, MailTemplate, Outbox};
use crate::store::{Quota, Store};
use crate::webhooks::{WebhookSender, Webhooks};

/// The rules, with their stable names (`alert.<name>` is the payload's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    CredentialStuffing,
    BruteForce,
    RefreshTokenReuse,
    PrivilegeGranted,
    SigningKeyRevoked,
    KeyRotationOverdue,
    MfaDisabledOnAdmin,
    ServerErrors,
    StoreUnavailable,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Self::CredentialStuffing => "credential_stuffing",
            Self::BruteForce => "brute_force",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::PrivilegeGranted => "privilege_granted",
            Self::SigningKeyRevoked => "signing_key_revoked",
            Self::KeyRotationOverdue => "key_rotation_overdue",
            Self::MfaDisabledOnAdmin => "mfa_disabled_on_admin",
            Self::ServerErrors => "server_errors",
            Self::StoreUnavailable => "store_unavailable",
        }
    }

    pub fn severity(self) -> &'static str {
        match self {
            Self::RefreshTokenReuse
            | Self::PrivilegeGranted
            | Self::SigningKeyRevoked
            | Self::MfaDisabledOnAdmin
            | Self::CredentialStuffing => "critical",
            Self::BruteForce | Self::StoreUnavailable | Self::ServerErrors => "high",
            Self::KeyRotationOverdue => "warning",
        }
    }
}

/// One alert: what fired, about what, and its facts (no secrets: addresses, ids, counts).
#[derive(Debug, Clone)]
pub struct Alert {
    pub rule: Rule,
    /// What the alert is about (an address block, an account, a key); one alert per rule and
    /// subject within the deduplication window.
    pub subject: String,
    pub summary: String,
    pub facts: serde_json::Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("webhooks: {0}")]
    Webhooks(#[from] crate::webhooks::WebhookError),
    #[error("mail: {0}")]
    Mail(#[from] crate::mail::MailError),
}

struct Inner {
    db: DatabaseConnection,
    store: Arc<dyn Store>,
    clock: SharedClock,
    audit: Audit,
    webhooks: Webhooks,
    sender: WebhookSender,
    outbox: Outbox,
    settings: AlertSettings,
    issuer: String,
    /// Answers 500 counted here while the store cannot count them: (window, count).
    local_errors: Mutex<(i64, u32)>,
}

/// The alert rules (see the module documentation).
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

/// The network block an address belongs to for the stuffing rule: its /24, or its /64.
pub fn address_block(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => ipnet::Ipv4Net::new(v4, 24)
            .map(|n| n.trunc().to_string())
            .unwrap_or_else(|_| v4.to_string()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => address_block(IpAddr::V4(v4)),
            None => ipnet::Ipv6Net::new(v6, 64)
                .map(|n| n.trunc().to_string())
                .unwrap_or_else(|_| v6.to_string()),
        },
    }
}

fn window_of(now: i64, period: Duration) -> i64 {
    now.div_euclid(i64::try_from(period.as_secs()).unwrap_or(i64::MAX).max(1))
}

fn administrative(details: &Value) -> Vec<String> {
    details["administrative"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Alerts {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: DatabaseConnection,
        store: Arc<dyn Store>,
        clock: SharedClock,
        audit: Audit,
        webhooks: Webhooks,
        outbox: Outbox,
        settings: AlertSettings,
        issuer: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                store,
                clock,
                audit,
                sender: WebhookSender::new(webhooks.clone()),
                webhooks,
                outbox,
                settings,
                issuer,
                local_errors: Mutex::new((0, 0)),
            }),
        }
    }

    /// The JSON payload of a webhook message of `event_type` with `data`.
    pub fn payload(&self, event_type: &str, data: Value) -> String {
        let at = chrono::DateTime::from_timestamp(self.inner.clock.now(), 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        json!({"type": event_type, "timestamp": at, "data": data}).to_string()
    }

    /// Raises `alert` unless it was raised for its subject within the deduplication window
    /// (here or on another instance). Returns whether this call raised it.
    pub async fn raise(&self, alert: Alert) -> Result<bool, AlertError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let window = window_of(now, inner.settings.dedup_window);
        let key = format!("{}:{}:{window}", alert.rule.name(), alert.subject);
        let mut data = serde_json::Map::new();
        data.insert("alert_id".into(), json!(key));
        data.insert("rule".into(), json!(alert.rule.name()));
        data.insert("severity".into(), json!(alert.rule.severity()));
        data.insert("summary".into(), json!(alert.summary));
        data.insert("subject".into(), json!(alert.subject));
        data.insert("issuer".into(), json!(inner.issuer));
        data.extend(alert.facts.clone());
        let event_type = format!("alert.{}", alert.rule.name());
        let payload = self.payload(&event_type, Value::Object(data.clone()));
        let txn = crate::db::begin_write(&inner.db).await?;
        let inserted = alerts::Entity::insert(alerts::ActiveModel {
            key: Set(key.clone()),
            rule: Set(alert.rule.name().to_owned()),
            subject: Set(alert.subject.clone()),
            raised_at: Set(now),
            payload: Set(payload.clone()),
        })
        .on_conflict(
            OnConflict::column(alerts::Column::Key)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        if inserted == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        let ids = inner
            .webhooks
            .enqueue_in(&txn, &event_type, &payload)
            .await?;
        if let Some(to) = &inner.settings.email {
            let facts = alert
                .facts
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect();
            let mail = Mail {
                to: to.to_string(),
                username: "administrator".into(),
                template: MailTemplate::SecurityAlert {
                    summary: alert.summary.clone(),
                    facts,
                },
            };
            inner.outbox.enqueue(&txn, &mail).await?;
        }
        txn.commit().await?;
        tracing::warn!(rule = alert.rule.name(), subject = %alert.subject, summary = %alert.summary, "security alert raised");
        crate::metrics::security_alert(alert.rule.name());
        inner
            .audit
            .record(
                &Origin::default(),
                Event::new(EventType::AlertRaised, Outcome::Success).details(Value::Object(data)),
            )
            .await;
        if !ids.is_empty() {
            let sender = inner.sender.clone();
            tokio::spawn(async move {
                if let Err(e) = sender.send(&ids).await {
                    tracing::warn!(error = %e, "could not try the alert's webhooks at once; the duties will");
                }
            });
        }
        Ok(true)
    }

    async fn raise_logged(&self, alert: Alert) {
        let rule = alert.rule.name();
        if let Err(e) = self.raise(alert).await {
            tracing::error!(error = %e, rule, "could not raise a security alert");
        }
    }

    /// Counts `member` once in `group` for `rule` within the current window of `quota`;
    /// returns the group's count of distinct members when `member` is new to it, else 0.
    async fn count_distinct(&self, rule: Rule, group: &str, member: &str, quota: Quota) -> u64 {
        let inner = &*self.inner;
        let window = window_of(inner.clock.now(), quota.period);
        let ttl = quota.period.saturating_mul(2);
        let name = rule.name();
        let seen = format!("alert:{name}:seen:{group}:{member}:{window}");
        let count = format!("alert:{name}:n:{group}:{window}");
        match inner.store.incr(&seen, ttl).await {
            Ok(1) => inner.store.incr(&count, ttl).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, rule = name, "cannot count for an alert rule");
                0
            }),
            Ok(_) => 0,
            Err(e) => {
                tracing::warn!(error = %e, rule = name, "cannot count for an alert rule");
                0
            }
        }
    }

    async fn failed_sign_in(&self, origin: &Origin, event: &Event) {
        let settings = &self.inner.settings;
        let Some(ip) = origin
            .ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        else {
            return;
        };
        // The account: the user when the name matched one, else a digest of the name typed.
        let Some(account) = event
            .actor_user_id
            .clone()
            .or_else(|| event.attempted.clone())
        else {
            return;
        };
        if let Some(quota) = settings.credential_stuffing {
            let block = address_block(ip);
            let accounts = self
                .count_distinct(Rule::CredentialStuffing, &block, &account, quota)
                .await;
            if accounts >= u64::from(quota.limit) {
                let mut facts = serde_json::Map::new();
                facts.insert("address_block".into(), json!(block));
                facts.insert("accounts".into(), json!(accounts));
                facts.insert("window_seconds".into(), json!(quota.period.as_secs()));
                facts.insert("last_address".into(), json!(ip.to_string()));
                self.raise_logged(Alert {
                    rule: Rule::CredentialStuffing,
                    summary: format!(
                        "failed sign-ins on {accounts} accounts from {block} within {}s",
                        quota.period.as_secs()
                    ),
                    subject: block,
                    facts,
                })
                .await;
            }
        }
        if let Some(quota) = settings.brute_force {
            let addresses = self
                .count_distinct(Rule::BruteForce, &account, &ip.to_string(), quota)
                .await;
            if addresses >= u64::from(quota.limit) {
                let mut facts = serde_json::Map::new();
                let subject = match &event.actor_user_id {
                    Some(user) => {
                        facts.insert("user_id".into(), json!(user));
                        format!("user {user}")
                    }
                    // A name that matches no account: a prefix of its digest tells repeats apart.
                    None => format!(
                        "unknown account {}",
                        account.get(..12).unwrap_or(account.as_str())
                    ),
                };
                facts.insert("addresses".into(), json!(addresses));
                facts.insert("window_seconds".into(), json!(quota.period.as_secs()));
                self.raise_logged(Alert {
                    rule: Rule::BruteForce,
                    summary: format!(
                        "failed sign-ins on {subject} from {addresses} addresses within {}s",
                        quota.period.as_secs()
                    ),
                    subject,
                    facts,
                })
                .await;
            }
        }
    }

    /// An answer 500 was sent (a bug or an outage): counts towards `server_errors`.
    pub async fn server_error(&self) {
        let inner = &*self.inner;
        let Some(quota) = inner.settings.server_errors else {
            return;
        };
        let window = window_of(inner.clock.now(), quota.period);
        let count = match inner
            .store
            .incr(
                &format!("alert:server_errors:n:{window}"),
                quota.period.saturating_mul(2),
            )
            .await
        {
            Ok(n) => n,
            // The store may be what fails: count on this instance.
            Err(_) => {
                let mut local = inner
                    .local_errors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if local.0 != window {
                    *local = (window, 0);
                }
                local.1 = local.1.saturating_add(1);
                u64::from(local.1)
            }
        };
        if count >= u64::from(quota.limit) {
            let mut facts = serde_json::Map::new();
            facts.insert("errors".into(), json!(count));
            facts.insert("window_seconds".into(), json!(quota.period.as_secs()));
            self.raise_logged(Alert {
                rule: Rule::ServerErrors,
                subject: "server".into(),
                summary: format!("{count} answers 500 within {}s", quota.period.as_secs()),
                facts,
            })
            .await;
        }
    }

    /// The store could not be reached (seen by the background duties).
    pub async fn store_unavailable(&self, error: &str) {
        let mut facts = serde_json::Map::new();
        facts.insert(
            "error".into(),
            json!(error.chars().take(200).collect::<String>()),
        );
        self.raise_logged(Alert {
            rule: Rule::StoreUnavailable,
            subject: "store".into(),
            summary: "the store (Redis) cannot be reached: rate limits, lockout and revocation \
                      checks are failing"
                .into(),
            facts,
        })
        .await;
    }

    /// Raises `key_rotation_overdue` when the signing key has signed longer than the rotation
    /// interval plus the grace (the lease holder checks on every pass).
    pub async fn check_rotation(&self, keys: &[KeyInfo], rotation_interval: Duration) {
        let inner = &*self.inner;
        let limit = rotation_interval.saturating_add(inner.settings.rotation_grace);
        let limit = i64::try_from(limit.as_secs()).unwrap_or(i64::MAX);
        let now = inner.clock.now();
        for key in keys.iter().filter(|k| k.state == "current") {
            let since = key.activated_at.unwrap_or(key.created_at);
            let age = now.saturating_sub(since);
            if age > limit {
                let mut facts = serde_json::Map::new();
                facts.insert("kid".into(), json!(key.kid));
                facts.insert("signing_for_seconds".into(), json!(age));
                facts.insert(
                    "rotation_interval_seconds".into(),
                    json!(rotation_interval.as_secs()),
                );
                self.raise_logged(Alert {
                    rule: Rule::KeyRotationOverdue,
                    subject: key.kid.clone(),
                    summary: format!("signing key {} is overdue for rotation", key.kid),
                    facts,
                })
                .await;
            }
        }
    }

    /// The webhooks service (for the administrators' test message).
    pub fn webhooks(&self) -> &Webhooks {
        &self.inner.webhooks
    }

    /// Sends due webhook deliveries (the duties' lease holder, every pass).
    pub fn sender(&self) -> &WebhookSender {
        &self.inner.sender
    }
}

fn facts(pairs: &[(&str, Value)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The rules as the audit log's observer. It holds the rules weakly: the rules hold the audit
/// log, and a strong reference back would keep both (and their database pools) alive forever.
pub struct Watcher(std::sync::Weak<Inner>);

#[async_trait::async_trait]
impl Observer for Watcher {
    async fn observe(&self, origin: &Origin, event: &Event) {
        if let Some(inner) = self.0.upgrade() {
            Alerts { inner }.observe(origin, event).await;
        }
    }
}

impl Watcher {
    /// Whether the rules it watches for are still alive (they die with the state).
    pub fn watching(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl Alerts {
    /// What the audit log is given to watch (see [`Watcher`]).
    pub fn watcher(&self) -> Watcher {
        Watcher(Arc::downgrade(&self.inner))
    }

    async fn observe(&self, origin: &Origin, event: &Event) {
        let d = &event.details;
        let ip = json!(origin.ip);
        let request_id = json!(origin.request_id);
        match event.event_type {
            EventType::SignIn if event.outcome == Outcome::Failure => {
                self.failed_sign_in(origin, event).await;
            }
            EventType::RefreshReuseDetected => {
                let subject = event
                    .actor_user_id
                    .clone()
                    .map_or_else(|| "unknown user".to_owned(), |u| format!("user {u}"));
                self.raise_logged(Alert {
                    rule: Rule::RefreshTokenReuse,
                    summary: format!(
                        "a rotated refresh token of {subject} was presented again; its sign-in was ended"
                    ),
                    subject,
                    facts: facts(&[
                        ("user_id", json!(event.actor_user_id)),
                        ("client_id", json!(event.client_id)),
                        ("address", ip),
                        ("request_id", request_id),
                        ("details", d.clone()),
                    ]),
                })
                .await;
            }
            EventType::UserRolesChanged
            | EventType::RolePermissionsChanged
            | EventType::ClientCreated
            | EventType::ClientUpdated => {
                let gained = administrative(d);
                if gained.is_empty() {
                    return;
                }
                let subject = if let Some(user) = d["user_id"].as_str() {
                    format!("user {user}")
                } else if let Some(role) = d["role"].as_str() {
                    format!("role {role}")
                } else if let Some(client) = d["created_client"]
                    .as_str()
                    .or_else(|| d["changed_client"].as_str())
                {
                    format!("client {client}")
                } else {
                    return;
                };
                self.raise_logged(Alert {
                    rule: Rule::PrivilegeGranted,
                    summary: format!("{subject} gained {}", gained.join(" ")),
                    subject,
                    facts: facts(&[
                        ("gained", json!(gained)),
                        ("by_user_id", json!(event.actor_user_id)),
                        ("by_client_id", json!(event.client_id)),
                        ("address", ip),
                        ("request_id", request_id),
                        ("change", json!(event.event_type.as_str())),
                    ]),
                })
                .await;
            }
            EventType::KeyRevoked => {
                let kid = d["kid"].as_str().unwrap_or("unknown").to_owned();
                self.raise_logged(Alert {
                    rule: Rule::SigningKeyRevoked,
                    summary: format!("signing key {kid} was revoked"),
                    subject: kid,
                    facts: facts(&[
                        ("by_user_id", json!(event.actor_user_id)),
                        ("address", ip),
                        ("details", d.clone()),
                    ]),
                })
                .await;
            }
            EventType::MfaDisabled => {
                let held = administrative(d);
                let Some(user) = event.actor_user_id.clone().filter(|_| !held.is_empty()) else {
                    return;
                };
                self.raise_logged(Alert {
                    rule: Rule::MfaDisabledOnAdmin,
                    summary: format!(
                        "two-step verification was turned off on administrator {user}"
                    ),
                    subject: format!("user {user}"),
                    facts: facts(&[
                        ("user_id", json!(user)),
                        ("administrative", json!(held)),
                        ("address", ip),
                        ("request_id", request_id),
                    ]),
                })
                .await;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_blocks_are_the_slash_24_and_the_slash_64() {
        assert_eq!(
            address_block("203.0.113.77".parse().unwrap()),
            "203.0.113.0/24"
        );
        assert_eq!(
            address_block("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            address_block("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.0/24"
        );
    }

    #[test]
    fn windows_are_fixed_on_the_clock() {
        let ten = Duration::from_secs(600);
        assert_eq!(window_of(1_200, ten), 2);
        assert_eq!(window_of(1_799, ten), 2);
        assert_eq!(window_of(1_800, ten), 3);
    }
}
