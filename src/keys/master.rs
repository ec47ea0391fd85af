//! The master key: given in `PORTCULLIS_MASTER_KEY`, or read from `<keys_dir>/master.key`,
//! which is generated (mode 0600, in a 0700 folder) on first run and refused when group or
//! others may read or write it.

use std::path::Path;

use secrecy::ExposeSecret;

use crate::config::{KeySettings, MasterKeySource, decode_master_key};
use crate::crypto::{MasterKey, random_bytes};
use crate::db::create_private_dir;

/// Why the master key could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MasterKeyError(String);

/// Reads the master key from the setting, or from `<keys_dir>/master.key`, generating that
/// file (mode 0600) on first run.
pub fn load_master_key(settings: &KeySettings) -> Result<MasterKey, MasterKeyError> {
    let bytes = match &settings.master_key {
        MasterKeySource::Given(text) => {
            decode_master_key(text.expose_secret()).map_err(|e| MasterKeyError(e.to_string()))?
        }
        MasterKeySource::File(path) => read_or_create_key_file(path)?,
    };
    MasterKey::from_bytes(&bytes).map_err(|e| MasterKeyError(e.to_string()))
}

fn read_or_create_key_file(path: &Path) -> Result<[u8; 32], MasterKeyError> {
    use base64::Engine as _;
    let fail = |what: &str, e: std::io::Error| {
        MasterKeyError(format!("cannot {what} {}: {e}", path.display()))
    };
    match std::fs::File::open(path) {
        Ok(mut file) => {
            use std::io::Read as _;
            refuse_if_open_to_others(&file, path)?;
            let mut text = String::new();
            file.read_to_string(&mut text)
                .map_err(|e| fail("read", e))?;
            decode_master_key(&text).map_err(|e| MasterKeyError(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                create_private_dir(dir).map_err(|e| fail("create the folder of", e))?;
            }
            let key = random_bytes::<32>().map_err(|e| MasterKeyError(e.to_string()))?;
            let text = base64::engine::general_purpose::STANDARD.encode(key);
            write_private(path, &text).map_err(|e| fail("write", e))?;
            tracing::warn!(path = %path.display(), "generated a new master key; back it up: without it the signing keys cannot be read");
            Ok(key)
        }
        Err(e) => Err(fail("read", e)),
    }
}

/// Refuses a master key file that group or others may read or write: the key unlocks every
/// signing key, and a file others could write could be swapped for a key they know.
fn refuse_if_open_to_others(file: &std::fs::File, path: &Path) -> Result<(), MasterKeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = file
            .metadata()
            .map_err(|e| MasterKeyError(format!("cannot read {}: {e}", path.display())))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o066 != 0 {
            return Err(MasterKeyError(format!(
                "{path} can be read or written by group or others (mode {mode:o}); make it \
                 private to the user running Portcullis with `chmod 600 {path}`, then start \
                 again",
                path = path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// Creates `path` with mode 0600 (owner only) and writes `text`; refuses to overwrite.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reread() {
        let dir = std::env::temp_dir().join(format!("portcullis-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("master.key");
        let first = read_or_create_key_file(&path).unwrap();
        assert_eq!(read_or_create_key_file(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
