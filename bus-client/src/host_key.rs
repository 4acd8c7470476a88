//! A host's own NATS identity: an nkey pair. The operator admits the public key (it goes into
//! the nats-server configuration and the log's `HostAdmitted`); the seed stays with the host, in
//! a file of mode 0600 in the host's key folder, `<folder>/<host id>.nk`.
//!
//! Invariant: a seed is written only into a file created 0600 (never widened after the fact)
//! and is never printed: [`HostKey`]'s `Debug` shows the public key only.

use std::io::Write;
use std::path::{Path, PathBuf};
use streamfleet_bus_schemas::Secret;
use streamfleet_bus_schemas::ids::HostId;

/// An nkey pair for one host.
#[derive(Clone)]
pub struct HostKey {
    /// The public key, `U…`: what NATS and the log know of the host.
    pub public_key: String,
    seed: Secret,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("public_key", &self.public_key)
            .field("seed", &"<redacted>")
            .finish()
    }
}

/// Why a host key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// The file could not be read or written.
    #[error("host key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no valid user seed.
    #[error("host key {path}: not an nkey user seed")]
    Invalid {
        /// The file.
        path: PathBuf,
    },
    /// The key could not be made.
    #[error("host key: {0}")]
    Generate(String),
}

impl HostKey {
    /// A new key pair.
    pub fn generate() -> Result<HostKey, HostKeyError> {
        let pair = nkeys::KeyPair::new_user();
        let seed = pair
            .seed()
            .map_err(|e| HostKeyError::Generate(e.to_string()))?;
        Ok(HostKey {
            public_key: pair.public_key(),
            seed: Secret::from(seed),
        })
    }

    /// The seed, for [`crate::NatsLogin::host`].
    pub fn seed(&self) -> &Secret {
        &self.seed
    }

    /// Where host `host_id`'s key lives in `folder`.
    pub fn path(folder: &Path, host_id: &HostId) -> PathBuf {
        folder.join(format!("{host_id}.nk"))
    }

    /// Writes the seed to [`HostKey::path`], created with mode 0600 (and the folder 0700).
    pub fn write(&self, folder: &Path, host_id: &HostId) -> Result<PathBuf, HostKeyError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = HostKey::path(folder, host_id);
        let io = |source| HostKeyError::Io {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        file.write_all(self.seed.expose().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        Ok(path)
    }

    /// Reads host `host_id`'s key from `folder`.
    pub fn read(folder: &Path, host_id: &HostId) -> Result<HostKey, HostKeyError> {
        let path = HostKey::path(folder, host_id);
        let text = std::fs::read_to_string(&path).map_err(|source| HostKeyError::Io {
            path: path.clone(),
            source,
        })?;
        let seed = text.trim();
        let pair = nkeys::KeyPair::from_seed(seed)
            .ok()
            .filter(|p| p.public_key().starts_with('U'))
            .ok_or_else(|| HostKeyError::Invalid { path: path.clone() })?;
        Ok(HostKey {
            public_key: pair.public_key(),
            seed: Secret::from(seed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_reads_back_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let folder = dir.path().join("keys");
        let key = HostKey::generate().expect("key");
        let path = key.write(&folder, &"h1".into()).expect("written");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = HostKey::read(&folder, &"h1".into()).expect("read");
        assert_eq!(back.public_key, key.public_key);
        assert!(!format!("{back:?}").contains(key.seed().expose()));
        std::fs::write(&path, "not a seed").expect("overwrite");
        assert!(matches!(
            HostKey::read(&folder, &"h1".into()),
            Err(HostKeyError::Invalid { .. })
        ));
    }
}
