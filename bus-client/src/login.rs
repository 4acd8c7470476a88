//! Connecting to NATS as one of the roles of the principal table (a password from the
//! environment) or as one admitted host (its own nkey seed).
//!
//! Invariant: a password or seed never leaves this module in text meant for people:
//! [`NatsLogin`]'s `Debug` prints the URL and user only.

use streamfleet_bus_schemas::Secret;
use streamfleet_bus_schemas::ids::HostId;
use streamfleet_bus_schemas::principal::{Principal, Role};

pub use streamfleet_bus_schemas::nats_conf::password_variable;

/// Where and as whom to connect.
#[derive(Clone)]
pub struct NatsLogin {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Who connects: a role's user, or a host (`host.<id>`).
    pub user: String,
    secret: LoginSecret,
    /// The certificate authority to verify the server against; with it the connection must be
    /// TLS (the server's certificate issued by this authority), without it plaintext.
    pub ca: Option<std::path::PathBuf>,
}

#[derive(Clone)]
enum LoginSecret {
    Password(Secret),
    Seed(Secret),
}

impl std::fmt::Debug for NatsLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLogin")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("ca", &self.ca)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a login could not be made from the environment.
#[derive(Debug, thiserror::Error)]
#[error("{variable} is not set: the password of NATS user {user}")]
pub struct MissingPassword {
    /// The variable looked for.
    pub variable: String,
    /// The user it is for.
    pub user: String,
}

impl NatsLogin {
    /// A role's login with its password.
    pub fn new(
        url: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        NatsLogin {
            url: url.into(),
            user: user.into(),
            secret: LoginSecret::Password(Secret::from(password.into())),
            ca: None,
        }
    }

    /// The same login over TLS, trusting the authority in `ca` (none: plaintext).
    pub fn with_ca(mut self, ca: Option<std::path::PathBuf>) -> Self {
        self.ca = ca;
        self
    }

    /// An admitted host's login with its nkey seed (`SU…`).
    pub fn host(url: impl Into<String>, host_id: &HostId, seed: Secret) -> Self {
        NatsLogin {
            url: url.into(),
            user: Principal::Host(host_id.clone()).to_string(),
            secret: LoginSecret::Seed(seed),
            ca: None,
        }
    }

    /// The login of `role`, its password taken from `SF_<ROLE>_PASSWORD`.
    pub fn from_env(url: impl Into<String>, role: Role) -> Result<Self, MissingPassword> {
        let variable = password_variable(role);
        match std::env::var(&variable) {
            Ok(password) if !password.is_empty() => Ok(NatsLogin::new(url, role.name(), password)),
            _ => Err(MissingPassword {
                variable,
                user: role.name().to_string(),
            }),
        }
    }

    /// Who this login speaks as, when its user is a role or a host.
    pub fn principal(&self) -> Option<Principal> {
        Principal::parse(&self.user)
    }

    /// The connect options of this login: its credential, its name, its inbox prefix (replies
    /// come back under the principal's own prefix, the only one NATS lets it read).
    pub fn options(&self) -> async_nats::ConnectOptions {
        let options = match &self.secret {
            LoginSecret::Password(p) => async_nats::ConnectOptions::new()
                .user_and_password(self.user.clone(), p.expose().to_string()),
            LoginSecret::Seed(seed) => {
                async_nats::ConnectOptions::with_nkey(seed.expose().to_string())
            }
        };
        let options = match &self.ca {
            Some(ca) => options.require_tls(true).add_root_certificates(ca.clone()),
            None => options,
        };
        options
            .name(format!("streamfleet-{}", self.user))
            .custom_inbox_prefix(streamfleet_bus_schemas::subjects::inbox_prefix(&self.user))
    }
}

/// Connects; fails at once when the server is not there or refuses the login (so a wrong
/// password is an error, not a hang), and reconnects by itself once connected.
pub async fn connect(login: &NatsLogin) -> Result<async_nats::Client, async_nats::ConnectError> {
    login.options().connect(login.url.as_str()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_password() {
        let login = NatsLogin::new("nats://127.0.0.1:4222", "worker", "Sup3rSecret");
        let shown = format!("{login:?}");
        assert!(!shown.contains("Sup3rSecret"), "{shown}");
        assert!(
            shown.contains("worker") && shown.contains("127.0.0.1:4222"),
            "{shown}"
        );
    }

    #[test]
    fn password_variable_names_the_role() {
        assert_eq!(password_variable(Role::Dashboard), "SF_DASHBOARD_PASSWORD");
    }

    #[test]
    fn a_host_login_speaks_as_its_host() {
        let login = NatsLogin::host("nats://x", &"h1".into(), Secret::from("SUSEED"));
        assert_eq!(login.principal(), Some(Principal::host("h1")));
        assert!(!format!("{login:?}").contains("SUSEED"));
    }
}
