//! One QMP session with one QEMU process, through the `qapi` crate's typed QMP for tokio.
//!
//! Invariant: the session's events are read by one task for as long as the socket is open, and
//! its end ([`QmpEvent::Closed`]) is always the last thing sent: QEMU's process is gone (or has
//! closed its monitor) exactly when the receiver sees it.

use crate::driver::DriverError;
use futures::StreamExt;
use qapi::futures::{QapiService, QmpStreamTokio};
use qapi::qmp::{Event, ShutdownCause};
use serde::Serialize;
use std::path::Path;
use tokio::io::WriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// What QEMU told about its guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpEvent {
    /// The guest shut down (`reset`: it asked for a reboot, which `-action reboot=shutdown`
    /// turns into a shutdown, and `shutdown=pause` holds it paused for the driver to decide).
    Shutdown {
        /// The guest asked (not the host).
        guest: bool,
        /// A reboot rather than a power-off.
        reset: bool,
    },
    /// A device was removed (after `device_del`, once the guest let go of it).
    DeviceDeleted(String),
    /// A block job (a sync round) concluded, well or not (`query-jobs` says which).
    JobConcluded(String),
    /// The monitor closed: QEMU ended.
    Closed,
}

/// A QMP session.
pub struct Qmp {
    service: QapiService<QmpStreamTokio<WriteHalf<UnixStream>>>,
}

/// A QMP command whose arguments the driver writes as JSON: QEMU's `BlockdevOptions` and
/// `Netdev` are unions of dozens of backends; the driver writes the few fields it uses, as
/// QEMU's schema names them.
macro_rules! json_command {
    ($(#[$doc:meta])* $name:ident, $qmp:literal) => {
        json_command!($(#[$doc])* $name, $qmp, qapi::Empty);
    };
    ($(#[$doc:meta])* $name:ident, $qmp:literal, $ok:ty) => {
        $(#[$doc])*
        #[derive(Debug, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub serde_json::Value);

        impl qapi::Command for $name {
            type Ok = $ok;
            const NAME: &'static str = $qmp;
            const ALLOW_OOB: bool = false;
        }
        impl qapi::qmp::QmpCommand for $name {}
    };
}

json_command!(
    /// `blockdev-add`: a block node (a disk's file and format).
    BlockdevAdd,
    "blockdev-add"
);
json_command!(
    /// `netdev_add`: a network backend (a tap device).
    NetdevAdd,
    "netdev_add"
);
json_command!(
    /// `blockdev-backup`: a sync round onto the migration target's export.
    BlockdevBackup,
    "blockdev-backup"
);
json_command!(
    /// `block-dirty-bitmap-add`: start recording which blocks the guest writes.
    DirtyBitmapAdd,
    "block-dirty-bitmap-add"
);
json_command!(
    /// `block-dirty-bitmap-remove`.
    DirtyBitmapRemove,
    "block-dirty-bitmap-remove"
);
json_command!(
    /// `query-jobs`: the block jobs, with their progress and error.
    QueryJobs,
    "query-jobs",
    serde_json::Value
);
json_command!(
    /// `job-cancel`: end a job (a sync round a restarted agent left running).
    JobCancel,
    "job-cancel"
);
json_command!(
    /// `job-dismiss`: forget a concluded job.
    JobDismiss,
    "job-dismiss"
);
json_command!(
    /// `query-named-block-nodes`: the block nodes, with their dirty bitmaps' counts.
    QueryNamedBlockNodes,
    "query-named-block-nodes",
    serde_json::Value
);

impl Qmp {
    /// Connects to QEMU's monitor socket, negotiates, and starts reading its events.
    pub async fn connect(
        socket: &Path,
    ) -> Result<(Qmp, mpsc::UnboundedReceiver<QmpEvent>), DriverError> {
        let control =
            |e: std::io::Error| DriverError::Control(format!("{}: {e}", socket.display()));
        let negotiation = QmpStreamTokio::open_uds(socket).await.map_err(control)?;
        let stream = negotiation.negotiate().await.map_err(control)?;
        let (service, mut events) = stream.into_parts();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let seen = match event {
                    Ok(Event::SHUTDOWN { data, .. }) => QmpEvent::Shutdown {
                        guest: data.guest,
                        reset: matches!(data.reason, ShutdownCause::guest_reset),
                    },
                    Ok(Event::JOB_STATUS_CHANGE { data, .. })
                        if matches!(data.status, qapi::qmp::JobStatus::concluded) =>
                    {
                        QmpEvent::JobConcluded(data.id)
                    }
                    Ok(Event::DEVICE_DELETED { data, .. }) => match data.device {
                        Some(id) => QmpEvent::DeviceDeleted(id),
                        None => continue,
                    },
                    Ok(other) => {
                        tracing::debug!(event = ?other, "qmp event");
                        continue;
                    }
                    Err(e) => {
                        // Also how every `quit` ends (QEMU closes the socket as it exits).
                        tracing::debug!(error = %e, "qmp session ended");
                        break;
                    }
                };
                if tx.send(seen).is_err() {
                    return;
                }
            }
            let _ = tx.send(QmpEvent::Closed);
        });
        Ok((Qmp { service }, rx))
    }

    /// Runs one command.
    pub async fn execute<C>(&self, command: C) -> Result<C::Ok, DriverError>
    where
        C: qapi::qmp::QmpCommand + 'static,
    {
        let name = C::NAME;
        self.service
            .execute(command)
            .await
            .map_err(|e| DriverError::Control(format!("{name}: {e}")))
    }
}
