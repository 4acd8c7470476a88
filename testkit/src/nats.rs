//! A real `nats-server` for one test or bench.
//!
//! Invariant: [`NatsServer::start`] returns only once the server said "Server is ready" on its
//! own port; the process and its store live exactly as long as the value.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use streamfleet_bus_client::{CommandClient, NatsLogin, ROLES, connect, password_variable};

/// Why a nats-server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The temporary store could not be made.
    #[error("temporary store: {0}")]
    Store(std::io::Error),
    /// `nats-server` could not be run.
    #[error("nats-server could not be run (is it installed? ./test.sh installs it): {0}")]
    Spawn(std::io::Error),
    /// It exited before it was ready, every time it was tried.
    #[error("nats-server exited before it was ready: {0}")]
    NotReady(String),
}

/// A port free now, below the kernel's ephemeral range (32768+), so the client sockets of
/// processes running in parallel cannot take it before a server binds it.
pub fn free_port() -> u16 {
    loop {
        let port = rand::random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A nats-server started from a `nats.conf`, with a fresh password for each of its roles.
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    passwords: BTreeMap<&'static str, String>,
    _store: tempfile::TempDir,
}

/// Tries with another port when another process took the one chosen first.
const ATTEMPTS: u32 = 5;

impl NatsServer {
    /// Starts `nats-server -c <conf>` and waits until it is ready.
    pub fn start(conf: &Path) -> Result<NatsServer, StartError> {
        let store = tempfile::tempdir().map_err(StartError::Store)?;
        // nats.conf reads `$VAR` values as config tokens: a password must start with a letter.
        let passwords: BTreeMap<_, _> = ROLES
            .iter()
            .map(|r| (*r, format!("{r}-{:032x}", rand::random::<u128>())))
            .collect();
        let mut said = Vec::new();
        for _ in 0..ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new("nats-server");
            cmd.arg("-c")
                .arg(conf)
                .arg("-p")
                .arg(port.to_string())
                .env("SF_JETSTREAM_DIR", store.path().join("js"));
            for (role, pw) in &passwords {
                cmd.env(password_variable(role), pw);
            }
            let mut child = cmd
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .map_err(StartError::Spawn)?;
            let Some(stderr) = child.stderr.take() else {
                let _ = child.kill();
                return Err(StartError::NotReady("no stderr".into()));
            };
            let mut lines = BufReader::new(stderr).lines();
            said.clear();
            let ready = loop {
                match lines.next() {
                    Some(Ok(line)) if line.contains("Server is ready") => break true,
                    Some(Ok(line)) => said.push(line),
                    _ => break false,
                }
            };
            if ready {
                // Keep reading so the server never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
                return Ok(NatsServer {
                    child,
                    url: format!("nats://127.0.0.1:{port}"),
                    passwords,
                    _store: store,
                });
            }
            let _ = child.wait();
        }
        Err(StartError::NotReady(said.join("\n")))
    }

    /// A role's password (panics on a role `nats.conf` does not define: a test's mistake).
    pub fn password(&self, role: &str) -> String {
        self.passwords[role].clone()
    }

    /// A role's login.
    pub fn login(&self, role: &str) -> NatsLogin {
        NatsLogin::new(self.url.clone(), role, self.password(role))
    }

    /// Connects as `role`.
    pub async fn try_client(
        &self,
        role: &str,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        connect(&self.login(role)).await
    }

    /// Connects as `role`, for tests: panics when the server refuses.
    pub async fn client(&self, role: &str) -> async_nats::Client {
        match self.try_client(role).await {
            Ok(c) => c,
            Err(e) => panic!("connect as {role} to {}: {e}", self.url),
        }
    }

    /// A command client as `role`, for tests.
    pub async fn commands(&self, role: &str) -> CommandClient {
        CommandClient::new(self.client(role).await, format!("test/{role}"))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
