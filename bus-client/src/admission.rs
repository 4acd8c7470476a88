//! Admitting a host: its own key pair, its user in the nats-server configuration, its
//! `HostAdmitted` in the log. What an operator (`streamfleet host admit`), `streamfleet up` and
//! the tests do before a host can run.
//!
//! Invariant: the configuration is rewritten whole (to a temporary file, then renamed), so
//! nats-server never reads half of it; the list of admitted hosts (`hosts.list`, one
//! `<host id> <public key>` per line) only grows, and holds public keys only — seeds go to the
//! host's key folder.

use crate::{CommandClient, HostKey, HostKeyError, Refused};
use std::io::Write;
use std::path::{Path, PathBuf};
use streamfleet_bus_schemas::Command;
use streamfleet_bus_schemas::ids::{HostId, RegionId};
use streamfleet_bus_schemas::nats_conf::{HostUser, ServerTls, render};
use streamfleet_bus_schemas::payloads::AdmitHost;
use streamfleet_bus_schemas::principal::is_subject_token;

/// Why a host was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The id cannot stand in a subject.
    #[error("host id `{0}` must be letters, digits, `-` and `_`")]
    InvalidId(HostId),
    /// It was admitted before.
    #[error("host `{0}` is already admitted")]
    AlreadyAdmitted(HostId),
    /// It is not admitted (never, or revoked already).
    #[error("host `{0}` is not admitted")]
    NotAdmitted(HostId),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key could not be made or written.
    #[error(transparent)]
    Key(#[from] HostKeyError),
    /// nats-server could not be told to reload.
    #[error("nats-server reload: {0}")]
    Reload(String),
    /// The node did not record the admission.
    #[error("the log did not record the admission: {0}")]
    Refused(#[from] Refused),
}

/// The folder of a nats-server's configuration: `nats.conf`, rendered from the principal table
/// and `hosts.list`.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    dir: PathBuf,
    tls: Option<ServerTls>,
}

impl NatsConfig {
    /// The configuration kept in `dir`, with the TLS it was last written with (`nats.tls`:
    /// the certificate's and key's paths), so that an admission from another process keeps
    /// the server encrypted.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let tls = std::fs::read_to_string(dir.join("nats.tls"))
            .ok()
            .and_then(|text| {
                let mut lines = text.lines();
                Some(ServerTls {
                    cert: lines.next()?.into(),
                    key: lines.next()?.into(),
                })
            });
        NatsConfig { dir, tls }
    }

    /// The same, requiring TLS of every client with this certificate and key (`None`:
    /// plaintext).
    pub fn with_tls(mut self, tls: Option<ServerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// `nats.conf`, for `nats-server -c`.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("nats.conf")
    }

    fn list_path(&self) -> PathBuf {
        self.dir.join("hosts.list")
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AdmissionError + '_ {
        move |source| AdmissionError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The admitted hosts (none when nothing was admitted yet).
    pub fn hosts(&self) -> Result<Vec<HostUser>, AdmissionError> {
        let path = self.list_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Self::io(&path)(e)),
        };
        Ok(text
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(id, key)| HostUser {
                host_id: id.into(),
                public_key: key.trim().to_string(),
            })
            .collect())
    }

    /// Writes `nats.conf` for the hosts admitted so far.
    pub fn write(&self) -> Result<PathBuf, AdmissionError> {
        let conf = self.conf_path();
        let text = render(&self.hosts()?, self.tls.as_ref());
        let tls_path = self.dir.join("nats.tls");
        match &self.tls {
            Some(tls) => std::fs::write(
                &tls_path,
                format!("{}\n{}\n", tls.cert.display(), tls.key.display()),
            )
            .map_err(Self::io(&tls_path))?,
            None => match std::fs::remove_file(&tls_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Self::io(&tls_path)(e));
                }
                _ => {}
            },
        }
        let tmp = self.dir.join("nats.conf.tmp");
        std::fs::write(&tmp, text).map_err(Self::io(&tmp))?;
        std::fs::rename(&tmp, &conf).map_err(Self::io(&conf))?;
        Ok(conf)
    }

    /// Adds hosts' public keys and rewrites `nats.conf` (nats-server takes it on reload).
    pub fn add_hosts(&self, hosts: &[HostUser]) -> Result<(), AdmissionError> {
        let known = self.hosts()?;
        for (n, host) in hosts.iter().enumerate() {
            if !is_subject_token(&host.host_id) {
                return Err(AdmissionError::InvalidId(host.host_id.clone()));
            }
            if known
                .iter()
                .chain(&hosts[..n])
                .any(|h| h.host_id == host.host_id)
            {
                return Err(AdmissionError::AlreadyAdmitted(host.host_id.clone()));
            }
        }
        let path = self.list_path();
        let mut list = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Self::io(&path))?;
        let lines: String = hosts
            .iter()
            .map(|h| format!("{} {}\n", h.host_id, h.public_key))
            .collect();
        list.write_all(lines.as_bytes())
            .and_then(|()| list.sync_all())
            .map_err(Self::io(&path))?;
        self.write()?;
        Ok(())
    }
}

impl NatsConfig {
    /// Removes a host's public key and rewrites `nats.conf`; on reload nats-server closes the
    /// host's connections and lets it in no more. Whether it was there.
    pub fn remove_host(&self, host_id: &HostId) -> Result<bool, AdmissionError> {
        let hosts = self.hosts()?;
        let kept: Vec<&HostUser> = hosts.iter().filter(|h| &h.host_id != host_id).collect();
        if kept.len() == hosts.len() {
            return Ok(false);
        }
        let path = self.list_path();
        let lines: String = kept
            .iter()
            .map(|h| format!("{} {}\n", h.host_id, h.public_key))
            .collect();
        let tmp = self.dir.join("hosts.list.tmp");
        std::fs::write(&tmp, lines).map_err(Self::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        self.write()?;
        Ok(true)
    }
}

/// Tells the nats-server of process `pid` to read its configuration again (SIGHUP).
pub fn reload(pid: u32) -> Result<(), AdmissionError> {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .map_err(|e| AdmissionError::Reload(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(AdmissionError::Reload(format!("kill -HUP {pid}: {status}")))
    }
}

/// What admitting a host touches: the server's configuration, the server itself (at `nats_url`,
/// trusted through `ca` when it speaks TLS), the folder the hosts' seeds go to, and the
/// operator's connection the log hears `AdmitHost` from.
pub struct Admitter<'a> {
    /// The server's configuration.
    pub config: &'a NatsConfig,
    /// The server.
    pub nats_url: &'a str,
    /// Its certificate authority, when it speaks TLS.
    pub ca: Option<&'a Path>,
    /// Where the seeds go (0600 each).
    pub keys: &'a Path,
    /// The operator sending `AdmitHost`.
    pub operator: &'a CommandClient,
}

impl Admitter<'_> {
    /// Admits host `host_id` to `region`: a new key pair, its seed into the key folder, its
    /// public key into the configuration, nats-server reloaded (`reload`, then waited for until
    /// it lets the host in), and `AdmitHost` recorded. Returns the key.
    pub async fn admit(
        &self,
        host_id: &HostId,
        region: &RegionId,
        reload: impl FnOnce() -> Result<(), AdmissionError>,
    ) -> Result<HostKey, AdmissionError> {
        let mut admitted = self
            .admit_all(std::slice::from_ref(host_id), region, reload)
            .await?;
        admitted
            .pop()
            .ok_or_else(|| AdmissionError::Reload("no host admitted".into()))
    }

    /// Revokes host `host_id`'s admission: its key out of the configuration (nats-server,
    /// reloaded, closes its connections), its seed out of the key folder, and `RemoveHost`
    /// (`revoked`) recorded, so the fleet places nothing more on it.
    pub async fn revoke(
        &self,
        host_id: &HostId,
        reload: impl FnOnce() -> Result<(), AdmissionError>,
    ) -> Result<(), AdmissionError> {
        if !self.config.remove_host(host_id)? {
            return Err(AdmissionError::NotAdmitted(host_id.clone()));
        }
        reload()?;
        let seed = HostKey::path(self.keys, host_id);
        match std::fs::remove_file(&seed) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(AdmissionError::Io {
                    path: seed,
                    source: e,
                });
            }
            _ => {}
        }
        let command = Command::RemoveHost(streamfleet_bus_schemas::payloads::RemoveHost {
            host_id: host_id.clone(),
            reason: streamfleet_bus_schemas::payloads::HostRemovalReason::Revoked,
        });
        let id = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("revoke/{host_id}").as_bytes(),
        );
        self.operator.submit(id, &command).await?;
        Ok(())
    }

    /// [`Admitter::admit`] for many hosts of one region, with one reload.
    pub async fn admit_all(
        &self,
        host_ids: &[HostId],
        region: &RegionId,
        reload: impl FnOnce() -> Result<(), AdmissionError>,
    ) -> Result<Vec<HostKey>, AdmissionError> {
        let mut users = Vec::with_capacity(host_ids.len());
        let mut admitted = Vec::with_capacity(host_ids.len());
        for host_id in host_ids {
            let key = HostKey::generate()?;
            users.push(HostUser {
                host_id: host_id.clone(),
                public_key: key.public_key.clone(),
            });
            admitted.push(key);
        }
        // Refused as a whole when any id is taken, before any seed is written over.
        self.config.add_hosts(&users)?;
        for (host_id, key) in host_ids.iter().zip(&admitted) {
            key.write(self.keys, host_id)?;
        }
        reload()?;
        for (host_id, key) in host_ids.iter().zip(&admitted) {
            wait_until_admitted(self.nats_url, self.ca, host_id, key).await?;
            let command = Command::AdmitHost(AdmitHost {
                host_id: host_id.clone(),
                region: region.clone(),
                public_key: key.public_key.clone(),
            });
            let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.public_key.as_bytes());
            self.operator.submit(id, &command).await?;
        }
        Ok(admitted)
    }
}

/// Connects with the host's key until nats-server, reloading, lets it in (the server answers
/// each attempt at once: this waits on the server, not on a clock).
async fn wait_until_admitted(
    nats_url: &str,
    ca: Option<&Path>,
    host_id: &HostId,
    key: &HostKey,
) -> Result<(), AdmissionError> {
    let login = crate::NatsLogin::host(nats_url, host_id, key.seed().clone())
        .with_ca(ca.map(Path::to_path_buf));
    let mut last = String::new();
    for _ in 0..100 {
        match crate::connect(&login).await {
            Ok(client) => {
                drop(client);
                return Ok(());
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(AdmissionError::Reload(format!(
        "nats-server still refuses host {host_id} after reloading: {last}"
    )))
}
