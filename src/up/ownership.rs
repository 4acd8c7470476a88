//! Which `up` owns a state folder, and that nothing it started outlives it.
//!
//! Invariant: one `up` per state folder — `up.lock` is held (an advisory lock, released by the
//! kernel however the process ends) for as long as it runs, and names its pid for the person
//! whose second `up` is refused. Every child dies with it: each is started with a parent-death
//! signal (SIGKILL), and its pid is recorded in `up.children`, so that whatever a previous `up`
//! left running (a child whose parent-death signal could not be set) is killed by the next
//! before it starts its own.

use anyhow::Context as _;
use std::io::Write;
use std::path::{Path, PathBuf};

/// This `up`'s hold on the state folder.
pub struct Ownership {
    _lock: std::fs::File,
    children: PathBuf,
}

impl Ownership {
    /// Takes the state folder, or says which `up` holds it; kills what a dead `up` left behind.
    pub fn take(state: &Path) -> anyhow::Result<Ownership> {
        let path = state.join("up.lock");
        let mut lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                anyhow::bail!(
                    "another `streamfleet up` (pid {}) is running on {}: stop it first (Ctrl-C or kill -TERM)",
                    holder.trim(),
                    state.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        lock.set_len(0)?;
        write!(lock, "{}", std::process::id())?;
        lock.sync_all()?;
        let children = state.join("up.children");
        kill_leftovers(&children);
        Ok(Ownership {
            _lock: lock,
            children,
        })
    }

    /// Records a child's pid, so that a later `up` can clean up after this one.
    pub fn record_child(&self, pid: Option<u32>) {
        let Some(pid) = pid else { return };
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.children)
            .and_then(|mut f| writeln!(f, "{pid}"));
        if let Err(error) = appended {
            tracing::warn!(%error, pid, "could not record a child of up");
        }
    }
}

/// Kills the processes a previous `up` recorded that still run one of its programs.
fn kill_leftovers(children: &Path) {
    let Ok(text) = std::fs::read_to_string(children) else {
        return;
    };
    for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let program = String::from_utf8_lossy(&cmdline);
        if program.contains("nats-server") || program.contains("streamfleet") {
            tracing::warn!(pid, "killing what a previous up left running");
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
    let _ = std::fs::remove_file(children);
}

/// Makes `command`'s process die (SIGKILL) when `up` does, however `up` ends.
pub fn dies_with_up(command: &mut tokio::process::Command) {
    // SAFETY: between fork and exec only async-signal-safe calls: prctl and getppid.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the signal was set: then go now.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("up is gone"));
            }
            Ok(())
        });
    }
}
