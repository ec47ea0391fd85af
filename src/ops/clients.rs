//! Client administration: register, change, delete clients and rotate their secrets, audited,
//! under the escalation rule: a caller may give a client only permission scopes it holds, and
//! may not take over (change, or rotate the secret of) a client that may be given more.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::json;

use super::caller::Caller;
use super::error::OpError;
use crate::audit::{Audit, EventType};
use crate::clients::{Client, ClientChange, ClientService, CreatedClient, NewClient};
use crate::oauth::scope::administrative_in;

#[derive(Clone)]
pub struct ClientAdmin {
    clients: ClientService,
    audit: Audit,
}

impl ClientAdmin {
    pub fn new(clients: ClientService, audit: Audit) -> Self {
        Self { clients, audit }
    }

    pub async fn list(&self) -> Result<Vec<Arc<Client>>, OpError> {
        Ok(self.clients.list().await?)
    }

    pub async fn get(&self, client_id: &str) -> Result<Arc<Client>, OpError> {
        self.clients
            .get(client_id)
            .await?
            .ok_or_else(|| OpError::NotFound("no such client".into()))
    }

    /// Registers a client; a generated secret is in the answer, once.
    pub async fn create(&self, caller: &Caller, new: NewClient) -> Result<CreatedClient, OpError> {
        caller.authority.ensure_holds(&new.scopes)?;
        let administrative = administrative_in(&new.scopes);
        let created = self.clients.create(new).await?;
        caller
            .record(
                &self.audit,
                EventType::ClientCreated,
                json!({
                    "created_client": created.client_id, "client_type": created.client_type,
                    "grant_types": created.grant_types, "scopes": created.scopes,
                    "administrative": administrative,
                }),
            )
            .await;
        Ok(created)
    }

    /// Changes a client (absent fields stay as they are).
    pub async fn update(
        &self,
        caller: &Caller,
        client_id: &str,
        change: ClientChange,
    ) -> Result<Arc<Client>, OpError> {
        let current = self.get(client_id).await?;
        caller.authority.ensure_holds(&current.scopes)?;
        if let Some(scopes) = &change.scopes {
            caller.authority.ensure_holds(scopes)?;
        }
        let gained = change
            .scopes
            .as_ref()
            .map(|scopes| administrative_in(&scopes.minus(&current.scopes)))
            .unwrap_or_default();
        let client = self.clients.update(client_id, change).await?;
        caller
            .record(
                &self.audit,
                EventType::ClientUpdated,
                json!({
                    "changed_client": client.client_id,
                    "grant_types": client.grant_types,
                    "scopes": client.scopes.to_string(),
                    "administrative": gained,
                }),
            )
            .await;
        Ok(client)
    }

    /// Deletes a client; its refresh tokens go with it.
    pub async fn delete(&self, caller: &Caller, client_id: &str) -> Result<(), OpError> {
        if !self.clients.delete(client_id).await? {
            return Err(OpError::NotFound("no such client".into()));
        }
        caller
            .record(
                &self.audit,
                EventType::ClientDeleted,
                json!({"deleted_client": client_id}),
            )
            .await;
        Ok(())
    }

    /// Replaces a confidential client's secret with a generated one, returned once.
    pub async fn rotate_secret(
        &self,
        caller: &Caller,
        client_id: &str,
    ) -> Result<SecretString, OpError> {
        let current = self.get(client_id).await?;
        caller.authority.ensure_holds(&current.scopes)?;
        let secret = self.clients.rotate_secret(client_id).await?;
        caller
            .record(
                &self.audit,
                EventType::ClientSecretRotated,
                json!({"rotated_client": client_id}),
            )
            .await;
        Ok(secret)
    }
}
