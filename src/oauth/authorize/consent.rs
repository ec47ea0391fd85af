//! Consent: the scopes a user granted a client on the consent page, remembered per user and
//! client until the user withdraws them. First-party clients are not asked (see `clients`).

use entities::consents;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::clock::SharedClock;
use crate::domain::Scope;

/// A remembered consent.
#[derive(Debug, Clone)]
pub struct Consent {
    pub client_id: String,
    pub scope: Scope,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone)]
pub struct Consents {
    db: DatabaseConnection,
    clock: SharedClock,
}

impl Consents {
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> Self {
        Self { db, clock }
    }

    /// The scopes `user_id` granted `client_id` (empty when none).
    pub async fn granted(&self, user_id: &str, client_id: &str) -> Result<Scope, sea_orm::DbErr> {
        Ok(
            consents::Entity::find_by_id((user_id.to_string(), client_id.to_string()))
                .one(&self.db)
                .await?
                .map(|c| Scope::parse(&c.scope).unwrap_or_default())
                .unwrap_or_default(),
        )
    }

    /// Adds `scope` to what `user_id` granted `client_id`.
    pub async fn remember(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &Scope,
    ) -> Result<(), sea_orm::DbErr> {
        let now = self.clock.now();
        let all = self.granted(user_id, client_id).await?.union(scope);
        consents::Entity::insert(consents::ActiveModel {
            user_id: Set(user_id.to_string()),
            client_id: Set(client_id.to_string()),
            scope: Set(all.to_string()),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([consents::Column::UserId, consents::Column::ClientId])
                .update_columns([consents::Column::Scope, consents::Column::UpdatedAt])
                .to_owned(),
        )
        .exec(&self.db)
        .await?;
        Ok(())
    }

    /// Every consent `user_id` gave, by client.
    pub async fn list(&self, user_id: &str) -> Result<Vec<Consent>, sea_orm::DbErr> {
        Ok(consents::Entity::find()
            .filter(consents::Column::UserId.eq(user_id))
            .order_by_asc(consents::Column::ClientId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|c| Consent {
                scope: Scope::parse(&c.scope).unwrap_or_default(),
                client_id: c.client_id,
                created_at: c.created_at,
                updated_at: c.updated_at,
            })
            .collect())
    }

    /// Forgets what `user_id` granted `client_id`. Returns whether there was a consent.
    pub async fn withdraw(&self, user_id: &str, client_id: &str) -> Result<bool, sea_orm::DbErr> {
        Ok(
            consents::Entity::delete_by_id((user_id.to_string(), client_id.to_string()))
                .exec(&self.db)
                .await?
                .rows_affected
                == 1,
        )
    }
}
