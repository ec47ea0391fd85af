//! The `portcullis` binary: configuration errors name the setting; migrate, user create,
//! client create, keys list/rotate and openapi work against one database.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

pub(super) struct Sandbox {
    pub(super) dir: std::path::PathBuf,
}

impl Sandbox {
    pub(super) fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("portcullis-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    pub(super) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.dir)
            .env_remove("PORTCULLIS_DATABASE_URL")
            .env_remove("PORTCULLIS_REDIS_URL")
            .env_remove("PORTCULLIS_CONFIG")
            .env("PORTCULLIS_BCRYPT_COST", "4")
            .env("PORTCULLIS_LOG", "warn");
        cmd
    }

    pub(super) fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_configuration_fails_at_start_naming_the_setting() {
    let sandbox = Sandbox::new();
    for (var, value) in [
        ("PORTCULLIS_BCRYPT_COST", "abc"),
        ("PORTCULLIS_BCRYPT_COST", "99"),
        ("PORTCULLIS_LISTEN", "not-an-address"),
        ("PORTCULLIS_ISSUER", "ftp://example.com"),
        ("PORTCULLIS_MASTER_KEY", "dG9vIHNob3J0"),
        ("PORTCULLIS_ACCESS_TOKEN_TTL", "soon"),
        ("PORTCULLIS_DATABASE_URL", "mysql://x"),
        ("PORTCULLIS_NO_SUCH_SETTING", "1"),
    ] {
        let out = sandbox
            .command(&["migrate"])
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} should fail");
        let err = stderr(&out).to_lowercase();
        let setting = var.trim_start_matches("PORTCULLIS_").to_lowercase();
        assert!(err.contains(&setting), "{var}={value}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn operator_commands_work_on_one_database() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["migrate"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        sandbox.dir.join("data/portcullis.db").exists(),
        "SQLite file under data/"
    );

    let out = sandbox.run(
        &[
            "user",
            "create",
            "--username",
            "root",
            "--email",
            "root@example.com",
            "--password-stdin",
            "--role",
            "admin",
        ],
        Some("a long admin password\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["roles"], serde_json::json!(["admin"]));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("a long admin password"));

    let out = sandbox.run(
        &[
            "client",
            "create",
            "--client-id",
            "svc",
            "--grant-types",
            "client_credentials",
            "--scopes",
            "articles:read users:read",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let client: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(client["client_type"], "confidential");
    assert!(client["client_secret"].as_str().unwrap().len() >= 43);

    let out = sandbox.run(
        &[
            "client",
            "create",
            "--client-id",
            "spa2",
            "--public",
            "--grant-types",
            "password,refresh_token",
            "--scopes",
            "openid",
            "--redirect-uri",
            "https://app.example.com/cb",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sandbox.run(
        &[
            "client",
            "create",
            "--client-id",
            "x",
            "--grant-types",
            "implicit",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("implicit"));
    let out = sandbox.run(
        &[
            "client",
            "create",
            "--client-id",
            "y",
            "--secret",
            "short",
            "--grant-types",
            "client_credentials",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("32"), "{}", stderr(&out));

    let out = sandbox.run(&["keys", "list"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut states: Vec<&str> = keys.iter().map(|k| k["state"].as_str().unwrap()).collect();
    states.sort_unstable();
    assert_eq!(states, vec!["current", "next"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("private"));

    let out = sandbox.run(&["keys", "rotate"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    // The rotation promoted a key published moments ago: the operator is warned.
    assert!(
        stderr(&out).contains("warning: the promoted key was published"),
        "{}",
        stderr(&out)
    );
    let out = sandbox.run(&["keys", "list"], None);
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut states: Vec<&str> = keys.iter().map(|k| k["state"].as_str().unwrap()).collect();
    states.sort_unstable();
    assert_eq!(states, vec!["current", "next", "retired"]);
    let current = |keys: &[serde_json::Value]| {
        keys.iter().find(|k| k["state"] == "current").unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let compromised = current(&keys);

    // Emergency revocation of the signing key: it is revoked, next signs, a fresh next is
    // published, and the event is in the audit log.
    let out = sandbox.run(&["keys", "revoke", &compromised], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    let out = sandbox.run(&["keys", "list"], None);
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut states: Vec<&str> = keys.iter().map(|k| k["state"].as_str().unwrap()).collect();
    states.sort_unstable();
    assert_eq!(states, vec!["current", "next", "retired", "revoked"]);
    assert_ne!(current(&keys), compromised);
    let out = sandbox.run(&["keys", "revoke", &compromised], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already revoked"), "{}", stderr(&out));
    let out = sandbox.run(&["keys", "revoke", "no-such-key"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no key has the id"),
        "{}",
        stderr(&out)
    );

    let master = sandbox.dir.join("keys/master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&master).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Each operator action above is in the audit log.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let types: Vec<String> = rt.block_on(async {
        use sea_orm::EntityTrait;
        let url = format!(
            "sqlite://{}?mode=rw",
            sandbox.dir.join("data/portcullis.db").display()
        );
        let db = sea_orm::Database::connect(url).await.unwrap();
        entities::audit_events::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    });
    for expected in ["user.registered", "client.created", "key.rotated"] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} missing in {types:?}"
        );
    }

    let out = sandbox.run(&["openapi"], None);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["info"]["title"], "Portcullis");
}

fn healthz_ok(port: u16) -> bool {
    use std::io::Read as _;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

#[test]
fn serve_starts_with_zero_configuration_and_stops_on_sigterm() {
    let sandbox = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = sandbox
        .command(&["serve"])
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !healthz_ok(port) {
        assert!(child.try_wait().unwrap().is_none(), "server exited early");
        assert!(
            std::time::Instant::now() < deadline,
            "server did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Drive a sign-in, a refresh and a client-credentials grant; none of the secrets involved
    // may appear in the server's output, even at debug level.
    let secrets = exercise_secrets(port, &sandbox);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    assert!(status.success(), "exit status {status}: {}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(
        log.contains("audit event"),
        "the debug log recorded the flow: {log}"
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret leaked into the log: {secret:.12}…"
        );
    }
    assert!(sandbox.dir.join("data/portcullis.db").exists());
    assert!(sandbox.dir.join("keys/master.key").exists());
}

/// Registers a user, signs in, refreshes, and uses a confidential client; returns every secret
/// that crossed the wire.
fn exercise_secrets(port: u16, sandbox: &Sandbox) -> Vec<String> {
    let password = "a very secret password 123";
    let out = sandbox.run(
        &[
            "client",
            "create",
            "--client-id",
            "svc",
            "--grant-types",
            "client_credentials",
            "--scopes",
            "articles:read",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let client: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let client_secret = client["client_secret"].as_str().unwrap().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let reg = http
            .post(format!("{base}/api/v1/users"))
            .json(&serde_json::json!({"username": "leaky", "email": "leaky@example.com", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(reg.status(), 201);
        let token: serde_json::Value = http
            .post(format!("{base}/oauth/token"))
            .form(&[("grant_type", "password"), ("username", "leaky"), ("password", password), ("client_id", "portcullis-spa"), ("scope", "openid")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let refresh = token["refresh_token"].as_str().unwrap().to_string();
        let refreshed: serde_json::Value = http
            .post(format!("{base}/oauth/token"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", "portcullis-spa")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let wrong = http
            .post(format!("{base}/oauth/token"))
            .form(&[("grant_type", "password"), ("username", "leaky"), ("password", "wrong but secret 456"), ("client_id", "portcullis-spa")])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 400);
        let cc = http
            .post(format!("{base}/oauth/token"))
            .basic_auth("svc", Some(&client_secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "articles:read")])
            .send()
            .await
            .unwrap();
        assert_eq!(cc.status(), 200);
        vec![
            password.to_string(),
            "wrong but secret 456".to_string(),
            client_secret.clone(),
            refresh,
            refreshed["refresh_token"].as_str().unwrap().to_string(),
            token["access_token"].as_str().unwrap().to_string(),
            refreshed["access_token"].as_str().unwrap().to_string(),
        ]
    })
}

#[test]
fn roles_are_administered_from_the_command_line() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(
        &[
            "user",
            "create",
            "--username",
            "ann",
            "--email",
            "ann@example.com",
            "--password-stdin",
        ],
        Some("a long enough password"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sandbox.run(
        &[
            "user",
            "set-roles",
            "--username",
            "ANN",
            "--role",
            "author",
            "--role",
            "reader",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["roles"], serde_json::json!(["author", "reader"]));
    let out = sandbox.run(
        &[
            "user",
            "set-roles",
            "--username",
            "ann",
            "--role",
            "emperor",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("emperor"), "{}", stderr(&out));
    let out = sandbox.run(
        &[
            "user",
            "set-roles",
            "--username",
            "nobody",
            "--role",
            "reader",
        ],
        None,
    );
    assert!(!out.status.success());

    let out = sandbox.run(&["role", "grant", "reader", "users:read"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let role: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        role["permissions"],
        serde_json::json!(["articles:read", "users:read"])
    );
    let out = sandbox.run(&["role", "revoke", "reader", "users:read"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let role: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(role["permissions"], serde_json::json!(["articles:read"]));
    let out = sandbox.run(&["role", "grant", "reader", "root:all"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("root:all"), "{}", stderr(&out));
}

/// Key ids are base64url and may begin with `-`: `keys revoke` takes them as they are shown
/// (the cause of a CI failure when a random kid began with `-G`).
#[test]
fn a_key_id_that_begins_with_a_dash_is_taken_as_the_argument() {
    use clap::Parser;
    let cli = portcullis::cli::Cli::try_parse_from(["portcullis", "keys", "revoke", "-Gq2x_kid"])
        .expect("parsed");
    match cli.command {
        Some(portcullis::cli::Command::Keys(portcullis::cli::KeysCommand::Revoke { kid })) => {
            assert_eq!(kid, "-Gq2x_kid");
        }
        other => panic!("{other:?}"),
    }
}
