//! A per-instance cache of the role table: which permissions each role grants and which
//! roles require two-factor authentication, read by every grant that issues user tokens.
//!
//! The whole table is read at once (a handful of rows) and kept for at most the key reload
//! interval; the instance where an administrator changes a role drops it at once
//! (`RoleService` calls [`RoleCache::invalidate`] after the change committed), so every
//! other instance issues tokens from a table at most one reload interval old, the bound
//! within which every instance also sees ended sign-ins and new keys. A reader never blocks
//! on a load; a load that began before an invalidation is not kept.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use entities::{role_permissions, roles};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

use crate::clock::SharedClock;
use crate::domain::Scope;

/// The role table as read at one moment.
#[derive(Debug, Default)]
pub struct RoleTable {
    grants: HashMap<String, Vec<String>>,
    require_mfa: HashSet<String>,
}

impl RoleTable {
    /// The permissions `roles` grant together.
    pub fn permissions(&self, roles: &[String]) -> Scope {
        Scope::from_tokens(
            roles
                .iter()
                .filter_map(|r| self.grants.get(r))
                .flatten()
                .map(String::as_str),
        )
    }

    /// Whether any of `roles` requires two-factor authentication.
    pub fn requires_mfa(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.require_mfa.contains(r))
    }
}

struct Cached {
    loaded_at: i64,
    table: Arc<RoleTable>,
}

#[derive(Clone)]
pub struct RoleCache {
    db: DatabaseConnection,
    clock: SharedClock,
    max_age_secs: i64,
    cached: Arc<RwLock<Option<Cached>>>,
    /// Bumped by every invalidation; a load keeps its result only if it did not move.
    generation: Arc<AtomicU64>,
}

impl RoleCache {
    /// A cache whose table is at most `max_age` old (the key reload interval).
    pub fn new(db: DatabaseConnection, clock: SharedClock, max_age: Duration) -> Self {
        Self {
            db,
            clock,
            max_age_secs: i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
            cached: Arc::new(RwLock::new(None)),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The role table, read from the database when none is kept or it is too old.
    pub async fn table(&self) -> Result<Arc<RoleTable>, DbErr> {
        let now = self.clock.now();
        if let Some(cached) = self
            .cached
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && now.saturating_sub(cached.loaded_at) < self.max_age_secs
            && cached.loaded_at <= now
        {
            return Ok(cached.table.clone());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let table = Arc::new(self.load().await?);
        let mut slot = self
            .cached
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) == generation {
            *slot = Some(Cached {
                loaded_at: now,
                table: table.clone(),
            });
        }
        Ok(table)
    }

    /// Drops the kept table: the next reader reads the database.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self
            .cached
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    async fn load(&self) -> Result<RoleTable, DbErr> {
        let mut table = RoleTable::default();
        for grant in role_permissions::Entity::find().all(&self.db).await? {
            table
                .grants
                .entry(grant.role)
                .or_default()
                .push(grant.permission);
        }
        table.require_mfa = roles::Entity::find()
            .filter(roles::Column::RequireMfa.eq(true))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        Ok(table)
    }
}
