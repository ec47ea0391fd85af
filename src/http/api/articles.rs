//! `/api/v1/articles`: the HTTP face of the articles resource. Every operation is guarded by
//! [`Require`] with the permission it needs; editing and deleting also need the caller to own
//! the article or be an admin ([`Require::owns_or_admin`]), checked after the article is found
//! so that a caller learns nothing beyond what `articles:read` already tells them.

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};

use crate::articles::{Article, ArticleError, ArticleService, Body, Cursor, PageSize, Title};
use crate::audit::{Audit, Event, EventType, Outcome};
use crate::http::auth::ApiScopes;
use crate::http::guard::{ArticlesDelete, ArticlesRead, ArticlesWrite, Permission, Require};
use crate::http::origin::origin;
use crate::http::problem::{ApiError, NoContent};
use crate::http::tags::ApiTags;

/// A new article.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewArticle {
    /// 1–200 characters without control characters; surrounding whitespace is trimmed.
    pub title: String,
    /// 1 character to 100 KiB (102,400 bytes of UTF-8).
    pub body: String,
}

/// Changes to an article; absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ArticlePatch {
    /// New title (same rules as on creation).
    pub title: Option<String>,
    /// New body (same rules as on creation).
    pub body: Option<String>,
}

/// An article.
#[derive(Debug, Object)]
pub struct ArticleView {
    /// Article id (a UUID).
    pub id: String,
    /// Id of the user who wrote it, its owner.
    pub author_id: String,
    pub title: String,
    pub body: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

impl From<Article> for ArticleView {
    fn from(a: Article) -> Self {
        Self {
            id: a.id,
            author_id: a.author_id,
            title: a.title,
            body: a.body,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// One page of articles, newest first.
#[derive(Debug, Object)]
pub struct ArticlePage {
    pub items: Vec<ArticleView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum CreateResponse {
    /// The article was created; the caller owns it.
    #[oai(status = 201)]
    Created(Json<ArticleView>, #[oai(header = "Location")] String),
}

fn article_error(e: ArticleError) -> ApiError {
    match e {
        ArticleError::NotFound => ApiError::not_found("no such article"),
        other => ApiError::internal(&other),
    }
}

/// An audit event for an article, naming who acted (the user, or the client for itself).
fn event<P: Permission>(kind: EventType, auth: &Require<P>, details: Value) -> Event {
    let (user, client) = auth.actor();
    let event = Event::new(kind, Outcome::Success)
        .client(client)
        .details(details);
    match user {
        Some(user) => event.actor(user),
        None => event,
    }
}

pub struct ArticlesApi;

#[OpenApi(prefix_path = "/api/v1/articles", tag = "ApiTags::Articles")]
impl ArticlesApi {
    /// List articles, newest first
    ///
    /// Pages through all articles with an opaque cursor: pass the `next_cursor` of one page
    /// as `cursor` to get the next; the last page has none.
    #[oai(path = "/", method = "get", operation_id = "list_articles")]
    async fn list(
        &self,
        articles: &ArticleService,
        #[oai(scope = "ApiScopes::ARTICLES_READ")] _auth: Require<ArticlesRead>,
        /// Articles per page, 1–100 (default 20).
        limit: Query<Option<i64>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<ArticlePage>, ApiError> {
        let size = PageSize::parse(limit.0)?;
        let cursor = cursor.0.as_deref().map(Cursor::parse).transpose()?;
        let page = articles
            .list(cursor.as_ref(), size)
            .await
            .map_err(article_error)?;
        Ok(Json(ArticlePage {
            items: page.items.into_iter().map(ArticleView::from).collect(),
            next_cursor: page.next_cursor.map(|c| c.encode()),
        }))
    }

    /// One article
    #[oai(path = "/:id", method = "get", operation_id = "get_article")]
    async fn get(
        &self,
        articles: &ArticleService,
        #[oai(scope = "ApiScopes::ARTICLES_READ")] _auth: Require<ArticlesRead>,
        /// Article id.
        id: Path<String>,
    ) -> Result<Json<ArticleView>, ApiError> {
        let article = articles.get(&id.0).await.map_err(article_error)?;
        Ok(Json(article.into()))
    }

    /// Write an article
    ///
    /// Needs a token issued to a user (the `author` role grants `articles:write`); the user
    /// becomes the article's owner.
    #[oai(path = "/", method = "post", operation_id = "create_article")]
    async fn create(
        &self,
        articles: &ArticleService,
        audit: &Audit,
        req: &Request,
        #[oai(scope = "ApiScopes::ARTICLES_WRITE")] auth: Require<ArticlesWrite>,
        body: Json<NewArticle>,
    ) -> Result<CreateResponse, ApiError> {
        let author_id = auth.user_id()?;
        let title = Title::parse(&body.title)?;
        let text = Body::parse(&body.body)?;
        let article = articles
            .create(author_id, &title, &text)
            .await
            .map_err(article_error)?;
        audit
            .record(
                &origin(req),
                event(
                    EventType::ArticleCreated,
                    &auth,
                    json!({"article_id": article.id}),
                ),
            )
            .await;
        let location = format!("/api/v1/articles/{}", article.id);
        Ok(CreateResponse::Created(Json(article.into()), location))
    }

    /// Edit an article
    ///
    /// Only its owner or an admin may.
    #[oai(path = "/:id", method = "patch", operation_id = "update_article")]
    async fn update(
        &self,
        articles: &ArticleService,
        audit: &Audit,
        req: &Request,
        #[oai(scope = "ApiScopes::ARTICLES_WRITE")] auth: Require<ArticlesWrite>,
        /// Article id.
        id: Path<String>,
        body: Json<ArticlePatch>,
    ) -> Result<Json<ArticleView>, ApiError> {
        let title = body.title.as_deref().map(Title::parse).transpose()?;
        let text = body.body.as_deref().map(Body::parse).transpose()?;
        let article = articles.get(&id.0).await.map_err(article_error)?;
        auth.owns_or_admin(&article.author_id)?;
        let changed: Vec<&str> = [
            title.as_ref().map(|_| "title"),
            text.as_ref().map(|_| "body"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let article = articles
            .update(&article.id, title.as_ref(), text.as_ref())
            .await
            .map_err(article_error)?;
        if !changed.is_empty() {
            audit
                .record(
                    &origin(req),
                    event(
                        EventType::ArticleUpdated,
                        &auth,
                        json!({
                            "article_id": article.id,
                            "author_id": article.author_id,
                            "fields": changed,
                        }),
                    ),
                )
                .await;
        }
        Ok(Json(article.into()))
    }

    /// Delete an article
    ///
    /// Only its owner (with `articles:delete`) or an admin may.
    #[oai(path = "/:id", method = "delete", operation_id = "delete_article")]
    async fn delete(
        &self,
        articles: &ArticleService,
        audit: &Audit,
        req: &Request,
        #[oai(scope = "ApiScopes::ARTICLES_DELETE")] auth: Require<ArticlesDelete>,
        /// Article id.
        id: Path<String>,
    ) -> Result<NoContent, ApiError> {
        let article = articles.get(&id.0).await.map_err(article_error)?;
        auth.owns_or_admin(&article.author_id)?;
        articles.delete(&article.id).await.map_err(article_error)?;
        audit
            .record(
                &origin(req),
                event(
                    EventType::ArticleDeleted,
                    &auth,
                    json!({"article_id": article.id, "author_id": article.author_id}),
                ),
            )
            .await;
        Ok(NoContent::NoContent)
    }
}
