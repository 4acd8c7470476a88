//! `streamfleet bench failover`: the file-system node failover of issue 16 against a real
//! MooseFS cluster. A master and two chunk servers (goal 2) on crun compute hosts, a client
//! `mfsmount` in the fabric's namespace and a writer that writes, fsyncs and records files
//! without pause; then `--cycles` times the master is killed -9 under that writer and the bench
//! follows the recovery to `NodeRecovered` and `BlockReportReceived`. Per cycle: detection (kill
//! → `NodeFailed`), fence-to-serving (`NodeRecovered`), kill-to-serving (kill → the master
//! answers a client's request on its address again, the bench's clock) split into the
//! detection wait, the control plane and the hosts' work, the chunk servers back in the block
//! report; at the end every file whose fsync returned is read back. Beside it, in the same run:
//! `mfsmaster` restarted in place (kill -9, `mfsmaster -a`, first answer) on a crash copy of
//! the master's volume — the floor any failover pays.
//!
//! The node runs in this process, as in the other benches; nats-server is its own process, and
//! so is everything a deployment runs apart from the node: four crun compute hosts
//! (`streamfleet compute-host --hypervisor crun --volume-store <dir> --node-probe-ms <probe>`,
//! their namespaces on a fabric namespace the bench makes and removes; needs root), the workers
//! (`streamfleet workers --node-timeout-ms <timeout> --node-probe-ms <probe>`: the node watcher)
//! and the client's writer (this binary again, `bench failover --writer-into <mount>`). The
//! writer must not be a thread of a process that starts programs: while the master is down, a
//! process holding a file open on the mount makes every program it starts wait in `exec` (the
//! close-on-exec of that file flushes it through FUSE to a master that is not there), ~11.5 s
//! here — a host in this process stalled its own fence that way.

use super::NatsServer;
use super::instances::{Cleanup, Stats, micros, ms};
use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streamfleet_bus_client::{CommandClient, Follower};
use streamfleet_bus_schemas::dfs::{CreateFileSystem, NodeRole};
use streamfleet_bus_schemas::principal::Role;
use streamfleet_bus_schemas::{Command as Cmd, Event};
use streamfleet_compute::dfs::container::{Containers, enter_namespace, placement_id};
use streamfleet_compute::dfs::moosefs;
use streamfleet_compute::dfs::volume::VolumeStore;
use streamfleet_compute::network::{Fabric, host_namespace, instance_namespace};
use streamfleet_node::{Node, NodeConfig};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// How long one recovery may take to be followed before the bench gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Goal: fence-to-serving p95 at most this.
const FENCE_TO_SERVING_GOAL_MS: f64 = 2000.0;
/// Goal: kill-to-serving p95 at most the detection timeout plus this.
const KILL_TO_SERVING_SLACK_MS: f64 = 2000.0;
/// How often the bench's own client asks the master for an answer after a kill (and the
/// baseline's restarted master): the resolution of kill-to-serving.
const ASK_EVERY: Duration = Duration::from_millis(10);
/// How long one such request may take.
const ASK_TIMEOUT: Duration = Duration::from_millis(200);
/// A file whose fsync returns within this of the kill was acknowledged by the old master (its
/// answer was on its way): the writer is back at the first one after it.
const IN_FLIGHT: Duration = Duration::from_millis(200);
/// Files the writer must keep after each recovery before the next kill.
const FILES_BETWEEN: u64 = 20;
/// The detection timeout's anchors, not measured.
const ANCHORS: [&str; 2] = [
    "HDFS automatic failover: the ZKFC's ZooKeeper session timeout (ha.zookeeper.session-timeout.ms) is 5 s by default, then fencing of the old active NameNode and the standby's catch-up on the edits from the JournalNodes before it serves",
    "Kubernetes node controller: a node is marked unhealthy after --node-monitor-grace-period, 40 s by default (50 s since 1.32); its pods are evicted only after a further 300 s (the not-ready/unreachable tolerations)",
];

/// The settings of `bench failover`.
#[derive(clap::Args)]
pub struct FailoverArgs {
    /// Kill -9 cycles of the master under the writer.
    #[arg(long, default_value_t = 5)]
    pub cycles: usize,
    /// The node watcher's detection timeout, ms (the workers' `--node-timeout-ms`).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// The hosts' probe interval and the watcher's look, ms (`--node-probe-ms` of both).
    #[arg(long, default_value_t = 200)]
    pub probe_ms: u64,
    /// Each node's network volume, MiB (sparse; the chunk servers keep every file written).
    #[arg(long, default_value_t = 1024)]
    pub volume_mib: u32,
    /// Each file the writer writes and fsyncs, KiB.
    #[arg(long, default_value_t = 16)]
    pub file_kib: u32,
    /// Print one JSON object with every figure instead of the table.
    #[arg(long)]
    pub json: bool,
    /// (The bench's own writer process: writes, fsyncs and reports files in this folder.)
    #[arg(long, hide = true)]
    pub writer_into: Option<PathBuf>,
}

/// Runs `bench failover`: needs root; every namespace, process, mount and loop device it
/// started is removed when it ends, on error and Ctrl-C too.
pub async fn run(args: FailoverArgs) -> anyhow::Result<()> {
    if let Some(dir) = args.writer_into {
        let kib = args.file_kib;
        return tokio::task::spawn_blocking(move || write_files(&dir, kib)).await?;
    }
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "bench failover needs root for the crun hosts' network namespaces, loop devices and mounts: run it as root"
        );
    }
    anyhow::ensure!(args.cycles >= 1, "--cycles must be at least 1");
    anyhow::ensure!(args.probe_ms >= 10, "--probe-ms must be at least 10");
    anyhow::ensure!(
        args.timeout_ms >= 3 * args.probe_ms,
        "--timeout-ms must be at least three probe intervals"
    );
    anyhow::ensure!(
        (64..=65536).contains(&args.volume_mib),
        "--volume-mib must be 64..=65536"
    );
    anyhow::ensure!(args.file_kib >= 1, "--file-kib must be at least 1");
    for program in ["mfsmaster", "mfschunkserver", "mfsmount", "crun", "nsenter"] {
        anyhow::ensure!(
            which(program),
            "{program} not found (scripts/system-deps.sh installs MooseFS and crun)"
        );
    }
    let cleanup = Arc::new(Cleanup::default());
    let work = tempfile::tempdir()?;
    let leftovers = Leftovers::new(work.path());
    let result = tokio::select! {
        r = bench(&args, work.path(), cleanup.clone(), &leftovers) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // The hosts, the workers and the writer are killed with the bench's future; the client's
    // mount goes first, then whatever runs in the namespaces, then the volumes' mounts and loop
    // devices.
    leftovers.unmount_client();
    cleanup.run();
    leftovers.detach_volumes();
    result
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|p| p.join(program).is_file())
    })
}

/// The mount and volumes the bench made: removed when it ends, however it ends.
struct Leftovers {
    mount: PathBuf,
    /// Volume stores whose images may still be on loop devices.
    stores: Vec<PathBuf>,
}

impl Leftovers {
    fn new(work: &Path) -> Leftovers {
        Leftovers {
            mount: work.join("mnt"),
            stores: vec![work.join("volumes"), work.join("baseline-volume")],
        }
    }

    /// Forced first: that aborts the FUSE connection, so a writer that was killed while its
    /// file waited for a master that is gone (its exit flushes the file) ends too.
    fn unmount_client(&self) {
        for how in ["-f", "-l"] {
            if Containers::mounted(&self.mount) {
                let _ = std::process::Command::new("umount")
                    .arg(how)
                    .arg(&self.mount)
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// Every loop device backed by an image of the bench's stores: its mounts removed (lazily:
    /// what held them was killed with the namespaces), then detached.
    fn detach_volumes(&self) {
        let Ok(out) = std::process::Command::new("losetup")
            .args(["--list", "--noheadings", "-O", "NAME,BACK-FILE"])
            .output()
        else {
            return;
        };
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((device, back)) = line.trim().split_once(char::is_whitespace) else {
                continue;
            };
            if !self
                .stores
                .iter()
                .any(|s| back.trim().starts_with(&*s.to_string_lossy()))
            {
                continue;
            }
            let rdev = {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(device).map(|m| m.rdev()).unwrap_or(0)
            };
            let wanted = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
            for l in mountinfo.lines() {
                let mut f = l.split_whitespace();
                if f.nth(2) == Some(wanted.as_str())
                    && let Some(point) = f.nth(1)
                {
                    let _ = std::process::Command::new("umount")
                        .args(["-l", point])
                        .stderr(Stdio::null())
                        .status();
                }
            }
            let _ = std::process::Command::new("losetup")
                .args(["-d", device])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One event followed on the log, with the node's time of it and the bench's.
struct Followed {
    /// When the bench's follower had it.
    at: Instant,
    /// When the node decided it (`time`).
    time: DateTime<Utc>,
    stream: String,
    event_type: String,
    /// The command that caused it.
    causation: Uuid,
    event: Option<Event>,
}

/// Follows the log as the operator from the start; keeps every event, in order.
struct Log {
    rx: mpsc::UnboundedReceiver<Followed>,
    seen: Vec<Followed>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Log {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Log {
    async fn start(nats: &NatsServer) -> anyhow::Result<Log> {
        let mut follower = Follower::start(nats.try_client("operator").await?, 1).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(followed) = follower.next().await {
                let at = Instant::now();
                let Ok(envelope) = followed.envelope() else {
                    continue;
                };
                let body = envelope.body;
                let event = Event::from_parts(&body.event_type, body.data).ok();
                let f = Followed {
                    at,
                    time: body.time,
                    stream: body.subject,
                    event_type: body.event_type,
                    causation: body.causationid,
                    event,
                };
                if tx.send(f).is_err() {
                    return;
                }
            }
        });
        Ok(Log {
            rx,
            seen: Vec::new(),
            task,
        })
    }

    fn mark(&self) -> usize {
        self.seen.len()
    }

    /// The index of the first `event_type` on `stream` at or after `from`, waiting for it.
    async fn until(
        &mut self,
        stream: &str,
        event_type: &str,
        from: usize,
    ) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let mut i = from;
        loop {
            while i < self.seen.len() {
                let f = &self.seen[i];
                if f.stream == stream && f.event_type == event_type {
                    return Ok(i);
                }
                i += 1;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(f)) => self.seen.push(f),
                Ok(None) => {
                    bail!("following the log stopped while waiting for {event_type} on {stream}")
                }
                Err(_) => bail!(
                    "no {event_type} on {stream} within {} s; followed there: {:?}",
                    STEP_TIMEOUT.as_secs(),
                    self.seen[from.min(self.seen.len())..]
                        .iter()
                        .filter(|f| f.stream == stream)
                        .map(|f| f.event_type.as_str())
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Takes in whatever was followed meanwhile, without waiting.
    fn drain(&mut self) {
        while let Ok(f) = self.rx.try_recv() {
            self.seen.push(f);
        }
    }
}

/// A command on its way to the node, as a second subscriber on `sf.cmd.node.>` saw it: when a
/// host or the watcher sent a step (the node's queue group gets the same message).
struct Sent {
    at: Instant,
    id: Uuid,
    command_type: String,
    node_id: String,
    /// `RecordNodeLiveness`'s verdict.
    verdict: Option<String>,
}

/// The tap: every node command sent, in order.
struct Tap {
    sent: Arc<Mutex<Vec<Sent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tap {
    async fn start(nats: &NatsServer) -> anyhow::Result<Tap> {
        use futures::StreamExt;
        // The node's own principal is the one that may read commands; this subscriber is not
        // in the node's queue group, so it gets a copy of each and never answers.
        let client = nats.try_client("node").await?;
        let mut sub = client.subscribe("sf.cmd.node.>").await?;
        client.flush().await?;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let into = sent.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            while let Some(m) = sub.next().await {
                let at = Instant::now();
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload) else {
                    continue;
                };
                let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                let Some(id) = v.get("id").and_then(|i| i.as_str()?.parse::<Uuid>().ok()) else {
                    continue;
                };
                let data = v.get("data").cloned().unwrap_or_default();
                into.lock().expect("tap").push(Sent {
                    at,
                    id,
                    command_type: text(&v["type"]),
                    node_id: text(&data["node_id"]),
                    verdict: data.get("verdict").map(text),
                });
            }
        });
        Ok(Tap { sent, task })
    }

    fn mark(&self) -> usize {
        self.sent.lock().expect("tap").len()
    }
}

/// A file's content: its number, repeated (a check is then a comparison).
fn content(n: u64, kib: u32) -> Vec<u8> {
    (0..u64::from(kib) * 128)
        .flat_map(|i| (n * 7919 + i).to_le_bytes())
        .collect()
}

/// What the writer kept: each file whose write, fsync and close returned, with when the bench
/// heard of it.
#[derive(Default)]
struct Kept {
    files: Mutex<Vec<(u64, Instant)>>,
    count: AtomicU64,
    failed: AtomicU64,
}

/// The writer process: writes files `f<n>` into `dir` until killed (or its output closes):
/// create, write, fsync, close, then `kept <n>` on its output; a file is kept only when all
/// returned. A failed file is not retried (`failed <n>`; its number is skipped).
fn write_files(dir: &Path, kib: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    loop {
        n += 1;
        let path = dir.join(format!("f{n}"));
        let ok = std::fs::File::create(&path)
            .and_then(|mut f| {
                f.write_all(&content(n, kib))?;
                f.sync_all()
            })
            .is_ok();
        writeln!(out, "{} {n}", if ok { "kept" } else { "failed" })?;
        out.flush()?;
        if !ok {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts the writer process on the mount at `dir`; what it keeps goes into `kept`, stamped
/// when the bench reads it (a pipe's hop after the fsync returned).
fn start_writer(dir: &Path, kib: u32, kept: Arc<Kept>) -> anyhow::Result<tokio::process::Child> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "bench",
            "failover",
            "--file-kib",
            &kib.to_string(),
            "--writer-into",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the writer")?;
    let stdout = child.stdout.take().context("the writer's output")?;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let at = Instant::now();
            match line.split_once(' ') {
                Some(("kept", n)) => {
                    if let Ok(n) = n.parse::<u64>() {
                        kept.files.lock().expect("kept").push((n, at));
                        kept.count.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Some(("failed", _)) => {
                    kept.failed.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        }
    });
    Ok(child)
}

/// Starts a `streamfleet` process of the deployment and waits until it says `ready`; its
/// standard error goes to `log`. Killed when dropped.
async fn spawn_ready(
    mut command: tokio::process::Command,
    what: &str,
    log: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let err = std::fs::File::create(log)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("its output")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("ready") {
                return Ok(true);
            }
        }
        Ok::<_, std::io::Error>(false)
    })
    .await;
    if !matches!(ready, Ok(Ok(true))) {
        bail!(
            "{what} did not say ready within 60 s; it said:\n{}",
            tail(log)
        );
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

/// Waits until the writer kept `more` files past `from`.
async fn writes_go_on(kept: &Kept, from: u64, more: u64) -> anyhow::Result<()> {
    let end = Instant::now() + STEP_TIMEOUT;
    while kept.count.load(Ordering::SeqCst) < from + more {
        anyhow::ensure!(
            Instant::now() < end,
            "the writer is stuck at {} files ({} failed)",
            kept.count.load(Ordering::SeqCst),
            kept.failed.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Asks the master at `address` (from the namespace at `netns`, on a thread of its own) for
/// its chunk servers every [`ASK_EVERY`] until it answers; when it first did. `None`: not
/// within `within`.
fn first_answer(
    netns: String,
    address: String,
    within: Duration,
) -> oneshot::Receiver<Option<Instant>> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        if enter_namespace(&netns).is_err() {
            let _ = tx.send(None);
            return;
        }
        let end = Instant::now() + within;
        while Instant::now() < end {
            if moosefs::chunk_servers(&address, ASK_TIMEOUT).is_ok() {
                let _ = tx.send(Some(Instant::now()));
                return;
            }
            if tx.is_closed() {
                return;
            }
            std::thread::sleep(ASK_EVERY);
        }
        let _ = tx.send(None);
    });
    rx
}

/// Milliseconds from `from` to `to` on the bench's clock, negative when `to` is earlier.
fn since(from: Instant, to: Instant) -> f64 {
    if to >= from {
        to.duration_since(from).as_secs_f64() * 1e3
    } else {
        -(from.duration_since(to).as_secs_f64() * 1e3)
    }
}

/// Milliseconds from `from` to `to` on the wall clock (the node's event times).
fn since_utc(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1e3
}

/// The length of the union of `intervals` within `[lo, hi]`.
fn covered(mut intervals: Vec<(f64, f64)>, lo: f64, hi: f64) -> f64 {
    intervals.retain(|(a, b)| b > a);
    intervals.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut total = 0.0;
    let mut reach = lo;
    for (a, b) in intervals {
        let (a, b) = (a.max(reach), b.min(hi));
        if b > a {
            total += b - a;
            reach = b;
        }
    }
    total
}

/// One recovery step as the log recorded it.
#[derive(Debug, Clone, serde::Serialize)]
struct Step {
    event: String,
    /// The node's time of it, ms after the kill.
    log_ms: f64,
    /// When the bench followed it, ms after the kill.
    followed_ms: f64,
}

/// One kill -9 cycle's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct Cycle {
    cycle: usize,
    from_host: String,
    to_host: String,
    generation: u32,
    /// Kill → `NodeUnresponsive`, by the log's event time.
    unresponsive_ms: Option<f64>,
    /// Kill → `NodeFailed`, by the log's event time (the node's clock at its decision; the kill
    /// is stamped on the same machine's clock).
    detection_ms: f64,
    /// Kill → `NodeFailed` followed by the bench.
    detection_followed_ms: f64,
    /// `NodeRecovered.fence_to_serving_ms`.
    fence_to_serving_ms: u64,
    /// `NodeRecovered.recovery_ms` (the last good answer → serving).
    recovery_ms: u64,
    /// Kill → the master answers the bench's client request on its address (bench clock).
    kill_to_serving_ms: f64,
    /// Kill → `NodeRecovered`, by the log's event time.
    kill_to_recovered_ms: f64,
    /// Of kill-to-serving: kill → the watcher sends its `failed` verdict.
    detection_wait_ms: f64,
    /// Of kill-to-serving: the commands on the way (sent → their events followed), the
    /// watcher's verdict and the replacement host's reports, up to the first answer.
    control_plane_ms: f64,
    /// Of kill-to-serving: the rest, the hosts' own work (fence, attach, restore, container
    /// start, route) between the control plane's hops.
    hosts_work_ms: f64,
    /// Commands counted in the control plane.
    commands: usize,
    /// Kill → the writer's first fsync returned after it (beyond [`IN_FLIGHT`]).
    writer_back_ms: Option<f64>,
    /// `CheckpointTaken`: change-log entries replayed, the metadata version.
    replayed: u64,
    metadata_version: u64,
    /// `BlockReportReceived`: chunk servers connected of known, chunks, kill → it (log).
    chunk_servers_connected: usize,
    chunk_servers_known: usize,
    chunks: u64,
    block_report_ms: f64,
    /// `RecoveryFailed` on the way (a step failed and another host was tried).
    recovery_failed: usize,
    steps: Vec<Step>,
}

/// A series in milliseconds, for [`Stats`].
fn stats(v: impl Iterator<Item = f64>) -> Stats {
    Stats::of(
        &v.map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1e3))
            .collect::<Vec<_>>(),
        true,
    )
}

/// p50 / p95 (min, max) over the cycles.
fn line(s: &Stats, what: &str) -> String {
    format!(
        "p50 {} p95 {} (min {}, max {}; {} {what}{})",
        ms(s.p50_ms),
        ms(s.p95_ms),
        ms(s.min_ms),
        ms(s.max_ms),
        s.n,
        if s.n == 1 { "" } else { "s" }
    )
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The first line of `mfsmaster -v`.
async fn moosefs_version() -> String {
    match tokio::process::Command::new("mfsmaster")
        .arg("-v")
        .output()
        .await
    {
        Ok(out) => format!(
            "MooseFS {}",
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .trim_start_matches("version: ")
        ),
        Err(_) => "mfsmaster (not found)".into(),
    }
}

/// The baseline's figures: `mfsmaster` restarted in place.
#[derive(Debug, Clone, serde::Serialize)]
struct Baseline {
    /// The first start on the crash copy (its change log replayed), → first answer.
    first_start_ms: f64,
    /// Per restart: kill -9 → the process gone (reaped).
    gone: Vec<f64>,
    /// Per restart: kill -9 → first answer of the master started again.
    restart: Vec<f64>,
}

/// The baseline, on a thread of its own in namespace `netns` (loopback up): `mfsmaster -f -a`
/// on the volume mounted at `mount` with the configuration `cfg`; first answer; then `runs`
/// times kill -9 (its process group), start again, first answer.
fn restart_in_place(netns: &str, cfg: &Path, log: &Path, runs: usize) -> anyhow::Result<Baseline> {
    use std::os::unix::process::CommandExt as _;
    enter_namespace(&format!("/var/run/netns/{netns}"))
        .with_context(|| format!("entering {netns}"))?;
    let start = || -> anyhow::Result<std::process::Child> {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        std::process::Command::new("mfsmaster")
            .args(["-f", "-a", "-c"])
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(err.try_clone()?)
            .stderr(err)
            .process_group(0)
            .spawn()
            .context("starting mfsmaster")
    };
    let answer = |child: &mut std::process::Child, from: Instant| -> anyhow::Result<f64> {
        let end = from + STEP_TIMEOUT;
        loop {
            if moosefs::chunk_servers("127.0.0.1", ASK_TIMEOUT).is_ok() {
                return Ok(since(from, Instant::now()));
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the baseline's mfsmaster ended ({status}) before it answered; it said:\n{}",
                    tail(log)
                );
            }
            anyhow::ensure!(
                Instant::now() < end,
                "the baseline's mfsmaster did not answer within {} s",
                STEP_TIMEOUT.as_secs()
            );
            std::thread::sleep(ASK_EVERY);
        }
    };
    let kill = |child: &mut std::process::Child| {
        // SAFETY: kill(2) of the process group the bench started.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    };
    let from = Instant::now();
    let mut child = start()?;
    let first_start_ms = answer(&mut child, from)?;
    let (mut gone, mut restart) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        // Steady first, as the cluster's master is before its kill.
        std::thread::sleep(Duration::from_millis(500));
        let at = Instant::now();
        kill(&mut child);
        let _ = child.wait();
        gone.push(since(at, Instant::now()));
        child = start()?;
        restart.push(answer(&mut child, at)?);
    }
    kill(&mut child);
    let _ = child.wait();
    Ok(Baseline {
        first_start_ms,
        gone,
        restart,
    })
}

/// The last lines of a file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

async fn run_command(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {}: {}: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn bench(
    args: &FailoverArgs,
    work: &Path,
    cleanup: Arc<Cleanup>,
    leftovers: &Leftovers,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let moosefs = moosefs_version().await;
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let timeout_words = format!("timeout {}", ms(args.timeout_ms as f64));
    if !args.json {
        println!(
            "streamfleet bench failover — {cores} cores, {date}; {moosefs}; {profile} build; {} kill -9 cycles of the master under a steady writer ({} KiB files, write + fsync); detection timeout {} ms, probes every {} ms",
            args.cycles, args.file_kib, args.timeout_ms, args.probe_ms
        );
    }

    let nats = NatsServer::start()?;
    let node = Node::start(NodeConfig::new(work.join("node"), nats.login("node"))).await?;
    let mut log = Log::start(&nats).await?;
    let tap = Tap::start(&nats).await?;
    let operator = CommandClient::new(
        nats.try_client("operator").await?,
        Role::Operator,
        "bench/failover",
    );
    let pid = std::process::id();
    let fabric_name = format!("sfbf{pid}");
    cleanup.namespace(&fabric_name);
    // Made here (the hosts find it), so that the bench's own client can enter it from the start.
    Fabric::create(&fabric_name).await?;
    let region = "bench-failover";
    let store = work.join("volumes");
    let fs = format!("fb{pid}");
    let master_node = format!("{fs}-master");
    let nodes = [
        master_node.clone(),
        format!("{fs}-cs1"),
        format!("{fs}-cs2"),
    ];
    // Every placement the run may reach (each recovery is a new one), so none outlives it.
    for node in &nodes {
        for g in 0..(args.cycles as u32 + 12) {
            cleanup.namespace(&instance_namespace(&placement_id(&node.as_str().into(), g)));
        }
    }
    // The deployment's processes: four crun compute hosts and the workers (the node watcher).
    let exe = std::env::current_exe()?;
    let ca_env: Vec<(&str, PathBuf)> = nats.ca().into_iter().map(|ca| ("SF_NATS_CA", ca)).collect();
    let mut processes = Vec::new();
    let hosts: Vec<String> = (1..=4).map(|i| format!("f{i}x{pid}")).collect();
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    for host in &hosts {
        cleanup.namespace(&host_namespace(&host.as_str().into()));
        let mut command = tokio::process::Command::new(&exe);
        command
            .args(["compute-host", "--host-id", host, "--region", region])
            .args([
                "--hypervisor",
                "crun",
                "--cpus",
                "2",
                "--memory-mib",
                "1024",
            ])
            .args(["--fabric", &fabric_name, "--accel", "tcg", "--images"])
            .arg(work.join("images"))
            .arg("--state-dir")
            .arg(work.join("hosts"))
            .args(["--nats-url", &nats.url, "--volume-store"])
            .arg(&store)
            .args(["--node-probe-ms", &args.probe_ms.to_string()])
            .env("SF_LAUNCHER_PASSWORD", nats.password("launcher"))
            .envs(ca_env.iter().cloned());
        let log = logs.join(format!("{host}.log"));
        processes.push(spawn_ready(command, &format!("compute host {host}"), &log).await?);
    }
    let mut command = tokio::process::Command::new(&exe);
    command
        .args(["workers", "--nats-url", &nats.url])
        .args(["--node-timeout-ms", &args.timeout_ms.to_string()])
        .args(["--node-probe-ms", &args.probe_ms.to_string()])
        .env("SF_WORKER_PASSWORD", nats.password("worker"))
        .env(
            "SF_TOKEN_KEY",
            streamfleet_workers::TokenKey::generate_hex(),
        )
        .envs(ca_env.iter().cloned());
    processes.push(spawn_ready(command, "the workers", &logs.join("workers.log")).await?);

    // The file system: a master and two chunk servers, each chunk on both.
    let mark = log.mark();
    let setup = Instant::now();
    let created = operator
        .submit(
            Uuid::now_v7(),
            &Cmd::CreateFileSystem(CreateFileSystem {
                file_system: fs.as_str().into(),
                data_nodes: 2,
                goal: 2,
                region: Some(region.into()),
                volume_mib: Some(args.volume_mib),
                checkpoint_every_seconds: None,
            }),
        )
        .await
        .map_err(|e| anyhow::anyhow!("CreateFileSystem {fs}: {e}"))?;
    let plans = created
        .iter()
        .find_map(
            |e| match Event::from_parts(&e.event_type, e.data.clone()?) {
                Ok(Event::FileSystemCreated(c)) => Some(c.nodes),
                _ => None,
            },
        )
        .context("CreateFileSystem's reply has no FileSystemCreated")?;
    let plan = |node: &str| plans.iter().find(|p| p.node_id.as_str() == node).cloned();
    let master_plan = plan(&master_node).context("no master in FileSystemCreated")?;
    let mut pids = BTreeMap::new();
    for node in &nodes {
        let i = log
            .until(&format!("node-{node}"), "NodeServing", mark)
            .await?;
        let Some(Event::NodeServing(s)) = &log.seen[i].event else {
            bail!("{node}: NodeServing did not decode");
        };
        pids.insert(node.clone(), s.pid);
    }
    let master = master_plan.address.clone();
    if !args.json {
        eprintln!(
            "  {fs}: master at {master} on {}, chunk servers on {}; serving {} after CreateFileSystem",
            master_plan.host_id,
            plans
                .iter()
                .filter(|p| p.role == NodeRole::Data)
                .map(|p| format!("{} ({})", p.host_id, p.address))
                .collect::<Vec<_>>()
                .join(", "),
            ms(since(setup, Instant::now()))
        );
    }

    // The client: mfsmount in the fabric's namespace, failing fast on a chunk with no copy.
    let mnt = &leftovers.mount;
    std::fs::create_dir_all(mnt)?;
    let netns = format!("/var/run/netns/{fabric_name}");
    let mounted = tokio::process::Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .arg("mfsmount")
        .arg(mnt)
        .args([
            "-H",
            &master,
            "-o",
            "mfsioretries=10",
            "-o",
            "mfserroronlostchunk",
        ])
        .output()
        .await
        .context("mfsmount")?;
    anyhow::ensure!(
        mounted.status.success(),
        "mfsmount: {}",
        String::from_utf8_lossy(&mounted.stderr).trim()
    );
    let kept = Arc::new(Kept::default());
    let mut writing = start_writer(mnt, args.file_kib, kept.clone())?;
    writes_go_on(&kept, 0, FILES_BETWEEN).await?;

    let stream = format!("node-{master_node}");
    let mut master_pid = pids[&master_node];
    let mut master_host = master_plan.host_id.to_string();
    let mut cycles = Vec::with_capacity(args.cycles);
    for n in 1..=args.cycles {
        log.drain();
        let mark = log.mark();
        let tap_mark = tap.mark();
        // The kill.
        let answered = first_answer_after_kill(&netns, &master, master_pid);
        let (at, at_utc, answered) = answered;
        let rec_i = log.until(&stream, "NodeRecovered", mark).await?;
        let block_i = log.until(&stream, "BlockReportReceived", mark).await?;
        let serving = answered
            .await
            .ok()
            .flatten()
            .context("the master did not answer the bench's client after its recovery")?;
        let after = kept.count.load(Ordering::SeqCst);
        writes_go_on(&kept, after, FILES_BETWEEN).await?;
        log.drain();

        let on: Vec<&Followed> = log.seen[mark..]
            .iter()
            .filter(|f| f.stream == stream)
            .collect();
        let find = |t: &str| on.iter().find(|f| f.event_type == t).copied();
        let failed = find("NodeFailed").context("no NodeFailed before NodeRecovered")?;
        let Some(Event::NodeRecovered(rec)) = &log.seen[rec_i].event else {
            bail!("NodeRecovered did not decode");
        };
        let Some(Event::BlockReportReceived(blocks)) = &log.seen[block_i].event else {
            bail!("BlockReportReceived did not decode");
        };
        let (replayed, metadata_version) =
            match find("CheckpointTaken").and_then(|f| f.event.as_ref()) {
                Some(Event::CheckpointTaken(c)) => (c.replayed, c.version),
                _ => (0, 0),
            };
        let serving_ms = since(at, serving);

        // kill-to-serving = the wait for the watcher's verdict + the commands on the way (the
        // control plane) + the hosts' work between them.
        let sent: Vec<(Instant, Uuid, String, Option<String>)> = tap.sent.lock().expect("tap")
            [tap_mark..]
            .iter()
            .filter(|s| s.node_id == master_node)
            .map(|s| (s.at, s.id, s.command_type.clone(), s.verdict.clone()))
            .collect();
        let verdict_at = sent
            .iter()
            .find(|s| s.2 == "RecordNodeLiveness" && s.3.as_deref() == Some("failed"))
            .map_or(since(at, failed.at), |s| since(at, s.0));
        let mut hops = Vec::new();
        for (sent_at, id, _, _) in &sent {
            if let Some(f) = on.iter().find(|f| f.causation == *id) {
                hops.push((since(at, *sent_at), since(at, f.at)));
            }
        }
        let commands = hops
            .iter()
            .filter(|(a, _)| *a >= verdict_at && *a < serving_ms)
            .count();
        let control = covered(hops, verdict_at, serving_ms);
        let work = (serving_ms - verdict_at - control).max(0.0);
        let writer_back = kept
            .files
            .lock()
            .expect("kept")
            .iter()
            .find(|(_, t)| *t > at + IN_FLIGHT)
            .map(|(_, t)| since(at, *t));
        let cycle = Cycle {
            cycle: n,
            from_host: master_host.clone(),
            to_host: rec.host_id.to_string(),
            generation: rec.generation,
            unresponsive_ms: find("NodeUnresponsive").map(|f| micros(since_utc(at_utc, f.time))),
            detection_ms: micros(since_utc(at_utc, failed.time)),
            detection_followed_ms: micros(since(at, failed.at)),
            fence_to_serving_ms: rec.fence_to_serving_ms,
            recovery_ms: rec.recovery_ms,
            kill_to_serving_ms: micros(serving_ms),
            kill_to_recovered_ms: micros(since_utc(at_utc, log.seen[rec_i].time)),
            detection_wait_ms: micros(verdict_at),
            control_plane_ms: micros(control),
            hosts_work_ms: micros(work),
            commands,
            writer_back_ms: writer_back.map(micros),
            replayed,
            metadata_version,
            chunk_servers_connected: blocks.chunk_servers.iter().filter(|c| c.connected).count(),
            chunk_servers_known: blocks.chunk_servers.len(),
            chunks: blocks.chunks,
            block_report_ms: micros(since_utc(at_utc, log.seen[block_i].time)),
            recovery_failed: on
                .iter()
                .filter(|f| f.event_type == "RecoveryFailed")
                .count(),
            steps: on
                .iter()
                .take_while(|f| f.at <= log.seen[block_i].at)
                .map(|f| Step {
                    event: f.event_type.clone(),
                    log_ms: micros(since_utc(at_utc, f.time)),
                    followed_ms: micros(since(at, f.at)),
                })
                .collect(),
        };
        if !args.json {
            eprintln!(
                "  c{n} {}→{} (g{}): NodeFailed +{} ({timeout_words}); first answer +{}, NodeRecovered +{}; fence→serving {}; control plane {} ({} commands), hosts' work {}; replayed {}; chunk servers {}/{} at +{}; writer back +{}",
                cycle.from_host,
                cycle.to_host,
                cycle.generation,
                ms(cycle.detection_ms),
                ms(cycle.kill_to_serving_ms),
                ms(cycle.kill_to_recovered_ms),
                ms(cycle.fence_to_serving_ms as f64),
                ms(cycle.control_plane_ms),
                cycle.commands,
                ms(cycle.hosts_work_ms),
                cycle.replayed,
                cycle.chunk_servers_connected,
                cycle.chunk_servers_known,
                ms(cycle.block_report_ms),
                cycle.writer_back_ms.map_or("—".into(), ms),
            );
        }
        master_pid = rec.pid;
        master_host = rec.host_id.to_string();
        cycles.push(cycle);
    }

    // The baseline, same run, the writer still writing: mfsmaster restarted in place on a crash
    // copy of the master's volume (taken while attached, as a dead machine leaves it).
    let base_store = VolumeStore {
        folder: work.join("baseline-volume"),
    };
    std::fs::create_dir_all(&base_store.folder)?;
    let image = store.join(format!("{}.img", master_plan.volume_id));
    run_command(
        "cp",
        &[
            "--sparse=always",
            &image.display().to_string(),
            &base_store.image("baseline").display().to_string(),
        ],
    )
    .await?;
    let base_mount = work.join("baseline").join("mnt");
    base_store
        .attach("baseline", &base_mount)
        .await
        .map_err(|e| anyhow::anyhow!("attaching the baseline's volume: {e}"))?;
    let base_ns = format!("sfbfb{pid}");
    cleanup.namespace(&base_ns);
    run_command("ip", &["netns", "add", &base_ns]).await?;
    run_command("ip", &["-n", &base_ns, "link", "set", "lo", "up"]).await?;
    let cfg = work.join("baseline").join("mfsmaster.cfg");
    let (_, text) = moosefs::config(
        NodeRole::Metadata,
        "127.0.0.1",
        "",
        &base_mount.display().to_string(),
    );
    std::fs::write(&cfg, text)?;
    let base_log = work.join("baseline").join("mfsmaster.log");
    let runs = args.cycles;
    let baseline = {
        let (ns, cfg, base_log) = (base_ns.clone(), cfg.clone(), base_log.clone());
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(restart_in_place(&ns, &cfg, &base_log, runs));
        });
        rx.await.context("the baseline's thread")??
    };
    base_store.detach("baseline", &base_mount).await;

    // Every file whose fsync returned reads back intact.
    let _ = writing.kill().await;
    // What it said before it went.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let files = kept.files.lock().expect("kept").clone();
    let (lost, kib) = {
        let (mnt, kib) = (mnt.clone(), args.file_kib);
        let files = files.clone();
        let lost = tokio::task::spawn_blocking(move || {
            files
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| std::fs::read(mnt.join(format!("f{n}"))).ok() != Some(content(*n, kib)))
                .collect::<Vec<u64>>()
        })
        .await?;
        (lost, kib)
    };
    let failed_writes = kept.failed.load(Ordering::SeqCst);
    drop(processes);
    node.stop().await;

    // The figures.
    let detection = stats(cycles.iter().map(|c| c.detection_ms));
    let detection_followed = stats(cycles.iter().map(|c| c.detection_followed_ms));
    let fence_to_serving = stats(cycles.iter().map(|c| c.fence_to_serving_ms as f64));
    let recovery = stats(cycles.iter().map(|c| c.recovery_ms as f64));
    let kill_to_serving = stats(cycles.iter().map(|c| c.kill_to_serving_ms));
    let kill_to_recovered = stats(cycles.iter().map(|c| c.kill_to_recovered_ms));
    let detection_wait = stats(cycles.iter().map(|c| c.detection_wait_ms));
    let control_plane = stats(cycles.iter().map(|c| c.control_plane_ms));
    let hosts_work = stats(cycles.iter().map(|c| c.hosts_work_ms));
    let writer_back = stats(cycles.iter().filter_map(|c| c.writer_back_ms));
    let block_report = stats(cycles.iter().map(|c| c.block_report_ms));
    let restart = stats(baseline.restart.iter().copied());
    let gone = stats(baseline.gone.iter().copied());
    let all_back = cycles
        .iter()
        .all(|c| c.chunk_servers_connected == 2 && c.chunk_servers_known == 2);
    let fence_met = fence_to_serving.p95_ms <= FENCE_TO_SERVING_GOAL_MS;
    let kill_goal_ms = args.timeout_ms as f64 + KILL_TO_SERVING_SLACK_MS;
    let kill_met = kill_to_serving.p95_ms <= kill_goal_ms;
    let lost_met = lost.is_empty();
    let share_pct = 100.0 * control_plane.p50_ms / kill_to_serving.p50_ms.max(1e-9);
    let over_floor = kill_to_serving.p50_ms - restart.p50_ms;

    if args.json {
        let out = serde_json::json!({
            "bench": "failover",
            "cores": cores,
            "date": date,
            "moosefs": moosefs,
            "build": profile,
            "cycles": args.cycles,
            "timeout_ms": args.timeout_ms,
            "probe_ms": args.probe_ms,
            "file_kib": kib,
            "volume_mib": args.volume_mib,
            "seconds": started.elapsed().as_secs_f64(),
            "clocks": {
                "detection": "the node's event time of NodeFailed minus the kill, stamped on the same machine's wall clock",
                "kill_to_serving": "the bench's monotonic clock: kill -9 → the master's first answer to a CLTOMA_CSERV_LIST request on its address from the fabric namespace, asked every 10 ms",
            },
            "figures": {
                "detection": detection,
                "detection_followed": detection_followed,
                "fence_to_serving": {
                    "stats": fence_to_serving,
                    "goal_p95_ms": FENCE_TO_SERVING_GOAL_MS,
                    "met": fence_met,
                },
                "recovery_ms": recovery,
                "kill_to_serving": {
                    "stats": kill_to_serving,
                    "goal_p95_ms": kill_goal_ms,
                    "met": kill_met,
                    "of_which": {
                        "detection_wait": detection_wait,
                        "control_plane": control_plane,
                        "hosts_work": hosts_work,
                    },
                    "control_plane_share_p50_pct": (share_pct * 10.0).round() / 10.0,
                    "over_restart_in_place_p50_ms": micros(over_floor),
                },
                "kill_to_recovered": kill_to_recovered,
                "writer_back": writer_back,
                "block_report": {
                    "stats": block_report,
                    "all_chunk_servers_back": all_back,
                },
                "files": {
                    "kept": files.len(),
                    "failed_writes": failed_writes,
                    "lost": lost.len(),
                    "lost_files": lost,
                    "goal": 0,
                    "met": lost_met,
                },
                "baseline_restart_in_place": {
                    "restart": restart,
                    "process_gone": gone,
                    "first_start_ms": micros(baseline.first_start_ms),
                },
                "per_cycle": cycles,
            },
            "anchors_not_measured": ANCHORS,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }

    let label = |s: &str| format!("  {s:<58}");
    println!(
        "\n[baseline, same run: mfsmaster restarted in place on a crash copy of the master's volume — kill -9, mfsmaster -a, first answer; the floor any failover pays]"
    );
    println!(
        "{} {} — {timeout_words} does not apply (no detection)",
        label("restart in place (kill → first answer)"),
        line(&restart, "restart")
    );
    println!(
        "{} {}",
        label("  of which the killed process gone (reaped)"),
        line(&gone, "restart")
    );
    println!(
        "{} {}",
        label("first start on the crash copy (change log replayed)"),
        ms(baseline.first_start_ms)
    );
    println!(
        "\n[failover: kill -9 of the master under the writer → detected, fenced, relaunched on another host with its volume and address]"
    );
    println!(
        "{} {} — {timeout_words}",
        label("detection (kill → NodeFailed, the log's event time)"),
        line(&detection, "cycle")
    );
    println!(
        "{} {} — {timeout_words}",
        label("  (kill → NodeFailed followed, the bench's clock)"),
        line(&detection_followed, "cycle")
    );
    println!(
        "{} {} — {timeout_words}; goal p95 ≤ {}: {}",
        label("fence-to-serving (NodeRecovered.fence_to_serving_ms)"),
        line(&fence_to_serving, "cycle"),
        ms(FENCE_TO_SERVING_GOAL_MS),
        met(fence_met)
    );
    println!(
        "{} {} — {timeout_words}; goal p95 ≤ {} (timeout + 2 s): {}; restart in place p50 {} (+{} over it)",
        label("kill-to-serving (kill → the master answers a client)"),
        line(&kill_to_serving, "cycle"),
        ms(kill_goal_ms),
        met(kill_met),
        ms(restart.p50_ms),
        ms(over_floor)
    );
    println!(
        "{} {} — {timeout_words}",
        label("  of which the detection wait (→ the watcher's verdict)"),
        line(&detection_wait, "cycle")
    );
    println!(
        "{} {} — {share_pct:.1}% of kill-to-serving (p50)",
        label("  of which the control plane (commands → their events)"),
        line(&control_plane, "cycle")
    );
    println!(
        "{} {}",
        label("  of which the hosts' work (fence, attach, restore, start)"),
        line(&hosts_work, "cycle")
    );
    println!(
        "{} {} — {timeout_words}",
        label("kill → NodeRecovered (the log's event time)"),
        line(&kill_to_recovered, "cycle")
    );
    println!(
        "{} {}",
        label("last answer → serving (NodeRecovered.recovery_ms)"),
        line(&recovery, "cycle")
    );
    println!(
        "{} {} — {timeout_words}",
        label("kill → the writer's first fsync back"),
        line(&writer_back, "cycle")
    );
    println!(
        "{} {} — {}",
        label("kill → chunk servers reconnected (BlockReportReceived)"),
        line(&block_report, "cycle"),
        if all_back {
            "2 of 2 connected in every cycle".to_string()
        } else {
            format!(
                "connected per cycle: {}",
                cycles
                    .iter()
                    .map(|c| format!("{}/{}", c.chunk_servers_connected, c.chunk_servers_known))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    println!(
        "\n[per cycle, ms after the kill (the log's event times; first answer on the bench's clock)]"
    );
    for c in &cycles {
        println!(
            "  c{} {}→{} g{}: {}; first answer +{}; {} change(s) replayed (version {}); {} chunks{}",
            c.cycle,
            c.from_host,
            c.to_host,
            c.generation,
            c.steps
                .iter()
                .map(|s| format!("{} +{:.0}", s.event, s.log_ms))
                .collect::<Vec<_>>()
                .join(", "),
            ms(c.kill_to_serving_ms),
            c.replayed,
            c.metadata_version,
            c.chunks,
            if c.recovery_failed > 0 {
                format!("; {} RecoveryFailed", c.recovery_failed)
            } else {
                String::new()
            }
        );
    }
    println!("\n[files]");
    println!(
        "{} {} kept ({} KiB each, {} writes failed and were not kept); lost or damaged: {} — goal 0: {}",
        label("every fsynced file read back and compared"),
        files.len(),
        kib,
        failed_writes,
        lost.len(),
        met(lost_met)
    );
    println!("\n[anchors, not measured]");
    for a in ANCHORS {
        println!("  {a}");
    }
    println!("\n(whole bench: {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// Kills the master (`pid`, its container's init) -9 and starts asking it from the fabric's
/// namespace at once: when it was killed (both clocks), and the first answer to come.
fn first_answer_after_kill(
    netns: &str,
    address: &str,
    pid: u32,
) -> (Instant, DateTime<Utc>, oneshot::Receiver<Option<Instant>>) {
    // SAFETY: kill(2) of the pid the log recorded for the master's container.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let at = Instant::now();
    let at_utc = Utc::now();
    let answered = first_answer(netns.to_string(), address.to_string(), STEP_TIMEOUT);
    (at, at_utc, answered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_counts_overlaps_once_and_clips() {
        let v = vec![(0.0, 10.0), (5.0, 15.0), (20.0, 30.0), (40.0, 50.0)];
        assert_eq!(covered(v.clone(), 0.0, 100.0), 35.0);
        assert_eq!(covered(v.clone(), 8.0, 25.0), 12.0);
        assert_eq!(covered(v, 60.0, 70.0), 0.0);
    }

    #[test]
    fn file_content_is_its_size() {
        assert_eq!(content(3, 16).len(), 16 * 1024);
        assert_ne!(content(3, 1), content(4, 1));
    }
}
