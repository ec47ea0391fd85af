//! Accounts: registration, one's own profile, and the administration of users, their roles and
//! the roles' permissions. Every change is audited here; removing a role or disabling a user
//! ends all the user's sign-ins (`signins::SignIns::end_all`), and nothing is granted beyond
//! what the caller holds (`rbac::Authority`).

use serde_json::json;

use super::caller::Caller;
use super::error::OpError;
use crate::abuse::Lockout;
use crate::audit::{Audit, EventType};
use crate::domain::{Email, Password, Scope, Username};
use crate::oauth::scope::{administrative_in, permission_scopes};
use crate::rbac::{Role, RoleService};
use crate::signins::SignIns;
use crate::users::{ProfileUpdate, User, UserService};

/// What changing a user's roles did.
#[derive(Debug)]
pub struct RolesChanged {
    pub user: User,
    pub removed: Vec<String>,
    /// How many sign-ins ended (a role was removed).
    pub sign_ins_ended: usize,
}

/// A change to one's own profile; `None` leaves a field as it is. (The address changes
/// through `ops::Recovery::change_email`, confirmed from the new address.)
#[derive(Debug, Default)]
pub struct ProfileChange {
    /// `Some(None)` clears the display name.
    pub name: Option<Option<String>>,
}

#[derive(Clone)]
pub struct Accounts {
    users: UserService,
    roles: RoleService,
    sign_ins: SignIns,
    lockout: Lockout,
    audit: Audit,
}

impl Accounts {
    pub fn new(
        users: UserService,
        roles: RoleService,
        sign_ins: SignIns,
        lockout: Lockout,
        audit: Audit,
    ) -> Self {
        Self {
            users,
            roles,
            sign_ins,
            lockout,
            audit,
        }
    }

    /// An account created by an administrator (or the operator) with `roles` (the default
    /// role when empty), which must carry only permissions the caller holds.
    pub async fn create(
        &self,
        caller: &Caller,
        username: &Username,
        email: &Email,
        password: &Password,
        roles: &[String],
        email_verified: bool,
    ) -> Result<User, OpError> {
        caller
            .authority
            .ensure_holds(&self.users.permissions(roles).await?)?;
        let user = self
            .users
            .register(username, email, password, roles, email_verified)
            .await?;
        caller
            .record(
                &self.audit,
                EventType::UserRegistered,
                json!({"user_id": user.id, "username": user.username, "roles": user.roles}),
            )
            .await;
        Ok(user)
    }

    pub async fn get(&self, user_id: &str) -> Result<User, OpError> {
        Ok(self.users.get(user_id).await?)
    }

    /// The id of the account named `username`.
    pub async fn id_of(&self, username: &str) -> Result<String, OpError> {
        Ok(self.users.id_of(username).await?)
    }

    /// Users whose username or email contains `query`, one page after `after`.
    pub async fn search(
        &self,
        query: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<User>, bool), OpError> {
        Ok(self.users.search(query, after, limit).await?)
    }

    /// Changes the caller's own profile (the display name).
    pub async fn update_profile(
        &self,
        caller: &Caller,
        change: ProfileChange,
    ) -> Result<User, OpError> {
        let user_id = caller
            .actor()
            .user_id()
            .ok_or_else(|| OpError::NotFound("no such user".into()))?
            .to_string();
        let fields: Vec<&str> = change.name.as_ref().map(|_| "name").into_iter().collect();
        let user = self
            .users
            .update_profile(
                &user_id,
                ProfileUpdate {
                    email: None,
                    name: change.name,
                },
            )
            .await?;
        caller
            .record(
                &self.audit,
                EventType::UserUpdated,
                json!({"fields": fields}),
            )
            .await;
        Ok(user)
    }

    /// Replaces a user's roles. The roles added must carry only permissions the caller
    /// holds; removing a role ends all the user's sign-ins.
    pub async fn set_roles(
        &self,
        caller: &Caller,
        user_id: &str,
        roles: &[String],
    ) -> Result<RolesChanged, OpError> {
        let before = self.users.get(user_id).await?;
        let added: Vec<String> = roles
            .iter()
            .filter(|r| !before.roles.contains(r))
            .cloned()
            .collect();
        let gained = self.users.permissions(&added).await?;
        caller.authority.ensure_holds(&gained)?;
        let (user, removed) = self.users.set_roles(user_id, roles).await?;
        let sign_ins_ended = if removed.is_empty() {
            0
        } else {
            self.sign_ins
                .end_all(&user.id, "roles_removed")
                .await?
                .len()
        };
        caller
            .record(
                &self.audit,
                EventType::UserRolesChanged,
                json!({
                    "user_id": user.id, "roles": user.roles, "added": added,
                    "removed": removed, "sign_ins_ended": sign_ins_ended,
                    "administrative": administrative_in(&gained),
                }),
            )
            .await;
        Ok(RolesChanged {
            user,
            removed,
            sign_ins_ended,
        })
    }

    /// Disables a user and ends all their sign-ins.
    pub async fn disable(&self, caller: &Caller, user_id: &str) -> Result<User, OpError> {
        let user = self.users.set_disabled(user_id, true).await?;
        let ended = self
            .sign_ins
            .end_all(&user.id, "user_disabled")
            .await?
            .len();
        caller
            .record(
                &self.audit,
                EventType::UserDisabled,
                json!({"user_id": user.id, "sign_ins_ended": ended}),
            )
            .await;
        Ok(user)
    }

    /// Enables a user: gives their roles' power back, so only to a caller who holds it.
    pub async fn enable(&self, caller: &Caller, user_id: &str) -> Result<User, OpError> {
        let target = self.users.get(user_id).await?;
        caller
            .authority
            .ensure_holds(&self.users.permissions(&target.roles).await?)?;
        let user = self.users.set_disabled(user_id, false).await?;
        caller
            .record(
                &self.audit,
                EventType::UserEnabled,
                json!({"user_id": user.id}),
            )
            .await;
        Ok(user)
    }

    /// Lifts every lock and address block on the account and forgets past locks.
    pub async fn unlock(&self, caller: &Caller, user_id: &str) -> Result<User, OpError> {
        let user = self.users.get(user_id).await?;
        self.lockout.unlock(&user.id).await?;
        caller
            .record(
                &self.audit,
                EventType::AccountUnlocked,
                json!({"user_id": user.id}),
            )
            .await;
        Ok(user)
    }

    /// Every role with its permissions.
    pub async fn roles(&self) -> Result<Vec<Role>, OpError> {
        Ok(self.roles.list().await?)
    }

    /// Replaces a role's permissions; the permissions added must be held by the caller.
    /// Holders lose removed permissions at their next sign-in or refresh.
    pub async fn set_role_permissions(
        &self,
        caller: &Caller,
        role: &str,
        permissions: &[String],
    ) -> Result<Role, OpError> {
        let before = self.roles.get(role).await?;
        let known = permission_scopes();
        if let Some(unknown) = permissions.iter().find(|p| !known.contains(p)) {
            return Err(crate::rbac::RoleError::UnknownPermission(unknown.clone()).into());
        }
        let added = Scope::from_tokens(permissions.iter().map(String::as_str))
            .minus(&Scope::from_tokens(before.permissions));
        caller.authority.ensure_holds(&added)?;
        let (updated, removed) = self.roles.set_permissions(role, permissions).await?;
        caller
            .record(
                &self.audit,
                EventType::RolePermissionsChanged,
                json!({
                    "role": updated.name, "permissions": updated.permissions, "removed": removed,
                    "administrative": administrative_in(&added),
                }),
            )
            .await;
        Ok(updated)
    }

    /// Sets whether holders of `role` must have MFA on (audited when it changes).
    pub async fn set_role_mfa(
        &self,
        caller: &Caller,
        role: &str,
        required: bool,
    ) -> Result<Role, OpError> {
        let (updated, changed) = self.roles.set_require_mfa(role, required).await?;
        if changed {
            caller
                .record(
                    &self.audit,
                    EventType::RoleMfaChanged,
                    json!({"role": updated.name, "require_mfa": required}),
                )
                .await;
        }
        Ok(updated)
    }

    /// Adds (`grant`) or removes one permission of a role.
    pub async fn change_role_permission(
        &self,
        caller: &Caller,
        role: &str,
        permission: &str,
        grant: bool,
    ) -> Result<Role, OpError> {
        let mut wanted = self.roles.get(role).await?.permissions;
        if grant {
            wanted.push(permission.to_string());
        } else {
            wanted.retain(|p| p != permission);
        }
        self.set_role_permissions(caller, role, &wanted).await
    }
}
