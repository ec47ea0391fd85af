//! Roles as data: which permissions each role grants, changeable by administrators.

use std::collections::BTreeMap;

use entities::{permissions, role_permissions, roles};

use super::cache::RoleCache;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("no such role `{0}`")]
    UnknownRole(String),
    #[error("no such permission `{0}`")]
    UnknownPermission(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// A role and the permissions it grants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    /// Holders must have two-factor authentication on before they may use the API.
    pub require_mfa: bool,
}

#[derive(Clone)]
pub struct RoleService {
    db: DatabaseConnection,
    /// This instance's cache of the role table, dropped after every change.
    cache: RoleCache,
}

impl RoleService {
    pub fn new(db: DatabaseConnection, cache: RoleCache) -> Self {
        Self { db, cache }
    }

    pub async fn list(&self) -> Result<Vec<Role>, RoleError> {
        let mut grants: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for g in role_permissions::Entity::find()
            .order_by_asc(role_permissions::Column::Permission)
            .all(&self.db)
            .await?
        {
            grants.entry(g.role).or_default().push(g.permission);
        }
        Ok(roles::Entity::find()
            .order_by_asc(roles::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| Role {
                permissions: grants.remove(&r.name).unwrap_or_default(),
                name: r.name,
                description: r.description,
                require_mfa: r.require_mfa,
            })
            .collect())
    }

    pub async fn get(&self, name: &str) -> Result<Role, RoleError> {
        self.list()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| RoleError::UnknownRole(name.to_string()))
    }

    /// Sets whether holders of `role` must have MFA on. Returns the role and whether the flag
    /// changed.
    pub async fn set_require_mfa(
        &self,
        role: &str,
        required: bool,
    ) -> Result<(Role, bool), RoleError> {
        let before = self.get(role).await?;
        roles::Entity::update_many()
            .col_expr(roles::Column::RequireMfa, Expr::value(required))
            .filter(roles::Column::Name.eq(role))
            .exec(&self.db)
            .await?;
        self.cache.invalidate();
        Ok((self.get(role).await?, before.require_mfa != required))
    }

    /// Replaces the permissions of `role`. Returns the role and the permissions removed.
    pub async fn set_permissions(
        &self,
        role: &str,
        wanted: &[String],
    ) -> Result<(Role, Vec<String>), RoleError> {
        let txn = crate::db::begin_write(&self.db).await?;
        // The role row is written first: concurrent changes of one role queue on its lock
        // (PostgreSQL) instead of each replacing rows the other cannot see yet.
        let found = roles::Entity::update_many()
            .col_expr(roles::Column::Name, Expr::col(roles::Column::Name))
            .filter(roles::Column::Name.eq(role))
            .exec(&txn)
            .await?;
        if found.rows_affected != 1 {
            return Err(RoleError::UnknownRole(role.to_string()));
        }
        for p in wanted {
            if permissions::Entity::find_by_id(p.clone())
                .one(&txn)
                .await?
                .is_none()
            {
                return Err(RoleError::UnknownPermission(p.clone()));
            }
        }
        let before: Vec<String> = role_permissions::Entity::find()
            .filter(role_permissions::Column::Role.eq(role))
            .all(&txn)
            .await?
            .into_iter()
            .map(|g| g.permission)
            .collect();
        role_permissions::Entity::delete_many()
            .filter(role_permissions::Column::Role.eq(role))
            .exec(&txn)
            .await?;
        let mut unique: Vec<&String> = wanted.iter().collect();
        unique.sort();
        unique.dedup();
        for p in &unique {
            role_permissions::ActiveModel {
                role: Set(role.to_string()),
                permission: Set((*p).clone()),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        self.cache.invalidate();
        let removed = before.into_iter().filter(|p| !wanted.contains(p)).collect();
        Ok((self.get(role).await?, removed))
    }
}
