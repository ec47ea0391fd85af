//! Alert webhooks: endpoints (`webhook_endpoints`: a target URL and a signing secret sealed
//! under the master key) and the outbox of deliveries (`webhook_deliveries`), written in the
//! transaction that raises an alert and sent by [`sender`] with retries, signed as Standard
//! Webhooks say ([`signing`]). Targets are checked against private addresses when registered
//! and at every delivery ([`target`]). See docs/ARCHITECTURE.md ("Alerts and webhooks").

pub mod sender;
pub mod signing;
pub mod target;

use std::sync::Arc;

use entities::{webhook_deliveries, webhook_endpoints};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use crate::clock::SharedClock;
use crate::crypto::{CryptoError, MasterKey};

pub use sender::{DeliveryReport, WebhookSender};

/// How long the previous secret keeps signing after a rotation (receivers switch meanwhile).
pub const ROTATION_GRACE_SECS: i64 = 86_400;
/// The longest description kept.
pub const MAX_DESCRIPTION: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook URL {0}")]
    InvalidUrl(String),
    #[error(
        "the webhook URL resolves to a private or loopback address ({0}); such targets are refused unless PORTCULLIS_WEBHOOK_ALLOW_PRIVATE=true"
    )]
    PrivateTarget(String),
    #[error("the webhook URL cannot be reached: {0}")]
    Unreachable(String),
    #[error("the description is longer than 200 characters or has control characters")]
    InvalidDescription,
    #[error("no such webhook")]
    NotFound,
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

/// An endpoint as shown to administrators (never its secret).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<webhook_endpoints::Model> for Endpoint {
    fn from(m: webhook_endpoints::Model) -> Self {
        Self {
            id: m.id,
            url: m.url,
            description: m.description,
            enabled: m.enabled,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A changed endpoint (absent fields stay).
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// One message to one endpoint, as listed to administrators.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub event_type: String,
    pub created_at: i64,
    pub state: DeliveryState,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
}

impl From<webhook_deliveries::Model> for Delivery {
    fn from(m: webhook_deliveries::Model) -> Self {
        let state = if m.delivered_at.is_some() {
            DeliveryState::Delivered
        } else if m.failed_at.is_some() {
            DeliveryState::Failed
        } else {
            DeliveryState::Pending
        };
        Self {
            id: m.id,
            event_type: m.event_type,
            created_at: m.created_at,
            state,
            attempts: m.attempts,
            last_status: m.last_status,
            last_error: m.last_error,
            delivered_at: m.delivered_at,
            next_attempt_at: (state == DeliveryState::Pending).then_some(m.next_attempt_at),
        }
    }
}

/// Endpoints and the outbox of deliveries.
#[derive(Clone)]
pub struct Webhooks {
    db: DatabaseConnection,
    clock: SharedClock,
    master: Arc<MasterKey>,
    allow_private: bool,
}

fn seal_context(id: &str) -> String {
    format!("portcullis webhook secret v1 {id}")
}

fn description(text: Option<String>) -> Result<Option<String>, WebhookError> {
    match text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) {
        Some(t) if t.chars().count() > MAX_DESCRIPTION || t.chars().any(char::is_control) => {
            Err(WebhookError::InvalidDescription)
        }
        other => Ok(other),
    }
}

impl Webhooks {
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        master: Arc<MasterKey>,
        allow_private: bool,
    ) -> Self {
        Self {
            db,
            clock,
            master,
            allow_private,
        }
    }

    /// Checks a target URL (its shape and, unless private targets are allowed, every
    /// address it resolves to); returns it normalized.
    pub async fn check_url(&self, url: &str) -> Result<String, WebhookError> {
        let target = target::parse(url)?;
        if !self.allow_private {
            target::resolve(&target, false).await?;
        }
        Ok(target.url.to_string())
    }

    /// Registers an endpoint; returns it and its secret (shown this once).
    pub async fn create(
        &self,
        url: &str,
        text: Option<String>,
    ) -> Result<(Endpoint, String), WebhookError> {
        let url = self.check_url(url).await?;
        let description = description(text)?;
        let id = format!("wh_{}", uuid::Uuid::new_v4().simple());
        let secret = signing::new_secret()?;
        let now = self.clock.now();
        let row = webhook_endpoints::ActiveModel {
            id: Set(id.clone()),
            url: Set(url),
            description: Set(description),
            enabled: Set(true),
            sealed_secret: Set(self.master.seal(&seal_context(&id), secret.as_bytes())?),
            previous_sealed_secret: Set(None),
            previous_until: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await?;
        Ok((row.into(), secret))
    }

    pub async fn list(&self) -> Result<Vec<Endpoint>, WebhookError> {
        Ok(webhook_endpoints::Entity::find()
            .order_by_asc(webhook_endpoints::Column::CreatedAt)
            .order_by_asc(webhook_endpoints::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Endpoint::from)
            .collect())
    }

    async fn row(&self, id: &str) -> Result<webhook_endpoints::Model, WebhookError> {
        webhook_endpoints::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or(WebhookError::NotFound)
    }

    pub async fn get(&self, id: &str) -> Result<Endpoint, WebhookError> {
        Ok(self.row(id).await?.into())
    }

    pub async fn update(&self, id: &str, change: EndpointChange) -> Result<Endpoint, WebhookError> {
        let row = self.row(id).await?;
        let url = match change.url {
            Some(url) => Some(self.check_url(&url).await?),
            None => None,
        };
        let text = match change.description {
            Some(text) => Some(description(Some(text))?),
            None => None,
        };
        let mut active: webhook_endpoints::ActiveModel = row.into();
        if let Some(url) = url {
            active.url = Set(url);
        }
        if let Some(text) = text {
            active.description = Set(text);
        }
        if let Some(enabled) = change.enabled {
            active.enabled = Set(enabled);
        }
        active.updated_at = Set(self.clock.now());
        Ok(active.update(&self.db).await?.into())
    }

    /// Removes an endpoint and its deliveries. False: there was none.
    pub async fn delete(&self, id: &str) -> Result<bool, WebhookError> {
        webhook_deliveries::Entity::delete_many()
            .filter(webhook_deliveries::Column::EndpointId.eq(id))
            .exec(&self.db)
            .await?;
        let deleted = webhook_endpoints::Entity::delete_by_id(id.to_owned())
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected == 1)
    }

    /// A new secret (returned this once); the previous one signs too for
    /// [`ROTATION_GRACE_SECS`], so receivers can switch without losing a message.
    pub async fn rotate_secret(&self, id: &str) -> Result<String, WebhookError> {
        let row = self.row(id).await?;
        let secret = signing::new_secret()?;
        let now = self.clock.now();
        let previous = row.sealed_secret.clone();
        let mut active: webhook_endpoints::ActiveModel = row.into();
        active.sealed_secret = Set(self.master.seal(&seal_context(id), secret.as_bytes())?);
        active.previous_sealed_secret = Set(Some(previous));
        active.previous_until = Set(Some(now.saturating_add(ROTATION_GRACE_SECS)));
        active.updated_at = Set(now);
        active.update(&self.db).await?;
        Ok(secret)
    }

    /// The keys that sign for `endpoint` now: its secret, and the previous one while its
    /// grace lasts.
    fn signing_keys(
        &self,
        endpoint: &webhook_endpoints::Model,
    ) -> Result<Vec<Vec<u8>>, WebhookError> {
        let context = seal_context(&endpoint.id);
        let open = |sealed: &str| -> Result<Vec<u8>, WebhookError> {
            let secret = self.master.open(&context, sealed)?;
            let text = String::from_utf8(secret).map_err(|_| CryptoError::Open)?;
            signing::secret_bytes(&text).ok_or(WebhookError::Crypto(CryptoError::Open))
        };
        let mut keys = vec![open(&endpoint.sealed_secret)?];
        if let (Some(previous), Some(until)) =
            (&endpoint.previous_sealed_secret, endpoint.previous_until)
            && until > self.clock.now()
        {
            keys.push(open(previous)?);
        }
        Ok(keys)
    }

    /// Queues `payload` (a JSON text whose `type` is `event_type`) for every enabled endpoint
    /// on `conn`, the caller's transaction. Returns the delivery ids.
    pub async fn enqueue_in(
        &self,
        conn: &impl ConnectionTrait,
        event_type: &str,
        payload: &str,
    ) -> Result<Vec<String>, WebhookError> {
        let endpoints = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::Enabled.eq(true))
            .all(conn)
            .await?;
        let mut ids = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            ids.push(
                self.enqueue_one(conn, &endpoint.id, event_type, payload)
                    .await?,
            );
        }
        Ok(ids)
    }

    /// Queues `payload` for one endpoint (a test message).
    pub async fn enqueue_for(
        &self,
        endpoint_id: &str,
        event_type: &str,
        payload: &str,
    ) -> Result<String, WebhookError> {
        self.row(endpoint_id).await?;
        self.enqueue_one(&self.db, endpoint_id, event_type, payload)
            .await
    }

    async fn enqueue_one(
        &self,
        conn: &impl ConnectionTrait,
        endpoint_id: &str,
        event_type: &str,
        payload: &str,
    ) -> Result<String, WebhookError> {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let now = self.clock.now();
        webhook_deliveries::ActiveModel {
            id: Set(id.clone()),
            endpoint_id: Set(endpoint_id.to_owned()),
            event_type: Set(event_type.to_owned()),
            payload: Set(payload.to_owned()),
            created_at: Set(now),
            next_attempt_at: Set(now),
            attempts: Set(0),
            last_status: Set(None),
            last_error: Set(None),
            delivered_at: Set(None),
            failed_at: Set(None),
        }
        .insert(conn)
        .await?;
        Ok(id)
    }

    /// The latest deliveries to `endpoint_id`, newest first.
    pub async fn deliveries(
        &self,
        endpoint_id: &str,
        limit: u64,
    ) -> Result<Vec<Delivery>, WebhookError> {
        self.row(endpoint_id).await?;
        Ok(webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::EndpointId.eq(endpoint_id))
            .order_by_desc(webhook_deliveries::Column::CreatedAt)
            .order_by_desc(webhook_deliveries::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Delivery::from)
            .collect())
    }

    /// Deliveries not yet delivered or given up (the `outbox="webhooks"` depth).
    pub async fn pending(&self) -> Result<u64, WebhookError> {
        use sea_orm::PaginatorTrait;
        Ok(webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::DeliveredAt.is_null())
            .filter(webhook_deliveries::Column::FailedAt.is_null())
            .count(&self.db)
            .await?)
    }
}
