//! `/api/v1/admin`: user, client, role and audit-log administration. Every operation is
//! guarded by a permission through [`Require`]; every change is audited with the acting admin.
//!
//! Privilege changes take effect at once: removing a role from a user, or disabling the user,
//! ends all their sign-ins (`signins::SignIns::end_all`), so every token they hold stops
//! working, on every instance.
//!
//! Nobody grants what they do not hold (the escalation rule, `rbac::Authority`): giving
//! permission scopes to a client, roles to a user or permissions to a role, enabling a user,
//! and taking over a client (changing it or rotating its secret) are refused with 403
//! `escalation` unless the caller holds every permission involved, now.

mod views;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use secrecy::ExposeSecret;
use serde_json::json;

use self::views::*;
use crate::audit::{AuditFilter, Event, EventType, Outcome};
use crate::clients::{Client, ClientChange, ClientError, GrantType, NewClient};
use crate::domain::{ClientId, PageSize, Scope, display_name};
use crate::http::auth::ApiScopes;
use crate::http::problem::ApiError;
use crate::http::{ApiTags, origin};
use crate::oauth::scope::{all_scopes, permission_scopes};
use crate::rbac::{
    AuditRead, Authority, ClientsAdmin, Escalation, Permission, Require, RoleError, UsersAdmin,
    UsersRead,
};
use crate::state::AppState;
use crate::users::UserError;

fn user_error(e: UserError) -> ApiError {
    match e {
        UserError::NotFound => ApiError::not_found("no such user"),
        UserError::UnknownRole(r) => {
            ApiError::invalid_input("roles", format!("unknown role `{r}`"))
        }
        UserError::Duplicate => ApiError::conflict("already exists"),
        other => ApiError::internal(&other),
    }
}

fn client_error(e: ClientError) -> ApiError {
    match e {
        ClientError::NotFound => ApiError::not_found("no such client"),
        ClientError::Duplicate => ApiError::conflict("a client with this client_id already exists"),
        ClientError::Invalid(i) => i.into(),
        other => ApiError::internal(&other),
    }
}

fn role_error(e: RoleError) -> ApiError {
    match e {
        RoleError::UnknownRole(r) => ApiError::not_found(format!("no such role `{r}`")),
        RoleError::UnknownPermission(p) => {
            ApiError::invalid_input("permissions", format!("unknown permission `{p}`"))
        }
        other => ApiError::internal(&other),
    }
}

fn grant_types(raw: &[String]) -> Result<Vec<GrantType>, ApiError> {
    raw.iter()
        .map(|g| {
            GrantType::parse(g).ok_or_else(|| {
                ApiError::invalid_input(
                    "grant_types",
                    format!(
                        "unknown grant type `{g}` (password, refresh_token, client_credentials)"
                    ),
                )
            })
        })
        .collect()
}

fn known_scopes(field: &str, raw: &str) -> Result<Scope, ApiError> {
    let scopes = Scope::parse(raw)?;
    let unknown = scopes.minus(&all_scopes());
    if unknown.is_empty() {
        Ok(scopes)
    } else {
        Err(ApiError::invalid_input(
            field,
            format!("unknown scopes: {unknown}"),
        ))
    }
}

/// A client's display name, stored as given once it passes [`display_name`].
fn client_name(name: String) -> Result<String, ApiError> {
    display_name(&name)?;
    Ok(name)
}

/// An admin action for the audit log, naming who did it.
fn admin_event<P: Permission>(auth: &Require<P>, event_type: EventType) -> Event {
    let (user, client) = auth.actor();
    let event = Event::new(event_type, Outcome::Success).client(client);
    match user {
        Some(u) => event.actor(u),
        None => event,
    }
}

fn escalation(e: Escalation) -> ApiError {
    ApiError::forbidden("escalation", &e.to_string())
}

/// The authority an administrative guard established (every administrative permission has
/// one; see `rbac::Require`).
fn authority<P: Permission>(auth: &Require<P>) -> Result<&Authority, ApiError> {
    auth.authority
        .as_ref()
        .ok_or_else(|| ApiError::internal(&"administrative guard without authority"))
}

/// The permissions the roles `roles` grant together.
async fn permissions_of(state: &AppState, roles: &[String]) -> Result<Scope, ApiError> {
    let mut all = Scope::default();
    for role in roles {
        let found = state.roles.get(role).await.map_err(|e| match e {
            RoleError::UnknownRole(r) => {
                ApiError::invalid_input("roles", format!("unknown role `{r}`"))
            }
            other => ApiError::internal(&other),
        })?;
        all = all.union(&Scope::from_tokens(found.permissions));
    }
    Ok(all)
}

/// Replaces a user's roles; when a role is removed, ends all the user's sign-ins. The roles
/// added must carry only permissions `by` holds. Returns the user, the removed roles and how
/// many sign-ins ended. Used by the API and the CLI.
pub async fn change_roles(
    state: &AppState,
    by: &Authority,
    user_id: &str,
    roles: &[String],
) -> Result<(crate::users::User, Vec<String>, usize), ApiError> {
    let before = state.users.get(user_id).await.map_err(user_error)?;
    let added: Vec<String> = roles
        .iter()
        .filter(|r| !before.roles.contains(r))
        .cloned()
        .collect();
    by.ensure_holds(&permissions_of(state, &added).await?)
        .map_err(escalation)?;
    let (user, removed) = state
        .users
        .set_roles(user_id, roles)
        .await
        .map_err(user_error)?;
    let ended = if removed.is_empty() {
        0
    } else {
        state
            .sign_ins
            .end_all(&user.id, "roles_removed")
            .await
            .map_err(|e| ApiError::internal(&e))?
            .len()
    };
    Ok((user, removed, ended))
}

/// Refuses to let `by` change a client that can be given more than `by` holds.
fn ensure_may_take_over(by: &Authority, client: &Client) -> Result<(), ApiError> {
    by.ensure_holds(&client.scopes).map_err(escalation)
}

#[derive(ApiResponse)]
pub enum UserPageResponse {
    /// One page of users.
    #[oai(status = 200)]
    Ok(Json<UserPage>),
}

#[derive(ApiResponse)]
pub enum AdminUserResponse {
    /// The user.
    #[oai(status = 200)]
    Ok(Json<AdminUser>),
}

#[derive(ApiResponse)]
pub enum ClientListResponse {
    /// Every client.
    #[oai(status = 200)]
    Ok(Json<Vec<ClientView>>),
}

#[derive(ApiResponse)]
pub enum ClientResponse {
    /// The client.
    #[oai(status = 200)]
    Ok(Json<ClientView>),
}

#[derive(ApiResponse)]
pub enum ClientCreatedResponse {
    /// The client was created; a generated secret is shown here once.
    #[oai(status = 201)]
    Created(Json<CreatedClientView>),
}

#[derive(ApiResponse)]
pub enum DeletedResponse {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
pub enum SecretResponse {
    /// The new secret, shown once; the old one stops working.
    #[oai(status = 200)]
    Ok(Json<ClientSecretView>),
}

#[derive(ApiResponse)]
pub enum RolesResponse {
    /// Every role with its permissions.
    #[oai(status = 200)]
    Ok(Json<Vec<RoleView>>),
}

#[derive(ApiResponse)]
pub enum RoleResponse {
    /// The role with its new permissions.
    #[oai(status = 200)]
    Ok(Json<RoleView>),
}

#[derive(ApiResponse)]
pub enum AuditPageResponse {
    /// One page of events, newest first.
    #[oai(status = 200)]
    Ok(Json<AuditPage>),
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
        state: Data<&AppState>,
        #[oai(scope = "ApiScopes::USERS_READ")] _auth: Require<UsersRead>,
        q: Query<Option<String>>,
        cursor: Query<Option<String>>,
        #[oai(name = "limit")] page_size: Query<Option<i64>>,
    ) -> Result<UserPageResponse, ApiError> {
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
        let (users, more) = state
            .users
            .search(q.0.as_deref(), after.as_deref(), limit)
            .await
            .map_err(user_error)?;
        let next_cursor = more
            .then(|| users.last().map(|u| URL_SAFE_NO_PAD.encode(&u.username)))
            .flatten();
        Ok(UserPageResponse::Ok(Json(UserPage {
            items: users.into_iter().map(AdminUser::from).collect(),
            next_cursor,
        })))
    }

    /// Get a user
    ///
    /// Needs `users:read`.
    #[oai(path = "/users/:id", method = "get", operation_id = "admin_get_user")]
    async fn get_user(
        &self,
        state: Data<&AppState>,
        #[oai(scope = "ApiScopes::USERS_READ")] _auth: Require<UsersRead>,
        id: Path<String>,
    ) -> Result<AdminUserResponse, ApiError> {
        let user = state.users.get(&id.0).await.map_err(user_error)?;
        Ok(AdminUserResponse::Ok(Json(user.into())))
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
        state: Data<&AppState>,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
        body: Json<RolesBody>,
    ) -> Result<AdminUserResponse, ApiError> {
        let (user, removed, ended) =
            change_roles(&state, authority(&auth)?, &id.0, &body.roles).await?;
        state
            .audit
            .record(
                &origin(req),
                admin_event(&auth, EventType::UserRolesChanged).details(json!({
                    "user_id": user.id, "roles": user.roles, "removed": removed, "sign_ins_ended": ended,
                })),
            )
            .await;
        Ok(AdminUserResponse::Ok(Json(user.into())))
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
        state: Data<&AppState>,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
    ) -> Result<AdminUserResponse, ApiError> {
        let user = state
            .users
            .set_disabled(&id.0, true)
            .await
            .map_err(user_error)?;
        let ended = state
            .sign_ins
            .end_all(&user.id, "user_disabled")
            .await
            .map_err(|e| ApiError::internal(&e))?
            .len();
        state
            .audit
            .record(
                &origin(req),
                admin_event(&auth, EventType::UserDisabled)
                    .details(json!({"user_id": user.id, "sign_ins_ended": ended})),
            )
            .await;
        Ok(AdminUserResponse::Ok(Json(user.into())))
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
        state: Data<&AppState>,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
    ) -> Result<AdminUserResponse, ApiError> {
        let target = state.users.get(&id.0).await.map_err(user_error)?;
        authority(&auth)?
            .ensure_holds(&permissions_of(&state, &target.roles).await?)
            .map_err(escalation)?;
        let user = state
            .users
            .set_disabled(&id.0, false)
            .await
            .map_err(user_error)?;
        state
            .audit
            .record(
                &origin(req),
                admin_event(&auth, EventType::UserEnabled).details(json!({"user_id": user.id})),
            )
            .await;
        Ok(AdminUserResponse::Ok(Json(user.into())))
    }

    /// Unlock a user's account
    ///
    /// Needs `users:admin`. Lifts a lock from repeated failed sign-ins and forgets past locks,
    /// so the next lock starts from the base period again.
    #[oai(
        path = "/users/:id/unlock",
        method = "post",
        operation_id = "admin_unlock_user"
    )]
    async fn unlock(
        &self,
        state: Data<&AppState>,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
    ) -> Result<AdminUserResponse, ApiError> {
        let user = state.users.get(&id.0).await.map_err(user_error)?;
        state
            .lockout
            .unlock(&user.id)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        state
            .audit
            .record(
                &origin(req),
                admin_event(&auth, EventType::AccountUnlocked).details(json!({"user_id": user.id})),
            )
            .await;
        Ok(AdminUserResponse::Ok(Json(user.into())))
    }

    /// List clients
    ///
    /// Needs `clients:admin`.
    #[oai(path = "/clients", method = "get", operation_id = "admin_list_clients")]
    async fn list_clients(
        &self,
        state: Data<&AppState>,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] _auth: Require<ClientsAdmin>,
    ) -> Result<ClientListResponse, ApiError> {
        let clients = state.clients.list().await.map_err(client_error)?;
        Ok(ClientListResponse::Ok(Json(
            clients
                .iter()
                .map(|c| ClientView::from(c.as_ref()))
                .collect(),
        )))
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
        state: Data<&AppState>,
        req: &Request,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] auth: Require<ClientsAdmin>,
        body: Json<NewClientBody>,
    ) -> Result<ClientCreatedResponse, ApiError> {
        let body = body.0;
        let client_id = ClientId::parse(&body.client_id)?;
        let name = client_name(body.name.unwrap_or_else(|| client_id.as_str().to_string()))?;
        let scopes = known_scopes("scopes", &body.scopes)?;
        authority(&auth)?
            .ensure_holds(&scopes)
            .map_err(escalation)?;
        let created = state
            .clients
            .create(NewClient {
                client_id,
                name,
                secret: if body.public { None } else { Some(None) },
                grant_types: grant_types(&body.grant_types)?,
                scopes,
                default_scopes: body
                    .default_scopes
                    .as_deref()
                    .map(|d| known_scopes("default_scopes", d))
                    .transpose()?,
                audiences: body.audiences,
                redirect_uris: body.redirect_uris,
            })
            .await
            .map_err(client_error)?;
        state
            .audit
            .record(
                &origin(req),
                admin_event(&auth, EventType::ClientCreated).details(json!({
                    "created_client": created.client_id, "client_type": created.client_type,
                    "grant_types": created.grant_types, "scopes": created.scopes,
                })),
            )
            .await;
        Ok(ClientCreatedResponse::Created(Json(created.into())))
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
        state: Data<&AppState>,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] _auth: Require<ClientsAdmin>,
        client_id: Path<String>,
    ) -> Result<ClientResponse, ApiError> {
        let client = state
            .clients
            .get(&client_id.0)
            .await
            .map_err(client_error)?
            .ok_or_else(|| ApiError::not_found("no such client"))?;
        Ok(ClientResponse::Ok(Json(client.as_ref().into())))
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
        state: Data<&AppState>,
        req: &Request,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] auth: Require<ClientsAdmin>,
        client_id: Path<String>,
        body: Json<ClientPatch>,
    ) -> Result<ClientResponse, ApiError> {
        let body = body.0;
        let change = ClientChange {
            name: body.name.map(client_name).transpose()?,
            grant_types: body.grant_types.as_deref().map(grant_types).transpose()?,
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
        };
        let by = authority(&auth)?;
        let current = state
            .clients
            .get(&client_id.0)
            .await
            .map_err(client_error)?
            .ok_or_else(|| ApiError::not_found("no such client"))?;
        ensure_may_take_over(by, &current)?;
        if let Some(scopes) = &change.scopes {
            by.ensure_holds(scopes).map_err(escalation)?;
        }
        let client = state
            .clients
            .update(&client_id.0, change)
            .await
            .map_err(client_error)?;
        state
            .audit
            .record(
                &origin(req),
                admin_event(&auth, EventType::ClientUpdated).details(json!({
                    "changed_client": client.client_id,
                    "grant_types": client.grant_types,
                    "scopes": client.scopes.to_string(),
                })),
            )
            .await;
        Ok(ClientResponse::Ok(Json(client.as_ref().into())))
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
        state: Data<&AppState>,
        req: &Request,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] auth: Require<ClientsAdmin>,
        client_id: Path<String>,
    ) -> Result<DeletedResponse, ApiError> {
        if !state
            .clients
            .delete(&client_id.0)
            .await
            .map_err(client_error)?
        {
            return Err(ApiError::not_found("no such client"));
        }
        state
            .audit
            .record(
                &origin(req),
                admin_event(&auth, EventType::ClientDeleted)
                    .details(json!({"deleted_client": client_id.0})),
            )
            .await;
        Ok(DeletedResponse::Deleted)
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
        state: Data<&AppState>,
        req: &Request,
        #[oai(scope = "ApiScopes::CLIENTS_ADMIN")] auth: Require<ClientsAdmin>,
        client_id: Path<String>,
    ) -> Result<SecretResponse, ApiError> {
        let current = state
            .clients
            .get(&client_id.0)
            .await
            .map_err(client_error)?
            .ok_or_else(|| ApiError::not_found("no such client"))?;
        ensure_may_take_over(authority(&auth)?, &current)?;
        let secret = state
            .clients
            .rotate_secret(&client_id.0)
            .await
            .map_err(client_error)?;
        state
            .audit
            .record(
                &origin(req),
                admin_event(&auth, EventType::ClientSecretRotated)
                    .details(json!({"rotated_client": client_id.0})),
            )
            .await;
        Ok(SecretResponse::Ok(Json(ClientSecretView {
            client_id: client_id.0,
            client_secret: secret.expose_secret().to_string(),
        })))
    }

    /// List roles and their permissions
    ///
    /// Needs `users:read`.
    #[oai(path = "/roles", method = "get", operation_id = "admin_list_roles")]
    async fn list_roles(
        &self,
        state: Data<&AppState>,
        #[oai(scope = "ApiScopes::USERS_READ")] _auth: Require<UsersRead>,
    ) -> Result<RolesResponse, ApiError> {
        let roles = state.roles.list().await.map_err(role_error)?;
        Ok(RolesResponse::Ok(Json(
            roles.into_iter().map(RoleView::from).collect(),
        )))
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
        state: Data<&AppState>,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        role: Path<String>,
        body: Json<PermissionsBody>,
    ) -> Result<RoleResponse, ApiError> {
        let before = state.roles.get(&role.0).await.map_err(role_error)?;
        if let Some(unknown) = body
            .permissions
            .iter()
            .find(|p| !permission_scopes().contains(p))
        {
            return Err(ApiError::invalid_input(
                "permissions",
                format!("unknown permission `{}`", unknown.escape_debug()),
            ));
        }
        let added = Scope::from_tokens(body.permissions.iter().map(String::as_str))
            .minus(&Scope::from_tokens(before.permissions));
        authority(&auth)?.ensure_holds(&added).map_err(escalation)?;
        let (updated, removed) = state
            .roles
            .set_permissions(&role.0, &body.permissions)
            .await
            .map_err(role_error)?;
        state
            .audit
            .record(
                &origin(req),
                admin_event(&auth, EventType::RolePermissionsChanged).details(json!({
                    "role": updated.name, "permissions": updated.permissions, "removed": removed,
                })),
            )
            .await;
        Ok(RoleResponse::Ok(Json(updated.into())))
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
        state: Data<&AppState>,
        #[oai(scope = "ApiScopes::AUDIT_READ")] _auth: Require<AuditRead>,
        #[oai(name = "type")] event_type: Query<Option<String>>,
        user_id: Query<Option<String>>,
        client_id: Query<Option<String>>,
        since: Query<Option<i64>>,
        until: Query<Option<i64>>,
        cursor: Query<Option<String>>,
        #[oai(name = "limit")] page_size: Query<Option<i64>>,
    ) -> Result<AuditPageResponse, ApiError> {
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
        let (events, more) = state
            .audit
            .list(&filter, before, limit)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let next_cursor = more
            .then(|| events.last().map(|e| e.id.to_string()))
            .flatten();
        Ok(AuditPageResponse::Ok(Json(AuditPage {
            items: events.into_iter().map(AuditEventView::from).collect(),
            next_cursor,
        })))
    }
}
