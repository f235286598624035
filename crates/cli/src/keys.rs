//! The data directory and the secrets in it: the signing identity, the
//! watermark and embedding keys and the development tenant's API key. Every subcommand
//! finds them here, under `--data-dir` (default `./data`). Secret files are
//! created with mode 0600 and never overwritten: a second `keys init` or
//! start leaves existing keys alone.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use likeness_provenance::keys::{generate_dev_identity, KeyPaths};
use likeness_watermark::Key;

/// Where `serve` keeps its state when no `--data-dir` is given.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// File names inside `<data-dir>/keys`.
pub const CA_FILE: &str = "ca.pem";
const CHAIN_FILE: &str = "signer-chain.pem";
const SIGNING_KEY_FILE: &str = "signer.key";
const WATERMARK_KEY_FILE: &str = "watermark.key";
const EMBEDDING_KEY_FILE: &str = "embedding.key";

/// The gateway's data directory.
#[derive(Debug, Clone)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(path: Option<PathBuf>) -> DataDir {
        DataDir(path.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn keys(&self) -> PathBuf {
        self.0.join("keys")
    }

    pub fn watermark_key(&self) -> PathBuf {
        watermark_key_in(&self.keys())
    }

    pub fn dev_api_key(&self) -> PathBuf {
        self.0.join("dev-api-key")
    }

    /// The embedded SQLite database.
    pub fn database(&self) -> PathBuf {
        self.0.join("likeness.db")
    }
}

/// The signing chain and key in a key directory.
pub fn signing_paths(keys_dir: &Path) -> KeyPaths {
    KeyPaths { chain: keys_dir.join(CHAIN_FILE), key: keys_dir.join(SIGNING_KEY_FILE) }
}

pub fn watermark_key_in(keys_dir: &Path) -> PathBuf {
    keys_dir.join(WATERMARK_KEY_FILE)
}

pub fn embedding_key_in(keys_dir: &Path) -> PathBuf {
    keys_dir.join(EMBEDDING_KEY_FILE)
}

/// Writes a new file, failing if one is already there, with mode 0600 when
/// `secret`.
fn write_new(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Writes a secret (mode 0600) to a file that must not exist yet.
pub fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    write_new(path, contents, true)
}

/// Makes a development CA and signing certificate in `keys_dir` unless a
/// signing identity is already there; true when it made one. The CA's key
/// signs the certificate and is dropped: a key that can mint trusted
/// signers does not belong beside the server's own.
pub fn init_signing_identity(keys_dir: &Path, organization: &str) -> anyhow::Result<bool> {
    let paths = signing_paths(keys_dir);
    if paths.chain.exists() && paths.key.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(keys_dir).with_context(|| format!("creating {}", keys_dir.display()))?;
    let id = generate_dev_identity(organization)?;
    for (path, contents, secret) in [
        (keys_dir.join(CA_FILE), &id.ca_cert_pem, false),
        (paths.chain, &id.chain_pem, false),
        (paths.key, &id.key_pem, true),
    ] {
        // A half-written identity from an interrupted start is replaced whole.
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("replacing {}", path.display()))?;
        }
        write_new(&path, contents, secret)?;
    }
    Ok(true)
}

/// Refuses a secret file that its group or others may read or write: a key
/// anyone on the machine can read is not a secret.
pub fn refuse_shared_secret(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} is readable or writable by others (mode {:o}); make it the owner's only: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Makes a random watermark key in `keys_dir` unless one exists; true when
/// it made one.
pub fn init_watermark_key(keys_dir: &Path) -> anyhow::Result<bool> {
    init_random_key(&watermark_key_in(keys_dir))
}

/// Makes a random 256-bit key (64 hex digits, mode 0600) at `path` unless
/// one exists; true when it made one.
pub fn init_random_key(path: &Path) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_secret(path, &(hex::encode(rand::random::<[u8; 32]>()) + "\n"))?;
    Ok(true)
}

pub fn load_watermark_key(path: &Path) -> anyhow::Result<Key> {
    Ok(Key::new(load_key_bytes(path, "watermark key")?))
}

/// A 256-bit key written as 64 hex digits in a file.
pub fn load_key_bytes(path: &Path, what: &str) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("no {what} at {}: run `likeness keys init`, or give its path", path.display()))?;
    parse_key(text.trim()).with_context(|| format!("{}: a {what} is 64 hex digits", path.display()))
}

pub fn parse_key(hex_digits: &str) -> anyhow::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_once_with_private_modes_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        assert!(init_signing_identity(&keys, "t").unwrap());
        assert!(init_watermark_key(&keys).unwrap());
        let before = std::fs::read(keys.join(SIGNING_KEY_FILE)).unwrap();
        let wm_before = std::fs::read(watermark_key_in(&keys)).unwrap();
        assert!(!init_signing_identity(&keys, "t").unwrap(), "a second init must not replace the keys");
        assert!(!init_watermark_key(&keys).unwrap());
        assert_eq!(std::fs::read(keys.join(SIGNING_KEY_FILE)).unwrap(), before);
        assert_eq!(std::fs::read(watermark_key_in(&keys)).unwrap(), wm_before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for (file, mode) in [(SIGNING_KEY_FILE, 0o600), (WATERMARK_KEY_FILE, 0o600), (CA_FILE, 0o644)] {
                let got = std::fs::metadata(keys.join(file)).unwrap().permissions().mode() & 0o777;
                assert_eq!(got, mode, "{file}");
            }
        }
        assert!(!keys.join("ca.key").exists(), "the development CA's key is not kept");
        refuse_shared_secret(&keys.join(SIGNING_KEY_FILE)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let shared = keys.join(WATERMARK_KEY_FILE);
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
            let err = refuse_shared_secret(&shared).unwrap_err().to_string();
            assert!(err.contains("mode 640") && err.contains("chmod 600"), "{err}");
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let signer = likeness_provenance::Signer::from_paths(&signing_paths(&keys)).unwrap();
        assert_eq!(signer.subject(), "t signer");
        load_watermark_key(&watermark_key_in(&keys)).unwrap();
        // A secret is never written over an existing file.
        assert!(write_secret(&watermark_key_in(&keys), "00").is_err());
        assert_eq!(std::fs::read(watermark_key_in(&keys)).unwrap(), wm_before);
    }
}
