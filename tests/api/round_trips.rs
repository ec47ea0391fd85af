//! Round trips per request on the token endpoint's hot paths and introspection, counted (not
//! timed): every statement the database connection sends (sea-orm's statement callback,
//! `AppState::db_statements`) and every call made to the store (`AppState::store_calls`, one
//! Redis command, pipeline or script each). The audit row of a request is written off the
//! request path in batches; it is flushed before counting, so it is counted here as the one
//! statement it costs when a request is alone. Transactions add a `BEGIN` and a `COMMIT`,
//! which sea-orm does not report: the budgets below name them. A script (several statements
//! sent to SQLite's connection thread as one, `db::WarmPool::script`) counts once.
//!
//! The budgets, per request (statements + store calls; transactions named apart):
//!
//! | request | embedded SQLite | PostgreSQL + Redis | before (SQLite) |
//! |---|---|---|---|
//! | refresh | 3 (a script holds the transaction) | 3 (no transaction) | 11 (one transaction) |
//! | password grant (besides bcrypt) | 3 + 2 (a script holds the transaction) | 3 + 2 | 12 + 2 (one transaction) |
//! | code exchange | 3 (a script holds the transaction) | 3 | 14 (one transaction) |
//! | authorization request of a signed-in browser | 3 | 3 | 5 |
//! | client_credentials | 0 | 0 | 0 |
//! | introspection | 0 + 1 | 0 + 1 | 0 + 1 |
//!
//! These run with rate limits off. With them on (the default), the token endpoint adds a
//! store call for the address's budget, before anything reaches the database
//! ([`an_address_over_its_budget_sends_nothing_to_the_database`]), and one for a
//! confidential client's after it is authenticated.
//!
//! Each figure is the least of a few identical requests, so that nothing running beside
//! (there are no background duties within the test: the reload interval is five minutes)
//! could make a count pass; a count can only grow from what runs beside it.

use reqwest::StatusCode;

use super::browser_support::{Browser, Page, authorize_url, pkce};
use super::helpers::*;
use portcullis::clients::GrantType;
use portcullis::config::DurationSetting;
use sea_orm::sea_query::{PostgresQueryBuilder, QueryBuilder};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

/// Round trips of one request: (database statements, store calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Trips {
    db: u64,
    store: u64,
}

async fn quiet_app() -> TestApp {
    spawn_app_with(|raw| {
        // No duty pass during a test: the first comes one interval after start.
        raw.key_reload_interval = DurationSetting::Seconds(300);
    })
    .await
}

/// Counts the round trips of `request`, with its audit row flushed.
async fn count<F, Fut>(app: &TestApp, request: F) -> Trips
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    app.state.audit.flush().await;
    let (db, store) = (app.state.db_statements.get(), app.state.store_calls.get());
    request().await;
    app.state.audit.flush().await;
    Trips {
        db: app.state.db_statements.get() - db,
        store: app.state.store_calls.get() - store,
    }
}

const fn trips(db: u64, store: u64) -> Trips {
    Trips { db, store }
}

fn least(counts: &[Trips]) -> Trips {
    Trips {
        db: counts.iter().map(|t| t.db).min().unwrap(),
        store: counts.iter().map(|t| t.store).min().unwrap(),
    }
}

async fn bench_client(app: &TestApp) -> Confidential {
    app.confidential_client(
        "bench",
        &[
            GrantType::Password,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ],
        "articles:read",
    )
    .await
}

/// The least round trips of three client_credentials requests by `client`.
async fn client_credentials_trips(app: &TestApp, client: &Confidential) -> Trips {
    let mut counts = Vec::new();
    for _ in 0..3 {
        counts.push(
            count(app, || async {
                let answer = app
                    .post_form_basic(
                        "/oauth/token",
                        client,
                        &[("grant_type", "client_credentials")],
                    )
                    .await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            })
            .await,
        );
    }
    least(&counts)
}

async fn password(app: &TestApp, client: &Confidential) -> Answer {
    let answer = app
        .post_form_basic(
            "/oauth/token",
            client,
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("scope", "articles:read"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer
}

/// A refresh by `client` with `token`; answered 200.
async fn refresh(app: &TestApp, client: &Confidential, token: &str) -> Answer {
    let answer = app
        .post_form_basic(
            "/oauth/token",
            client,
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer
}

/// The authorization request of the code app (`TestApp::code_app`) in `browser`, and the
/// verifier of its code.
async fn authorize(browser: &mut Browser<'_>) -> (Page, String) {
    let (verifier, challenge) = pkce();
    let query = authorize_url(&[
        ("response_type", "code"),
        ("client_id", "app"),
        ("redirect_uri", CODE_APP_CB),
        ("scope", "openid profile email"),
        ("state", "st"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    (browser.get(&query).await, verifier)
}

/// The code app's exchange of `code`; answered 200.
async fn exchange(app: &TestApp, code: &str, verifier: &str) -> Answer {
    let answer = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "app"),
                ("code", code),
                ("redirect_uri", CODE_APP_CB),
                ("code_verifier", verifier),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer
}

#[tokio::test]
async fn a_refresh_takes_its_budget_of_round_trips() {
    let app = quiet_app().await;
    app.register("alice").await;
    let client = bench_client(&app).await;
    let mut token = password(&app, &client).await.str("refresh_token");
    let mut counts = Vec::new();
    for _ in 0..3 {
        let mut next = String::new();
        counts.push(
            count(&app, || async {
                next = refresh(&app, &client, &token).await.str("refresh_token");
            })
            .await,
        );
        token = next;
    }
    let trips = least(&counts);
    println!("refresh: {trips:?}");
    // The lookup (token, family, user and roles in one statement); the rotation (PostgreSQL:
    // one statement; embedded: one script, `BEGIN IMMEDIATE`, the family row, the rotation,
    // the successor, `COMMIT`, sent to the connection's thread as one); the audit row.
    assert_eq!(trips, self::trips(3, 0), "refresh");
}

#[tokio::test]
async fn the_other_grants_and_introspection_take_their_budgets_of_round_trips() {
    let app = quiet_app().await;
    app.register("alice").await;
    let client = bench_client(&app).await;

    let mut counts = Vec::new();
    for _ in 0..3 {
        counts.push(
            count(&app, || async {
                password(&app, &client).await;
            })
            .await,
        );
    }
    let pw = least(&counts);
    println!("password: {pw:?}");

    let mut access = String::new();
    let cc = client_credentials_trips(&app, &client).await;
    println!("client_credentials: {cc:?}");

    let user_token = password(&app, &client).await.str("access_token");
    let mut counts = Vec::new();
    for _ in 0..3 {
        counts.push(
            count(&app, || async {
                let answer = app.introspect(&client, &user_token).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
                assert_eq!(answer.body["active"], true, "{}", answer.body);
                access = answer.str("sub");
            })
            .await,
        );
    }
    let introspection = least(&counts);
    println!("introspection: {introspection:?}");

    assert_eq!(
        (pw, cc, introspection),
        (
            // The account (with roles, MFA and pending reset links) in one statement; the
            // sign-in recorded (one script on SQLite, one statement on PostgreSQL); the audit
            // row. The store: the lockout attempt before bcrypt, its forgiveness after.
            trips(3, 2),
            // The client is kept in memory; nothing is audited.
            trips(0, 0),
            // One deny-list check for the token's jti, sid and kid together.
            trips(0, 1),
        )
    );
}

#[tokio::test]
async fn a_code_exchange_takes_its_budget_of_round_trips() {
    let app = quiet_app().await;
    app.register("alice").await;
    app.code_app().await;
    let mut browser = Browser::new(&app);
    let mut counts = Vec::new();
    let mut authorizations = Vec::new();
    for round in 0..3 {
        let mut asked = None;
        let trips = count(&app, || async {
            asked = Some(authorize(&mut browser).await);
        })
        .await;
        let (mut page, verifier) = asked.expect("a page");
        if round == 0 {
            let back = browser.sign_in_at(&page, "alice").await;
            assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
            page = browser.get(back.location.as_deref().unwrap()).await;
        } else {
            authorizations.push(trips);
        }
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let code = page.redirect_param("code").expect("a code");
        counts.push(
            count(&app, || async {
                exchange(&app, &code, &verifier).await;
            })
            .await,
        );
    }
    let authorization = least(&authorizations);
    println!("authorization request: {authorization:?}");
    // Of a signed-in browser: its session (used within the minute, so not written again),
    // the user with roles (their permissions from the role cache), the code stored.
    assert_eq!(authorization, self::trips(3, 0), "authorization request");
    let trips = least(&counts);
    println!("code exchange: {trips:?}");
    // The code read with its user and roles; the code claimed and the sign-in recorded in
    // the session (the code, the user row, the session row, the family, the token: one script
    // on SQLite, one statement on PostgreSQL); the audit row.
    assert_eq!(trips, self::trips(3, 0), "code exchange");
}

/// A round trip is only as cheap as its plan. The statements that look one sign-in up by its
/// id with `revoked_at IS NULL` (every refresh, every sign-in into a browser session) must not
/// be plannable as a scan of every open sign-in: the index on `revoked_at` holds ended
/// sign-ins only. With an index over every row, PostgreSQL planned the sign-in statement
/// through it in most benchmark runs on a new database, and the code exchanges read about
/// 5,600 index entries each (1,095/s against 2,373/s in a run that used the primary key).
#[tokio::test]
async fn the_ended_sign_ins_index_holds_no_open_sign_in() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let app = spawn_app().await;
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => {
            "SELECT sql AS def FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = 'refresh_families' AND sql IS NOT NULL"
        }
        _ => "SELECT indexdef AS def FROM pg_indexes WHERE tablename = 'refresh_families'",
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap();
    let on_revoked_at: Vec<String> = rows
        .iter()
        .map(|row| row.try_get::<String>("", "def").unwrap())
        .filter(|def| def.contains("revoked_at"))
        .collect();
    assert!(
        !on_revoked_at.is_empty(),
        "ended sign-ins are found through an index on revoked_at"
    );
    for definition in &on_revoked_at {
        let normalized = definition.replace(['(', ')', '"'], "").to_lowercase();
        assert!(
            normalized.contains("where revoked_at is not null"),
            "an index holds open sign-ins too: {definition}"
        );
    }
}

/// With rate limits on (the default), an address over its token-endpoint budget is refused
/// before anything reaches the database: authenticating an unknown client id would read it,
/// so the address's budget comes first, in a store call of its own.
#[tokio::test]
async fn an_address_over_its_budget_sends_nothing_to_the_database() {
    let app = spawn_app_with(|raw| {
        raw.key_reload_interval = DurationSetting::Seconds(300);
        raw.rate_limit_enabled = true;
        raw.rate_limit_token_ip = "2/1m".into();
    })
    .await;
    let unknown = |n: usize| Confidential {
        id: format!("no-such-client-{n}"),
        secret: "whatever".into(),
    };
    let cc = [("grant_type", "client_credentials")];
    for n in 0..2 {
        let answer = app.post_form_basic("/oauth/token", &unknown(n), &cc).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    }
    let trips = count(&app, || async {
        let answer = app.post_form_basic("/oauth/token", &unknown(2), &cc).await;
        assert_eq!(
            answer.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            answer.body
        );
    })
    .await;
    println!("token request over the address's budget: {trips:?}");
    assert_eq!(
        trips,
        self::trips(0, 1),
        "the address's budget, and nothing else"
    );
}

/// The plan of every statement of the hot paths, as the database would run it at any size:
/// each finds its rows through an index, never by reading a whole table. The statements are
/// the ones the server sent (kept by `AppState::db_statements`) during a password grant, a
/// refresh, an authorization request of a signed-in browser with its code exchange, and an
/// introspection, after a first round of each warmed the caches. On PostgreSQL each is
/// prepared and explained with its values under a generic plan (`plan_cache_mode =
/// force_generic_plan`, as the server's prepared statements may run after their fifth use)
/// with sequential scans discouraged, so that a scan is left only where no index can serve;
/// on SQLite (whose plans do not depend on the values) each statement of a script is
/// explained as it is.
#[tokio::test]
async fn every_hot_statement_finds_its_rows_through_an_index() {
    let app = quiet_app().await;
    app.register("alice").await;
    let client = bench_client(&app).await;
    app.code_app().await;
    let mut browser = Browser::new(&app);
    let mut token = password(&app, &client).await.str("refresh_token");
    for round in 0..2 {
        if round == 1 {
            app.state.audit.flush().await;
            app.state.db_statements.keep();
            app.state.db_statements.take_kept();
        }
        let access = password(&app, &client).await.str("access_token");
        token = refresh(&app, &client, &token).await.str("refresh_token");
        let (mut page, verifier) = authorize(&mut browser).await;
        if round == 0 {
            let back = browser.sign_in_at(&page, "alice").await;
            assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
            page = browser.get(back.location.as_deref().unwrap()).await;
        }
        let code = page.redirect_param("code").expect("a code");
        exchange(&app, &code, &verifier).await;
        let introspected = app.introspect(&client, &access).await;
        assert_eq!(introspected.body["active"], true, "{}", introspected.body);
    }
    app.state.audit.flush().await;
    let mut sent = app.state.db_statements.take_kept();
    let mut seen = std::collections::HashSet::new();
    sent.retain(|statement| seen.insert(statement.sql.clone()));
    assert!(sent.len() >= 6, "the hot paths' statements: {sent:?}");

    let db = &app.state.db;
    let mut scans = Vec::new();
    for statement in &sent {
        let plan = match db.get_database_backend() {
            DbBackend::Postgres => generic_plan(db, statement).await,
            _ => sqlite_plan(db, statement).await,
        };
        if plan.iter().any(|line| reads_a_whole_table(line)) {
            scans.push(format!("{}\n  {}", statement.sql, plan.join("\n  ")));
        }
    }
    assert!(
        scans.is_empty(),
        "statements that read a whole table:\n{}",
        scans.join("\n\n")
    );
}

/// PostgreSQL's plan of `statement` as a prepared statement may run it after its fifth use
/// (a generic plan), with sequential scans discouraged so that one is left only where no
/// index can serve. The parameters are typed as sqlx types them when it binds them (a
/// parameter a statement does not use has no type to infer).
async fn generic_plan(db: &DatabaseConnection, statement: &Statement) -> Vec<String> {
    let values = statement.values.clone().map(|v| v.0).unwrap_or_default();
    let txn = db.begin().await.unwrap();
    for setting in [
        "SET LOCAL plan_cache_mode = force_generic_plan",
        "SET LOCAL enable_seqscan = off",
    ] {
        txn.execute_unprepared(setting).await.unwrap();
    }
    let types: Vec<&str> = values.iter().map(pg_type).collect();
    let args: Vec<String> = values
        .iter()
        .map(|v| PostgresQueryBuilder.value_to_string(v))
        .collect();
    let (types, args) = if values.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!("({})", types.join(", ")),
            format!("({})", args.join(", ")),
        )
    };
    txn.execute_unprepared(&format!("PREPARE hot{types} AS {}", statement.sql))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", statement.sql));
    let rows = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("EXPLAIN EXECUTE hot{args}"),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", statement.sql));
    // A prepared statement outlives the transaction: the connection goes back to the pool
    // without it.
    txn.execute_unprepared("DEALLOCATE hot").await.unwrap();
    txn.rollback().await.unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", "QUERY PLAN").unwrap())
        .collect()
}

/// SQLite's plan of each statement of `statement` (a script's `BEGIN` and `COMMIT` aside);
/// SQLite plans do not depend on the values.
async fn sqlite_plan(db: &DatabaseConnection, statement: &Statement) -> Vec<String> {
    let values = statement.values.clone().map(|v| v.0).unwrap_or_default();
    let mut lines = Vec::new();
    for part in statement.sql.split(';').map(str::trim) {
        let head = part.split_whitespace().next().unwrap_or("").to_uppercase();
        if part.is_empty() || head == "BEGIN" || head == "COMMIT" {
            continue;
        }
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!("EXPLAIN QUERY PLAN {part}"),
                values.clone(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}: {part}"));
        lines.extend(
            rows.iter()
                .map(|r| r.try_get::<String>("", "detail").unwrap()),
        );
    }
    lines
}

/// A plan line that reads a whole table: PostgreSQL's `Seq Scan on`; SQLite's `SCAN t` (or
/// `SCAN t USING COVERING INDEX i`: every entry of an index), where `SCAN (subquery-1)`,
/// `SCAN CONSTANT ROW` and `SCAN 3-ROW VALUES CLAUSE` read what the statement itself made.
fn reads_a_whole_table(line: &str) -> bool {
    line.contains("Seq Scan on")
        || line.trim().strip_prefix("SCAN ").is_some_and(|rest| {
            rest.starts_with(|c: char| c.is_ascii_alphabetic()) && !rest.starts_with("CONSTANT ")
        })
}

/// The PostgreSQL type sqlx gives a bound value.
fn pg_type(value: &sea_orm::Value) -> &'static str {
    use sea_orm::Value;
    match value {
        Value::Bool(_) => "boolean",
        Value::TinyInt(_) | Value::SmallInt(_) | Value::TinyUnsigned(_) => "smallint",
        Value::Int(_) | Value::SmallUnsigned(_) => "integer",
        Value::BigInt(_) | Value::Unsigned(_) | Value::BigUnsigned(_) => "bigint",
        Value::Float(_) => "real",
        Value::Double(_) => "double precision",
        Value::Bytes(_) => "bytea",
        Value::Json(_) => "jsonb",
        _ => "text",
    }
}
