//! The `portcullis` command line: serve, migrate, print the OpenAPI document, manage keys,
//! clients and users. Every command reads the same configuration as the server, so it works on
//! the same database.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::clients::{NewClient, parse_grant_types};
use crate::config::Settings;
use crate::db::open_database;
use crate::domain::{ClientId, Email, Password, Username};
use crate::keys::Rotation;
use crate::oauth::scope::known_scopes;
use crate::ops::Caller;
use crate::ops::keys::Revoked;
use crate::state::{AppState, BuildOptions};

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
    /// Alert webhooks (security alerts posted as Standard Webhooks).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Upstream identity providers (sign in with Google, GitHub or another OpenID provider).
    #[command(subcommand)]
    Idp(IdpCommand),
}

#[derive(Debug, Subcommand)]
pub enum IdpCommand {
    /// Add a provider; its client secret is read from standard input. Prints the provider
    /// with the redirect URI to register at the upstream.
    Add {
        /// Slug used in the callback path `/ui/upstream/ID/callback`.
        #[arg(long)]
        id: String,
        /// `oidc`, `google` or `github`.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        client_id: String,
        /// Read the client secret from standard input (required).
        #[arg(long, required = true)]
        client_secret_stdin: bool,
        #[arg(long)]
        display_name: Option<String>,
        /// Space-separated scopes asked of the upstream.
        #[arg(long)]
        scopes: Option<String>,
        /// Let a first sign-in that matches no account create one.
        #[arg(long)]
        allow_signup: bool,
        /// For `oidc`: the issuer (its discovery document is read).
        #[arg(long)]
        issuer: Option<String>,
        /// For `github` (Enterprise Server).
        #[arg(long)]
        auth_base_url: Option<String>,
        #[arg(long)]
        api_base_url: Option<String>,
    },
    /// List providers.
    List,
    /// Remove a provider and the links made through it.
    Remove {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register URL; prints its id and signing secret (shown this once).
    Add {
        url: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List endpoints.
    List,
    /// Remove an endpoint and its pending deliveries.
    Remove {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Send a test alert to the endpoint now.
    Test {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Recent deliveries to the endpoint, newest first.
    Deliveries {
        #[arg(allow_hyphen_values = true)]
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// Give the endpoint a new secret (the previous one signs too for 24 hours).
    RotateSecret {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
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
        /// The key id, as shown by `keys list` (base64url: it may begin with `-`).
        #[arg(allow_hyphen_values = true)]
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
        /// Comma-separated: authorization_code, password, refresh_token, client_credentials.
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
        /// Redirect URI of the authorization-code flow, matched exactly (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// URI a logout may return to, matched exactly (repeatable).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// A first-party client: its users are not asked for consent.
        #[arg(long)]
        first_party: bool,
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
        /// The operator vouches for the address: mark it confirmed (no verification mail).
        #[arg(long)]
        email_verified: bool,
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
    crate::init_tracing(&settings.log, settings.observability.log_format);
    match command {
        Command::Openapi => Ok(()),
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            open_database(&settings.database.url).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        command => {
            // Every other command is a use case run by the operator, on the same database (and
            // store) as the server. Their truth is the database: without Redis they go on with
            // an in-process store, and running instances catch up at their next reload.
            let options = BuildOptions {
                fall_back_to_memory: true,
                ..BuildOptions::for_settings(&settings)
            };
            let state = AppState::build(settings, options).await?;
            let result = operate(&state, command).await;
            // The audit events of the command are written before the process ends.
            state.audit.flush().await;
            result
        }
    }
}

/// Runs one operator command through its use case.
async fn operate(state: &AppState, command: Command) -> anyhow::Result<()> {
    let operator = Caller::operator();
    match command {
        Command::Keys(KeysCommand::List) => print(&state.key_admin.list().await?),
        Command::Keys(KeysCommand::Rotate) => {
            let rotation = state.key_admin.rotate(&operator).await?;
            report_rotation(&state.settings, &rotation);
            Ok(())
        }
        Command::Keys(KeysCommand::Revoke { kid }) => {
            let revoked = state.key_admin.revoke(&operator, &kid).await?;
            report_revocation(state, &kid, &revoked);
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
            post_logout_redirect_uris,
            first_party,
        }) => {
            let client_id = ClientId::parse(&client_id)?;
            let new = NewClient {
                name: name.unwrap_or_else(|| client_id.as_str().to_string()),
                client_id,
                secret: if public {
                    None
                } else {
                    Some(secret.map(SecretString::from))
                },
                grant_types: parse_grant_types(&grant_types)?,
                scopes: known_scopes("scopes", &scopes)?,
                default_scopes: default_scopes
                    .as_deref()
                    .map(|d| known_scopes("default_scopes", d))
                    .transpose()?,
                audiences,
                redirect_uris,
                post_logout_redirect_uris,
                first_party,
            };
            print(&state.client_admin.create(&operator, new).await?)
        }
        Command::User(UserCommand::SetRoles { username, roles }) => {
            let user_id = state.accounts.id_of(&username).await?;
            let changed = state
                .accounts
                .set_roles(&operator, &user_id, &roles)
                .await?;
            print(&changed.user)
        }
        Command::User(UserCommand::Create {
            username,
            email,
            password_stdin: _,
            roles,
            email_verified,
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
            let user = state
                .accounts
                .create(
                    &operator,
                    &username,
                    &email,
                    &password,
                    &roles,
                    email_verified,
                )
                .await?;
            print(&user)
        }
        Command::Role(cmd) => {
            let (role, permission, grant) = match cmd {
                RoleCommand::Grant { role, permission } => (role, permission, true),
                RoleCommand::Revoke { role, permission } => (role, permission, false),
            };
            let updated = state
                .accounts
                .change_role_permission(&operator, &role, &permission, grant)
                .await?;
            print(&updated)
        }
        Command::Webhook(cmd) => webhook(state, &operator, cmd).await,
        Command::Idp(cmd) => idp(state, &operator, cmd).await,
        Command::Serve | Command::Migrate | Command::Openapi => Ok(()),
    }
}

/// Prints a result as pretty JSON on standard output.
/// `idp …`: one call to `ops::IdpAdmin`, printed as JSON (never the client secret).
async fn idp(state: &AppState, operator: &Caller, cmd: IdpCommand) -> anyhow::Result<()> {
    use serde_json::json;
    let view = |p: crate::upstream::Provider| {
        json!({"id": p.id, "kind": p.kind.as_str(), "display_name": p.display_name,
               "client_id": p.client_id, "scopes": p.scopes, "allow_signup": p.allow_signup,
               "enabled": p.enabled, "issuer": p.issuer(), "auth_base_url": p.auth_base_url,
               "api_base_url": p.api_base_url,
               "redirect_uri": state.upstream_sign_in.callback_url(&p.id)})
    };
    match cmd {
        IdpCommand::Add {
            id,
            kind,
            client_id,
            client_secret_stdin: _,
            display_name,
            scopes,
            allow_signup,
            issuer,
            auth_base_url,
            api_base_url,
        } => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the client secret from standard input")?;
            let secret = input.trim_end_matches(['\r', '\n']).to_owned();
            let provider = state
                .idp_admin
                .create(
                    operator,
                    crate::upstream::ProviderInput {
                        id: Some(id),
                        kind: Some(kind),
                        display_name,
                        client_id: Some(client_id),
                        client_secret: Some(secrecy::SecretString::from(secret)),
                        scopes,
                        allow_signup: Some(allow_signup),
                        enabled: None,
                        issuer,
                        auth_base_url,
                        api_base_url,
                    },
                )
                .await?;
            print(&view(provider))
        }
        IdpCommand::List => print(
            &state
                .idp_admin
                .list()
                .await?
                .into_iter()
                .map(view)
                .collect::<Vec<_>>(),
        ),
        IdpCommand::Remove { id } => {
            state.idp_admin.delete(operator, &id).await?;
            eprintln!("removed identity provider {id}");
            Ok(())
        }
    }
}

/// `webhook …`: one call to `ops::WebhookAdmin`, printed as JSON.
async fn webhook(state: &AppState, operator: &Caller, cmd: WebhookCommand) -> anyhow::Result<()> {
    use serde_json::json;
    let admin = &state.webhook_admin;
    let view = |e: crate::webhooks::Endpoint| {
        json!({"id": e.id, "url": e.url, "description": e.description, "enabled": e.enabled,
               "created_at": e.created_at, "updated_at": e.updated_at})
    };
    match cmd {
        WebhookCommand::Add { url, description } => {
            let created = admin.create(operator, &url, description).await?;
            eprintln!("store the secret now: it is not shown again");
            print(
                &json!({"id": created.endpoint.id, "url": created.endpoint.url,
                          "secret": created.secret}),
            )
        }
        WebhookCommand::List => print(
            &admin
                .list()
                .await?
                .into_iter()
                .map(view)
                .collect::<Vec<_>>(),
        ),
        WebhookCommand::Remove { id } => {
            admin.delete(operator, &id).await?;
            eprintln!("removed webhook {id}");
            Ok(())
        }
        WebhookCommand::Test { id } => {
            let delivery = admin.test(operator, &id).await?;
            let outcome = admin
                .deliveries(&id, crate::ops::webhooks::MAX_DELIVERIES)
                .await?
                .into_iter()
                .find(|d| d.id == delivery);
            print(&json!({"delivery_id": delivery,
                          "status": outcome.as_ref().map(|d| d.state.as_str()),
                          "last_status_code": outcome.as_ref().and_then(|d| d.last_status),
                          "last_error": outcome.and_then(|d| d.last_error)}))
        }
        WebhookCommand::Deliveries { id, limit } => print(
            &admin
                .deliveries(&id, limit)
                .await?
                .into_iter()
                .map(|d| {
                    json!({"id": d.id, "event_type": d.event_type, "created_at": d.created_at,
                           "status": d.state.as_str(), "attempts": d.attempts,
                           "last_status_code": d.last_status, "last_error": d.last_error,
                           "delivered_at": d.delivered_at, "next_attempt_at": d.next_attempt_at})
                })
                .collect::<Vec<_>>(),
        ),
        WebhookCommand::RotateSecret { id } => {
            let secret = admin.rotate_secret(operator, &id).await?;
            eprintln!("store the secret now: it is not shown again");
            print(&json!({"id": id, "secret": secret}))
        }
    }
}

fn print<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `keys rotate`: says what signs now, and warns when resource servers may not hold the new
/// key yet.
fn report_rotation(settings: &Settings, rotation: &Rotation) {
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
}

/// `keys revoke KID`: says what happened and how soon every instance refuses the key.
fn report_revocation(state: &AppState, kid: &str, revoked: &Revoked) {
    let settings = &state.settings;
    let revocation = &revoked.revocation;
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
    } else if revoked.denied && state.store_is_shared {
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
    let options = BuildOptions::for_settings(&settings);
    let state = AppState::build(settings, options).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (PORTCULLIS_LISTEN)"))?;
    // Where /metrics is served: the main listener, or PORTCULLIS_METRICS_LISTEN's.
    let metrics_at = match state.settings.observability.metrics_listen {
        Some(addr) => format!("http://{addr}/metrics"),
        None => "/metrics".to_string(),
    };
    tracing::info!(
        address = %listen,
        tls = state.settings.server.tls.is_some(),
        issuer = %state.settings.server.issuer,
        database = if state.settings.database.url.starts_with("sqlite:") { "sqlite" } else { "postgres" },
        store = if state.settings.store.redis_url.is_some() { "redis" } else { "in-process" },
        metrics = %metrics_at,
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
