//! Operations endpoints: liveness and readiness.

use crate::http::tags::ApiTags;
use crate::ops::Readiness;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

#[derive(Debug, Object)]
pub struct Health {
    /// `ok`, or `degraded` when a dependency does not answer.
    pub status: String,
    /// `ok` or `unreachable` (readiness only).
    #[oai(skip_serializing_if_is_none)]
    pub database: Option<String>,
    /// Redis or in-process store: `ok` or `unreachable` (readiness only).
    #[oai(skip_serializing_if_is_none)]
    pub store: Option<String>,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Up (and, for `/readyz`, database and store answer).
    #[oai(status = 200)]
    Ready(Json<Health>),
    /// A dependency does not answer; the body says which.
    #[oai(status = 503)]
    NotReady(Json<Health>),
}

pub struct OpsApi;

#[OpenApi(tag = "ApiTags::Operations")]
impl OpsApi {
    /// Liveness: the process is up.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> ReadyResponse {
        ReadyResponse::Ready(Json(Health {
            status: "ok".into(),
            database: None,
            store: None,
        }))
    }

    /// Readiness: the database and the store (Redis or in-process) answer.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, readiness: &Readiness) -> ReadyResponse {
        let ready = readiness.check().await;
        let all = ready.database && ready.store;
        let word = |ok: bool| if ok { "ok" } else { "unreachable" }.to_string();
        let health = Health {
            status: if all { "ok" } else { "degraded" }.into(),
            database: Some(word(ready.database)),
            store: Some(word(ready.store)),
        };
        if all {
            ReadyResponse::Ready(Json(health))
        } else {
            ReadyResponse::NotReady(Json(health))
        }
    }
}
