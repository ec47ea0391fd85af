//! The `portcullis` command line: serve, migrate, print the OpenAPI document, manage keys,
//! clients and users. Every command reads the same configuration as the server, so it works on
//! the same database.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use secrecy::SecretString;

use sea_orm::DatabaseConnection;
use serde_json::json;

use crate::audit::{Audit, Event, EventType, Origin, Outcome};
use crate::clients::{ClientService, GrantType, NewClient};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::domain::{ClientId, Email, Password, Scope, Username};
use crate::keys::{KeyRing, KeyService};
use crate::oauth::scope::all_scopes;
use crate::state::{AppState, BuildOptions, load_master_key, open_database};
use crate::users::{PasswordHasher, UserService};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "OAuth 2.0 / OpenID Connect authorization server"
)]
pub struct Cli {
    /// TOML configuration file, layered under PORTCULLIS_* environment variables.
    #[arg(long, env = "PORTCULLIS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// User accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Roles and the permissions they grant.
    #[command(subcommand)]
    Role(RoleCommand),
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Let ROLE grant PERMISSION.
    Grant { role: String, permission: String },
    /// Stop ROLE granting PERMISSION (holders lose it at their next refresh or sign-in).
    Revoke { role: String, permission: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Promote `next` to `current`, retire the old key, publish a fresh `next` (at once; warns
    /// when `next` was published for less than the lead time).
    Rotate,
    /// Emergency: stop signing with and publishing KID at once (tokens it signed stop
    /// validating) and roll to a new key. Recorded as a security event.
    Revoke {
        /// The key id, as shown by `keys list`.
        kid: String,
    },
    /// List keys and their states.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client and print it as JSON (with its secret, once, if generated).
    Create {
        #[arg(long)]
        client_id: String,
        /// Display name (defaults to the client id).
        #[arg(long)]
        name: Option<String>,
        /// A public client (no secret): SPAs, native apps, Swagger UI.
        #[arg(long, conflicts_with = "secret")]
        public: bool,
        /// The secret of a confidential client (at least 32 characters). Without --public and
        /// --secret, a 256-bit secret is generated and printed once.
        #[arg(long)]
        secret: Option<String>,
        /// Comma-separated: password, refresh_token, client_credentials.
        #[arg(long, value_delimiter = ',', required = true)]
        grant_types: Vec<String>,
        /// Space-separated scopes the client may request.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Space-separated scopes granted when a request names none (default: `openid profile
        /// email` among --scopes; never an administrative scope).
        #[arg(long)]
        default_scopes: Option<String>,
        /// A resource (absolute URI, RFC 8707) the client may ask tokens for (repeatable).
        #[arg(long = "audience")]
        audiences: Vec<String>,
        /// Allowed redirect URI (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one trailing newline is dropped).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Role to grant (repeatable; default: reader).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Replace a user's roles; removing a role ends the user's sign-ins.
    SetRoles {
        #[arg(long)]
        username: String,
        /// Role to hold (repeatable); the user holds exactly these afterwards.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
}

/// Runs the command line; errors carry their cause chain for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        println!("{}", crate::http::openapi_json());
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref())?;
    crate::init_tracing(&settings.log);
    let clock: SharedClock = Arc::new(SystemClock);
    match command {
        Command::Openapi => Ok(()),
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            open_database(&settings.database.url).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Keys(cmd) => {
            let db = open_database(&settings.database.url).await?;
            let keys = key_service(&settings, db.clone(), clock.clone()).await?;
            match cmd {
                KeysCommand::Rotate => rotate_key(&settings, &keys, Audit::new(db, clock)).await?,
                KeysCommand::Revoke { kid } => {
                    revoke_key(&settings, &keys, Audit::new(db, clock), &kid).await?;
                }
                KeysCommand::List => {
                    println!("{}", serde_json::to_string_pretty(&keys.list().await?)?);
                }
            }
            Ok(())
        }
        Command::Client(ClientCommand::Create {
            client_id,
            name,
            public,
            secret,
            grant_types,
            scopes,
            default_scopes,
            audiences,
            redirect_uris,
        }) => {
            let client_id = ClientId::parse(&client_id)?;
            let grant_types = grant_types
                .iter()
                .map(|g| {
                    GrantType::parse(g.trim()).with_context(|| {
                        format!(
                            "unknown grant type `{g}` (password, refresh_token, client_credentials)"
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let scopes = known_scopes(&scopes)?;
            let default_scopes = default_scopes.as_deref().map(known_scopes).transpose()?;
            let db = open_database(&settings.database.url).await?;
            let created = ClientService::new(db.clone(), clock.clone())
                .create(NewClient {
                    name: name.unwrap_or_else(|| client_id.as_str().to_string()),
                    client_id,
                    secret: if public {
                        None
                    } else {
                        Some(secret.map(SecretString::from))
                    },
                    grant_types,
                    scopes,
                    default_scopes,
                    audiences,
                    redirect_uris,
                })
                .await?;
            Audit::new(db, clock)
                .record(
                    &Origin::default(),
                    Event::new(EventType::ClientCreated, Outcome::Success)
                        .client(&created.client_id)
                        .details(json!({
                            "client_type": created.client_type,
                            "grant_types": created.grant_types,
                            "scopes": created.scopes,
                            "via": "cli",
                        })),
                )
                .await;
            println!("{}", serde_json::to_string_pretty(&created)?);
            Ok(())
        }
        Command::User(UserCommand::SetRoles { username, roles }) => {
            let state = AppState::build(settings, BuildOptions::default()).await?;
            let user_id = state.users.id_of(&username).await?;
            let (user, removed, ended) = crate::admin::change_roles(
                &state,
                &crate::rbac::Authority::operator(),
                &user_id,
                &roles,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", api_error_text(e)))?;
            state
                .audit
                .record(
                    &Origin::default(),
                    Event::new(EventType::UserRolesChanged, Outcome::Success).details(json!({
                        "user_id": user.id, "roles": user.roles, "removed": removed,
                        "sign_ins_ended": ended, "via": "cli",
                    })),
                )
                .await;
            println!("{}", serde_json::to_string_pretty(&user)?);
            Ok(())
        }
        Command::Role(cmd) => {
            let (role, permission, grant) = match cmd {
                RoleCommand::Grant { role, permission } => (role, permission, true),
                RoleCommand::Revoke { role, permission } => (role, permission, false),
            };
            let db = open_database(&settings.database.url).await?;
            let updated = crate::rbac::RoleService::new(db.clone())
                .change(&role, &permission, grant)
                .await?;
            Audit::new(db, clock)
                .record(
                    &Origin::default(),
                    Event::new(EventType::RolePermissionsChanged, Outcome::Success).details(
                        json!({
                            "role": updated.name, "permissions": updated.permissions,
                            if grant { "granted" } else { "revoked" }: permission, "via": "cli",
                        }),
                    ),
                )
                .await;
            println!("{}", serde_json::to_string_pretty(&updated)?);
            Ok(())
        }
        Command::User(UserCommand::Create {
            username,
            email,
            password_stdin: _,
            roles,
        }) => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the password from standard input")?;
            let raw = input
                .strip_suffix("\r\n")
                .or_else(|| input.strip_suffix('\n'))
                .unwrap_or(&input);
            let username = Username::parse(&username)?;
            let email = Email::parse(&email)?;
            let password = Password::parse(raw, &username, &email)?;
            let db = open_database(&settings.database.url).await?;
            let hasher = PasswordHasher::new(settings.passwords.bcrypt_cost, 1, 0).await?;
            let user = UserService::new(db.clone(), hasher, clock.clone())
                .register(&username, &email, &password, &roles)
                .await?;
            Audit::new(db, clock)
                .record(
                    &Origin::default(),
                    Event::new(EventType::UserRegistered, Outcome::Success)
                        .actor(&user.id)
                        .details(
                            json!({"username": user.username, "roles": user.roles, "via": "cli"}),
                        ),
                )
                .await;
            println!("{}", serde_json::to_string_pretty(&user)?);
            Ok(())
        }
    }
}

fn known_scopes(raw: &str) -> anyhow::Result<Scope> {
    let scopes = Scope::parse(raw)?;
    let unknown = scopes.minus(&all_scopes());
    if !unknown.is_empty() {
        bail!("unknown scopes: {unknown} (known: {})", all_scopes());
    }
    Ok(scopes)
}

/// The message of an API error, for the command line.
fn api_error_text(e: crate::http::problem::ApiError) -> String {
    use crate::http::problem::ApiError as E;
    match e {
        E::BadRequest(p)
        | E::NotFound(p)
        | E::Conflict(p)
        | E::PayloadTooLarge(p)
        | E::UnsupportedMediaType(p)
        | E::Unavailable(p) => p.0.message,
        E::TooManyRequests(p, ..) => p.0.message,
        E::Unauthorized(p, _) | E::Forbidden(p, _) => p.0.message,
    }
}

async fn key_service(
    settings: &Settings,
    db: DatabaseConnection,
    clock: SharedClock,
) -> anyhow::Result<KeyService> {
    let master = Arc::new(load_master_key(settings)?);
    let keys = KeyService::new(db, master, clock, KeyRing::default(), settings.keys.timing);
    keys.bootstrap().await?;
    Ok(keys)
}

/// `keys rotate`: promote at once, warn when resource servers may not hold the new key yet.
async fn rotate_key(settings: &Settings, keys: &KeyService, audit: Audit) -> anyhow::Result<()> {
    let rotation = keys.rotate_now().await?;
    audit
        .record(
            &Origin::default(),
            Event::new(EventType::KeyRotated, Outcome::Success).details(json!({
                "current_kid": rotation.current,
                "retired_kid": rotation.retired,
                "next_kid": rotation.next,
                "via": "cli",
            })),
        )
        .await;
    let lead = settings.keys.timing.publication_lead();
    if rotation.published_for < lead {
        eprintln!(
            "warning: the promoted key was published {} s ago, less than the lead time of {} s \
             (jwks max-age + reload interval + margin); resource servers holding an older JWKS \
             will meet an unknown kid and must refetch",
            rotation.published_for.as_secs(),
            lead.as_secs()
        );
    }
    eprintln!(
        "rotated: {} signs now; running instances pick it up within {} s",
        rotation.current,
        settings.keys.timing.reload_interval.as_secs()
    );
    Ok(())
}

/// `keys revoke KID`: revoke in the database, refuse the key's tokens through the shared deny
/// list at once, record the security event.
async fn revoke_key(
    settings: &Settings,
    keys: &KeyService,
    audit: Audit,
    kid: &str,
) -> anyhow::Result<()> {
    // Revoke even when Redis is down: the database is what every instance reloads.
    let (store, reached): (Arc<dyn crate::store::Store>, bool) =
        match crate::state::open_store(settings, &settings.store.redis_prefix).await {
            Ok(store) => (store, true),
            Err(e) => {
                eprintln!("warning: {e}");
                (Arc::new(crate::store::MemoryStore::new()), false)
            }
        };
    let crate::keys::Revoked { revocation, denied } =
        crate::keys::revoke_key(keys, store.as_ref(), &audit, kid, "cli").await?;
    let denied = denied && reached;
    eprintln!("revoked: {kid} (was {})", revocation.was.as_str());
    if let Some(promoted) = &revocation.promoted {
        eprintln!("{promoted} signs now");
    }
    let reload = settings.keys.timing.reload_interval.as_secs();
    if settings.store.redis_url.is_none() {
        eprintln!(
            "running instances stop publishing it and refuse its tokens within {reload} s \
             (their next key reload)"
        );
    } else if denied {
        eprintln!(
            "its tokens are refused at once by every instance; they stop publishing it within {reload} s"
        );
    } else {
        eprintln!(
            "warning: Redis could not be reached, so instances refuse its tokens only after \
             their next key reload (within {reload} s)"
        );
    }
    eprintln!(
        "resource servers drop it at their next JWKS refresh (at most {} s, the JWKS max-age)",
        settings.keys.timing.jwks_max_age.as_secs()
    );
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listen = settings.server.listen;
    // The certificate and key are read and checked before anything else runs.
    let tls = settings
        .server
        .tls
        .as_ref()
        .map(crate::http::tls::ServerTls::load)
        .transpose()?;
    let options = BuildOptions {
        store_prefix: settings.store.redis_prefix.clone(),
        ..BuildOptions::default()
    };
    let state = AppState::build(settings, options).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (PORTCULLIS_LISTEN)"))?;
    tracing::info!(
        address = %listen,
        tls = state.settings.server.tls.is_some(),
        issuer = %state.settings.server.issuer,
        database = if state.settings.database.url.starts_with("sqlite:") { "sqlite" } else { "postgres" },
        store = if state.settings.store.redis_url.is_some() { "redis" } else { "in-process" },
        "portcullis is listening"
    );
    crate::serve_with_tls(listener, state, tls, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing requests in flight");
}
