//! Readiness: whether the database and the store answer (for `/readyz`).

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::store::Store;

/// What readiness found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub database: bool,
    pub store: bool,
}

#[derive(Clone)]
pub struct Readiness {
    db: DatabaseConnection,
    store: Arc<dyn Store>,
}

impl Readiness {
    pub fn new(db: DatabaseConnection, store: Arc<dyn Store>) -> Self {
        Self { db, store }
    }

    /// Asks the database and the store once each; failures are logged.
    pub async fn check(&self) -> Ready {
        let db = self.db.execute_unprepared("SELECT 1").await;
        let store = self.store.ping().await;
        if let Err(e) = &db {
            tracing::warn!(error = %e, "readiness: database unreachable");
        }
        if let Err(e) = &store {
            tracing::warn!(error = %e, "readiness: store unreachable");
        }
        Ready {
            database: db.is_ok(),
            store: store.is_ok(),
        }
    }
}
