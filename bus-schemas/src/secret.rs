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

/// A secret as it travels to its holder (a session token, session credentials): a plain JSON
/// string on the wire, whose `Debug` never shows it. Reading it takes [`Secret::expose`], so
/// every place that handles the secret itself says so.
///
/// ```
/// use streamfleet_bus_schemas::Secret;
/// let credentials = Secret::from("c0ffee");
/// assert_eq!(format!("{credentials:?}"), "Secret(6 chars, redacted)");
/// assert_eq!(serde_json::to_string(&credentials).unwrap(), r#""c0ffee""#);
/// assert_eq!(credentials.expose(), "c0ffee");
/// ```
#[derive(
    Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its hash, as the log records it ([`secret_hash`]).
    pub fn hash(&self) -> String {
        secret_hash(&self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} chars, redacted)", self.0.chars().count())
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Secret(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Secret(secret.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use crate::services::{SessionGrant, TokenGrant};

    #[test]
    fn grants_debug_without_their_secrets() {
        let token = TokenGrant {
            token: "tok-SECRET".into(),
            token_id: "t1".into(),
            expires_at: chrono::Utc::now(),
        };
        let session = SessionGrant {
            session_id: "s1".into(),
            region: "eu-west".into(),
            host_id: "h1".into(),
            address: "127.0.0.1".into(),
            control_port: 7000,
            control_tls: true,
            credentials: "cred-SECRET".into(),
            route_reason: String::new(),
            placement_reason: String::new(),
            restored_from: None,
        };
        for shown in [format!("{token:?}"), format!("{session:?}")] {
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }
}
