//! `/api/v1/admin/webhooks`: alert webhook endpoints (permission `webhooks:admin`). Thin
//! adapters over `ops::WebhookAdmin`.

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::http::auth::ApiScopes;
use crate::http::guard::{Require, WebhooksAdmin};
use crate::http::problem::{ApiError, Created, NoContent};
use crate::http::tags::ApiTags;
use crate::ops::WebhookAdmin;
use crate::webhooks::{Delivery, Endpoint, EndpointChange};

/// A webhook endpoint to register.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct WebhookBody {
    /// An absolute `https` (or `http`) URL; it must not resolve to a private or loopback
    /// address unless the server allows it.
    #[oai(validator(max_length = 2048))]
    pub url: String,
    #[oai(validator(max_length = 200))]
    pub description: Option<String>,
}

/// A change to an endpoint (absent fields stay).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct WebhookPatch {
    #[oai(validator(max_length = 2048))]
    pub url: Option<String>,
    #[oai(validator(max_length = 200))]
    pub description: Option<String>,
    /// A disabled endpoint gets no new deliveries.
    pub enabled: Option<bool>,
}

/// A webhook endpoint (never its secret).
#[derive(Debug, Object)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<Endpoint> for WebhookView {
    fn from(e: Endpoint) -> Self {
        Self {
            id: e.id,
            url: e.url,
            description: e.description,
            enabled: e.enabled,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A registered endpoint with its signing secret.
#[derive(Debug, Object)]
pub struct CreatedWebhookView {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    /// The Standard Webhooks signing secret (`whsec_…`). Store it now: it is not shown again.
    pub secret: String,
}

/// A new signing secret.
#[derive(Debug, Object)]
pub struct WebhookSecretView {
    pub id: String,
    /// The new `whsec_…` secret. The previous one keeps signing (a second `v1,` signature)
    /// for 24 hours, so the receiver can switch without losing a message.
    pub secret: String,
}

/// A test message queued (and tried at once).
#[derive(Debug, Object)]
pub struct TestDeliveryView {
    /// The `webhook-id` of the message; its outcome is in the deliveries list.
    pub delivery_id: String,
}

/// One message to one endpoint.
#[derive(Debug, Object)]
pub struct DeliveryView {
    /// The `webhook-id` header (the same on every attempt).
    pub id: String,
    /// The payload's `type`, e.g. `alert.credential_stuffing`.
    pub event_type: String,
    pub created_at: i64,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: i32,
    /// The HTTP status of the last answer.
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<i64>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            event_type: d.event_type,
            created_at: d.created_at,
            status: d.state.as_str().into(),
            attempts: d.attempts,
            last_status_code: d.last_status,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
            next_attempt_at: d.next_attempt_at,
        }
    }
}

#[derive(ApiResponse)]
pub enum Accepted {
    /// Queued and tried once; see the deliveries list for the outcome.
    #[oai(status = 202)]
    Accepted(Json<TestDeliveryView>),
}

pub struct WebhooksApi;

#[OpenApi(prefix_path = "/api/v1/admin/webhooks", tag = "ApiTags::Admin")]
impl WebhooksApi {
    /// List alert webhooks
    ///
    /// Needs `webhooks:admin`.
    #[oai(path = "/", method = "get", operation_id = "admin_list_webhooks")]
    async fn list(
        &self,
        webhooks: &WebhookAdmin,
        #[oai(scope = "ApiScopes::WEBHOOKS_ADMIN")] _auth: Require<WebhooksAdmin>,
    ) -> Result<Json<Vec<WebhookView>>, ApiError> {
        Ok(Json(
            webhooks.list().await?.into_iter().map(Into::into).collect(),
        ))
    }

    /// Register an alert webhook
    ///
    /// Needs `webhooks:admin`. Security alerts are posted to `url` as Standard Webhooks
    /// (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<HMAC-SHA256>`), JSON
    /// `{type: "alert.<rule>", timestamp, data}`. The answer carries the signing secret once.
    #[oai(path = "/", method = "post", operation_id = "admin_create_webhook")]
    async fn create(
        &self,
        webhooks: &WebhookAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::WEBHOOKS_ADMIN")] auth: Require<WebhooksAdmin>,
        body: Json<WebhookBody>,
    ) -> Result<Created<CreatedWebhookView>, ApiError> {
        let body = body.0;
        let created = webhooks
            .create(&auth.caller(req), &body.url, body.description)
            .await?;
        Ok(Created::Created(Json(CreatedWebhookView {
            id: created.endpoint.id,
            url: created.endpoint.url,
            description: created.endpoint.description,
            secret: created.secret,
        })))
    }

    /// Get an alert webhook
    ///
    /// Needs `webhooks:admin`.
    #[oai(path = "/:id", method = "get", operation_id = "admin_get_webhook")]
    async fn get(
        &self,
        webhooks: &WebhookAdmin,
        #[oai(scope = "ApiScopes::WEBHOOKS_ADMIN")] _auth: Require<WebhooksAdmin>,
        id: Path<String>,
    ) -> Result<Json<WebhookView>, ApiError> {
        Ok(Json(webhooks.get(&id.0).await?.into()))
    }

    /// Change an alert webhook
    ///
    /// Needs `webhooks:admin`. A new URL is checked as at registration.
    #[oai(path = "/:id", method = "patch", operation_id = "admin_update_webhook")]
    async fn update(
        &self,
        webhooks: &WebhookAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::WEBHOOKS_ADMIN")] auth: Require<WebhooksAdmin>,
        id: Path<String>,
        body: Json<WebhookPatch>,
    ) -> Result<Json<WebhookView>, ApiError> {
        let body = body.0;
        let change = EndpointChange {
            url: body.url,
            description: body.description,
            enabled: body.enabled,
        };
        Ok(Json(
            webhooks
                .update(&auth.caller(req), &id.0, change)
                .await?
                .into(),
        ))
    }

    /// Remove an alert webhook
    ///
    /// Needs `webhooks:admin`. Its pending deliveries go with it.
    #[oai(
        path = "/:id",
        method = "delete",
        operation_id = "admin_delete_webhook"
    )]
    async fn delete(
        &self,
        webhooks: &WebhookAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::WEBHOOKS_ADMIN")] auth: Require<WebhooksAdmin>,
        id: Path<String>,
    ) -> Result<NoContent, ApiError> {
        webhooks.delete(&auth.caller(req), &id.0).await?;
        Ok(NoContent::NoContent)
    }

    /// Give an alert webhook a new secret
    ///
    /// Needs `webhooks:admin`. The previous secret keeps signing for 24 hours.
    #[oai(
        path = "/:id/secret",
        method = "post",
        operation_id = "admin_rotate_webhook_secret"
    )]
    async fn rotate_secret(
        &self,
        webhooks: &WebhookAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::WEBHOOKS_ADMIN")] auth: Require<WebhooksAdmin>,
        id: Path<String>,
    ) -> Result<Json<WebhookSecretView>, ApiError> {
        let secret = webhooks.rotate_secret(&auth.caller(req), &id.0).await?;
        Ok(Json(WebhookSecretView { id: id.0, secret }))
    }

    /// Send a test alert
    ///
    /// Needs `webhooks:admin`. Queues an `alert.test` message for this endpoint and tries it
    /// at once (retried like any alert when it fails).
    #[oai(
        path = "/:id/test",
        method = "post",
        operation_id = "admin_test_webhook"
    )]
    async fn test(
        &self,
        webhooks: &WebhookAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::WEBHOOKS_ADMIN")] auth: Require<WebhooksAdmin>,
        id: Path<String>,
    ) -> Result<Accepted, ApiError> {
        let delivery_id = webhooks.test(&auth.caller(req), &id.0).await?;
        Ok(Accepted::Accepted(Json(TestDeliveryView { delivery_id })))
    }

    /// List recent deliveries
    ///
    /// Needs `webhooks:admin`. Newest first, at most `limit` (1–100, default 50), each with
    /// its status, attempts and last answer.
    #[oai(
        path = "/:id/deliveries",
        method = "get",
        operation_id = "admin_list_webhook_deliveries"
    )]
    async fn deliveries(
        &self,
        webhooks: &WebhookAdmin,
        #[oai(scope = "ApiScopes::WEBHOOKS_ADMIN")] _auth: Require<WebhooksAdmin>,
        id: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u64>>,
    ) -> Result<Json<Vec<DeliveryView>>, ApiError> {
        Ok(Json(
            webhooks
                .deliveries(&id.0, limit.0.unwrap_or(50))
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        ))
    }
}
