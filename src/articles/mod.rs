//! Articles: the demonstration resource of the authorization model (README, "Authorization
//! model"). Anyone with `articles:read` reads, an `author` creates, only an article's own
//! author (or an `admin`) edits or deletes it. This module holds the typed inputs ([`Title`],
//! [`Body`], [`PageSize`], [`Cursor`]) and [`ArticleService`], which owns every query on the
//! `articles` table; the HTTP operations are in [`api`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entities::articles;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use crate::clock::SharedClock;
use crate::domain::Invalid;
pub use crate::domain::PageSize;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Largest body, in bytes of UTF-8 (100 KiB).
pub const MAX_BODY_BYTES: usize = 100 * 1024;
/// Longest cursor accepted: far more than any cursor this server hands out
/// (`i64` seconds, `:`, a 36-character UUID, base64url-encoded).
const MAX_CURSOR_CHARS: usize = 128;

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

/// An article title: 1–200 characters after trimming surrounding whitespace, no control
/// characters. Stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        let len = trimmed.chars().count();
        if !(1..=MAX_TITLE_CHARS).contains(&len) {
            return Err(invalid(
                "title",
                format!("must be 1 to {MAX_TITLE_CHARS} characters"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(invalid("title", "must not contain control characters"));
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An article body: at least one character and at most 100 KiB (102,400 bytes of UTF-8), with
/// no NUL character (PostgreSQL cannot store one in text). Line breaks and tabs are allowed;
/// the text is kept exactly as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(String);

impl Body {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(invalid("body", "must not be empty"));
        }
        if raw.len() > MAX_BODY_BYTES {
            return Err(invalid(
                "body",
                format!("must be at most {MAX_BODY_BYTES} bytes"),
            ));
        }
        if raw.contains('\0') {
            return Err(invalid("body", "must not contain NUL characters"));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a page ends in the listing order (newest first): the sort key of its last article.
/// Opaque to callers: base64url (no padding) of `"<created_at>:<id>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    created_at: i64,
    id: String,
}

impl Cursor {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let bad = || invalid("cursor", "is not a cursor this server handed out");
        if raw.len() > MAX_CURSOR_CHARS {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (created_at, id) = text.split_once(':').ok_or_else(bad)?;
        let created_at = created_at.parse::<i64>().map_err(|_| bad())?;
        let id = uuid::Uuid::try_parse(id).map_err(|_| bad())?;
        Ok(Self {
            created_at,
            id: id.hyphenated().to_string(),
        })
    }

    fn after(article: &Article) -> Self {
        Self {
            created_at: article.created_at,
            id: article.id.clone(),
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.created_at, self.id))
    }
}

/// An article as the rest of the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    pub id: String,
    pub author_id: String,
    pub title: String,
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<articles::Model> for Article {
    fn from(m: articles::Model) -> Self {
        Self {
            id: m.id,
            author_id: m.author_id,
            title: m.title,
            body: m.body,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// One page of the listing, and where the next one starts (absent on the last page).
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Article>,
    pub next_cursor: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArticleError {
    #[error("no such article")]
    NotFound,
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

#[derive(Clone)]
pub struct ArticleService {
    db: DatabaseConnection,
    clock: SharedClock,
}

impl ArticleService {
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> Self {
        Self { db, clock }
    }

    /// Articles newest first, `size` at a time, starting after `cursor`. Keyset pagination on
    /// (created_at DESC, id DESC), so pages neither skip nor repeat articles when others are
    /// added meanwhile, and a deep page costs what the first one does.
    #[tracing::instrument(skip_all, fields(limit = size.get()))]
    pub async fn list(
        &self,
        cursor: Option<&Cursor>,
        size: PageSize,
    ) -> Result<Page, ArticleError> {
        let mut query = articles::Entity::find()
            .order_by_desc(articles::Column::CreatedAt)
            .order_by_desc(articles::Column::Id)
            // One more than asked tells whether another page follows.
            .limit(size.get() + 1);
        if let Some(c) = cursor {
            query = query.filter(
                Condition::any()
                    .add(articles::Column::CreatedAt.lt(c.created_at))
                    .add(
                        Condition::all()
                            .add(articles::Column::CreatedAt.eq(c.created_at))
                            .add(articles::Column::Id.lt(c.id.clone())),
                    ),
            );
        }
        let mut items: Vec<Article> = query
            .all(&self.db)
            .await?
            .into_iter()
            .map(Article::from)
            .collect();
        let more = items.len() as u64 > size.get();
        items.truncate(usize::try_from(size.get()).unwrap_or(usize::MAX));
        let next_cursor = if more {
            items.last().map(Cursor::after)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// The article with this id; `NotFound` also for ids that are not UUIDs.
    pub async fn get(&self, id: &str) -> Result<Article, ArticleError> {
        let id = canonical_id(id).ok_or(ArticleError::NotFound)?;
        articles::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(Article::from)
            .ok_or(ArticleError::NotFound)
    }

    /// Creates an article owned by `author_id`.
    #[tracing::instrument(skip_all)]
    pub async fn create(
        &self,
        author_id: &str,
        title: &Title,
        body: &Body,
    ) -> Result<Article, ArticleError> {
        let now = self.clock.now();
        let row = articles::ActiveModel {
            id: Set(uuid::Uuid::new_v4().to_string()),
            author_id: Set(author_id.to_string()),
            title: Set(title.as_str().to_string()),
            body: Set(body.as_str().to_string()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        Ok(row.insert(&self.db).await?.into())
    }

    /// Changes the given fields; nothing given changes nothing (not even `updated_at`).
    #[tracing::instrument(skip_all)]
    pub async fn update(
        &self,
        id: &str,
        title: Option<&Title>,
        body: Option<&Body>,
    ) -> Result<Article, ArticleError> {
        let id = canonical_id(id).ok_or(ArticleError::NotFound)?;
        let row = articles::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or(ArticleError::NotFound)?;
        if title.is_none() && body.is_none() {
            return Ok(row.into());
        }
        let mut active: articles::ActiveModel = row.into();
        if let Some(title) = title {
            active.title = Set(title.as_str().to_string());
        }
        if let Some(body) = body {
            active.body = Set(body.as_str().to_string());
        }
        active.updated_at = Set(self.clock.now());
        match active.update(&self.db).await {
            Ok(row) => Ok(row.into()),
            // Deleted between the read and the write.
            Err(sea_orm::DbErr::RecordNotUpdated) => Err(ArticleError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the article; `NotFound` when there was none.
    #[tracing::instrument(skip_all)]
    pub async fn delete(&self, id: &str) -> Result<(), ArticleError> {
        let id = canonical_id(id).ok_or(ArticleError::NotFound)?;
        let result = articles::Entity::delete_by_id(id).exec(&self.db).await?;
        if result.rows_affected == 0 {
            return Err(ArticleError::NotFound);
        }
        Ok(())
    }
}

/// Article ids are lowercase hyphenated UUIDs; anything else names no article (and is never
/// sent to the database).
fn canonical_id(raw: &str) -> Option<String> {
    if raw.len() != 36 {
        return None;
    }
    let id = uuid::Uuid::try_parse(raw).ok()?.hyphenated().to_string();
    (id == raw).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(Title::parse("  Hello  ").unwrap().as_str(), "Hello");
        assert!(Title::parse(&"é".repeat(200)).is_ok());
        for bad in ["", "   ", "a\u{7}b", "a\nb", "a\u{0}b"] {
            assert_eq!(Title::parse(bad).unwrap_err().field, "title", "{bad:?}");
        }
        assert!(Title::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn bodies() {
        assert!(Body::parse("line one\n\tline two").is_ok());
        assert!(Body::parse(&"x".repeat(MAX_BODY_BYTES)).is_ok());
        // Bytes, not characters, count: 51,201 two-byte characters are over the limit.
        assert!(Body::parse(&"é".repeat(MAX_BODY_BYTES / 2 + 1)).is_err());
        assert!(Body::parse(&"x".repeat(MAX_BODY_BYTES + 1)).is_err());
        assert!(Body::parse("").is_err());
        assert!(Body::parse("a\0b").is_err());
    }

    #[test]
    fn page_sizes() {
        assert_eq!(PageSize::parse(None).unwrap().get(), 20);
        assert_eq!(PageSize::parse(Some(1)).unwrap().get(), 1);
        assert_eq!(PageSize::parse(Some(100)).unwrap().get(), 100);
        for bad in [0, 101, -1, i64::MIN, i64::MAX] {
            assert_eq!(PageSize::parse(Some(bad)).unwrap_err().field, "limit");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let id = uuid::Uuid::new_v4().to_string();
        let cursor = Cursor {
            created_at: 1_700_000_000,
            id: id.clone(),
        };
        assert_eq!(Cursor::parse(&cursor.encode()).unwrap(), cursor);
        let encode = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            String::new(),
            "!!!".into(),
            encode("1700000000"),
            encode(&format!("x:{id}")),
            encode("1700000000:not-a-uuid"),
            encode(&format!("1700000000:{id}:extra")),
            "A".repeat(MAX_CURSOR_CHARS + 1),
        ] {
            assert_eq!(Cursor::parse(&bad).unwrap_err().field, "cursor", "{bad:?}");
        }
    }

    #[test]
    fn ids_must_be_canonical_uuids() {
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(canonical_id(&id), Some(id.clone()));
        assert_eq!(canonical_id(&id.to_uppercase()), None);
        assert_eq!(canonical_id("nope"), None);
        assert_eq!(canonical_id(&id.replace('-', "")), None);
    }
}
