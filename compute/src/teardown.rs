//! Ending everything a compute host left running — its guests, its containers, its network —
//! as a power cut would: what `streamfleet up` does to the compute hosts it started when it
//! stops, so that nothing it started outlives it.
//!
//! Invariant: the log is not touched. Instances it recorded as running are found gone by the
//! host's agent when it starts again, and recorded as failed (`InstanceFailed`); a start boots
//! them again from their disks, which stay.

use crate::network::{Fabric, host_namespace, instance_namespace};
use crate::process::{exited, ip, run, signal};
use std::path::Path;
use streamfleet_bus_schemas::ids::HostId;

/// Ends what host `host_id` runs: every process in its namespace (its QEMUs), every container in
/// crun's state folder `crun_state` and the container's namespace, then the host's namespace.
pub async fn power_off(host_id: &HostId, crun_state: &Path) {
    let root = crun_state.display().to_string();
    let containers = run("crun", &["--root", &root, "list", "-q"])
        .await
        .unwrap_or_default();
    for id in containers.split_whitespace() {
        let _ = run("crun", &["--root", &root, "kill", id, "KILL"]).await;
        kill_namespace(&instance_namespace(&id.into())).await;
        let _ = run("crun", &["--root", &root, "delete", "-f", id]).await;
    }
    kill_namespace(&host_namespace(host_id)).await;
}

/// Kills every process in namespace `name` and removes it.
async fn kill_namespace(name: &str) {
    let pids = ip(&["netns", "pids", name]).await.unwrap_or_default();
    let pids: Vec<u32> = pids
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for pid in &pids {
        signal(*pid, libc::SIGKILL);
    }
    for pid in pids {
        exited(pid).await;
    }
    let _ = ip(&["netns", "del", name]).await;
}

/// Removes the fabric namespace once its hosts are gone.
pub async fn remove_fabric(fabric: &str) {
    Fabric {
        namespace: fabric.to_string(),
    }
    .remove()
    .await;
}

/// Whether this process may make namespaces (compute hosts need root).
pub fn can_host() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Ends what a host's file-system nodes left running, as a power cut would (the log is not
/// touched; the host resumes its nodes when it starts again): every node container in crun's
/// state folder under `nodes` (`<nodes>/crun`) and its namespace, then this host's mounts of
/// their volumes (`<nodes>/<node>/mnt`) and the loop devices behind them.
pub async fn power_off_nodes(nodes: &Path) {
    let root = nodes.join("crun").display().to_string();
    let containers = run("crun", &["--root", &root, "list", "-q"])
        .await
        .unwrap_or_default();
    for id in containers.split_whitespace() {
        let _ = run("crun", &["--root", &root, "kill", "--all", id, "KILL"]).await;
        // `<node>-g<generation>` runs in the namespace of placement `node.<node>.g<generation>`.
        if let Some((node, generation)) = id.rsplit_once("-g")
            && let Ok(generation) = generation.parse::<u32>()
        {
            let placement = crate::dfs::container::placement_id(&node.into(), generation);
            kill_namespace(&instance_namespace(&placement)).await;
        }
        let _ = run("crun", &["--root", &root, "delete", "-f", id]).await;
    }
    let Ok(folders) = std::fs::read_dir(nodes) else {
        return;
    };
    for folder in folders.flatten() {
        let mount = folder.path().join("mnt");
        if crate::dfs::container::Containers::mounted(&mount) {
            let device = std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
                .find(|l| l.split_whitespace().nth(4) == Some(&*mount.display().to_string()))
                .and_then(|l| l.split(" - ").nth(1))
                .and_then(|rest| rest.split_whitespace().nth(1))
                .map(str::to_string);
            let _ = run("umount", &["-l", &mount.display().to_string()]).await;
            if let Some(device) = device.filter(|d| d.starts_with("/dev/loop")) {
                let _ = run("losetup", &["-d", &device]).await;
            }
        }
    }
}
