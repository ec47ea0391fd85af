//! Files and folders the server creates are private to its user: the data and keys folders
//! 0700, the SQLite database and its `-wal` / `-shm` files and the master key 0600; a master
//! key file that group or others may read or write stops the server at start, saying what to
//! do.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use portcullis::clients::GrantType;

use super::cli::Sandbox;
use super::helpers::*;

/// The permission bits of `path`, in octal as `ls` and `chmod` show them.
fn mode(path: &Path) -> String {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("{:o}", meta.permissions().mode() & 0o777)
}

#[tokio::test]
async fn fresh_folders_are_0700_and_the_database_files_0600() {
    let root = std::env::temp_dir().join(format!("portcullis-modes-{}", uuid::Uuid::new_v4()));
    let data = root.join("var/data");
    let keys = root.join("keys");
    let db = data.join("portcullis.db");
    let (url, keys_dir) = (format!("sqlite://{}?mode=rwc", db.display()), keys.clone());
    let app = spawn_app_with(move |raw| {
        raw.database_url = Some(url);
        raw.keys_dir = keys_dir;
    })
    .await;
    // Writes after those of the start (migrations, first keys), with the database open: the
    // write-ahead log and its index are there.
    for id in ["modes-one", "modes-two"] {
        app.confidential_client(id, &[GrantType::ClientCredentials], "articles:read")
            .await;
    }

    let expected = [
        (root.join("var"), "700"),
        (data.clone(), "700"),
        (keys.clone(), "700"),
        (db.clone(), "600"),
        (data.join("portcullis.db-wal"), "600"),
        (data.join("portcullis.db-shm"), "600"),
        (keys.join("master.key"), "600"),
    ];
    let name = |p: &Path| p.strip_prefix(&root).unwrap().display().to_string();
    let seen: Vec<(String, String)> = expected.iter().map(|(p, _)| (name(p), mode(p))).collect();
    let wanted: Vec<(String, String)> = expected
        .iter()
        .map(|(p, m)| (name(p), (*m).to_string()))
        .collect();
    assert_eq!(seen, wanted);
    drop(app);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_master_key_file_open_to_others_stops_the_start() {
    let sandbox = Sandbox::new();
    let keys = sandbox.dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let master = keys.join("master.key");
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    std::fs::write(&master, key).unwrap();
    for bad in [0o644, 0o640, 0o604, 0o620] {
        std::fs::set_permissions(&master, std::fs::Permissions::from_mode(bad)).unwrap();
        // A command that reads the key, and the server itself.
        let out = sandbox.run(&["keys", "list"], None);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "keys list with mode {bad:o}: {err}");
        assert_says_what_to_do(&err, bad);

        let port = free_port();
        let mut child = sandbox
            .command(&["serve"])
            .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server started with a master key of mode {bad:o}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(status.code(), Some(1), "serve with mode {bad:o}: {err}");
        assert_says_what_to_do(&err, bad);
        // Refused before anything else is touched: no database was made for nothing.
        assert!(
            !sandbox.dir.join("data/portcullis.db").exists(),
            "a database file was created by a start that was refused"
        );
    }

    // Made private, the same file is taken.
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = sandbox.run(&["keys", "list"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[track_caller]
fn assert_says_what_to_do(err: &str, mode: u32) {
    assert!(err.contains("keys/master.key"), "names the file: {err}");
    assert!(err.contains("chmod 600"), "says what to do: {err}");
    assert!(err.contains(&format!("{mode:o}")), "shows the mode: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_existing_database_open_to_others_is_used_as_it_is_with_a_warning() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["migrate"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = sandbox.dir.join("data/portcullis.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sandbox.run(&["migrate"], None);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("chmod 600 data/portcullis.db"),
        "warns, saying what to do: {err}"
    );
    assert_eq!(mode(&db), "644", "not changed behind the operator's back");
}
