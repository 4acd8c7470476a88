//! The qemu driver: one `qemu-system-x86_64` process per instance, in the host's network
//! namespace, driven over QMP ([`crate::qmp`]).
//!
//! Invariant: QEMU runs daemonized, so it outlives the agent and a restarted agent re-adopts it
//! through its QMP socket instead of booting it twice; `-action reboot=shutdown,shutdown=pause`
//! turns every guest reboot and power-off into a QMP event and a paused guest, so the control
//! plane decides what a reboot means (migration will). A reboot is a fresh QEMU process with the
//! same disks: the guest's boot count moves, its disk stays. The instance's folder holds its
//! disks (`<volume>.raw`, and a qcow2 overlay per snapshot taken, recorded in `layers.json`),
//! its sockets and its console log.

mod migration;

use crate::accel::Probed;
use crate::driver::{
    Driver, DriverError, Happening, InstanceSpec, READY_LINE, Running, Turns, remove_folder,
};
use crate::network::HostNetwork;
use crate::process::{alive, exited, last_words, run, signal, start_detached};
use crate::qmp::{BlockdevAdd, NetdevAdd, Qmp, QmpEvent};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::ids::InstanceId;
use streamfleet_bus_schemas::instance::Volume;
use streamfleet_domain::fleet::{GATEWAY, PREFIX};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Mutex, mpsc};

/// How long a guest may take to answer after QEMU starts (TCG on a busy 2-core machine boots
/// the catalogue's guest in about 15 s).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a guest may take to let go of a device asked back.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries at connecting again to a running QEMU's monitor, and the wait between them.
const RECONNECT_TRIES: u32 = 20;
const RECONNECT_AFTER: Duration = Duration::from_millis(250);
/// How long a clean power-off may take before QEMU is told to quit anyway.
const POWERDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// A running QEMU and its session.
struct Session {
    pid: u32,
    qmp: Qmp,
    /// Set before the driver makes QEMU end, so its end is not reported as a surprise.
    expected: AtomicBool,
    /// Shutdowns and device removals the driver waits for.
    waits: Mutex<mpsc::UnboundedReceiver<QmpEvent>>,
}

/// The qemu driver of one host.
pub struct QemuDriver {
    images: PathBuf,
    volumes: PathBuf,
    network: HostNetwork,
    accel: Probed,
    sessions: std::sync::Mutex<HashMap<InstanceId, Arc<Session>>>,
    turns: Turns,
    happened_tx: mpsc::UnboundedSender<(InstanceId, u32, QmpEvent)>,
    happened_rx: Mutex<mpsc::UnboundedReceiver<(InstanceId, u32, QmpEvent)>>,
    /// What each running instance was booted with (a reboot the guest asks for boots it again).
    booted: std::sync::Mutex<HashMap<InstanceId, InstanceSpec>>,
    /// Instances whose guest reboots are held for their migration.
    held: std::sync::Mutex<std::collections::HashSet<InstanceId>>,
    /// Instances being halted or halted for their move: their guest's shutdown is expected.
    moving: std::sync::Mutex<std::collections::HashSet<InstanceId>>,
}

/// Which file and block node is the top of each volume (after snapshots, a qcow2 overlay).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Layers {
    top: BTreeMap<String, Layer>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Layer {
    file: String,
    node: String,
    format: String,
}

fn node_of(volume_id: &str) -> String {
    format!("v-{volume_id}")
}

fn mac_of(interface: &str) -> String {
    let t = crc32fast::hash(interface.as_bytes()).to_be_bytes();
    format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", t[0], t[1], t[2], t[3])
}

impl QemuDriver {
    /// A driver whose images are under `images` (`<image>/vmlinuz`, `<image>/initramfs.cpio.gz`)
    /// and whose instances' folders go under `volumes`, on `network`, running guests with the
    /// accelerator `accel` ([`crate::accel::probe`] chooses it).
    pub fn new(
        images: PathBuf,
        volumes: PathBuf,
        network: HostNetwork,
        accel: Probed,
    ) -> QemuDriver {
        let (happened_tx, happened_rx) = mpsc::unbounded_channel();
        QemuDriver {
            images,
            volumes,
            network,
            accel,
            sessions: Default::default(),
            turns: Turns::default(),
            happened_tx,
            happened_rx: Mutex::new(happened_rx),
            booted: Default::default(),
            held: Default::default(),
            moving: Default::default(),
        }
    }

    fn dir(&self, id: &InstanceId) -> PathBuf {
        self.volumes.join(id.as_str())
    }

    fn session(&self, id: &InstanceId) -> Option<Arc<Session>> {
        self.sessions.lock().expect("sessions").get(id).cloned()
    }

    fn layers(&self, id: &InstanceId) -> Layers {
        std::fs::read(self.dir(id).join("layers.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_layers(&self, id: &InstanceId, layers: &Layers) -> Result<(), DriverError> {
        let path = self.dir(id).join("layers.json");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(layers).unwrap_or_default())
            .map_err(DriverError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(DriverError::io(&path))
    }

    /// The top layer of a volume: its overlay after a snapshot, else its raw file.
    fn top(&self, id: &InstanceId, volume_id: &str) -> Layer {
        self.layers(id)
            .top
            .get(volume_id)
            .cloned()
            .unwrap_or_else(|| Layer {
                file: format!("{volume_id}.raw"),
                node: node_of(volume_id),
                format: "raw".into(),
            })
    }

    /// Creates a volume's raw file when it does not exist (sparse: it takes no space yet).
    fn ensure_disk(&self, id: &InstanceId, volume: &Volume) -> Result<PathBuf, DriverError> {
        let path = self.dir(id).join(format!("{}.raw", volume.volume_id));
        if !path.exists() {
            let file = std::fs::File::create(&path).map_err(DriverError::io(&path))?;
            file.set_len(u64::from(volume.size_mib) << 20)
                .map_err(DriverError::io(&path))?;
        }
        Ok(path)
    }

    /// Starts QEMU for `spec` and waits until the guest answers; `route`: its addresses lead
    /// here from then on (not for the target of a move, which routes once its launch is
    /// recorded).
    async fn boot(&self, spec: &InstanceSpec, route: bool) -> Result<Running, DriverError> {
        let id = &spec.instance_id;
        let image = self.images.join(&spec.image);
        let (kernel, initrd) = (image.join("vmlinuz"), image.join("initramfs.cpio.gz"));
        if !kernel.exists() || !initrd.exists() {
            return Err(DriverError::MissingImage(spec.image.clone()));
        }
        let dir = self.dir(id);
        std::fs::create_dir_all(&dir).map_err(DriverError::io(&dir))?;
        let mut args: Vec<String> = Vec::new();
        let mut arg = |a: &str| args.push(a.to_string());
        for a in [
            "netns",
            "exec",
            &self.network.namespace,
            "qemu-system-x86_64",
            "-name",
            id.as_str(),
            "-accel",
            self.accel.accel.name(),
            "-machine",
            "pc",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-action",
            "reboot=shutdown,shutdown=pause",
        ] {
            arg(a);
        }
        arg("-m");
        arg(&spec.memory_mib.to_string());
        arg("-smp");
        arg(&spec.cpus.to_string());
        arg("-kernel");
        arg(&kernel.display().to_string());
        arg("-initrd");
        arg(&initrd.display().to_string());
        arg("-append");
        arg(&format!(
            "console=ttyS0 quiet sf.id={id} sf.ip={}/{PREFIX} sf.pub={}/32 sf.gw={GATEWAY}",
            spec.addresses.private, spec.addresses.public
        ));
        let (qmp_path, console_path, pid_path) = (
            dir.join("qmp.sock"),
            dir.join("console.sock"),
            dir.join("qemu.pid"),
        );
        for stale in [&qmp_path, &console_path, &pid_path] {
            let _ = std::fs::remove_file(stale);
        }
        arg("-chardev");
        arg(&format!(
            "socket,id=console,path={},server=on,wait=off",
            console_path.display()
        ));
        arg("-serial");
        arg("chardev:console");
        arg("-qmp");
        arg(&format!("unix:{},server=on,wait=off", qmp_path.display()));
        arg("-pidfile");
        arg(&pid_path.display().to_string());
        arg("-daemonize");
        let tap = self.network.tap(id).await?;
        arg("-netdev");
        arg(&format!("tap,id=net0,ifname={tap},script=no,downscript=no"));
        arg("-device");
        arg(&format!("virtio-net-pci,netdev=net0,mac={}", mac_of(id)));
        for network_id in &spec.networks {
            let tap = self.network.network_tap(id, network_id).await?;
            arg("-netdev");
            arg(&format!(
                "tap,id=net-{network_id},ifname={tap},script=no,downscript=no"
            ));
            arg("-device");
            arg(&format!(
                "virtio-net-pci,netdev=net-{network_id},id=nic-{network_id},mac={}",
                mac_of(&format!("{id}/{network_id}"))
            ));
        }
        for volume in &spec.volumes {
            let raw = self.ensure_disk(id, volume)?;
            let top = self.top(id, &volume.volume_id);
            let file = if top.format == "raw" {
                raw
            } else {
                dir.join(&top.file)
            };
            arg("-blockdev");
            arg(&format!(
                "driver={},file.driver=file,file.filename={},node-name={}",
                top.format,
                file.display(),
                top.node
            ));
            arg("-device");
            arg(&format!(
                "virtio-blk-pci,drive={},id=dev-{}",
                top.node, volume.volume_id
            ));
        }
        // With `-D` a daemonized QEMU keeps the standard error it was given: what it says
        // when it fails goes to `qemu.err` (a file: a pipe would outlive the start).
        arg("-D");
        arg(&dir.join("qemu.log").display().to_string());
        let err_path = dir.join("qemu.err");
        let mut command = tokio::process::Command::new("ip");
        command.args(&args);
        start_detached(
            command,
            "qemu-system-x86_64",
            std::process::Stdio::null(),
            &err_path,
        )
        .await?;
        let pid: u32 = std::fs::read_to_string(&pid_path)
            .map_err(DriverError::io(&pid_path))?
            .trim()
            .parse()
            .map_err(|_| DriverError::Control(format!("{} holds no pid", pid_path.display())))?;
        let ready = self
            .follow_console(&console_path, &dir.join("console.log"))
            .await?;
        self.booted
            .lock()
            .expect("booted")
            .insert(id.clone(), spec.clone());
        let session = self.attach(id, pid, &qmp_path).await?;
        if route {
            self.network.route(&spec.addresses).await?;
        }
        match tokio::time::timeout(BOOT_TIMEOUT, ready).await {
            Ok(Ok(())) => Ok(Running { pid }),
            // The console closed before the ready line: QEMU ended.
            Ok(Err(_)) => {
                session.expected.store(true, Ordering::SeqCst);
                self.sessions.lock().expect("sessions").remove(id);
                Err(DriverError::Program {
                    program: "qemu-system-x86_64".into(),
                    detail: format!(
                        "ended before the guest was ready: {}",
                        last_words(&dir.join("qemu.err"))
                    ),
                })
            }
            Err(_) => {
                session.expected.store(true, Ordering::SeqCst);
                signal(pid, libc::SIGKILL);
                exited(pid).await;
                self.sessions.lock().expect("sessions").remove(id);
                Err(DriverError::NotReady {
                    instance_id: id.clone(),
                    seconds: BOOT_TIMEOUT.as_secs(),
                })
            }
        }
    }

    /// Copies the guest's console into `log`; the receiver resolves when the guest is ready.
    async fn follow_console(
        &self,
        socket: &Path,
        log: &Path,
    ) -> Result<tokio::sync::oneshot::Receiver<()>, DriverError> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(DriverError::io(socket))?;
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .await
            .map_err(DriverError::io(log))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut lines = tokio::io::BufReader::new(stream).lines();
            let mut ready = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = out.write_all(line.as_bytes()).await;
                let _ = out.write_all(b"\n").await;
                if line.contains(READY_LINE)
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        Ok(rx)
    }

    /// Opens the QMP session of a running QEMU and forwards what it tells.
    async fn attach(
        &self,
        id: &InstanceId,
        pid: u32,
        qmp_path: &Path,
    ) -> Result<Arc<Session>, DriverError> {
        let (qmp, mut events) = Qmp::connect(qmp_path).await?;
        let (waits_tx, waits_rx) = mpsc::unbounded_channel();
        let session = Arc::new(Session {
            pid,
            qmp,
            expected: AtomicBool::new(false),
            waits: Mutex::new(waits_rx),
        });
        self.sessions
            .lock()
            .expect("sessions")
            .insert(id.clone(), session.clone());
        let (happened, id, watched) = (self.happened_tx.clone(), id.clone(), session.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let _ = waits_tx.send(event.clone());
                let closed = event == QmpEvent::Closed;
                let surprise = !watched.expected.load(Ordering::SeqCst);
                if surprise && matches!(event, QmpEvent::Shutdown { .. } | QmpEvent::Closed) {
                    let _ = happened.send((id.clone(), pid, event));
                }
                if closed {
                    return;
                }
            }
        });
        Ok(session)
    }

    /// Waits for a QMP event that `wanted` accepts, up to `timeout`; false: it did not come.
    async fn wait_for(
        session: &Session,
        timeout: Duration,
        wanted: impl Fn(&QmpEvent) -> bool,
    ) -> bool {
        let mut waits = session.waits.lock().await;
        tokio::time::timeout(timeout, async {
            while let Some(e) = waits.recv().await {
                if wanted(&e) {
                    return true;
                }
                if e == QmpEvent::Closed {
                    return false;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }

    /// Adds device `id` of `driver` with `properties` (QEMU's free-form device options).
    async fn plug(
        session: &Session,
        driver: &str,
        id: String,
        properties: &[(&str, String)],
    ) -> Result<(), DriverError> {
        let arguments = properties
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
            .collect();
        session
            .qmp
            .execute(qapi::qmp::device_add {
                driver: driver.into(),
                id: Some(id),
                bus: None,
                arguments,
            })
            .await
            .map(|_| ())
    }

    /// The session of a running instance's QEMU, or that it does not run here.
    fn running(&self, id: &InstanceId) -> Result<Arc<Session>, DriverError> {
        self.session(id)
            .ok_or_else(|| DriverError::NotRunning(id.clone()))
    }

    /// Asks the guest to let go of `device` (`device_del`) and waits until QEMU says it is gone.
    async fn unplug(session: &Session, device: &str) -> Result<(), DriverError> {
        session
            .qmp
            .execute(qapi::qmp::device_del {
                id: device.to_string(),
            })
            .await?;
        let gone = QmpEvent::DeviceDeleted(device.to_string());
        if Self::wait_for(session, UNPLUG_TIMEOUT, |e| *e == gone).await {
            Ok(())
        } else {
            Err(DriverError::Control(format!(
                "the guest did not release {device} within {} s, or QEMU ended first",
                UNPLUG_TIMEOUT.as_secs()
            )))
        }
    }

    /// Makes QEMU end (a clean power-off first when `clean`), and waits for its process.
    async fn end(&self, id: &InstanceId, clean: bool) {
        let Some(session) = self.sessions.lock().expect("sessions").remove(id) else {
            // Not ours (yet): a QEMU left from before, if its pid file names a live one.
            if let Ok(text) = std::fs::read_to_string(self.dir(id).join("qemu.pid"))
                && let Ok(pid) = text.trim().parse::<u32>()
                && alive(pid)
                && is_qemu(pid)
            {
                signal(pid, libc::SIGKILL);
                exited(pid).await;
            }
            return;
        };
        session.expected.store(true, Ordering::SeqCst);
        if clean
            && session
                .qmp
                .execute(qapi::qmp::system_powerdown {})
                .await
                .is_ok()
        {
            Self::wait_for(&session, POWERDOWN_TIMEOUT, |e| {
                matches!(e, QmpEvent::Shutdown { .. })
            })
            .await;
        }
        let _ = session.qmp.execute(qapi::qmp::quit {}).await;
        if tokio::time::timeout(Duration::from_secs(10), exited(session.pid))
            .await
            .is_err()
        {
            signal(session.pid, libc::SIGKILL);
            exited(session.pid).await;
        }
    }
}

/// Whether `pid` has ended and waits to be reaped (QEMU daemonized: its parent is init).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// Whether `pid` is a QEMU (a pid file may outlive its process, and the pid be reused).
fn is_qemu(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.trim().starts_with("qemu-system"))
}

impl Driver for QemuDriver {
    fn hypervisor(&self) -> Hypervisor {
        Hypervisor::Qemu
    }

    fn detail(&self) -> String {
        format!(
            "qemu-system-x86_64, {} ({})",
            self.accel.accel.name(),
            self.accel.why
        )
    }

    async fn launch(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        let _turn = self.turns.take(&spec.instance_id).await;
        if let Some(s) = self.session(&spec.instance_id) {
            return Ok(Running { pid: s.pid });
        }
        self.end(&spec.instance_id, false).await;
        self.boot(spec, true).await
    }

    async fn adopt(&self, spec: &InstanceSpec) -> Result<Option<Running>, DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        if let Some(s) = self.session(id) {
            return Ok(Some(Running { pid: s.pid }));
        }
        let dir = self.dir(id);
        let pid = std::fs::read_to_string(dir.join("qemu.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|pid| alive(*pid) && is_qemu(*pid));
        let Some(pid) = pid else {
            return Ok(None);
        };
        match self.attach(id, pid, &dir.join("qmp.sock")).await {
            Ok(_) => {
                // Keep draining its console (or its serial output would stall the guest).
                let _ = self
                    .follow_console(&dir.join("console.sock"), &dir.join("console.log"))
                    .await;
                self.network.route(&spec.addresses).await?;
                self.booted
                    .lock()
                    .expect("booted")
                    .insert(id.clone(), spec.clone());
                Ok(Some(Running { pid }))
            }
            Err(_) => {
                // Alive but not answering its monitor: not trustworthy; end it.
                signal(pid, libc::SIGKILL);
                exited(pid).await;
                Ok(None)
            }
        }
    }

    async fn stop(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        let _turn = self.turns.take(&spec.instance_id).await;
        self.end(&spec.instance_id, true).await;
        Ok(())
    }

    async fn reboot(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        let _turn = self.turns.take(&spec.instance_id).await;
        self.end(&spec.instance_id, false).await;
        self.boot(spec, true).await
    }

    async fn terminate(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        self.end(id, false).await;
        self.network.withdraw(spec).await;
        remove_folder(&self.dir(id))
    }

    async fn attach_volume(&self, spec: &InstanceSpec, volume: &Volume) -> Result<(), DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        let session = self.running(id)?;
        let file = self.ensure_disk(id, volume)?;
        let node = node_of(&volume.volume_id);
        session
            .qmp
            .execute(BlockdevAdd(serde_json::json!({
                "driver": "raw",
                "node-name": node,
                "file": { "driver": "file", "filename": file.display().to_string() },
            })))
            .await?;
        let device = format!("dev-{}", volume.volume_id);
        Self::plug(
            &session,
            "virtio-blk-pci",
            device,
            &[("drive", node.clone())],
        )
        .await?;
        if let Some(booted) = self.booted.lock().expect("booted").get_mut(id) {
            booted.volumes.push(volume.clone());
        }
        Ok(())
    }

    async fn detach_volume(&self, spec: &InstanceSpec, volume_id: &str) -> Result<(), DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        let session = self.running(id)?;
        // The guest lets go of the disk first (ACPI hot-unplug); then its node can go.
        Self::unplug(&session, &format!("dev-{volume_id}")).await?;
        let top = self.top(id, volume_id);
        session
            .qmp
            .execute(qapi::qmp::blockdev_del {
                node_name: top.node,
            })
            .await?;
        let dir = self.dir(id);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{volume_id}.")) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if let Some(booted) = self.booted.lock().expect("booted").get_mut(id) {
            booted.volumes.retain(|v| v.volume_id != volume_id);
        }
        let mut layers = self.layers(id);
        layers.top.remove(volume_id);
        self.save_layers(id, &layers)
    }

    async fn attach_network(
        &self,
        spec: &InstanceSpec,
        network_id: &str,
    ) -> Result<(), DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        let session = self.running(id)?;
        let tap = self.network.network_tap(id, network_id).await?;
        let netdev = format!("net-{network_id}");
        session
            .qmp
            .execute(NetdevAdd(serde_json::json!({
                "type": "tap", "id": netdev, "ifname": tap, "script": "no", "downscript": "no",
            })))
            .await?;
        let mac = mac_of(&format!("{id}/{network_id}"));
        let device = format!("nic-{network_id}");
        Self::plug(
            &session,
            "virtio-net-pci",
            device,
            &[("netdev", netdev), ("mac", mac)],
        )
        .await?;
        if let Some(booted) = self.booted.lock().expect("booted").get_mut(id) {
            booted.networks.push(network_id.to_string());
        }
        Ok(())
    }

    async fn detach_network(
        &self,
        spec: &InstanceSpec,
        network_id: &str,
    ) -> Result<(), DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        let session = self.running(id)?;
        // The guest lets go of the interface first (ACPI hot-unplug); then its backend can go.
        Self::unplug(&session, &format!("nic-{network_id}")).await?;
        session
            .qmp
            .execute(qapi::qmp::netdev_del {
                id: format!("net-{network_id}"),
            })
            .await?;
        self.network.remove_network_interface(id, network_id).await;
        if let Some(booted) = self.booted.lock().expect("booted").get_mut(id) {
            booted.networks.retain(|n| n != network_id);
        }
        Ok(())
    }

    async fn snapshot(&self, spec: &InstanceSpec, snapshot_id: &str) -> Result<(), DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        let dir = self.dir(id);
        let mut layers = self.layers(id);
        let session = self.session(id);
        for volume in &spec.volumes {
            let below = self.top(id, &volume.volume_id);
            let file = format!("{}.{snapshot_id}.qcow2", volume.volume_id);
            let node = format!("{}-{snapshot_id}", node_of(&volume.volume_id));
            let path = dir.join(&file);
            // The layer below freezes as the snapshot; writes go on in the new overlay.
            match &session {
                Some(s) => {
                    s.qmp
                        .execute(qapi::qmp::blockdev_snapshot_sync(
                            qapi::qmp::BlockdevSnapshotSync {
                                device: None,
                                node_name: Some(below.node.clone()),
                                snapshot_file: path.display().to_string(),
                                snapshot_node_name: Some(node.clone()),
                                format: Some("qcow2".into()),
                                mode: None,
                            },
                        ))
                        .await?;
                }
                None => {
                    let backing = dir.join(&below.file);
                    run(
                        "qemu-img",
                        &[
                            "create",
                            "-q",
                            "-f",
                            "qcow2",
                            "-b",
                            &backing.display().to_string(),
                            "-F",
                            &below.format,
                            &path.display().to_string(),
                        ],
                    )
                    .await?;
                }
            }
            layers.top.insert(
                volume.volume_id.clone(),
                Layer {
                    file,
                    node,
                    format: "qcow2".into(),
                },
            );
            self.save_layers(id, &layers)?;
        }
        Ok(())
    }

    async fn export_disks(
        &self,
        spec: &InstanceSpec,
    ) -> Result<Vec<streamfleet_bus_schemas::migration::VolumeExport>, DriverError> {
        self.export(spec).await
    }

    async fn unexport_disks(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        self.unexport(spec).await
    }

    async fn sync_round(
        &self,
        spec: &InstanceSpec,
        exports: &[streamfleet_bus_schemas::migration::VolumeExport],
        full: bool,
    ) -> Result<crate::driver::SyncFigures, DriverError> {
        self.round(spec, exports, full).await
    }

    async fn end_sync(&self, spec: &InstanceSpec) {
        self.stop_sync(spec).await
    }

    fn hold_reboots(&self, id: &InstanceId, hold: bool) {
        self.hold(id, hold)
    }

    async fn halt(
        &self,
        spec: &InstanceSpec,
        grace: Option<Duration>,
    ) -> Result<chrono::DateTime<chrono::Utc>, DriverError> {
        self.bring_to_halt(spec, grace).await
    }

    async fn detach_addresses(&self, spec: &InstanceSpec) {
        self.network.unroute(&spec.addresses).await
    }

    async fn attach_addresses(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        self.network.route(&spec.addresses).await
    }

    async fn power_off(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        self.cut_power(spec).await
    }

    async fn boot_unrouted(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        self.boot_here(spec).await
    }

    async fn first_answer(
        &self,
        spec: &InstanceSpec,
        within: Duration,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.network
            .first_answer(&spec.addresses.private, within)
            .await
    }

    async fn next_happening(&self) -> (InstanceId, Happening) {
        loop {
            let next = self.happened_rx.lock().await.recv().await;
            let Some((id, pid, event)) = next else {
                std::future::pending::<()>().await;
                continue;
            };
            let _turn = self.turns.take(&id).await;
            // Only what the current QEMU of the instance says counts.
            match self.session(&id) {
                Some(s) if s.pid == pid => {}
                _ => continue,
            }
            let moving = self.moving.lock().expect("moving").contains(&id);
            let held = self.held.lock().expect("held").contains(&id);
            match event {
                // Its move halted it: expected.
                QmpEvent::Shutdown { .. } if moving => continue,
                // Its migration takes the reboot: the guest stays paused for the move.
                QmpEvent::Shutdown { reset: true, .. } if held => {
                    self.moving.lock().expect("moving").insert(id.clone());
                    return (
                        id,
                        Happening::RebootHeld {
                            at: chrono::Utc::now(),
                        },
                    );
                }
                QmpEvent::Shutdown { reset: true, .. } => {
                    let spec = self.spec_on_disk(&id);
                    self.end(&id, false).await;
                    match spec {
                        Some(spec) => match self.boot(&spec, true).await {
                            Ok(running) => return (id, Happening::GuestRebooted(running)),
                            Err(e) => return (id, Happening::Gone(format!("reboot failed: {e}"))),
                        },
                        None => {
                            return (id, Happening::Gone("its launch settings are lost".into()));
                        }
                    }
                }
                QmpEvent::Shutdown { .. } => {
                    self.end(&id, false).await;
                    return (id, Happening::GuestPoweredOff);
                }
                QmpEvent::Closed => {
                    self.sessions.lock().expect("sessions").remove(&id);
                    // The monitor's connection broke but QEMU runs on: connect again rather than
                    // call a running guest gone.
                    if alive(pid) && is_qemu(pid) && !is_zombie(pid) {
                        let socket = self.dir(&id).join("qmp.sock");
                        // QEMU accepts the next client once it has noticed the last one gone:
                        // a few tries, a moment apart.
                        let mut last = None;
                        for _ in 0..RECONNECT_TRIES {
                            match self.attach(&id, pid, &socket).await {
                                Ok(_) => {
                                    last = None;
                                    break;
                                }
                                Err(e) => last = Some(e),
                            }
                            tokio::time::sleep(RECONNECT_AFTER).await;
                        }
                        match last {
                            None => {
                                tracing::warn!(instance = %id, pid, "QMP connection lost while QEMU runs; connected again");
                                continue;
                            }
                            Some(e) => {
                                tracing::warn!(instance = %id, pid, error = %e, "QMP connection lost and not regained; ending QEMU");
                                signal(pid, libc::SIGKILL);
                                exited(pid).await;
                            }
                        }
                    }
                    let said = last_words(&self.dir(&id).join("qemu.err"));
                    return (
                        id,
                        Happening::Gone(format!("qemu (pid {pid}) ended unexpectedly: {said}")),
                    );
                }
                QmpEvent::DeviceDeleted(_) | QmpEvent::JobConcluded(_) => continue,
            }
        }
    }
}

impl QemuDriver {
    /// The settings the instance was last booted with (for a reboot the guest asked for).
    fn spec_on_disk(&self, id: &InstanceId) -> Option<InstanceSpec> {
        self.booted.lock().expect("booted").get(id).cloned()
    }
}
