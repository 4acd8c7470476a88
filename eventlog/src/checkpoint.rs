//! Signed checkpoints of the hash chain: what makes a rewrite of the log detectable by someone
//! who cannot sign.
//!
//! Invariant: a [`Checkpoint`] says "the record at `position` carries chain hash `chain`", and
//! its Ed25519 signature covers exactly [`SIGNED_PREFIX`] ‖ position (u64 LE) ‖ chain. The
//! chain hash commits to every record up to `position`, so a log whose record at `position`
//! carries another chain hash was changed at or before `position` — even when whoever changed
//! it recomputed every checksum and chain hash after the change, which the chain alone cannot
//! tell. Only the holder of the signing key (the node) makes checkpoints; anyone with the
//! public key checks them.
//!
//! Checkpoints live outside the log file, one JSON object per line in a [`CheckpointFile`]
//! (appended and fsynced), and the node also publishes each one on NATS, so an auditor can keep
//! copies nobody with access to the node's disk can touch.

use ed25519_dalek::{Signature, Signer, Verifier};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Domain separation: the bytes every checkpoint signature starts with.
pub const SIGNED_PREFIX: &[u8] = b"streamfleet-checkpoint/1";

/// A signed statement of the chain hash at a position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The position.
    pub position: u64,
    /// The chain hash of the record at `position` (hex).
    pub chain: String,
    /// Ed25519 signature over [`SIGNED_PREFIX`] ‖ position ‖ chain (hex).
    pub signature: String,
}

/// Why a checkpoint or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// A key or checkpoint is not what it should be.
    #[error("{0}")]
    Malformed(String),
}

fn signed_bytes(position: u64, chain: &[u8; 32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SIGNED_PREFIX.len() + 8 + 32);
    bytes.extend_from_slice(SIGNED_PREFIX);
    bytes.extend_from_slice(&position.to_le_bytes());
    bytes.extend_from_slice(chain);
    bytes
}

/// Signs the chain hash at `position`.
pub fn sign(key: &SigningKey, position: u64, chain: &[u8; 32]) -> Checkpoint {
    let signature = key.sign(&signed_bytes(position, chain));
    Checkpoint {
        position,
        chain: hex::encode(chain),
        signature: hex::encode(signature.to_bytes()),
    }
}

impl Checkpoint {
    /// The chain hash it states, when well-formed.
    pub fn chain_hash(&self) -> Result<[u8; 32], CheckpointError> {
        let bytes = hex::decode(&self.chain).map_err(|e| {
            CheckpointError::Malformed(format!("checkpoint {}: chain: {e}", self.position))
        })?;
        bytes.try_into().map_err(|_| {
            CheckpointError::Malformed(format!(
                "checkpoint {}: chain is not 32 bytes",
                self.position
            ))
        })
    }

    /// Whether `public` signed it.
    pub fn is_signed_by(&self, public: &VerifyingKey) -> bool {
        let (Ok(chain), Ok(signature)) = (self.chain_hash(), hex::decode(&self.signature)) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&signature) else {
            return false;
        };
        public
            .verify(&signed_bytes(self.position, &chain), &signature)
            .is_ok()
    }
}

/// A public key from its hex form (as the node writes it to `checkpoint.pub`).
pub fn public_key_from_hex(text: &str) -> Result<VerifyingKey, CheckpointError> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| CheckpointError::Malformed(format!("public key: {e}")))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| CheckpointError::Malformed("public key: not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|e| CheckpointError::Malformed(format!("public key: {e}")))
}

/// The node's signing key in a file (hex of the 32-byte seed, mode 0600), made from `seed` on
/// first use; the public key is written beside it as `<name>.pub`.
pub fn load_or_create_key(path: &Path, seed: [u8; 32]) -> Result<SigningKey, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.display().to_string(),
        source,
    };
    let key = match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .map_err(|e| CheckpointError::Malformed(format!("{}: {e}", path.display())))?;
            let seed: [u8; 32] = bytes.try_into().map_err(|_| {
                CheckpointError::Malformed(format!("{}: not a 32-byte key", path.display()))
            })?;
            SigningKey::from_bytes(&seed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(hex::encode(seed).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            SigningKey::from_bytes(&seed)
        }
        Err(e) => return Err(io(e)),
    };
    let public = public_path(path);
    std::fs::write(&public, hex::encode(key.verifying_key().to_bytes())).map_err(|source| {
        CheckpointError::Io {
            path: public.display().to_string(),
            source,
        }
    })?;
    Ok(key)
}

/// Where the public key of the key at `key_path` is written.
pub fn public_path(key_path: &Path) -> PathBuf {
    key_path.with_extension("pub")
}

/// Checkpoints as JSON lines in a file.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    /// The file at `path` (created on the first append).
    pub fn new(path: impl Into<PathBuf>) -> CheckpointFile {
        CheckpointFile { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one checkpoint and waits until it is on disk.
    pub fn append(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let mut line = serde_json::to_vec(checkpoint)
            .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(io)
    }

    /// Every checkpoint in the file, in order (none when it does not exist). A line that is not
    /// a checkpoint is an error naming it.
    pub fn read(&self) -> Result<Vec<Checkpoint>, CheckpointError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.display().to_string(),
                    source,
                });
            }
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    CheckpointError::Malformed(format!(
                        "{} line {}: {e}",
                        self.path.display(),
                        i + 1
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_under_its_key_only_and_not_once_changed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let cp = sign(&key, 42, &[1; 32]);
        assert!(cp.is_signed_by(&key.verifying_key()));
        assert!(!cp.is_signed_by(&other.verifying_key()));
        let moved = Checkpoint {
            position: 43,
            ..cp.clone()
        };
        assert!(!moved.is_signed_by(&key.verifying_key()));
        let rechained = Checkpoint {
            chain: hex::encode([2; 32]),
            ..cp
        };
        assert!(!rechained.is_signed_by(&key.verifying_key()));
    }

    #[test]
    fn the_key_file_is_private_and_read_back_the_same() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("checkpoint.key");
        let made = load_or_create_key(&path, [9; 32]).expect("create");
        let again = load_or_create_key(&path, [1; 32]).expect("read");
        assert_eq!(made.to_bytes(), again.to_bytes(), "the seed is used once");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let public = std::fs::read_to_string(public_path(&path)).expect("public");
        assert_eq!(
            public_key_from_hex(&public).expect("hex"),
            made.verifying_key()
        );
    }
}
