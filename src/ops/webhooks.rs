//! Alert webhook administration (`webhooks:admin`): register an endpoint (its signing secret
//! shown once), list, change, give a new secret, remove, send a test message, and list recent
//! deliveries. Every change is audited; a secret never is.

use serde_json::json;

use super::caller::Caller;
use super::error::OpError;
use crate::alerts::Alerts;
use crate::audit::{Audit, EventType};
use crate::domain::Invalid;
use crate::webhooks::{Delivery, Endpoint, EndpointChange, WebhookError};

/// The most deliveries listed at once.
pub const MAX_DELIVERIES: u64 = 100;

/// A registered endpoint and its secret (shown this once).
#[derive(Debug)]
pub struct CreatedEndpoint {
    pub endpoint: Endpoint,
    pub secret: String,
}

#[derive(Clone)]
pub struct WebhookAdmin {
    alerts: Alerts,
    audit: Audit,
}

impl From<WebhookError> for OpError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::NotFound => Self::NotFound(e.to_string()),
            WebhookError::InvalidUrl(_)
            | WebhookError::PrivateTarget(_)
            | WebhookError::Unreachable(_) => Self::Invalid(Invalid {
                field: "url",
                reason: e.to_string(),
            }),
            WebhookError::InvalidDescription => Self::Invalid(Invalid {
                field: "description",
                reason: e.to_string(),
            }),
            other => Self::internal(&other),
        }
    }
}

impl WebhookAdmin {
    pub fn new(alerts: Alerts, audit: Audit) -> Self {
        Self { alerts, audit }
    }

    pub async fn create(
        &self,
        caller: &Caller,
        url: &str,
        description: Option<String>,
    ) -> Result<CreatedEndpoint, OpError> {
        let (endpoint, secret) = self.alerts.webhooks().create(url, description).await?;
        caller
            .record(
                &self.audit,
                EventType::WebhookCreated,
                json!({"webhook_id": endpoint.id, "url": endpoint.url}),
            )
            .await;
        Ok(CreatedEndpoint { endpoint, secret })
    }

    pub async fn list(&self) -> Result<Vec<Endpoint>, OpError> {
        Ok(self.alerts.webhooks().list().await?)
    }

    pub async fn get(&self, id: &str) -> Result<Endpoint, OpError> {
        Ok(self.alerts.webhooks().get(id).await?)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        change: EndpointChange,
    ) -> Result<Endpoint, OpError> {
        let endpoint = self.alerts.webhooks().update(id, change).await?;
        caller
            .record(
                &self.audit,
                EventType::WebhookUpdated,
                json!({"webhook_id": endpoint.id, "url": endpoint.url, "enabled": endpoint.enabled}),
            )
            .await;
        Ok(endpoint)
    }

    /// A new secret, returned this once; the previous one keeps signing for a day.
    pub async fn rotate_secret(&self, caller: &Caller, id: &str) -> Result<String, OpError> {
        let secret = self.alerts.webhooks().rotate_secret(id).await?;
        caller
            .record(
                &self.audit,
                EventType::WebhookSecretRotated,
                json!({"webhook_id": id}),
            )
            .await;
        Ok(secret)
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<(), OpError> {
        if !self.alerts.webhooks().delete(id).await? {
            return Err(WebhookError::NotFound.into());
        }
        caller
            .record(
                &self.audit,
                EventType::WebhookDeleted,
                json!({"webhook_id": id}),
            )
            .await;
        Ok(())
    }

    /// Queues an `alert.test` message for the endpoint and tries it at once; returns the
    /// delivery id (its outcome is in the deliveries list).
    pub async fn test(&self, caller: &Caller, id: &str) -> Result<String, OpError> {
        let payload = self.alerts.payload(
            "alert.test",
            json!({
                "rule": "test",
                "severity": "info",
                "summary": "a test alert sent by an administrator",
                "by_user_id": caller.actor().user_id(),
            }),
        );
        let delivery = self
            .alerts
            .webhooks()
            .enqueue_for(id, "alert.test", &payload)
            .await?;
        self.alerts
            .sender()
            .send(std::slice::from_ref(&delivery))
            .await?;
        Ok(delivery)
    }

    pub async fn deliveries(&self, id: &str, limit: u64) -> Result<Vec<Delivery>, OpError> {
        Ok(self
            .alerts
            .webhooks()
            .deliveries(id, limit.clamp(1, MAX_DELIVERIES))
            .await?)
    }
}
