//! Secrets on the wire: tokens and session credentials travel to their holder once, and are
//! recorded and compared by their hash only.
//!
//! Invariant: [`secret_hash`] is the one way a secret becomes what the log (`token_hash`,
//! `credential_hash`) and the hosts keep; [`matches_hash`] is the one way a presented secret is
//! checked against it, in time independent of where the two differ.

/// Hex BLAKE3 of a token or credential: what the log records instead of the secret.
///
/// ```
/// let h = streamfleet_bus_schemas::secret_hash("s3cret");
/// assert_eq!(h.len(), 64);
/// assert!(streamfleet_bus_schemas::matches_hash("s3cret", &h));
/// assert!(!streamfleet_bus_schemas::matches_hash("s3cret ", &h));
/// ```
pub fn secret_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// Whether `secret` is the one whose [`secret_hash`] is `hash` (false for an empty `hash`).
pub fn matches_hash(secret: &str, hash: &str) -> bool {
    match blake3::Hash::from_hex(hash) {
        // blake3::Hash's equality is constant-time.
        Ok(expected) => blake3::hash(secret.as_bytes()) == expected,
        Err(_) => false,
    }
}
