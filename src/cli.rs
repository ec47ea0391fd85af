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
    crate::init_tracing(&settings.log);
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
        Command::Serve | Command::Migrate | Command::Openapi => Ok(()),
    }
}

/// Prints a result as pretty JSON on standard output.
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
