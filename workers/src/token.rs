//! Session tokens: minted by the token service, checked by the redemption node.
//!
//! Invariant: a token is `sft1.<token_id>.<nonce>.<mac>`, where `mac` is BLAKE3 keyed with the
//! deployment's token key over `sft1.<token_id>.<nonce>`. Without the key nobody can make a
//! token that [`TokenKey::verify`] accepts; the log holds only [`hash`] of the token, so a copy of the
//! log cannot be redeemed either.
//!
//! ```
//! let key = streamfleet_workers::token::TokenKey::from_hex(&"7".repeat(64)).unwrap();
//! let (id, token) = key.mint();
//! assert_eq!(key.verify(&token).unwrap(), id);
//! // Change the last character of the MAC to a different one.
//! let last = if token.ends_with('0') { '1' } else { '0' };
//! let forged = format!("{}{last}", &token[..token.len() - 1]);
//! assert!(key.verify(&forged).is_err());
//! ```

use rand::RngCore;

const PREFIX: &str = "sft1";

/// The deployment's token signing key (32 bytes), shared by the token service and the
/// redemption nodes; `streamfleet up` generates it into the credentials file.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

/// Why a presented token is refused before the log is asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not shaped like a Streamfleet token.
    #[error("not a Streamfleet token (expected sft1.<id>.<nonce>.<mac>)")]
    Malformed,
    /// Shaped right, but its signature is not this deployment's.
    #[error("token signature does not verify: forged or from another deployment")]
    Forged,
}

/// A token key that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token key must be 64 hex digits")]
pub struct BadTokenKey;

impl TokenKey {
    /// Reads a key from 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, BadTokenKey> {
        let bytes = decode_hex(hex.trim()).ok_or(BadTokenKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| BadTokenKey)?;
        Ok(TokenKey(key))
    }

    /// A new random key, as hex.
    pub fn generate_hex() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        encode_hex(&key)
    }

    /// Mints a token: `(token_id, token)`.
    pub fn mint(&self) -> (String, String) {
        let token_id = uuid::Uuid::now_v7().simple().to_string();
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let signed = format!("{PREFIX}.{token_id}.{}", encode_hex(&nonce));
        let mac = blake3::keyed_hash(&self.0, signed.as_bytes());
        (token_id.clone(), format!("{signed}.{}", mac.to_hex()))
    }

    /// Checks a token's shape and signature; returns its id.
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        let mut parts = token.split('.');
        let (Some(PREFIX), Some(id), Some(nonce), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let plain =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !plain(id, 32) || !plain(nonce, 32) || !plain(mac, 64) {
            return Err(TokenError::Malformed);
        }
        let given = blake3::Hash::from_hex(mac).map_err(|_| TokenError::Malformed)?;
        let signed = &token[..token.len() - mac.len() - 1];
        // blake3::Hash compares in constant time.
        if blake3::keyed_hash(&self.0, signed.as_bytes()) != given {
            return Err(TokenError::Forged);
        }
        Ok(id.to_string())
    }
}

pub use streamfleet_bus_schemas::secret_hash as hash;

/// A fresh random secret (session credentials), as hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    encode_hex(&bytes)
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}
