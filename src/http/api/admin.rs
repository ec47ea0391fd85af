//! `/api/v1/admin`: user, client, role, signing-key and audit-log administration. Thin adapters
//! over the use cases (`ops::Accounts`, `ops::ClientAdmin`, `ops::KeyAdmin`): every operation
//! is guarded by a permission through [`Require`], which for these administrative permissions
//! re-reads what the caller holds; the use case applies the escalation rule (403
//! `escalation`), ends sign-ins where access ends, and records the audit event.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::Request;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use secrecy::ExposeSecret;

use super::admin_views::*;
use crate::audit::{Audit, AuditFilter};
use crate::clients::{ClientChange, NewClient, parse_grant_types};
use crate::domain::{ClientId, PageSize, display_name};
use crate::http::auth::ApiScopes;
use crate::http::guard::{AuditRead, ClientsAdmin, KeysAdmin, Require, UsersAdmin, UsersRead};
use crate::http::problem::{ApiError, Created, NoContent};
use crate::http::tags::ApiTags;
use crate::oauth::scope::known_scopes;
use crate::ops::{Accounts, ClientAdmin, KeyAdmin};

/// A client's display name, stored as given once it passes [`display_name`].
fn client_name(name: String) -> Result<String, ApiError> {
    display_name(&name)?;
    Ok(name)
}

pub struct AdminApi;

#[OpenApi(prefix_path = "/api/v1/admin", tag = "ApiTags::Admin")]
impl AdminApi {
    /// Search users
    ///
    /// Needs `users:read`. `q` matches part of the username or email; pages are ordered by
    /// username; pass `next_cursor` as `cursor` for the next page.
    #[oai(path = "/users", method = "get", operation_id = "admin_list_users")]
    async fn list_users(
        &self,
        accounts: &Accounts,
        #[oai(scope = "ApiScopes::USERS_READ")] _auth: Require<UsersRead>,
        q: Query<Option<String>>,
        cursor: Query<Option<String>>,
        #[oai(name = "limit")] page_size: Query<Option<i64>>,
    ) -> Result<Json<UserPage>, ApiError> {
        let limit = PageSize::parse(page_size.0)?.get();
        let after = cursor
            .0
            .as_deref()
            .map(|c| {
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| ApiError::invalid_input("cursor", "malformed cursor"))
            })
            .transpose()?;
        if q.0
            .as_deref()
            .is_some_and(|q| q.len() > 254 || q.chars().any(char::is_control))
        {
            return Err(ApiError::invalid_input(
                "q",
                "at most 254 characters, no control characters",
            ));
        }
        let (users, more) = accounts
            .search(q.0.as_deref(), after.as_deref(), limit)
            .await?;
        let next_cursor = more
            .then(|| users.last().map(|u| URL_SAFE_NO_PAD.encode(&u.username)))
            .flatten();
        Ok(Json(UserPage {
            items: users.into_iter().map(AdminUser::from).collect(),
            next_cursor,
        }))
    }

    /// Get a user
    ///
    /// Needs `users:read`.
    #[oai(path = "/users/:id", method = "get", operation_id = "admin_get_user")]
    async fn get_user(
        &self,
        accounts: &Accounts,
        #[oai(scope = "ApiScopes::USERS_READ")] _auth: Require<UsersRead>,
        id: Path<String>,
    ) -> Result<Json<AdminUser>, ApiError> {
        Ok(Json(accounts.get(&id.0).await?.into()))
    }

    /// Set a user's roles
    ///
    /// Needs `users:admin`. Removing a role ends all the user's sign-ins, so no new access
    /// token carries the old privileges.
    #[oai(
        path = "/users/:id/roles",
        method = "put",
        operation_id = "admin_set_user_roles"
    )]
    async fn set_roles(
        &self,
        accounts: &Accounts,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
        body: Json<RolesBody>,
    ) -> Result<Json<AdminUser>, ApiError> {
        let changed = accounts
            .set_roles(&auth.caller(req), &id.0, &body.roles)
            .await?;
        Ok(Json(changed.user.into()))
    }

    /// Disable a user
    ///
    /// Needs `users:admin`. The user can no longer sign in or refresh; all their sign-ins end
    /// and their access tokens stop working.
    #[oai(
        path = "/users/:id/disable",
        method = "post",
        operation_id = "admin_disable_user"
    )]
    async fn disable(
        &self,
        accounts: &Accounts,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
    ) -> Result<Json<AdminUser>, ApiError> {
        Ok(Json(
            accounts.disable(&auth.caller(req), &id.0).await?.into(),
        ))
    }

    /// Enable a user
    ///
    /// Needs `users:admin`, and every permission the user's roles grant (re-enabling an
    /// account gives its power back).
    #[oai(
        path = "/users/:id/enable",
        method = "post",
        operation_id = "admin_enable_user"
    )]
    async fn enable(
        &self,
        accounts: &Accounts,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
    ) -> Result<Json<AdminUser>, ApiError> {
        Ok(Json(
            accounts.enable(&auth.caller(req), &id.0).await?.into(),
        ))
    }

    /// Unlock a user's account
    ///
    /// Needs `users:admin`. Lifts the account lock and every address block from repeated
    /// failed sign-ins, and forgets past locks, so the next lock starts from the base period.
    #[oai(
        path = "/users/:id/unlock",
        method = "post",
        operation_id = "admin_unlock_user"
    )]
    async fn unlock(
        &self,
        accounts: &Accounts,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
    ) -> Result<Json<AdminUser>, ApiError> {
        Ok(Json(
            accounts.unlock(&auth.caller(req), &id.0).await?.into(),
        ))
    }

    /// List clients
    ///
    /// Needs `clients:admin`.
    #[oai(path = "/clients", method = "get", operation_id = "admin_list_clients")]
    async fn list_clients(
        &self,
        clients: &ClientAdmin,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] _auth: Require<ClientsAdmin>,
    ) -> Result<Json<Vec<ClientView>>, ApiError> {
        let clients = clients.list().await?;
        Ok(Json(
            clients
                .iter()
                .map(|c| ClientView::from(c.as_ref()))
                .collect(),
        ))
    }

    /// Create a client
    ///
    /// Needs `clients:admin`. Confidential clients get a generated 256-bit secret, shown once
    /// in this answer.
    #[oai(
        path = "/clients",
        method = "post",
        operation_id = "admin_create_client"
    )]
    async fn create_client(
        &self,
        clients: &ClientAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] auth: Require<ClientsAdmin>,
        body: Json<NewClientBody>,
    ) -> Result<Created<CreatedClientView>, ApiError> {
        let body = body.0;
        let client_id = ClientId::parse(&body.client_id)?;
        let name = client_name(body.name.unwrap_or_else(|| client_id.as_str().to_string()))?;
        let new = NewClient {
            client_id,
            name,
            secret: if body.public { None } else { Some(None) },
            grant_types: parse_grant_types(&body.grant_types)?,
            scopes: known_scopes("scopes", &body.scopes)?,
            default_scopes: body
                .default_scopes
                .as_deref()
                .map(|d| known_scopes("default_scopes", d))
                .transpose()?,
            audiences: body.audiences,
            redirect_uris: body.redirect_uris,
            post_logout_redirect_uris: body.post_logout_redirect_uris,
            first_party: body.first_party,
        };
        let created = clients.create(&auth.caller(req), new).await?;
        Ok(Created::Created(Json(created.into())))
    }

    /// Get a client
    ///
    /// Needs `clients:admin`.
    #[oai(
        path = "/clients/:client_id",
        method = "get",
        operation_id = "admin_get_client"
    )]
    async fn get_client(
        &self,
        clients: &ClientAdmin,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] _auth: Require<ClientsAdmin>,
        client_id: Path<String>,
    ) -> Result<Json<ClientView>, ApiError> {
        Ok(Json(clients.get(&client_id.0).await?.as_ref().into()))
    }

    /// Change a client
    ///
    /// Needs `clients:admin`. Absent fields stay as they are. Other instances see the change
    /// within 5 s (client cache).
    #[oai(
        path = "/clients/:client_id",
        method = "patch",
        operation_id = "admin_update_client"
    )]
    async fn update_client(
        &self,
        clients: &ClientAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] auth: Require<ClientsAdmin>,
        client_id: Path<String>,
        body: Json<ClientPatch>,
    ) -> Result<Json<ClientView>, ApiError> {
        let body = body.0;
        let change = ClientChange {
            name: body.name.map(client_name).transpose()?,
            grant_types: body
                .grant_types
                .as_deref()
                .map(parse_grant_types)
                .transpose()?,
            scopes: body
                .scopes
                .as_deref()
                .map(|s| known_scopes("scopes", s))
                .transpose()?,
            default_scopes: body
                .default_scopes
                .as_deref()
                .map(|d| known_scopes("default_scopes", d))
                .transpose()?,
            audiences: body.audiences,
            redirect_uris: body.redirect_uris,
            post_logout_redirect_uris: body.post_logout_redirect_uris,
            first_party: body.first_party,
        };
        let client = clients
            .update(&auth.caller(req), &client_id.0, change)
            .await?;
        Ok(Json(client.as_ref().into()))
    }

    /// Delete a client
    ///
    /// Needs `clients:admin`. Its refresh tokens go with it; access tokens already issued to
    /// it live until they expire.
    #[oai(
        path = "/clients/:client_id",
        method = "delete",
        operation_id = "admin_delete_client"
    )]
    async fn delete_client(
        &self,
        clients: &ClientAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] auth: Require<ClientsAdmin>,
        client_id: Path<String>,
    ) -> Result<NoContent, ApiError> {
        clients.delete(&auth.caller(req), &client_id.0).await?;
        Ok(NoContent::NoContent)
    }

    /// Rotate a client's secret
    ///
    /// Needs `clients:admin`. The new secret is shown once; the old one stops working (on
    /// other instances within 5 s).
    #[oai(
        path = "/clients/:client_id/secret",
        method = "post",
        operation_id = "admin_rotate_client_secret"
    )]
    async fn rotate_secret(
        &self,
        clients: &ClientAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] auth: Require<ClientsAdmin>,
        client_id: Path<String>,
    ) -> Result<Json<ClientSecretView>, ApiError> {
        let secret = clients
            .rotate_secret(&auth.caller(req), &client_id.0)
            .await?;
        Ok(Json(ClientSecretView {
            client_id: client_id.0,
            client_secret: secret.expose_secret().to_string(),
        }))
    }

    /// List roles and their permissions
    ///
    /// Needs `users:read`.
    #[oai(path = "/roles", method = "get", operation_id = "admin_list_roles")]
    async fn list_roles(
        &self,
        accounts: &Accounts,
        #[oai(scope = "ApiScopes::USERS_READ")] _auth: Require<UsersRead>,
    ) -> Result<Json<Vec<RoleView>>, ApiError> {
        let roles = accounts.roles().await?;
        Ok(Json(roles.into_iter().map(RoleView::from).collect()))
    }

    /// Set a role's permissions
    ///
    /// Needs `users:admin`. Takes effect for every holder at their next sign-in or refresh
    /// (a refresh re-reads the user's permissions).
    #[oai(
        path = "/roles/:role/permissions",
        method = "put",
        operation_id = "admin_set_role_permissions"
    )]
    async fn set_role_permissions(
        &self,
        accounts: &Accounts,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        role: Path<String>,
        body: Json<PermissionsBody>,
    ) -> Result<Json<RoleView>, ApiError> {
        let updated = accounts
            .set_role_permissions(&auth.caller(req), &role.0, &body.permissions)
            .await?;
        Ok(Json(updated.into()))
    }

    /// Require two-factor authentication for a role
    ///
    /// Needs `users:admin`. Holders of the role who have not enrolled get, at their next
    /// sign-in or refresh, tokens that reach only their profile and the enrolment endpoints
    /// (every other operation answers 403 `mfa_enrolment_required`) until they enrol and sign
    /// in again.
    #[oai(
        path = "/roles/:role/mfa",
        method = "put",
        operation_id = "admin_set_role_mfa"
    )]
    async fn set_role_mfa(
        &self,
        accounts: &Accounts,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        role: Path<String>,
        body: Json<RoleMfaBody>,
    ) -> Result<Json<RoleView>, ApiError> {
        let updated = accounts
            .set_role_mfa(&auth.caller(req), &role.0, body.required)
            .await?;
        Ok(Json(updated.into()))
    }

    /// List signing keys
    ///
    /// Needs `keys:admin`. Every key with its state (`next`, `current`, `retired`,
    /// `revoked`) and when it changed; never the private parts.
    #[oai(path = "/keys", method = "get", operation_id = "admin_list_keys")]
    async fn list_keys(
        &self,
        keys: &KeyAdmin,
        #[oai(scope = "ApiScopes::KEYS_ADMIN")] _auth: Require<KeysAdmin>,
    ) -> Result<Json<Vec<KeyView>>, ApiError> {
        Ok(Json(
            keys.list().await?.into_iter().map(KeyView::from).collect(),
        ))
    }

    /// Rotate the signing key now
    ///
    /// Needs `keys:admin`. Promotes `next` to `current` at once, retires the old key and
    /// publishes a fresh `next` (as `portcullis keys rotate`). `published_for_secs` tells how
    /// long resource servers have had the promoted key.
    #[oai(
        path = "/keys/rotate",
        method = "post",
        operation_id = "admin_rotate_keys"
    )]
    async fn rotate_keys(
        &self,
        keys: &KeyAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::KEYS_ADMIN")] auth: Require<KeysAdmin>,
    ) -> Result<Json<RotationView>, ApiError> {
        Ok(Json(keys.rotate(&auth.caller(req)).await?.into()))
    }

    /// Revoke a signing key (emergency)
    ///
    /// Needs `keys:admin`. Stops signing with and publishing the key at once; every token it
    /// signed is refused (at once on every instance sharing Redis, within the key reload
    /// interval otherwise). Recorded as a security event.
    #[oai(
        path = "/keys/:kid/revoke",
        method = "post",
        operation_id = "admin_revoke_key"
    )]
    async fn revoke_key(
        &self,
        keys: &KeyAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::KEYS_ADMIN")] auth: Require<KeysAdmin>,
        kid: Path<String>,
    ) -> Result<Json<RevocationView>, ApiError> {
        let revoked = keys.revoke(&auth.caller(req), &kid.0).await?;
        Ok(Json(revoked.into()))
    }

    /// List audit events
    ///
    /// Needs `audit:read`. Filters: `type` (e.g. `auth.sign_in`), `user_id` (the actor),
    /// `client_id`, `since` / `until` (Unix seconds). Newest first; pass `next_cursor` as
    /// `cursor` for the next page.
    #[oai(
        path = "/audit-events",
        method = "get",
        operation_id = "admin_list_audit_events"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn audit_events(
        &self,
        audit: &Audit,
        #[oai(scope = "ApiScopes::AUDIT_READ")] _auth: Require<AuditRead>,
        #[oai(name = "type")] event_type: Query<Option<String>>,
        user_id: Query<Option<String>>,
        client_id: Query<Option<String>>,
        since: Query<Option<i64>>,
        until: Query<Option<i64>>,
        cursor: Query<Option<String>>,
        #[oai(name = "limit")] page_size: Query<Option<i64>>,
    ) -> Result<Json<AuditPage>, ApiError> {
        let limit = PageSize::parse(page_size.0)?.get();
        let before = cursor
            .0
            .as_deref()
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| ApiError::invalid_input("cursor", "malformed cursor"))
            })
            .transpose()?;
        for (field, value) in [
            ("type", &event_type.0),
            ("user_id", &user_id.0),
            ("client_id", &client_id.0),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| v.len() > 128 || v.chars().any(char::is_control))
            {
                return Err(ApiError::invalid_input(
                    field,
                    "at most 128 characters, no control characters",
                ));
            }
        }
        let filter = AuditFilter {
            event_type: event_type.0,
            user_id: user_id.0,
            client_id: client_id.0,
            since: since.0,
            until: until.0,
        };
        let (events, more) = audit
            .list(&filter, before, limit)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let next_cursor = more
            .then(|| events.last().map(|e| e.id.to_string()))
            .flatten();
        Ok(Json(AuditPage {
            items: events.into_iter().map(AuditEventView::from).collect(),
            next_cursor,
        }))
    }
}
