//! Network volumes: a volume that lives apart from any host — an ext4 image in the deployment's
//! volume store — attached to one host at a time through a loop device and mounted there.
//!
//! Invariant: a volume is attached at most once. Attaching refuses a volume that any loop device
//! still holds (`losetup -j`), so the one way to move it from a dead or fenced host is
//! [`VolumeStore::fence`]: it ends every process that holds a file on the volume's devices,
//! unmounts them and detaches them — what a storage array's fence does to a lost host's
//! session. (All hosts of this deployment share one kernel, so the fence reaches the lost
//! host's loop devices directly; on separate machines it would revoke the host at the storage.)

use super::NodeError;
use crate::process::run;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The deployment's volume store: one image file per volume.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    /// The folder holding `<volume>.img`.
    pub folder: PathBuf,
}

/// A loop device holding a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    device: String,
    rdev: u64,
}

impl VolumeStore {
    /// The image file of `volume_id`.
    pub fn image(&self, volume_id: &str) -> PathBuf {
        self.folder.join(format!("{volume_id}.img"))
    }

    /// Creates volume `volume_id` of `size_mib` with an empty ext4 file system, unless it
    /// exists; whether it was made now.
    pub async fn create(&self, volume_id: &str, size_mib: u32) -> Result<bool, NodeError> {
        let image = self.image(volume_id);
        if image.exists() {
            return Ok(false);
        }
        std::fs::create_dir_all(&self.folder).map_err(NodeError::io(&self.folder))?;
        // Made under another name and renamed: a crash halfway leaves no half-made volume.
        let partial = self.folder.join(format!("{volume_id}.img.partial"));
        let file = std::fs::File::create(&partial).map_err(NodeError::io(&partial))?;
        file.set_len(u64::from(size_mib) << 20)
            .map_err(NodeError::io(&partial))?;
        drop(file);
        let path = partial.display().to_string();
        run(
            "mkfs.ext4",
            &["-q", "-F", "-m", "0", "-L", volume_id, &path],
        )
        .await?;
        std::fs::rename(&partial, &image).map_err(NodeError::io(&image))?;
        Ok(true)
    }

    /// The loop devices holding the volume's image — the image as it is, or one replaced
    /// under its name while attached (`(deleted)`).
    async fn holders(&self, volume_id: &str) -> Result<Vec<Holder>, NodeError> {
        let image = self.image(volume_id).display().to_string();
        let list = run(
            "losetup",
            &["--list", "--noheadings", "-O", "NAME,BACK-FILE"],
        )
        .await?;
        let mut found = Vec::new();
        for line in list.lines() {
            let Some((device, back)) = line.trim().split_once(char::is_whitespace) else {
                continue;
            };
            let back = back.trim();
            if back == image || back == format!("{image} (deleted)") {
                let rdev = std::fs::metadata(device).map(|m| m.rdev()).unwrap_or(0);
                found.push(Holder {
                    device: device.to_string(),
                    rdev,
                });
            }
        }
        Ok(found)
    }

    /// Attaches the volume here and mounts it at `mountpoint`; its loop device. Refused while
    /// any loop device holds it.
    pub async fn attach(&self, volume_id: &str, mountpoint: &Path) -> Result<String, NodeError> {
        let holders = self.holders(volume_id).await?;
        if !holders.is_empty() {
            return Err(NodeError::VolumeAttachedElsewhere {
                volume_id: volume_id.to_string(),
                devices: holders.into_iter().map(|h| h.device).collect(),
            });
        }
        let image = self.image(volume_id);
        if !image.exists() {
            return Err(NodeError::NoVolume(volume_id.to_string()));
        }
        std::fs::create_dir_all(mountpoint).map_err(NodeError::io(mountpoint))?;
        let device = run(
            "losetup",
            &["--find", "--show", &image.display().to_string()],
        )
        .await?
        .trim()
        .to_string();
        // A volume cut off mid-write (its host died) is checked before it is used: the
        // journal is replayed, nothing else is touched.
        let _ = run("e2fsck", &["-p", &device]).await;
        if let Err(e) = run("mount", &[&device, &mountpoint.display().to_string()]).await {
            let _ = run("losetup", &["-d", &device]).await;
            return Err(e.into());
        }
        Ok(device)
    }

    /// Unmounts the volume from `mountpoint` and detaches its loop device (this host's own,
    /// orderly detach).
    pub async fn detach(&self, volume_id: &str, mountpoint: &Path) {
        let _ = run("umount", &[&mountpoint.display().to_string()]).await;
        if let Ok(holders) = self.holders(volume_id).await {
            for h in holders {
                let _ = run("losetup", &["-d", &h.device]).await;
            }
        }
    }

    /// Waits (up to `within`) until no loop device holds the volume any more: a fenced volume's
    /// devices go once the killed processes are gone. Whether it is free.
    pub async fn free_within(&self, volume_id: &str, within: std::time::Duration) -> bool {
        let end = tokio::time::Instant::now() + within;
        loop {
            match self.holders(volume_id).await {
                Ok(h) if h.is_empty() => return true,
                Ok(h) => {
                    for holder in h {
                        for m in mounts_of(holder.rdev) {
                            let _ = run("umount", &["-l", &m]).await;
                        }
                        let _ = run("losetup", &["-d", &holder.device]).await;
                    }
                }
                Err(_) => {}
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Fences the volume wherever it is attached: every process holding a file on it is killed,
    /// every mount of it unmounted, every loop device detached. What was done, in words.
    pub async fn fence(&self, volume_id: &str) -> Result<String, NodeError> {
        let holders = self.holders(volume_id).await?;
        if holders.is_empty() {
            return Ok(format!("volume {volume_id} was attached nowhere"));
        }
        let mut words = Vec::new();
        for h in &holders {
            let killed = kill_holders(h.rdev);
            let mounts = mounts_of(h.rdev);
            for m in &mounts {
                let _ = run("umount", &["-l", m]).await;
            }
            let _ = run("losetup", &["-d", &h.device]).await;
            words.push(format!(
                "{}: {} process(es) killed, {} mount(s) removed, detached",
                h.device,
                killed.len(),
                mounts.len()
            ));
        }
        Ok(format!("volume {volume_id}: {}", words.join("; ")))
    }
}

/// Kills every process with a file, its working folder or its root on device `rdev`; their pids.
fn kill_holders(rdev: u64) -> Vec<i32> {
    let mut killed = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let base = entry.path();
        let on_device = |p: PathBuf| std::fs::metadata(p).is_ok_and(|m| m.dev() == rdev);
        let mut holds = on_device(base.join("cwd"));
        if !holds && let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            holds = fds.flatten().any(|fd| on_device(fd.path()));
        }
        if holds {
            // SAFETY: kill(2) with a pid read from /proc; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed.push(pid);
        }
    }
    killed
}

/// The mount points (in this mount namespace) of block device `rdev`.
fn mounts_of(rdev: u64) -> Vec<String> {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let wanted = format!("{major}:{minor}");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let dev = f.nth(2)?;
            let point = f.nth(1)?;
            (dev == wanted).then(|| point.replace("\\040", " "))
        })
        .collect()
}
