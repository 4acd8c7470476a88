//! The children `up` keeps running — nats-server and the host agents — each started again when
//! it dies.
//!
//! Invariant: a supervised child that exits while `up` runs is started again after a backoff
//! that doubles from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`] (and starts over once a run has lasted
//! [`STABLE_AFTER`]); its death and its restart are each logged as a warning that names it.
//! Only [`Supervised::stop`] (Ctrl-C or SIGTERM of `up`) ends a child for good. Every start dies
//! with `up` and has its pid recorded in `up.children` (see [`super::ownership`]).

use super::ownership::{Ownership, dies_with_up};
use anyhow::Context as _;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// The first wait before a restart.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait before a restart.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the next death waits [`FIRST_BACKOFF`] again.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a child has to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a child says it is ready.
#[derive(Debug, Clone, Copy)]
pub enum Ready {
    /// A line on stderr containing this (nats-server's `Server is ready`); a line with `[FTL]`
    /// or `[ERR]` before it is a failed start.
    StderrContains(&'static str),
    /// A line on stdout starting with this (the host agent's `ready …`).
    StdoutStarts(&'static str),
}

/// What to run, again and again.
pub struct Spec {
    /// For people and logs: `nats-server`, `host agent eu-west`.
    pub name: String,
    /// Makes the command of one start (stdio for the readiness line is set here).
    pub command: Box<dyn Fn() -> anyhow::Result<Command> + Send + Sync>,
    /// How it says it is ready.
    pub ready: Ready,
    /// Called with the pid of every start once it is ready.
    pub started: Box<dyn Fn(u32) + Send + Sync>,
}

/// A child kept running until [`Supervised::stop`].
pub struct Supervised {
    name: String,
    pid: Arc<AtomicU32>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervised {
    /// Starts the child and waits until it is ready (a first start that fails is `up`'s error),
    /// then keeps it running.
    pub async fn start(spec: Spec, owner: Arc<Ownership>) -> anyhow::Result<Supervised> {
        let child = start_once(&spec, &owner).await?;
        let pid = Arc::new(AtomicU32::new(child.id().unwrap_or(0)));
        let (stop, stopping) = watch::channel(false);
        let name = spec.name.clone();
        let task = tokio::spawn(keep_running(spec, owner, child, pid.clone(), stopping));
        Ok(Supervised {
            name,
            pid,
            stop,
            task,
        })
    }

    /// The pid of the current start.
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Acquire)
    }

    /// Stops it for good: SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::warn!(child = %self.name, %error, "supervisor task ended badly");
        }
    }
}

async fn keep_running(
    spec: Spec,
    owner: Arc<Ownership>,
    first: Child,
    pid: Arc<AtomicU32>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut child = Some(first);
    let mut started_at = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if let Some(running) = child.as_mut() {
            let status = tokio::select! {
                status = running.wait() => Some(status),
                _ = stopping.wait_for(|s| *s) => None,
            };
            let Some(status) = status else {
                terminate(&spec.name, running).await;
                return;
            };
            if started_at.elapsed() >= STABLE_AFTER {
                backoff = FIRST_BACKOFF;
            }
            let status = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown ({e})"),
            };
            tracing::warn!(child = %spec.name, %status, restart_in = ?backoff, "{} died ({status}); restarting it in {backoff:?}", spec.name);
            child = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match start_once(&spec, &owner).await {
            Ok(new) => {
                let id = new.id().unwrap_or(0);
                pid.store(id, Ordering::Release);
                tracing::warn!(child = %spec.name, pid = id, "{} restarted (pid {id})", spec.name);
                started_at = Instant::now();
                child = Some(new);
            }
            Err(error) => {
                tracing::error!(child = %spec.name, error = %format!("{error:#}"), retry_in = ?backoff, "{} did not start again", spec.name);
            }
        }
    }
}

/// SIGTERM, a grace period, then SIGKILL.
async fn terminate(name: &str, child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid, which it still holds (not yet reaped).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(child = %name, "did not stop within {STOP_GRACE:?}; killing it");
        let _ = child.kill().await;
    }
}

/// One start: spawned dying with `up`, recorded, and ready.
async fn start_once(spec: &Spec, owner: &Ownership) -> anyhow::Result<Child> {
    let mut command = (spec.command)()?;
    command.kill_on_drop(true);
    match spec.ready {
        Ready::StderrContains(_) => command.stderr(Stdio::piped()),
        Ready::StdoutStarts(_) => command.stdout(Stdio::piped()),
    };
    dies_with_up(&mut command);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", spec.name))?;
    owner.record_child(child.id());
    match spec.ready {
        Ready::StderrContains(marker) => {
            let stderr = child.stderr.take().context("the child's stderr")?;
            wait_ready(&spec.name, stderr, |line| {
                if line.contains(marker) {
                    Ok(true)
                } else if line.contains("[FTL]") || line.contains("[ERR]") {
                    anyhow::bail!("{}: {line}", spec.name)
                } else {
                    Ok(false)
                }
            })
            .await?;
        }
        Ready::StdoutStarts(prefix) => {
            let stdout = child.stdout.take().context("the child's stdout")?;
            wait_ready(&spec.name, stdout, |line| Ok(line.starts_with(prefix))).await?;
        }
    }
    if let Some(pid) = child.id() {
        (spec.started)(pid);
    }
    Ok(child)
}

/// Reads lines until `ready` says so; the rest is drained in the background so the child
/// never blocks on a full pipe.
async fn wait_ready(
    name: &str,
    out: impl AsyncRead + Unpin + Send + 'static,
    mut ready: impl FnMut(&str) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut lines = BufReader::new(out).lines();
    loop {
        let line = lines
            .next_line()
            .await?
            .with_context(|| format!("{name} exited before it was ready"))?;
        if ready(&line)? {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(())
}
