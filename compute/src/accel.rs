//! Which accelerator QEMU runs guests with: KVM only when a probe guest actually boots with it,
//! else TCG (software emulation).
//!
//! Invariant: KVM is chosen on evidence, never on `/dev/kvm` alone — on machines that are
//! themselves guests `/dev/kvm` may open while nested guests hang after the bootloader. The
//! probe boots the catalogue's image under KVM and waits for its ready line; anything else (no
//! `/dev/kvm`, QEMU refusing, no ready line within [`PROBE_TIMEOUT`]) means TCG, with the reason
//! kept for people (the host's registration shows it). The answer is cached per machine boot.

use crate::driver::READY_LINE;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// How long a probe guest may take to say it is ready under KVM (it takes about a second where
/// KVM works; the same guest under TCG takes 10–15 s).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation: works everywhere, slowly.
    Tcg,
    /// The kernel's virtual machines.
    Kvm,
}

impl Accel {
    /// Its name for `-accel`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }

    /// Reads `tcg` or `kvm`.
    pub fn parse(text: &str) -> Option<Accel> {
        match text {
            "tcg" => Some(Accel::Tcg),
            "kvm" => Some(Accel::Kvm),
            _ => None,
        }
    }
}

/// The accelerator chosen and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// The accelerator.
    pub accel: Accel,
    /// Why, for people.
    pub why: String,
}

fn tcg(why: impl Into<String>) -> Probed {
    Probed {
        accel: Accel::Tcg,
        why: why.into(),
    }
}

/// Chooses the accelerator by booting `image` (a folder with `vmlinuz` and
/// `initramfs.cpio.gz`) under KVM; the answer is cached in `cache` for this machine boot.
pub async fn probe(image: &Path, cache: &Path) -> Probed {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let boot_id = boot_id.trim();
    if let Ok(text) = std::fs::read_to_string(cache)
        && let Some((id, rest)) = text.split_once('\n')
        && id == boot_id
        && let Some((accel, why)) = rest.split_once(' ')
        && let Some(accel) = Accel::parse(accel)
    {
        return Probed {
            accel,
            why: format!("{} (probed earlier this boot)", why.trim()),
        };
    }
    let probed = boot_under_kvm(image).await;
    let _ = std::fs::write(
        cache,
        format!("{boot_id}\n{} {}\n", probed.accel.name(), probed.why),
    );
    probed
}

async fn boot_under_kvm(image: &Path) -> Probed {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return tcg("no usable /dev/kvm");
    }
    let (kernel, initrd) = (image.join("vmlinuz"), image.join("initramfs.cpio.gz"));
    if !kernel.exists() || !initrd.exists() {
        return tcg(format!("no image at {} to probe KVM with", image.display()));
    }
    let child = tokio::process::Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-machine",
            "pc",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-m", "128", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 quiet sf.id=kvm-probe"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return tcg(format!("qemu-system-x86_64 did not start: {e}")),
    };
    let Some(stdout) = child.stdout.take() else {
        return tcg("the probe guest's console was not readable");
    };
    let ready = async {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(READY_LINE) {
                return true;
            }
        }
        false
    };
    let booted = tokio::time::timeout(PROBE_TIMEOUT, ready).await;
    let _ = child.kill().await;
    match booted {
        Ok(true) => Probed {
            accel: Accel::Kvm,
            why: "a probe guest booted under KVM".into(),
        },
        Ok(false) => tcg("QEMU refused KVM or the probe guest stopped"),
        Err(_) => tcg(format!(
            "a probe guest did not boot under KVM within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}
