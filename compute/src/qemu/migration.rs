//! The qemu driver's side of a migration: the target exports empty disks with `qemu-nbd` on
//! its host address; the source copies onto them with `blockdev-backup` — one full round that
//! also starts a dirty bitmap, then incremental rounds of what the bitmap recorded (each
//! clearing what it copied, on success only).
//!
//! Why backup with a bitmap rather than `blockdev-mirror`: a mirror writes every guest write to
//! the target as it happens for as long as the instance waits for its reboot (hours), through
//! the hosts' network; rounds on an interval copy each block once per round however often the
//! guest rewrites it, the figures of each round are the events', and a failed round leaves the
//! bitmap as it was, so the next round copies it again.
//!
//! Invariant: the source's writes reach the target only through a round that concluded without
//! error; a round that failed is reported and nothing is marked copied.

use super::{QemuDriver, Session};
use crate::driver::{DriverError, InstanceSpec, Running, SyncFigures};
use crate::process::{alive, exited, run, signal};
use crate::qmp::{
    BlockdevAdd, BlockdevBackup, DirtyBitmapAdd, DirtyBitmapRemove, JobCancel, JobDismiss,
    QmpEvent, QueryJobs, QueryNamedBlockNodes,
};
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use streamfleet_bus_schemas::ids::InstanceId;
use streamfleet_bus_schemas::migration::VolumeExport;

/// The dirty bitmap a migration's rounds read.
const BITMAP: &str = "sf-migration";
/// The longest a round may take (a full copy of a large disk on a slow link).
const ROUND_TIMEOUT: Duration = Duration::from_secs(3600);

/// The port a volume of an instance is exported on (the same after a restart).
fn port_of(id: &InstanceId, volume_id: &str) -> u16 {
    20_000 + (crc32fast::hash(format!("{id}/{volume_id}").as_bytes()) % 20_000) as u16
}

/// The block node a volume is copied onto.
fn target_node(volume_id: &str) -> String {
    format!("sync-{volume_id}")
}

impl QemuDriver {
    fn export_pid_file(&self, id: &InstanceId, volume_id: &str) -> PathBuf {
        self.dir(id).join(format!("nbd-{volume_id}.pid"))
    }

    pub(super) async fn export(
        &self,
        spec: &InstanceSpec,
    ) -> Result<Vec<VolumeExport>, DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        let dir = self.dir(id);
        std::fs::create_dir_all(&dir).map_err(DriverError::io(&dir))?;
        let mut exports = Vec::new();
        for volume in &spec.volumes {
            let file = self.ensure_disk(id, volume)?;
            let port = port_of(id, &volume.volume_id);
            let pid_file = self.export_pid_file(id, &volume.volume_id);
            let export = VolumeExport {
                volume_id: volume.volume_id.clone(),
                address: format!("{}:{port}", self.network.address),
            };
            // Exported already (the agent restarted): the source may be writing; keep it.
            if self.export_pid(id, &volume.volume_id).is_some() {
                exports.push(export);
                continue;
            }
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.network.namespace,
                    "qemu-nbd",
                    "--fork",
                    "--persistent",
                    "--format=raw",
                    "--cache=writeback",
                    &format!("--export-name={}", volume.volume_id),
                    &format!("--bind={}", self.network.address),
                    &format!("--port={port}"),
                    &format!("--pid-file={}", pid_file.display()),
                    &file.display().to_string(),
                ],
            )
            .await?;
            exports.push(export);
        }
        Ok(exports)
    }

    /// The running `qemu-nbd` exporting a volume, if there is one.
    fn export_pid(&self, id: &InstanceId, volume_id: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.export_pid_file(id, volume_id)).ok()?;
        let pid = text.trim().parse::<u32>().ok()?;
        let is_nbd = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "qemu-nbd");
        (alive(pid) && is_nbd).then_some(pid)
    }

    /// Ends a volume's `qemu-nbd` (it flushes what it was sent as it exits) and waits for it.
    async fn stop_export(&self, id: &InstanceId, volume_id: &str) {
        let pid_file = self.export_pid_file(id, volume_id);
        if let Some(pid) = self.export_pid(id, volume_id) {
            signal(pid, libc::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(10), exited(pid))
                .await
                .is_err()
            {
                signal(pid, libc::SIGKILL);
                exited(pid).await;
            }
        }
        let _ = std::fs::remove_file(pid_file);
    }

    pub(super) async fn unexport(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        let _turn = self.turns.take(&spec.instance_id).await;
        for volume in &spec.volumes {
            self.stop_export(&spec.instance_id, &volume.volume_id).await;
        }
        Ok(())
    }

    pub(super) async fn round(
        &self,
        spec: &InstanceSpec,
        exports: &[VolumeExport],
        full: bool,
    ) -> Result<SyncFigures, DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        let session = self.running(id)?;
        let started = Instant::now();
        let (mut copied, mut dirty) = (0, 0);
        for volume in &spec.volumes {
            let export = exports
                .iter()
                .find(|e| e.volume_id == volume.volume_id)
                .ok_or_else(|| {
                    DriverError::Control(format!("no export for volume {}", volume.volume_id))
                })?;
            let node = self.top(id, &volume.volume_id).node;
            let target = target_node(&volume.volume_id);
            if full {
                // Afresh: whatever an earlier start left goes first (a restarted agent's round
                // may still run).
                Self::end_jobs(&session, &volume.volume_id).await;
                Self::forget_target(&session, &node, &target).await;
                let (host, port) = export.address.rsplit_once(':').ok_or_else(|| {
                    DriverError::Control(format!("export address {} has no port", export.address))
                })?;
                session
                    .qmp
                    .execute(BlockdevAdd(serde_json::json!({
                        "driver": "nbd",
                        "node-name": target,
                        "server": { "type": "inet", "host": host, "port": port },
                        "export": volume.volume_id,
                    })))
                    .await?;
                // Recording starts before the full copy: what the guest writes during it is
                // copied again by the next round.
                session
                    .qmp
                    .execute(DirtyBitmapAdd(serde_json::json!({
                        "node": node, "name": BITMAP,
                    })))
                    .await?;
            }
            let job = format!(
                "sync-{}-{}",
                volume.volume_id,
                uuid::Uuid::now_v7().simple()
            );
            let mut backup = serde_json::json!({
                "job-id": job,
                "device": node,
                "target": target,
                "sync": if full { "full" } else { "incremental" },
                "auto-dismiss": false,
            });
            if !full {
                backup["bitmap"] = BITMAP.into();
            }
            session.qmp.execute(BlockdevBackup(backup)).await?;
            let concluded = QmpEvent::JobConcluded(job.clone());
            if !Self::wait_for(&session, ROUND_TIMEOUT, |e| *e == concluded).await {
                return Err(DriverError::Control(format!(
                    "sync job {job} did not conclude (QEMU ended, or {} s passed)",
                    ROUND_TIMEOUT.as_secs()
                )));
            }
            let jobs = session
                .qmp
                .execute(QueryJobs(serde_json::json!({})))
                .await?;
            let this = jobs
                .as_array()
                .and_then(|all| all.iter().find(|j| j["id"] == job.as_str()))
                .cloned()
                .unwrap_or_default();
            let _ = session
                .qmp
                .execute(JobDismiss(serde_json::json!({ "id": job })))
                .await;
            if let Some(error) = this.get("error").and_then(|e| e.as_str()) {
                return Err(DriverError::Control(format!(
                    "sync of volume {} to {}: {error}",
                    volume.volume_id, export.address
                )));
            }
            copied += this["total-progress"].as_u64().unwrap_or(0);
            dirty += Self::dirty_bytes(&session, &node).await;
        }
        Ok(SyncFigures {
            bytes_copied: copied,
            dirty_bytes_left: dirty,
            duration: started.elapsed(),
        })
    }

    /// Cancels and dismisses every sync job of a volume still known to QEMU.
    async fn end_jobs(session: &Session, volume_id: &str) {
        let Ok(jobs) = session.qmp.execute(QueryJobs(serde_json::json!({}))).await else {
            return;
        };
        let prefix = format!("sync-{volume_id}-");
        let ids: Vec<(String, String)> = jobs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| {
                let id = j["id"].as_str()?;
                id.starts_with(&prefix).then(|| {
                    (
                        id.to_string(),
                        j["status"].as_str().unwrap_or("").to_string(),
                    )
                })
            })
            .collect();
        for (job, status) in ids {
            if status != "concluded" {
                let _ = session
                    .qmp
                    .execute(JobCancel(serde_json::json!({ "id": job })))
                    .await;
                let concluded = QmpEvent::JobConcluded(job.clone());
                Self::wait_for(session, Duration::from_secs(30), |e| *e == concluded).await;
            }
            let _ = session
                .qmp
                .execute(JobDismiss(serde_json::json!({ "id": job })))
                .await;
        }
    }

    /// What the bitmap on `node` holds now, in bytes.
    async fn dirty_bytes(session: &Session, node: &str) -> u64 {
        let Ok(nodes) = session
            .qmp
            .execute(QueryNamedBlockNodes(serde_json::json!({ "flat": true })))
            .await
        else {
            return 0;
        };
        nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["node-name"] == node)
            .flat_map(|n| n["dirty-bitmaps"].as_array().cloned().unwrap_or_default())
            .filter(|b| b["name"] == BITMAP)
            .map(|b| b["count"].as_u64().unwrap_or(0))
            .sum()
    }

    /// Drops the copy's target node and bitmap (absent: nothing to do).
    async fn forget_target(session: &Session, node: &str, target: &str) {
        let _ = session
            .qmp
            .execute(qapi::qmp::blockdev_del {
                node_name: target.to_string(),
            })
            .await;
        let _ = session
            .qmp
            .execute(DirtyBitmapRemove(serde_json::json!({
                "node": node, "name": BITMAP,
            })))
            .await;
    }

    pub(super) async fn stop_sync(&self, spec: &InstanceSpec) {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        self.hold(id, false);
        self.moving.lock().expect("moving").remove(id);
        if let Some(session) = self.session(id) {
            for volume in &spec.volumes {
                let node = self.top(id, &volume.volume_id).node;
                Self::forget_target(&session, &node, &target_node(&volume.volume_id)).await;
            }
        }
    }

    pub(super) fn hold(&self, id: &InstanceId, hold: bool) {
        let mut held = self.held.lock().expect("held");
        if hold {
            held.insert(id.clone());
        } else {
            held.remove(id);
        }
    }

    pub(super) async fn bring_to_halt(
        &self,
        spec: &InstanceSpec,
        grace: Option<Duration>,
    ) -> Result<DateTime<Utc>, DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        // From here on the guest's shutdown is the move's, not news for the agent.
        self.moving.lock().expect("moving").insert(id.clone());
        let session = self.running(id)?;
        if let Some(grace) = grace
            && session
                .qmp
                .execute(qapi::qmp::system_powerdown {})
                .await
                .is_ok()
        {
            let down =
                Self::wait_for(&session, grace, |e| matches!(e, QmpEvent::Shutdown { .. })).await;
            tracing::info!(instance = %id, clean = down, "guest halted for its move");
        }
        // Paused already after a shutdown; paused now otherwise (the hard stop).
        session.qmp.execute(qapi::qmp::stop {}).await?;
        Ok(Utc::now())
    }

    pub(super) async fn cut_power(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        self.end(id, false).await;
        self.network.release(id).await;
        self.moving.lock().expect("moving").remove(id);
        self.hold(id, false);
        Ok(())
    }

    pub(super) async fn boot_here(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        let id = &spec.instance_id;
        let _turn = self.turns.take(id).await;
        if let Some(s) = self.session(id) {
            return Ok(Running { pid: s.pid });
        }
        self.end(id, false).await;
        self.boot(spec, false).await
    }
}
