//! The programs a driver runs (`ip`, `qemu-img`, `crun`) and the processes it watches.
//!
//! Invariant: a program that fails is an error naming it, its status and what it said; a
//! watched process's end is noticed when it happens (a pidfd, readable when the process
//! exits), not by polling, and whether or not it is this process's child.

use crate::driver::DriverError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio::process::Command;

/// Runs `program args…` to its end; its output when it succeeds.
pub async fn run(program: &str, args: &[&str]) -> Result<String, DriverError> {
    let out = Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| DriverError::Program {
            program: program.into(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(DriverError::Program {
            program: format!("{program} {}", args.join(" ")),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Starts something that leaves a process running behind it (QEMU daemonizing, `crun run -d`)
/// and waits for the starter to end: its standard error is appended to `errors` (a file, since
/// what stays behind keeps it open: a pipe would never end), its standard output goes to
/// `output`. A failure names `program`, its status and the last line it wrote there.
pub async fn start_detached(
    mut command: Command,
    program: &str,
    output: std::process::Stdio,
    errors: &std::path::Path,
) -> Result<(), DriverError> {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(errors)
        .map_err(DriverError::io(errors))?;
    let status = command
        .stdin(std::process::Stdio::null())
        .stdout(output)
        .stderr(err)
        .status()
        .await
        .map_err(|e| DriverError::Program {
            program: program.into(),
            detail: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(DriverError::Program {
            program: program.into(),
            detail: format!("{status}: {}", last_words(errors)),
        })
    }
}

/// The last line a program wrote to `errors`, or that it said nothing.
pub fn last_words(errors: &std::path::Path) -> String {
    std::fs::read_to_string(errors)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "it said nothing".into())
}

/// Runs `ip args…`.
pub async fn ip(args: &[&str]) -> Result<String, DriverError> {
    run("ip", args).await
}

/// Runs several `ip` commands in namespace `namespace` as one process (`ip -n NS -batch -`):
/// one fork and exec instead of one per command, which is most of a container's start.
pub async fn ip_batch(namespace: &str, commands: &[String]) -> Result<(), DriverError> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("ip")
        .args(["-n", namespace, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DriverError::Program {
            program: "ip -batch".into(),
            detail: e.to_string(),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let text = commands.join("\n") + "\n";
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| DriverError::Program {
                program: "ip -batch".into(),
                detail: e.to_string(),
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| DriverError::Program {
            program: "ip -batch".into(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DriverError::Program {
            program: format!("ip -n {namespace} -batch: {}", commands.join("; ")),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Whether process `pid` exists.
pub fn alive(pid: u32) -> bool {
    // Signal 0 checks for existence only.
    pid > 0 && unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
}

/// Sends `signal` to `pid` (gone already: nothing to do).
pub fn signal(pid: u32, signal: libc::c_int) {
    if pid > 0 {
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
        }
    }
}

/// Waits until process `pid` ends (at once when it does not exist).
pub async fn exited(pid: u32) {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return;
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the pidfd is owned by the `PidFd` the `AsyncFd` owns; it stays open and the same
    // until the `AsyncFd` is dropped.
    match unsafe { AsyncFd::register_with_interest(PidFd(fd), tokio::io::Interest::READABLE) } {
        Ok(watch) => {
            let _ = watch.readable().await;
        }
        Err(_) => {
            // Not pollable (an old kernel): fall back to checking now and then.
            while alive(pid) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

struct PidFd(OwnedFd);

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// A short, stable tag of `text` for interface and namespace names (which have 15 bytes).
pub fn tag(text: &str) -> String {
    format!("{:08x}", crc32fast::hash(text.as_bytes()))
}
