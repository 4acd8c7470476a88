//! A node's container on this host: its namespace with the node's dedicated address, its crun
//! bundle (the host's `/usr` and `/etc` read-only, the volume at `/data`), and its daemon.
//!
//! Invariant: a placement's container and namespace are named by node and placement
//! (`generation`), so a replacement never meets its predecessor's leftovers under its own name,
//! wherever that predecessor ran (all hosts share one kernel's namespaces).

use super::NodeError;
use super::moosefs::{VOLUME_IN_CONTAINER, daemon_args};
use crate::crun::{Bind, global_args, hybrid_cgroups, oci_config_running, run_detached};
use crate::network::HostNetwork;
use crate::process::{alive, exited, run, signal, start_detached};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use streamfleet_bus_schemas::dfs::NodeRole;
use streamfleet_bus_schemas::ids::{InstanceId, NodeId};
use streamfleet_bus_schemas::instance::InstanceAddresses;
use streamfleet_domain::fleet::{Fleet, addresses_of};

/// What a daemon that drops to user `mfs` needs, and no more.
const CAPS: [&str; 9] = [
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_SYS_NICE",
    "CAP_IPC_LOCK",
    "CAP_NET_BIND_SERVICE",
    "CAP_KILL",
];

/// The containers of one host's nodes.
#[derive(Debug, Clone)]
pub struct Containers {
    /// Where the nodes' folders are (`<node>/mnt`, `<node>/bundle`), crun's state (`crun`) and
    /// the shared root (`rootfs`).
    pub dir: PathBuf,
    /// The host's network.
    pub network: HostNetwork,
    hybrid: bool,
}

/// A node's placement: the id its namespace and container are named by.
pub fn placement_id(node_id: &NodeId, generation: u32) -> InstanceId {
    format!("node.{node_id}.g{generation}").into()
}

/// The addresses routed for a node: its dedicated address (and the pool's public twin of it).
pub fn node_addresses(address: &str) -> InstanceAddresses {
    match Fleet::index_of_address(address) {
        Some(index) => addresses_of(index),
        None => InstanceAddresses {
            private: address.to_string(),
            public: address.to_string(),
        },
    }
}

impl Containers {
    /// The containers under `dir` on `network`.
    pub fn new(dir: PathBuf, network: HostNetwork) -> Containers {
        Containers {
            dir,
            network,
            hybrid: hybrid_cgroups(),
        }
    }

    /// Where node `node_id`'s volume is mounted on this host.
    pub fn mountpoint(&self, node_id: &NodeId) -> PathBuf {
        self.dir.join(node_id.as_str()).join("mnt")
    }

    /// A scratch folder of the node's on this host.
    pub fn scratch(&self, node_id: &NodeId) -> PathBuf {
        self.dir.join(node_id.as_str()).join("scratch")
    }

    fn crun_root(&self) -> PathBuf {
        self.dir.join("crun")
    }

    fn container_id(node_id: &NodeId, generation: u32) -> String {
        format!("{node_id}-g{generation}")
    }

    /// The shared root: empty folders for the mounts, `bin`, `lib`… leading into `/usr`.
    fn rootfs(&self) -> Result<PathBuf, NodeError> {
        let root = self.dir.join("rootfs");
        for folder in [
            "usr", "etc", "data", "proc", "dev", "run", "tmp", "sys", "var",
        ] {
            let path = root.join(folder);
            std::fs::create_dir_all(&path).map_err(NodeError::io(&path))?;
        }
        for link in ["bin", "sbin", "lib", "lib64"] {
            let path = root.join(link);
            if std::fs::symlink_metadata(&path).is_err() {
                std::os::unix::fs::symlink(format!("usr/{link}"), &path)
                    .map_err(NodeError::io(&path))?;
            }
        }
        Ok(root)
    }

    /// Whether `mountpoint` has a file system mounted on it now.
    pub fn mounted(mountpoint: &Path) -> bool {
        let wanted = mountpoint.display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some(wanted.as_str()))
    }

    async fn crun(&self, rest: &[&str]) -> Result<String, NodeError> {
        let mut args = global_args(&self.crun_root(), self.hybrid);
        args.extend(rest.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(run("crun", &argv).await?)
    }

    /// The pid of the placement's container when it runs here.
    pub async fn running(&self, node_id: &NodeId, generation: u32) -> Option<u32> {
        let id = Containers::container_id(node_id, generation);
        if !self.crun_root().join(&id).exists() {
            return None;
        }
        let state = self.crun(&["state", &id]).await.ok()?;
        let state: serde_json::Value = serde_json::from_str(&state).ok()?;
        let pid = state.get("pid")?.as_u64()? as u32;
        (state.get("status")?.as_str()? == "running" && alive(pid)).then_some(pid)
    }

    /// Starts the placement's container: its namespace with the node's address, the daemon of
    /// `role` over the volume mounted at [`Containers::mountpoint`]. Its init's pid.
    pub async fn start(
        &self,
        node_id: &NodeId,
        generation: u32,
        role: NodeRole,
        address: &str,
    ) -> Result<u32, NodeError> {
        let placement = placement_id(node_id, generation);
        let netns = self
            .network
            .instance_namespace(&placement, &node_addresses(address))
            .await?;
        let folder = self.dir.join(node_id.as_str());
        let bundle = folder.join(format!("bundle-g{generation}"));
        std::fs::create_dir_all(&bundle).map_err(NodeError::io(&bundle))?;
        let binds = [
            Bind {
                destination: "/usr".into(),
                source: "/usr".into(),
                read_only: true,
            },
            Bind {
                destination: "/etc".into(),
                source: "/etc".into(),
                read_only: true,
            },
            Bind {
                destination: VOLUME_IN_CONTAINER.into(),
                source: self.mountpoint(node_id),
                read_only: false,
            },
        ];
        let config = oci_config_running(
            node_id.as_str(),
            &self.rootfs()?,
            &binds,
            Some(&netns),
            streamfleet_domain::dfs::room_of(role).1,
            &daemon_args(role),
            &CAPS,
        );
        let path = bundle.join("config.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&config).unwrap_or_default(),
        )
        .map_err(NodeError::io(&path))?;
        let id = Containers::container_id(node_id, generation);
        if self.crun_root().join(&id).exists() {
            let _ = self.crun(&["delete", "-f", &id]).await;
        }
        let pid_file = bundle.join("init.pid");
        let _ = std::fs::remove_file(&pid_file);
        let log = folder.join("console.log");
        let console = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(NodeError::io(&log))?;
        let errors = bundle.join("crun.err");
        let _ = std::fs::remove_file(&errors);
        let command = run_detached(
            &self.crun_root(),
            self.hybrid,
            &bundle,
            &id,
            Some(&pid_file),
        );
        start_detached(command, "crun run", Stdio::from(console), &errors).await?;
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|pid| alive(*pid))
            .ok_or_else(|| {
                NodeError::Container(format!(
                    "crun started {id} but it does not run (see {})",
                    log.display()
                ))
            })
    }

    /// Stops the placement's container: cleanly (TERM; the master writes its checkpoint on the
    /// way out) within `grace`, else killed; `grace` zero: killed at once (a fence).
    pub async fn stop(&self, node_id: &NodeId, generation: u32, grace: Duration) {
        let id = Containers::container_id(node_id, generation);
        if let Some(pid) = self.running(node_id, generation).await {
            if grace.is_zero() {
                let _ = self.crun(&["kill", "--all", &id, "KILL"]).await;
                signal(pid, libc::SIGKILL);
            } else {
                let _ = self.crun(&["kill", &id, "TERM"]).await;
            }
            if tokio::time::timeout(grace.max(Duration::from_secs(5)), exited(pid))
                .await
                .is_err()
            {
                let _ = self.crun(&["kill", "--all", &id, "KILL"]).await;
                exited(pid).await;
            }
        }
        if self.crun_root().join(&id).exists() {
            let _ = self.crun(&["delete", "-f", &id]).await;
        }
    }

    /// Takes the placement off this host's network: its namespace and its routes through
    /// this host (a route that leads elsewhere now is left alone).
    pub async fn release(&self, node_id: &NodeId, generation: u32, address: &str) {
        self.network.unroute(&node_addresses(address)).await;
        let placement = placement_id(node_id, generation);
        // Namespaces are the machine's, not the host's: only one joined to this host's bridge
        // (its veth's host end is here) is this host's to remove.
        let host_end = format!("v{}", crate::process::tag(&placement));
        if crate::process::ip(&["-n", &self.network.namespace, "link", "show", &host_end])
            .await
            .is_ok()
        {
            self.network.release(&placement).await;
        }
    }

    /// Routes the node's address to this host and announces it on the host's bridge (a
    /// gratuitous ARP from the node's namespace, in the background).
    pub async fn take_address(
        &self,
        node_id: &NodeId,
        generation: u32,
        address: &str,
    ) -> Result<(), NodeError> {
        self.network.route(&node_addresses(address)).await?;
        let netns = format!(
            "--net=/var/run/netns/{}",
            crate::network::instance_namespace(&placement_id(node_id, generation))
        );
        let address = address.to_string();
        tokio::spawn(async move {
            let _ = run(
                "nsenter",
                &[
                    &netns, "arping", "-U", "-c", "1", "-w", "1", "-I", "eth0", &address,
                ],
            )
            .await;
        });
        Ok(())
    }

    /// Runs `probe` inside this host's network namespace (on a thread of its own).
    pub async fn in_host_namespace<T: Send + 'static>(
        &self,
        probe: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NodeError> {
        let path = format!("/var/run/netns/{}", self.network.namespace);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let entered = enter_namespace(&path);
            let _ = tx.send(entered.map(|()| probe()));
        });
        rx.await
            .map_err(|_| NodeError::Container("the probe thread ended".into()))?
            .map_err(|e| NodeError::Container(format!("entering {}: {e}", "the host namespace")))
    }
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter_namespace(path: &str) -> Result<(), std::io::Error> {
    let file = std::fs::File::open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) on an open namespace file; it changes only this thread's namespace.
    let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
