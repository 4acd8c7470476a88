//! A real `nats-server` for one test or bench, with the configuration Streamfleet renders
//! (`streamfleet_bus_schemas::nats_conf`) and hosts admitted the way an operator admits them.
//!
//! Invariant: [`NatsServer::start`] returns only once the server said "Server is ready" on its
//! own port; the process, its configuration, its store and its hosts' keys live exactly as
//! long as the value.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use streamfleet_bus_client::{
    AdmissionError, Admitter, CommandClient, HostKey, NatsConfig, NatsLogin, connect,
    password_variable,
};
use streamfleet_bus_schemas::ids::{HostId, RegionId};
use streamfleet_bus_schemas::principal::{Principal, Role};

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

/// A nats-server with Streamfleet's configuration, a fresh password for each role.
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    passwords: BTreeMap<&'static str, String>,
    config: NatsConfig,
    ca: Option<PathBuf>,
    tls: Option<streamfleet_tls::TlsFiles>,
    store: tempfile::TempDir,
}

/// Tries with another port when another process took the one chosen first.
const ATTEMPTS: u32 = 5;

impl NatsServer {
    /// Writes the configuration, starts `nats-server -c` on it and waits until it is ready.
    pub fn start() -> Result<NatsServer, StartError> {
        Self::start_with(false)
    }

    /// [`NatsServer::start`] with TLS required of every client: a certificate authority and a
    /// server certificate for 127.0.0.1 made in its folder; its logins trust that authority.
    pub fn start_tls() -> Result<NatsServer, StartError> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Result<NatsServer, StartError> {
        let store = tempfile::tempdir().map_err(StartError::Store)?;
        let mut config = NatsConfig::new(store.path());
        let mut ca = None;
        let mut tls_files = None;
        if tls {
            let files = streamfleet_tls::TlsFiles::ensure(
                &store.path().join("tls"),
                &["127.0.0.1", "localhost"],
            )
            .map_err(|e| StartError::Store(std::io::Error::other(e.to_string())))?;
            config = config.with_tls(Some(streamfleet_bus_schemas::nats_conf::ServerTls {
                cert: files.cert.clone(),
                key: files.key.clone(),
            }));
            ca = Some(files.ca.clone());
            tls_files = Some(files);
        }
        let conf = config
            .write()
            .map_err(|e| StartError::Store(std::io::Error::other(e.to_string())))?;
        // nats.conf reads `$VAR` values as config tokens: a password must start with a letter.
        let passwords: BTreeMap<_, _> = Role::ALL
            .iter()
            .map(|r| (r.name(), format!("{r}-{:032x}", rand::random::<u128>())))
            .collect();
        let mut said = Vec::new();
        for _ in 0..ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new("nats-server");
            cmd.arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(port.to_string())
                .env("SF_JETSTREAM_DIR", store.path().join("js"));
            for role in Role::ALL {
                cmd.env(password_variable(role), &passwords[role.name()]);
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
                    config,
                    ca,
                    tls: tls_files,
                    store,
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

    /// A role's login (trusting the server's authority when it speaks TLS).
    pub fn login(&self, role: &str) -> NatsLogin {
        NatsLogin::new(self.url.clone(), role, self.password(role)).with_ca(self.ca.clone())
    }

    /// The certificates (authority, and a server certificate for 127.0.0.1 other servers of the
    /// test may present too), when the server speaks TLS.
    pub fn tls_files(&self) -> Option<streamfleet_tls::TlsFiles> {
        self.tls.clone()
    }

    /// The certificate authority clients trust, when the server speaks TLS.
    pub fn ca(&self) -> Option<PathBuf> {
        self.ca.clone()
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
        let principal = Role::from_name(role)
            .map(Principal::Role)
            .unwrap_or_else(|| panic!("no role {role}"));
        CommandClient::new(self.client(role).await, principal, format!("test/{role}"))
    }

    /// The folder of the admitted hosts' keys (`<host id>.nk`), for `host-agent --host-keys`.
    pub fn host_keys(&self) -> PathBuf {
        self.store.path().join("host-keys")
    }

    /// Registers `app_id` at version 1.0.0 as an operator does (`RegisterApp`; a node must be
    /// serving): tokens, buffers and sessions of it are then accepted.
    pub async fn register_app(&self, app_id: &str) -> Result<(), streamfleet_bus_client::Refused> {
        use streamfleet_bus_schemas::payloads::{HostRequirements, RegisterApp};
        let register = streamfleet_bus_schemas::Command::RegisterApp(RegisterApp {
            app_id: app_id.into(),
            version: "1.0.0".into(),
            image: format!("registry.example/{app_id}:1.0.0"),
            requirements: HostRequirements::default(),
        });
        self.commands("operator")
            .await
            .submit(uuid::Uuid::now_v7(), &register)
            .await
            .map(|_| ())
    }

    /// Admits `host_id` to `region` as an operator does: a key in [`NatsServer::host_keys`],
    /// a user in the configuration, the server reloaded, `AdmitHost` recorded (a node must be
    /// serving).
    pub async fn admit_host(&self, host_id: &str, region: &str) -> Result<HostKey, AdmissionError> {
        let mut keys = self.admit_hosts(&[host_id], region).await?;
        keys.pop()
            .ok_or_else(|| AdmissionError::Reload("no host admitted".into()))
    }

    /// [`NatsServer::admit_host`] for many hosts of one region, with one reload.
    pub async fn admit_hosts(
        &self,
        host_ids: &[&str],
        region: &str,
    ) -> Result<Vec<HostKey>, AdmissionError> {
        let (operator, keys) = (self.commands("operator").await, self.host_keys());
        let ids: Vec<HostId> = host_ids.iter().map(|h| HostId::from(*h)).collect();
        self.admitter(&operator, &keys)
            .admit_all(&ids, &RegionId::from(region), || self.reload())
            .await
    }

    /// Revokes `host_id`'s admission as an operator does: its key out of the configuration and
    /// the key folder, the server reloaded (its connections closed), `RemoveHost` recorded.
    pub async fn revoke_host(&self, host_id: &str) -> Result<(), AdmissionError> {
        let (operator, keys) = (self.commands("operator").await, self.host_keys());
        self.admitter(&operator, &keys)
            .revoke(&HostId::from(host_id), || self.reload())
            .await
    }

    /// Admission against this server, as `operator`, seeds into `keys`.
    fn admitter<'a>(
        &'a self,
        operator: &'a CommandClient,
        keys: &'a std::path::Path,
    ) -> Admitter<'a> {
        Admitter {
            config: &self.config,
            nats_url: &self.url,
            ca: self.ca.as_deref(),
            keys,
            operator,
        }
    }

    /// Tells this server to read its configuration again.
    fn reload(&self) -> Result<(), AdmissionError> {
        streamfleet_bus_client::reload(self.child.id())
    }

    /// A command client speaking as admitted host `host_id` (its key from
    /// [`NatsServer::host_keys`]), for tests.
    pub async fn host_commands(&self, host_id: &str) -> CommandClient {
        let client = self.host_client(host_id).await;
        CommandClient::new(client, Principal::host(host_id), format!("test/{host_id}"))
    }

    /// Admitted host `host_id`'s login (its key from [`NatsServer::host_keys`]).
    pub fn host_login(&self, host_id: &str) -> NatsLogin {
        let id = HostId::from(host_id);
        let key = HostKey::read(&self.host_keys(), &id).expect("the host was admitted");
        NatsLogin::host(self.url.clone(), &id, key.seed().clone()).with_ca(self.ca.clone())
    }

    /// Connects as admitted host `host_id`, for tests.
    pub async fn host_client(&self, host_id: &str) -> async_nats::Client {
        let login = self.host_login(host_id);
        match connect(&login).await {
            Ok(c) => c,
            Err(e) => panic!("connect as host {host_id} to {}: {e}", self.url),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
