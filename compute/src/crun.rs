//! The crun driver: one OCI container per instance, in a network namespace of its own joined to
//! the host's bridge, its root volume a folder bind-mounted at `/data`.
//!
//! Invariant: the container outlives the agent (crun runs it detached), so a restarted agent
//! re-adopts it from crun's state folder instead of starting it twice. What crun cannot do here
//! is refused as `unsupported`, never half done: no snapshot (no CRIU), no hot-attached volume
//! (volumes are mounts given at create), and on hybrid-cgroup hosts no cgroup limits (crun runs
//! in a private mount namespace without `/sys/fs/cgroup/unified`, with
//! `--cgroup-manager=disabled`).

use crate::driver::{
    Driver, DriverError, Happening, InstanceSpec, READY_LINE, Running, Turns, remove_folder,
};
use crate::network::HostNetwork;
use crate::process::{alive, exited, run, start_detached};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::ids::InstanceId;
use tokio::sync::{Mutex, mpsc};

/// How long a container may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

struct Container {
    pid: u32,
    expected: Arc<AtomicBool>,
}

/// The crun driver of one host.
pub struct CrunDriver {
    images: PathBuf,
    volumes: PathBuf,
    state: PathBuf,
    network: HostNetwork,
    hybrid_cgroups: bool,
    containers: std::sync::Mutex<HashMap<InstanceId, Container>>,
    turns: Turns,
    happened_tx: mpsc::UnboundedSender<(InstanceId, u32)>,
    happened_rx: Mutex<mpsc::UnboundedReceiver<(InstanceId, u32)>>,
}

/// crun's global arguments on this host: its state folder `root`, and no cgroup manager where
/// cgroups are hybrid (crun refuses them).
pub fn global_args(root: &Path, hybrid: bool) -> Vec<String> {
    let mut args = vec!["--root".to_string(), root.display().to_string()];
    if hybrid {
        args.push("--cgroup-manager=disabled".into());
    }
    args
}

/// `crun run -d` of `bundle` as container `id` (its init's pid into `pid_file`), started as this
/// host must: on hybrid cgroups in a mount namespace of its own without the v2 mount (then
/// without cgroup limits).
pub fn run_detached(
    root: &Path,
    hybrid: bool,
    bundle: &Path,
    id: &str,
    pid_file: Option<&Path>,
) -> tokio::process::Command {
    let mut args = global_args(root, hybrid);
    args.extend(["run".into(), "-d".into()]);
    if let Some(pid_file) = pid_file {
        args.push(format!("--pid-file={}", pid_file.display()));
    }
    args.extend(["--bundle".into(), bundle.display().to_string(), id.into()]);
    let mut command = if hybrid {
        let mut c = tokio::process::Command::new("unshare");
        c.args([
            "-m",
            "sh",
            "-c",
            "umount /sys/fs/cgroup/unified 2>/dev/null; exec crun \"$@\"",
            "crun",
        ]);
        c
    } else {
        tokio::process::Command::new("crun")
    };
    command.args(args);
    command
}

/// A folder or file bound into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Where the container sees it.
    pub destination: String,
    /// What it is on the host.
    pub source: PathBuf,
    /// Read-only for the container.
    pub read_only: bool,
}

/// The OCI configuration of a container of the catalogue: `rootfs` read-only, its `/bin/init`
/// with two capabilities, `/proc`, `/dev`, `/run`, `/tmp`, a read-only `/sys`, `binds`, its
/// memory limit, and network namespace `netns` (none: a fresh one of crun's making).
pub fn oci_config(
    hostname: &str,
    rootfs: &Path,
    binds: &[Bind],
    netns: Option<&str>,
    memory_mib: u32,
) -> serde_json::Value {
    oci_config_running(
        hostname,
        rootfs,
        binds,
        netns,
        memory_mib,
        &["/bin/init".to_string()],
        &["CAP_NET_BIND_SERVICE", "CAP_KILL"],
    )
}

/// [`oci_config`] for a container that runs `args` with capabilities `caps` (a daemon that
/// drops to its own user needs `CAP_SETUID`, `CAP_SETGID` and the like).
pub fn oci_config_running(
    hostname: &str,
    rootfs: &Path,
    binds: &[Bind],
    netns: Option<&str>,
    memory_mib: u32,
    args: &[String],
    caps: &[&str],
) -> serde_json::Value {
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}),
        serde_json::json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs"}),
        serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
        serde_json::json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro", "nosuid", "noexec"]}),
    ];
    mounts.extend(binds.iter().map(|b| {
        let options = if b.read_only {
            ["bind", "ro"]
        } else {
            ["rbind", "rw"]
        };
        serde_json::json!({
            "destination": b.destination, "type": "bind",
            "source": b.source.display().to_string(), "options": options,
        })
    }));
    let network = match netns {
        Some(path) => serde_json::json!({"type": "network", "path": path}),
        None => serde_json::json!({"type": "network"}),
    };
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin:/usr/bin:/usr/sbin"],
            "cwd": "/",
            "noNewPrivileges": true,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        },
        "root": {"path": rootfs.display().to_string(), "readonly": true},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, network,
            ],
            "resources": {"memory": {"limit": u64::from(memory_mib) << 20}},
        },
    })
}

/// Waits until the ready line appears in the container's output file `log` past offset `from`;
/// false when the container's init `pid` ends first. The file is looked at every few
/// milliseconds (it is the container's, written while the agent may be gone).
async fn ready_in(log: &Path, from: u64, pid: u32) -> bool {
    loop {
        if let Ok(text) = std::fs::read(log)
            && let Some(new) = text.get(from as usize..)
            && String::from_utf8_lossy(new).contains(READY_LINE)
        {
            return true;
        }
        if !alive(pid) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether cgroups are mounted in hybrid mode (v1 controllers with v2 at `unified`).
pub fn hybrid_cgroups() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(4) == Some("/sys/fs/cgroup/unified"))
    })
}

impl CrunDriver {
    /// A driver whose images are under `images` (`<image>/rootfs`), whose instances' folders go
    /// under `volumes`, with crun's state under `state`, on `network`.
    pub fn new(
        images: PathBuf,
        volumes: PathBuf,
        state: PathBuf,
        network: HostNetwork,
    ) -> CrunDriver {
        let (happened_tx, happened_rx) = mpsc::unbounded_channel();
        CrunDriver {
            images,
            volumes,
            state,
            network,
            hybrid_cgroups: hybrid_cgroups(),
            containers: Default::default(),
            turns: Turns::default(),
            happened_tx,
            happened_rx: Mutex::new(happened_rx),
        }
    }

    fn dir(&self, id: &InstanceId) -> PathBuf {
        self.volumes.join(id.as_str())
    }

    async fn crun(&self, rest: &[&str]) -> Result<String, DriverError> {
        let mut args = global_args(&self.state, self.hybrid_cgroups);
        args.extend(rest.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        run("crun", &argv).await
    }

    /// The pid of the container's init when crun says it runs.
    async fn running_pid(&self, id: &InstanceId) -> Option<u32> {
        // crun keeps a folder per container: none, no container (and no `crun state` to run).
        if !self.state.join(id.as_str()).exists() {
            return None;
        }
        let state = self.crun(&["state", id.as_str()]).await.ok()?;
        let state: serde_json::Value = serde_json::from_str(&state).ok()?;
        let pid = state.get("pid")?.as_u64()? as u32;
        (state.get("status")?.as_str()? == "running" && alive(pid)).then_some(pid)
    }

    /// Writes the bundle: `config.json`, the settings file and the volumes' folders.
    fn bundle(&self, spec: &InstanceSpec, netns: &str) -> Result<PathBuf, DriverError> {
        let dir = self.dir(&spec.instance_id);
        let rootfs = self.images.join(&spec.image).join("rootfs");
        if !rootfs.join("bin/init").exists() {
            return Err(DriverError::MissingImage(spec.image.clone()));
        }
        let mut binds = Vec::new();
        for (i, volume) in spec.volumes.iter().enumerate() {
            let folder = dir.join(&volume.volume_id);
            std::fs::create_dir_all(&folder).map_err(DriverError::io(&folder))?;
            let destination = if i == 0 {
                "/data".to_string()
            } else {
                format!("/volumes/{}", volume.volume_id)
            };
            binds.push(Bind {
                destination,
                source: folder,
                read_only: false,
            });
        }
        let env = dir.join("sf.env");
        std::fs::write(&env, format!("SF_ID={}\n", spec.instance_id))
            .map_err(DriverError::io(&env))?;
        binds.push(Bind {
            destination: "/etc/sf.env".into(),
            source: env,
            read_only: true,
        });
        let config = oci_config(
            spec.instance_id.as_str(),
            &rootfs,
            &binds,
            Some(netns),
            spec.memory_mib,
        );
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&config).unwrap_or_default(),
        )
        .map_err(DriverError::io(&path))?;
        Ok(dir)
    }

    async fn boot(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        let id = &spec.instance_id;
        let dir = self.dir(id);
        std::fs::create_dir_all(&dir).map_err(DriverError::io(&dir))?;
        let netns = self.network.instance_namespace(id, &spec.addresses).await?;
        for network_id in &spec.networks {
            self.network.network_veth(id, network_id).await?;
        }
        let bundle = self.bundle(spec, &netns)?;
        // A container of the same id left in crun's state (crun keeps a folder per container)
        // goes first; none there: no `crun delete` to run.
        if self.state.join(id.as_str()).exists() {
            let _ = self.crun(&["delete", "-f", id.as_str()]).await;
        }
        let pid_file = dir.join("init.pid");
        let _ = std::fs::remove_file(&pid_file);
        let command = run_detached(
            &self.state,
            self.hybrid_cgroups,
            &bundle,
            id.as_str(),
            Some(&pid_file),
        );
        // The container's init inherits these: its output goes to a file, never a pipe, so the
        // container outlives the agent (a pipe whose reader died would end it with SIGPIPE);
        // its ready line is looked for there. crun's complaints go to a file of their own.
        let log = dir.join("console.log");
        let console = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(DriverError::io(&log))?;
        let from = console.metadata().map_err(DriverError::io(&log))?.len();
        // crun's complaints start afresh each boot.
        let errors_path = dir.join("crun.err");
        let _ = std::fs::remove_file(&errors_path);
        start_detached(command, "crun run", Stdio::from(console), &errors_path).await?;
        // The init's pid, as crun wrote it (no `crun state` to run).
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|pid| alive(*pid));
        let Some(pid) = pid else {
            return Err(DriverError::Control(format!(
                "crun started {id} but it does not run"
            )));
        };
        self.watch(id, pid);
        self.network.route(&spec.addresses).await?;
        match tokio::time::timeout(READY_TIMEOUT, ready_in(&log, from, pid)).await {
            Ok(true) => Ok(Running { pid }),
            _ => {
                self.end(id).await;
                Err(DriverError::NotReady {
                    instance_id: id.clone(),
                    seconds: READY_TIMEOUT.as_secs(),
                })
            }
        }
    }

    /// Watches the container's init: its end, unless the driver caused it, is a happening.
    fn watch(&self, id: &InstanceId, pid: u32) {
        let expected = Arc::new(AtomicBool::new(false));
        self.containers.lock().expect("containers").insert(
            id.clone(),
            Container {
                pid,
                expected: expected.clone(),
            },
        );
        let (tx, id) = (self.happened_tx.clone(), id.clone());
        tokio::spawn(async move {
            exited(pid).await;
            if !expected.load(Ordering::SeqCst) {
                let _ = tx.send((id, pid));
            }
        });
    }

    /// Ends the container (a TERM, then a KILL after 10 s) and deletes it from crun's state.
    async fn end(&self, id: &InstanceId) {
        let watched = self.containers.lock().expect("containers").remove(id);
        let pid = match watched {
            Some(c) => {
                c.expected.store(true, Ordering::SeqCst);
                Some(c.pid)
            }
            None => self.running_pid(id).await,
        };
        if let Some(pid) = pid {
            let _ = self.crun(&["kill", id.as_str(), "TERM"]).await;
            if tokio::time::timeout(Duration::from_secs(10), exited(pid))
                .await
                .is_err()
            {
                let _ = self.crun(&["kill", id.as_str(), "KILL"]).await;
                exited(pid).await;
            }
        }
        let _ = self.crun(&["delete", "-f", id.as_str()]).await;
    }
}

impl Driver for CrunDriver {
    fn hypervisor(&self) -> Hypervisor {
        Hypervisor::Crun
    }

    fn detail(&self) -> String {
        if self.hybrid_cgroups {
            "crun, no cgroup limits (hybrid cgroups)".into()
        } else {
            "crun, cgroup v2 limits".into()
        }
    }

    async fn launch(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        let _turn = self.turns.take(&spec.instance_id).await;
        if let Some(pid) = self.running_pid(&spec.instance_id).await {
            if !self
                .containers
                .lock()
                .expect("containers")
                .contains_key(&spec.instance_id)
            {
                self.watch(&spec.instance_id, pid);
            }
            return Ok(Running { pid });
        }
        self.boot(spec).await
    }

    async fn adopt(&self, spec: &InstanceSpec) -> Result<Option<Running>, DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        match self.running_pid(id).await {
            Some(pid) => {
                if !self.containers.lock().expect("containers").contains_key(id) {
                    self.watch(id, pid);
                }
                self.network.route(&spec.addresses).await?;
                Ok(Some(Running { pid }))
            }
            None => {
                let _ = self.crun(&["delete", "-f", id.as_str()]).await;
                Ok(None)
            }
        }
    }

    async fn stop(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        let _turn = self.turns.take(&spec.instance_id).await;
        self.end(&spec.instance_id).await;
        Ok(())
    }

    async fn reboot(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        let _turn = self.turns.take(&spec.instance_id).await;
        self.end(&spec.instance_id).await;
        self.boot(spec).await
    }

    async fn terminate(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        self.end(id).await;
        self.network.withdraw(spec).await;
        remove_folder(&self.dir(id))
    }

    async fn attach_network(
        &self,
        spec: &InstanceSpec,
        network_id: &str,
    ) -> Result<(), DriverError> {
        let _turn = self.turns.take(&spec.instance_id).await;
        // The container's namespace is its own and outlives its init: the interface is there
        // at once, and after a reboot too.
        self.network
            .network_veth(&spec.instance_id, network_id)
            .await
    }

    async fn detach_network(
        &self,
        spec: &InstanceSpec,
        network_id: &str,
    ) -> Result<(), DriverError> {
        let _turn = self.turns.take(&spec.instance_id).await;
        self.network
            .remove_network_interface(&spec.instance_id, network_id)
            .await;
        Ok(())
    }

    async fn next_happening(&self) -> (InstanceId, Happening) {
        loop {
            let next = self.happened_rx.lock().await.recv().await;
            let Some((id, pid)) = next else {
                std::future::pending::<()>().await;
                continue;
            };
            let current = self
                .containers
                .lock()
                .expect("containers")
                .get(&id)
                .map(|c| c.pid);
            if current == Some(pid) {
                self.containers.lock().expect("containers").remove(&id);
                let _ = self.crun(&["delete", "-f", id.as_str()]).await;
                return (
                    id,
                    Happening::Gone(format!("the container's init (pid {pid}) ended")),
                );
            }
        }
    }
}
