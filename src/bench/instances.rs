//! `streamfleet bench instances` (issue 14): per driver, the time from `LaunchInstance` to the
//! instance answering on its address, beside starting the same image by hand
//! (`qemu-system-x86_64`, `crun run`) in the same run, alternated with it; and on the sim driver,
//! launches per second with many instances, beside a bare NATS round trip and a durable compute
//! command at the same concurrency.
//!
//! Everything runs in this process except nats-server, QEMU and crun: the node, and one compute
//! host's agent per driver (`streamfleet_compute::agent::run`), each in a region of its own on a
//! fabric namespace the bench makes and removes (needs root for the real drivers).

use super::{NatsServer, row};
use anyhow::{Context as _, bail};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streamfleet_bus_client::{CommandClient, Follower};
use streamfleet_bus_schemas::Command as Cmd;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::ids::InstanceId;
use streamfleet_bus_schemas::instance::{
    LaunchInstance, RegisterComputeHost, TerminateInstance, Volume,
};
use streamfleet_bus_schemas::principal::Role;
use streamfleet_compute::agent::{self, HostOffer};
use streamfleet_compute::crun::{
    Bind, CrunDriver, global_args, hybrid_cgroups, oci_config, run_detached,
};
use streamfleet_compute::migration::MigrationSettings;
use streamfleet_compute::network::{Fabric, HostNetwork, host_namespace, instance_namespace};
use streamfleet_compute::process::exited;
use streamfleet_compute::qemu::QemuDriver;
use streamfleet_compute::sim::SimDriver;
use streamfleet_compute::{Driver, DriverError, Happening, InstanceSpec, Running};
use streamfleet_node::{Node, NodeConfig};
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;
use uuid::Uuid;

/// The line the catalogue's guest prints on its console once its app listens.
const READY_LINE: &str = "streamfleet guest ready";
/// The image the real drivers launch.
pub(super) const IMAGE: &str = "linux-busybox";
/// The image the sim driver runs.
const SIM_IMAGE: &str = "synthetic-app";
/// How long one boot may take (TCG on a busy 2-core machine: ~10–20 s).
pub(super) const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// The instance's size, the same by command and by hand.
pub(super) const MEMORY_MIB: u32 = 128;
/// Its root disk, MiB.
const DISK_MIB: u32 = 8;

/// The settings of `bench instances`.
#[derive(clap::Args)]
pub struct InstancesArgs {
    /// Launches per real driver (each beside a start by hand, alternated).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Instances the sim driver launches.
    #[arg(long, default_value_t = 1000)]
    pub sim_instances: usize,
    /// Sim launches in flight at a time (and the baselines' concurrency).
    #[arg(long, default_value_t = 64)]
    pub sim_in_flight: usize,
    /// The image folders (`linux-busybox/` is built by `scripts/guest-image.sh` when missing).
    #[arg(long, default_value = "target/images")]
    pub images: PathBuf,
    /// Only these drivers (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Target>,
    /// Print one JSON object with every figure instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The drivers `bench instances` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Virtual machines under `qemu-system-x86_64` (TCG).
    Qemu,
    /// Containers under `crun`.
    Crun,
    /// The simulated driver: the control plane alone.
    Sim,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Qemu => "qemu",
            Target::Crun => "crun",
            Target::Sim => "sim",
        }
    }
}

/// Runs `bench instances`: needs root when a real driver is measured; every namespace,
/// container and process it started is removed when it ends, on error and Ctrl-C too.
pub async fn run(args: InstancesArgs) -> anyhow::Result<()> {
    let targets = if args.only.is_empty() {
        vec![Target::Qemu, Target::Crun, Target::Sim]
    } else {
        args.only.clone()
    };
    let real = targets.iter().any(|t| *t != Target::Sim);
    if real && unsafe { libc::geteuid() } != 0 {
        bail!(
            "bench instances needs root for the qemu and crun hosts' network namespaces: run it as root, or only the sim driver (`--only sim`)"
        );
    }
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(
        args.sim_instances >= 1 && args.sim_in_flight >= 1,
        "--sim-instances and --sim-in-flight must be at least 1"
    );
    let images = std::path::absolute(&args.images)?;
    if real {
        build_image(&images)?;
    }
    let cleanup = Arc::new(Cleanup::default());
    let work = tempfile::tempdir()?;
    let result = tokio::select! {
        r = bench(&args, &targets, &images, work.path(), cleanup.clone()) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // The agents are gone with the bench's future; what they and the bench started goes now.
    cleanup.run();
    result
}

/// Builds the catalogue's guest (kernel, initramfs, crun root) when it is missing.
pub(super) fn build_image(images: &Path) -> anyhow::Result<()> {
    let script = Path::new("scripts/guest-image.sh");
    anyhow::ensure!(
        script.exists(),
        "{} not found: run the bench from the repository root",
        script.display()
    );
    let status = std::process::Command::new(script)
        .arg(images.join(IMAGE))
        .status()
        .context("running scripts/guest-image.sh")?;
    anyhow::ensure!(status.success(), "scripts/guest-image.sh failed: {status}");
    Ok(())
}

/// What the bench made outside this process: removed when it ends, however it ends.
#[derive(Default)]
pub(super) struct Cleanup {
    namespaces: Mutex<Vec<String>>,
    /// crun containers: (crun's state folder, container id).
    containers: Mutex<Vec<(PathBuf, String)>>,
}

impl Cleanup {
    pub(super) fn namespace(&self, name: &str) {
        self.namespaces
            .lock()
            .expect("cleanup")
            .push(name.to_string());
    }

    fn container(&self, root: &Path, id: &str) {
        self.containers
            .lock()
            .expect("cleanup")
            .push((root.to_path_buf(), id.to_string()));
    }

    /// Deletes the containers, kills what still runs in the namespaces, removes them (once).
    pub(super) fn run(&self) {
        use std::process::Command;
        let containers = std::mem::take(&mut *self.containers.lock().expect("cleanup"));
        for (root, id) in containers {
            let _ = Command::new("crun")
                .args(global_args(&root, hybrid_cgroups()))
                .args(["delete", "-f", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let namespaces = std::mem::take(&mut *self.namespaces.lock().expect("cleanup"));
        for ns in namespaces.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// Aborts the compute hosts' agents when the bench ends.
pub(super) struct Agents(pub(super) Vec<tokio::task::AbortHandle>);

impl Drop for Agents {
    fn drop(&mut self) {
        for a in &self.0 {
            a.abort();
        }
    }
}

/// When each instance's driver launch began and ended, as the agent called it.
type Launches = Arc<Mutex<HashMap<InstanceId, (Instant, Instant)>>>;

/// A driver that notes when each launch begins and ends, and otherwise is the driver it wraps:
/// the share of a launch spent in the driver, apart from the command, the log and the agent.
struct Timed<D> {
    inner: D,
    launches: Launches,
}

impl<D: Driver> Driver for Timed<D> {
    fn hypervisor(&self) -> Hypervisor {
        self.inner.hypervisor()
    }

    fn detail(&self) -> String {
        self.inner.detail()
    }

    async fn launch(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        let start = Instant::now();
        let running = self.inner.launch(spec).await;
        self.launches
            .lock()
            .expect("launches")
            .insert(spec.instance_id.clone(), (start, Instant::now()));
        running
    }

    async fn adopt(&self, spec: &InstanceSpec) -> Result<Option<Running>, DriverError> {
        self.inner.adopt(spec).await
    }

    async fn stop(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        self.inner.stop(spec).await
    }

    async fn reboot(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        self.inner.reboot(spec).await
    }

    async fn terminate(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        self.inner.terminate(spec).await
    }

    async fn attach_volume(&self, spec: &InstanceSpec, volume: &Volume) -> Result<(), DriverError> {
        self.inner.attach_volume(spec, volume).await
    }

    async fn detach_volume(&self, spec: &InstanceSpec, volume_id: &str) -> Result<(), DriverError> {
        self.inner.detach_volume(spec, volume_id).await
    }

    async fn attach_network(
        &self,
        spec: &InstanceSpec,
        network_id: &str,
    ) -> Result<(), DriverError> {
        self.inner.attach_network(spec, network_id).await
    }

    async fn detach_network(
        &self,
        spec: &InstanceSpec,
        network_id: &str,
    ) -> Result<(), DriverError> {
        self.inner.detach_network(spec, network_id).await
    }

    async fn snapshot(&self, spec: &InstanceSpec, snapshot_id: &str) -> Result<(), DriverError> {
        self.inner.snapshot(spec, snapshot_id).await
    }

    async fn next_happening(&self) -> (InstanceId, Happening) {
        self.inner.next_happening().await
    }
}

/// Where one launch's time went.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Send → InstanceLaunched followed.
    total: Duration,
    /// Send → the command accepted (durable).
    accepted: Duration,
    /// Send → the agent calls its driver's launch.
    to_driver: Duration,
    /// The driver's launch.
    driver: Duration,
    /// The driver done → InstanceLaunched followed (ReportInstance, the log, the follower).
    report: Duration,
    /// When InstanceLaunched was followed.
    at: Instant,
}

impl Sample {
    fn of(start: Instant, accepted: Instant, at: Instant, id: &str, launches: &Launches) -> Sample {
        let (begun, ended) = launches
            .lock()
            .expect("launches")
            .get(&InstanceId::from(id))
            .copied()
            .unwrap_or((at, at));
        Sample {
            total: at.saturating_duration_since(start),
            accepted: accepted.saturating_duration_since(start),
            to_driver: begun.saturating_duration_since(start),
            driver: ended.saturating_duration_since(begun),
            report: at.saturating_duration_since(ended),
            at,
        }
    }
}

/// The p50 of each part of a series of launches, in milliseconds.
#[derive(Clone, Debug, serde::Serialize)]
struct Breakdown {
    accepted_p50_ms: f64,
    to_driver_p50_ms: f64,
    driver_launch_p50_ms: f64,
    report_p50_ms: f64,
    /// Send → InstanceLaunched less the driver's launch: the command, the log, the agent and
    /// the report, without what the driver does.
    outside_driver_p50_ms: f64,
}

impl Breakdown {
    fn of(samples: &[Sample]) -> Breakdown {
        let p50 = |f: fn(&Sample) -> Duration| {
            Stats::of(&samples.iter().map(f).collect::<Vec<_>>(), false).p50_ms
        };
        Breakdown {
            accepted_p50_ms: p50(|s| s.accepted),
            to_driver_p50_ms: p50(|s| s.to_driver),
            driver_launch_p50_ms: p50(|s| s.driver),
            report_p50_ms: p50(|s| s.report),
            outside_driver_p50_ms: p50(|s| s.total.saturating_sub(s.driver)),
        }
    }

    fn line(&self) -> String {
        format!(
            "command accepted {}; agent calls the driver at {}; driver launch {}; its report → InstanceLaunched followed {}",
            ms(self.accepted_p50_ms),
            ms(self.to_driver_p50_ms),
            ms(self.driver_launch_p50_ms),
            ms(self.report_p50_ms)
        )
    }
}

/// One launch's outcome as the log tells it: when it was followed, and the event.
type Outcome = (Instant, Event);

/// Follows the log as the operator from before the first command and hands each instance's
/// `InstanceLaunched` (or `InstanceFailed`) to whoever waits for it.
struct Events {
    waiters: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Events {
    async fn start(nats: &NatsServer) -> anyhow::Result<Events> {
        let mut follower = Follower::start(nats.try_client("operator").await?, 1).await?;
        let waiters: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>> = Default::default();
        let shared = waiters.clone();
        let task = tokio::spawn(async move {
            while let Ok(followed) = follower.next().await {
                let at = Instant::now();
                let Ok(envelope) = followed.envelope() else {
                    continue;
                };
                let body = envelope.body;
                if body.event_type != "InstanceLaunched" && body.event_type != "InstanceFailed" {
                    continue;
                }
                let Some(id) = body.subject.strip_prefix("instance-") else {
                    continue;
                };
                let waiter = shared.lock().expect("waiters").remove(id);
                if let Some(tx) = waiter
                    && let Ok(event) = Event::from_parts(&body.event_type, body.data)
                {
                    let _ = tx.send((at, event));
                }
            }
            // Following failed: every waiter learns it (its sender is dropped).
            shared.lock().expect("waiters").clear();
        });
        Ok(Events { waiters, task })
    }

    /// Registers a wait for `id`'s launch outcome (before its command is sent).
    fn expect(&self, id: &str) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .expect("waiters")
            .insert(id.to_string(), tx);
        rx
    }
}

/// Waits for a launch outcome registered with [`Events::expect`].
async fn outcome(id: &str, rx: oneshot::Receiver<Outcome>) -> anyhow::Result<Outcome> {
    match tokio::time::timeout(BOOT_TIMEOUT, rx).await {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(_)) => bail!("following the log stopped while waiting for {id}"),
        Err(_) => bail!(
            "no InstanceLaunched for {id} within {} s",
            BOOT_TIMEOUT.as_secs()
        ),
    }
}

/// Latency figures of one series, in milliseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub(super) struct Stats {
    pub(super) n: usize,
    pub(super) p50_ms: f64,
    pub(super) p95_ms: f64,
    pub(super) min_ms: f64,
    pub(super) max_ms: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    samples_ms: Vec<f64>,
}

/// Milliseconds to the microsecond, for the JSON.
pub(super) fn micros(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

impl Stats {
    pub(super) fn of(samples: &[Duration], keep: bool) -> Stats {
        let mut ms: Vec<f64> = samples
            .iter()
            .map(|d| micros(d.as_secs_f64() * 1e3))
            .collect();
        ms.sort_by(f64::total_cmp);
        // Nearest rank: with 3 samples, p50 is the middle one and p95 the largest.
        let rank = |p: f64| -> f64 {
            if ms.is_empty() {
                return 0.0;
            }
            let k = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
            ms[k - 1]
        };
        Stats {
            n: ms.len(),
            p50_ms: rank(0.5),
            p95_ms: rank(0.95),
            min_ms: ms.first().copied().unwrap_or(0.0),
            max_ms: ms.last().copied().unwrap_or(0.0),
            samples_ms: if keep {
                samples
                    .iter()
                    .map(|d| micros(d.as_secs_f64() * 1e3))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    pub(super) fn line(&self) -> String {
        format!(
            "p50 {} p95 {} (min {}, max {}; {} run{})",
            ms(self.p50_ms),
            ms(self.p95_ms),
            ms(self.min_ms),
            ms(self.max_ms),
            self.n,
            if self.n == 1 { "" } else { "s" }
        )
    }
}

pub(super) fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1e3)
    } else {
        format!("{v:.1} ms")
    }
}

/// A real driver's figures: by hand and through the control plane, alternated.
#[derive(Debug, serde::Serialize)]
struct RealFigures {
    direct: Stats,
    control_plane: Stats,
    /// Where the control plane's launches spent their time (p50 of each part).
    breakdown: Breakdown,
    /// (p50 control plane − p50 direct) / p50 direct, in %.
    overhead_pct: f64,
    /// Of that: the command, the log, the agent and the report (p50 of send → launched less the
    /// driver's launch) / p50 direct, in %.
    outside_driver_pct: f64,
    /// Of that: the driver's launch beyond the start by hand (p50 − p50 direct) / p50 direct,
    /// in % (its network setup, the programs it runs besides the hypervisor).
    driver_extra_pct: f64,
}

/// The sim driver's figures.
#[derive(Debug, serde::Serialize)]
struct SimFigures {
    instances: usize,
    in_flight: usize,
    launches_per_s: f64,
    /// The rate over the first half of the launches and over the second (a cost that grows
    /// with the instances already placed shows as a slower second half).
    first_half_per_s: f64,
    second_half_per_s: f64,
    elapsed_s: f64,
    latency: Stats,
    breakdown: Breakdown,
    baseline_nats_request_per_s: f64,
    baseline_nats_request: Stats,
    baseline_compute_command_per_s: f64,
    baseline_compute_command: Stats,
}

/// What every part shares.
struct Bench<'a> {
    nats: &'a NatsServer,
    events: Events,
    launches: Launches,
    service: CommandClient,
    cleanup: Arc<Cleanup>,
    work: &'a Path,
    images: &'a Path,
    pid: u32,
    json: bool,
}

async fn bench(
    args: &InstancesArgs,
    targets: &[Target],
    images: &Path,
    work: &Path,
    cleanup: Arc<Cleanup>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let qemu_version = version("qemu-system-x86_64").await;
    let crun_version = version("crun").await;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    if !args.json {
        println!(
            "streamfleet bench instances — {cores} cores, {date}; {qemu_version} (tcg); {crun_version}{}",
            if hybrid_cgroups() {
                " (hybrid cgroups: no limits)"
            } else {
                ""
            }
        );
    }
    let nats = NatsServer::start()?;
    let node = Node::start(NodeConfig::new(work.join("node"), nats.login("node"))).await?;
    let events = Events::start(&nats).await?;
    let service = CommandClient::new(
        nats.try_client("service").await?,
        Role::Service,
        "bench/instances",
    );
    let b = Bench {
        nats: &nats,
        events,
        launches: Launches::default(),
        service,
        cleanup,
        work,
        images,
        pid: std::process::id(),
        json: args.json,
    };
    let mut agents = Agents(Vec::new());
    let mut report = serde_json::Map::new();
    let real = targets.iter().any(|t| *t != Target::Sim);
    let fabric = if real {
        let name = format!("sfb{}", b.pid);
        b.cleanup.namespace(&name);
        Some(Fabric::create(&name).await?)
    } else {
        None
    };
    for target in targets {
        let figures = match (target, &fabric) {
            (Target::Sim, _) => serde_json::to_value(sim(&b, args, &mut agents).await?)?,
            (real, Some(fabric)) => {
                serde_json::to_value(real_driver(&b, *real, args.runs, fabric, &mut agents).await?)?
            }
            (_, None) => unreachable!("a fabric is made for the real drivers"),
        };
        report.insert(target.name().into(), figures);
    }
    drop(agents);
    node.stop().await;
    if args.json {
        let out = serde_json::json!({
            "bench": "instances",
            "cores": cores,
            "date": date,
            "qemu": qemu_version,
            "crun": crun_version,
            "hybrid_cgroups": hybrid_cgroups(),
            "runs": args.runs,
            "seconds": started.elapsed().as_secs_f64(),
            "figures": report,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("\n(whole bench: {:.0} s)", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The first line of `program --version`.
pub(super) async fn version(program: &str) -> String {
    match tokio::process::Command::new(program)
        .arg("--version")
        .output()
        .await
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or(program)
            .trim()
            .to_string(),
        Err(_) => format!("{program} (not found)"),
    }
}

/// Starts a compute host's agent in this process; returns once its host is registered.
async fn start_agent<D: Driver>(
    b: &Bench<'_>,
    driver: D,
    offer: HostOffer,
    agents: &mut Agents,
) -> anyhow::Result<()> {
    let client = b.nats.try_client("launcher").await?;
    let driver = Timed {
        inner: driver,
        launches: b.launches.clone(),
    };
    run_agent(client, driver, offer, MigrationSettings::default(), agents).await
}

/// Runs a compute host's agent with `driver` as a task of this process; returns once its host
/// is registered (the task is aborted with `agents`).
pub(super) async fn run_agent<D: Driver>(
    client: async_nats::Client,
    driver: D,
    offer: HostOffer,
    settings: MigrationSettings,
    agents: &mut Agents,
) -> anyhow::Result<()> {
    let (tx, rx) = oneshot::channel();
    let host = offer.host_id.clone();
    let mut task = tokio::spawn(async move {
        agent::run_with(Arc::new(driver), client, offer, settings, move || {
            let _ = tx.send(());
        })
        .await
    });
    let registered = tokio::select! {
        r = rx => r.is_ok(),
        r = &mut task => bail!("the agent of {host} stopped before it registered: {:?}", r.map(|r| r.err())),
    };
    if !registered {
        bail!(
            "the agent of {host} stopped before it registered: {:?}",
            task.await.map(|r| r.err())
        );
    }
    agents.0.push(task.abort_handle());
    tokio::spawn(async move {
        if let Ok(Err(e)) = task.await {
            tracing::warn!(host = %host, error = %e, "compute agent stopped");
        }
    });
    Ok(())
}

fn launch(id: &str, hypervisor: Hypervisor, region: &str) -> Cmd {
    let sim = hypervisor == Hypervisor::Sim;
    Cmd::LaunchInstance(LaunchInstance {
        instance_id: id.into(),
        image: if sim { SIM_IMAGE } else { IMAGE }.into(),
        hypervisor: Some(hypervisor),
        features: Vec::new(),
        region: Some(region.into()),
        client_ip: None,
        cpus: 1,
        memory_mib: if sim { 16 } else { MEMORY_MIB },
        disk_mib: if sim { 1 } else { DISK_MIB },
    })
}

/// Per run: the image started by hand, then the same through the control plane.
async fn real_driver(
    b: &Bench<'_>,
    target: Target,
    runs: usize,
    fabric: &Fabric,
    agents: &mut Agents,
) -> anyhow::Result<RealFigures> {
    let (letter, hypervisor) = match target {
        Target::Qemu => ('q', Hypervisor::Qemu),
        _ => ('c', Hypervisor::Crun),
    };
    let host_id = format!("{letter}{}", b.pid);
    let region = format!("bench-{}", target.name());
    b.cleanup
        .namespace(&host_namespace(&host_id.as_str().into()));
    let network = HostNetwork::prepare(&host_id.as_str().into(), fabric).await?;
    let host_dir = b.work.join(&host_id);
    let volumes = host_dir.join("instances");
    let crun_state = host_dir.join("crun");
    std::fs::create_dir_all(&volumes)?;
    let offer = HostOffer {
        host_id: host_id.as_str().into(),
        region: region.as_str().into(),
        cpus: 2,
        memory_mib: 1024,
    };
    match target {
        Target::Qemu => {
            // TCG, as the direct baseline runs QEMU.
            let accel = streamfleet_compute::accel::Probed {
                accel: streamfleet_compute::accel::Accel::Tcg,
                why: "as the baseline runs".into(),
            };
            let driver = QemuDriver::new(b.images.to_path_buf(), volumes.clone(), network, accel);
            start_agent(b, driver, offer, agents).await?;
        }
        _ => {
            let driver = CrunDriver::new(
                b.images.to_path_buf(),
                volumes.clone(),
                crun_state.clone(),
                network,
            );
            start_agent(b, driver, offer, agents).await?;
        }
    }
    // The image's files come from the page cache for both series alike.
    for file in ["vmlinuz", "initramfs.cpio.gz"] {
        let _ = std::fs::read(b.images.join(IMAGE).join(file));
    }
    if !b.json {
        println!(
            "\n[{}: command → InstanceLaunched, then answering on its address; beside the same image started by hand; {runs} runs each, alternated]",
            target.name()
        );
    }
    let (mut direct, mut via) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let d = match target {
            Target::Qemu => direct_qemu(b, run).await?,
            _ => direct_crun(b, run).await?,
        };
        let id = format!("{letter}{}-{run}", b.pid);
        if target == Target::Crun {
            b.cleanup
                .namespace(&instance_namespace(&id.as_str().into()));
            b.cleanup.container(&crun_state, &id);
        }
        let c = control_plane(b, &id, hypervisor, &region, fabric, &volumes).await?;
        eprintln!(
            "  {} run {run}/{runs}: by hand {}, through the control plane {}",
            target.name(),
            ms(d.as_secs_f64() * 1e3),
            ms(c.total.as_secs_f64() * 1e3)
        );
        direct.push(d);
        via.push(c);
    }
    let breakdown = Breakdown::of(&via);
    let totals: Vec<Duration> = via.iter().map(|s| s.total).collect();
    let (direct, control_plane) = (Stats::of(&direct, true), Stats::of(&totals, true));
    let share = |v: f64| 100.0 * v / direct.p50_ms;
    let overhead_pct = share(control_plane.p50_ms - direct.p50_ms);
    let outside_driver_pct = share(breakdown.outside_driver_p50_ms);
    let driver_extra_pct = share(breakdown.driver_launch_p50_ms - direct.p50_ms);
    if !b.json {
        let by_hand = match target {
            Target::Qemu => "baseline: qemu-system-x86_64 by hand → ready line",
            _ => "baseline: crun run by hand → ready line",
        };
        println!("  {by_hand:<52} {}", direct.line());
        println!(
            "  {:<52} {}",
            "LaunchInstance → InstanceLaunched (answers on :7000)",
            control_plane.line()
        );
        println!("  {:<52} {}", "  of which (p50)", breakdown.line());
        println!(
            "  {:<52} {:+.1}% ({}) of the direct p50 — target < 10%: {}",
            "control plane overhead",
            overhead_pct,
            ms(control_plane.p50_ms - direct.p50_ms),
            if overhead_pct < 10.0 {
                "met"
            } else {
                "NOT met"
            }
        );
        println!(
            "  {:<52} command, log, agent and report {} ({:+.1}%); the driver's launch beyond the start by hand {} ({:+.1}%)",
            "  split",
            ms(breakdown.outside_driver_p50_ms),
            outside_driver_pct,
            ms(breakdown.driver_launch_p50_ms - direct.p50_ms),
            driver_extra_pct
        );
    }
    let hundredths = |v: f64| (v * 100.0).round() / 100.0;
    Ok(RealFigures {
        direct,
        control_plane,
        breakdown,
        overhead_pct: hundredths(overhead_pct),
        outside_driver_pct: hundredths(outside_driver_pct),
        driver_extra_pct: hundredths(driver_extra_pct),
    })
}

/// One launch by command: timed to its `InstanceLaunched`; then its answer is checked, and it is
/// terminated and its end (process and folder) waited for, so runs do not overlap.
async fn control_plane(
    b: &Bench<'_>,
    id: &str,
    hypervisor: Hypervisor,
    region: &str,
    fabric: &Fabric,
    volumes: &Path,
) -> anyhow::Result<Sample> {
    let rx = b.events.expect(id);
    let start = Instant::now();
    b.service
        .submit(Uuid::now_v7(), &launch(id, hypervisor, region))
        .await
        .map_err(|e| anyhow::anyhow!("LaunchInstance {id}: {e}"))?;
    let accepted = Instant::now();
    let (at, event) = outcome(id, rx).await?;
    let sample = Sample::of(start, accepted, at, id, &b.launches);
    let launched = match event {
        Event::InstanceLaunched(l) => l,
        Event::InstanceFailed(f) => bail!("{id} failed: {}", f.reason),
        other => bail!("{id}: unexpected {other:?}"),
    };
    let answer = ask(&fabric.namespace, &launched.addresses.private).await?;
    anyhow::ensure!(
        answer.starts_with(&format!("id={id} ")),
        "{id} launched but {} answered {answer:?} on port 7000",
        launched.addresses.private
    );
    b.service
        .submit(
            Uuid::now_v7(),
            &Cmd::TerminateInstance(TerminateInstance {
                instance_id: id.into(),
            }),
        )
        .await
        .map_err(|e| anyhow::anyhow!("TerminateInstance {id}: {e}"))?;
    tokio::time::timeout(Duration::from_secs(60), exited(launched.pid))
        .await
        .with_context(|| {
            format!(
                "{id}'s process {} still runs 60 s after its terminate",
                launched.pid
            )
        })?;
    // The driver deletes the instance's folder last (after its routes and devices).
    let folder = volumes.join(id);
    let deadline = Instant::now() + Duration::from_secs(60);
    while folder.exists() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} still there 60 s after {id}'s terminate",
            folder.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(sample)
}

/// One line from an instance's app, asked from the fabric namespace.
pub(super) async fn ask(fabric: &str, address: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("ip")
        .args([
            "netns", "exec", fabric, "busybox", "nc", "-w", "5", address, "7000",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .context("ip netns exec … busybox nc")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Reads `stdout` until the guest's ready line.
async fn ready_line(stdout: impl tokio::io::AsyncRead + Unpin) -> anyhow::Result<()> {
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if line.contains(READY_LINE) {
            return Ok(());
        }
    }
    bail!("its output ended before \"{READY_LINE}\"")
}

/// QEMU started by hand with the driver's machine, the same size and disk, and a virtio NIC on
/// an unconnected hub port (the guest probes the same devices); timed to the ready line.
async fn direct_qemu(b: &Bench<'_>, run: usize) -> anyhow::Result<Duration> {
    let id = format!("dq{}-{run}", b.pid);
    let dir = b.work.join("direct").join(&id);
    std::fs::create_dir_all(&dir)?;
    let disk = dir.join("root.raw");
    std::fs::File::create(&disk)?.set_len(u64::from(DISK_MIB) << 20)?;
    let image = b.images.join(IMAGE);
    let errors = dir.join("qemu.err");
    let mut command = tokio::process::Command::new("qemu-system-x86_64");
    command
        .args([
            "-accel",
            "tcg",
            "-machine",
            "pc",
            "-nodefaults",
            "-no-user-config",
        ])
        .args([
            "-display",
            "none",
            "-m",
            &MEMORY_MIB.to_string(),
            "-smp",
            "1",
        ])
        .arg("-kernel")
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(image.join("initramfs.cpio.gz"))
        .args(["-append", &format!("console=ttyS0 quiet sf.id={id}")])
        .args(["-serial", "stdio"])
        .args(["-netdev", "hubport,id=net0,hubid=0"])
        .args(["-device", "virtio-net-pci,netdev=net0"])
        .arg("-blockdev")
        .arg(format!(
            "driver=raw,file.driver=file,file.filename={},node-name=root",
            disk.display()
        ))
        .args(["-device", "virtio-blk-pci,drive=root"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errors)?)
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = command.spawn().context("running qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu's stdout")?;
    let ready = tokio::time::timeout(BOOT_TIMEOUT, ready_line(stdout)).await;
    let elapsed = start.elapsed();
    let _ = child.start_kill();
    let _ = child.wait().await;
    match ready {
        Ok(Ok(())) => Ok(elapsed),
        Ok(Err(e)) => bail!(
            "qemu by hand: {e}: {}",
            std::fs::read_to_string(&errors).unwrap_or_default().trim()
        ),
        Err(_) => bail!(
            "qemu by hand: no ready line within {} s",
            BOOT_TIMEOUT.as_secs()
        ),
    }
}

/// The OCI bundle the crun driver writes (`compute/src/crun.rs` `bundle()`), in a fresh network
/// namespace of crun's making; started as the driver starts it; timed to the ready line.
async fn direct_crun(b: &Bench<'_>, run: usize) -> anyhow::Result<Duration> {
    let id = format!("dc{}-{run}", b.pid);
    let dir = b.work.join("direct").join(&id);
    let data = dir.join("root");
    std::fs::create_dir_all(&data)?;
    let env = dir.join("sf.env");
    std::fs::write(&env, format!("SF_ID={id}\n"))?;
    let rootfs = b.images.join(IMAGE).join("rootfs");
    let binds = [
        Bind {
            destination: "/data".into(),
            source: data,
            read_only: false,
        },
        Bind {
            destination: "/etc/sf.env".into(),
            source: env,
            read_only: true,
        },
    ];
    let config = oci_config(&id, &rootfs, &binds, None, MEMORY_MIB);
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    let state = b.work.join("direct-crun-state");
    std::fs::create_dir_all(&state)?;
    b.cleanup.container(&state, &id);
    let hybrid = hybrid_cgroups();
    let global = global_args(&state, hybrid);
    let mut command = run_detached(&state, hybrid, &dir, &id, None);
    let errors = dir.join("crun.err");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errors)?);
    let start = Instant::now();
    let mut child = command.spawn().context("running crun")?;
    let stdout = child.stdout.take().context("crun's stdout")?;
    let ready = tokio::time::timeout(BOOT_TIMEOUT, ready_line(stdout)).await;
    let elapsed = start.elapsed();
    let status = child.wait().await?;
    let crun = |rest: &[&str]| {
        let mut c = tokio::process::Command::new("crun");
        c.args(&global).args(rest).stdin(Stdio::null());
        c
    };
    let pid = crun(&["state", &id])
        .output()
        .await
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|s| s.get("pid")?.as_u64());
    let _ = crun(&["kill", &id, "KILL"]).output().await;
    if let Some(pid) = pid {
        let _ = tokio::time::timeout(Duration::from_secs(30), exited(pid as u32)).await;
    }
    let _ = crun(&["delete", "-f", &id]).output().await;
    match ready {
        Ok(Ok(())) => Ok(elapsed),
        Ok(Err(e)) => bail!(
            "crun by hand ({status}): {e}: {}",
            std::fs::read_to_string(&errors).unwrap_or_default().trim()
        ),
        Err(_) => bail!(
            "crun by hand: no ready line within {} s",
            BOOT_TIMEOUT.as_secs()
        ),
    }
}

/// Runs `n` calls of `one` with `in_flight` at a time; the wall time and each call's latency.
async fn concurrently<F, Fut, T>(
    n: usize,
    in_flight: usize,
    one: F,
) -> anyhow::Result<(Duration, Vec<T>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    let results: Vec<anyhow::Result<T>> = futures::stream::iter(0..n)
        .map(one)
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let latencies = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((elapsed, latencies))
}

/// The sim driver: `--sim-instances` launches, `--sim-in-flight` at a time, beside a bare NATS
/// request/reply and a durable compute command at the same concurrency.
async fn sim(
    b: &Bench<'_>,
    args: &InstancesArgs,
    agents: &mut Agents,
) -> anyhow::Result<SimFigures> {
    let (n, in_flight) = (args.sim_instances, args.sim_in_flight);
    if !b.json {
        println!(
            "\n[sim: {n} launches, {in_flight} in flight: LaunchInstance → InstanceLaunched; the instances stay]"
        );
    }
    let host_id = format!("s{}", b.pid);
    let region = "bench-sim";
    let cpus = u32::try_from(n).unwrap_or(u32::MAX).max(4096);
    let memory_mib = u32::try_from(n * 16 + 1024).unwrap_or(u32::MAX);
    start_agent(
        b,
        SimDriver::default(),
        HostOffer {
            host_id: host_id.as_str().into(),
            region: region.into(),
            cpus,
            memory_mib,
        },
        agents,
    )
    .await?;

    // Baseline 1: a bare NATS request/reply (the transport alone).
    let server = b.nats.try_client("bench").await?;
    let mut sub = server.subscribe("bench.instances.echo").await?;
    server.flush().await?;
    let echo = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = server.publish(reply, msg.payload).await;
            }
        }
    });
    let client = b.nats.try_client("bench").await?;
    let body = bytes::Bytes::from(serde_json::to_vec(&b.service.envelope(
        Uuid::now_v7(),
        &launch("s0", Hypervisor::Sim, region),
        None,
    ))?);
    let (nats_elapsed, nats_lat) = concurrently(n, in_flight, |_| {
        let (client, body) = (client.clone(), body.clone());
        async move {
            let t = Instant::now();
            client.request("bench.instances.echo", body).await?;
            Ok(t.elapsed())
        }
    })
    .await?;
    echo.abort();

    // Baseline 2: a durable compute command (a host registering again): the node decides every
    // instance and compute command one at a time under the compute fleet's lock, as launches.
    let launcher = CommandClient::new(
        b.nats.try_client("launcher").await?,
        Role::Launcher,
        "bench/instances",
    );
    let register = Cmd::RegisterComputeHost(RegisterComputeHost {
        host_id: format!("sb{}", b.pid).as_str().into(),
        region: "bench-baseline".into(),
        hypervisor: Hypervisor::Sim,
        cpus: 1,
        memory_mib: 16,
        detail: "bench baseline: no agent".into(),
    });
    let (cmd_elapsed, cmd_lat) = concurrently(n, in_flight, |_| {
        let (launcher, register) = (launcher.clone(), register.clone());
        async move {
            let t = Instant::now();
            launcher
                .submit(Uuid::now_v7(), &register)
                .await
                .map_err(|e| anyhow::anyhow!("RegisterComputeHost: {e}"))?;
            Ok(t.elapsed())
        }
    })
    .await?;

    // The launches: from the first send to the last InstanceLaunched.
    let launches_start = Instant::now();
    let (elapsed, samples) = concurrently(n, in_flight, |i| {
        let id = format!("s{}-{i}", b.pid);
        let rx = b.events.expect(&id);
        async move {
            let start = Instant::now();
            b.service
                .submit(Uuid::now_v7(), &launch(&id, Hypervisor::Sim, region))
                .await
                .map_err(|e| anyhow::anyhow!("LaunchInstance {id}: {e}"))?;
            let accepted = Instant::now();
            match outcome(&id, rx).await? {
                (at, Event::InstanceLaunched(_)) => {
                    Ok(Sample::of(start, accepted, at, &id, &b.launches))
                }
                (_, Event::InstanceFailed(f)) => bail!("{id} failed: {}", f.reason),
                (_, other) => bail!("{id}: unexpected {other:?}"),
            }
        }
    })
    .await?;

    let mut done: Vec<Instant> = samples.iter().map(|s| s.at).collect();
    done.sort();
    let half = n / 2;
    let (first_half_per_s, second_half_per_s) = if half >= 1 && n - half >= 2 {
        let mid = done[half - 1];
        (
            half as f64 / mid.duration_since(launches_start).as_secs_f64(),
            (n - half) as f64 / done[n - 1].duration_since(mid).as_secs_f64(),
        )
    } else {
        (0.0, 0.0)
    };
    let tenths = |v: f64| (v * 10.0).round() / 10.0;
    let figures = SimFigures {
        instances: n,
        in_flight,
        launches_per_s: tenths(n as f64 / elapsed.as_secs_f64()),
        first_half_per_s: tenths(first_half_per_s),
        second_half_per_s: tenths(second_half_per_s),
        elapsed_s: micros(elapsed.as_secs_f64()),
        latency: Stats::of(&samples.iter().map(|s| s.total).collect::<Vec<_>>(), false),
        breakdown: Breakdown::of(&samples),
        baseline_nats_request_per_s: tenths(n as f64 / nats_elapsed.as_secs_f64()),
        baseline_nats_request: Stats::of(&nats_lat, false),
        baseline_compute_command_per_s: tenths(n as f64 / cmd_elapsed.as_secs_f64()),
        baseline_compute_command: Stats::of(&cmd_lat, false),
    };
    if !b.json {
        let lat = |s: &Stats| format!("p50 {} p95 {}", ms(s.p50_ms), ms(s.p95_ms));
        row(
            "baseline: bare NATS request/reply, same body",
            figures.baseline_nats_request_per_s,
            "req/s",
            &lat(&figures.baseline_nats_request),
        );
        row(
            "baseline: durable compute command, same node lock",
            figures.baseline_compute_command_per_s,
            "cmds/s",
            &format!(
                "{}; RegisterComputeHost again and again; a launch is two such commands (LaunchInstance, ReportInstance)",
                lat(&figures.baseline_compute_command)
            ),
        );
        row(
            &format!("sim launches, {n} instances"),
            figures.launches_per_s,
            "launches/s",
            &format!(
                "{}; {:.1} s in all; first half {:.0}/s, second half {:.0}/s; {:.0}% of half the command rate",
                lat(&figures.latency),
                figures.elapsed_s,
                figures.first_half_per_s,
                figures.second_half_per_s,
                100.0 * figures.launches_per_s / (figures.baseline_compute_command_per_s / 2.0)
            ),
        );
        println!("  {:<52} {}", "  of which (p50)", figures.breakdown.line());
    }
    Ok(figures)
}
