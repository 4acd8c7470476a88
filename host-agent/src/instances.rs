//! The host agent as a compute host: the host-management service launches the streaming hosts
//! it needs through the instance commands (seed 002's one command set, on the `sim`
//! hypervisor), so a streaming host is an instance like any other; this driver turns such an
//! instance into one of the agent's simulated streaming hosts.
//!
//! Invariant: an instance here is a streaming host the fleet requested — its id is the host's
//! id, and it runs the app and version that host's `HostRequested` records (read from the log);
//! any other instance fails, saying so. A host that stops (terminated by the control plane) is
//! reported as powered off, so the instance is never left running without its host. The hosts
//! live in the agent's memory and end with it, as on a power cut.

use crate::{Agent, launch_host};
use std::sync::Arc;
use streamfleet_bus_client::LogReader;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::ids::{HostId, InstanceId};
use streamfleet_compute::sim::SIM_PID;
use streamfleet_compute::{Driver, DriverError, Happening, InstanceSpec, Running};
use tokio::sync::{Mutex, mpsc};

/// The driver: the agent's streaming hosts, as instances.
pub(crate) struct StreamingHosts {
    agent: Arc<Agent>,
    reader: LogReader,
    stopped_tx: mpsc::UnboundedSender<InstanceId>,
    stopped_rx: Mutex<mpsc::UnboundedReceiver<InstanceId>>,
}

impl StreamingHosts {
    /// The driver of `agent`'s hosts, reading the hosts' requests with `reader`.
    pub(crate) fn new(agent: Arc<Agent>, reader: LogReader) -> StreamingHosts {
        let (stopped_tx, stopped_rx) = mpsc::unbounded_channel();
        StreamingHosts {
            agent,
            reader,
            stopped_tx,
            stopped_rx: Mutex::new(stopped_rx),
        }
    }

    fn host(&self, id: &str) -> Option<Arc<crate::Host>> {
        self.agent
            .hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The app and version the fleet requested host `id` with.
    async fn requested(&self, id: &str) -> Result<(String, String), DriverError> {
        let history = self
            .reader
            .stream(&format!("host-{id}"))
            .await
            .map_err(|e| DriverError::Control(format!("reading host-{id}: {e}")))?;
        history
            .into_iter()
            .rev()
            .find_map(|e| match Event::from_parts(&e.body.event_type, e.body.data) {
                Ok(Event::HostRequested(r)) => Some((r.app_id.to_string(), r.version)),
                _ => None,
            })
            .ok_or_else(|| {
                DriverError::Control(format!(
                    "{id} is not a host the fleet requested (streaming hosts are launched by the host-management service)"
                ))
            })
    }

    /// Reports the host's end (unless the driver ended it) as the instance powering off.
    fn watch(&self, id: &InstanceId, host: &crate::Host) {
        let mut stopped = host.stopped();
        let (tx, id) = (self.stopped_tx.clone(), id.clone());
        tokio::spawn(async move {
            if stopped.wait_for(|s| *s).await.is_ok() {
                let _ = tx.send(id);
            }
        });
    }
}

impl Driver for StreamingHosts {
    fn hypervisor(&self) -> Hypervisor {
        Hypervisor::Sim
    }

    fn detail(&self) -> String {
        format!(
            "simulated streaming hosts in the host agent of {}",
            self.agent.config.region
        )
    }

    async fn launch(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        let id = spec.instance_id.as_str();
        if self.host(id).is_none() {
            let (app, version) = self.requested(id).await?;
            let host = launch_host(&self.agent, HostId::from(id), app.as_str().into(), version)
                .await
                .map_err(|e| DriverError::Control(e.to_string()))?;
            self.watch(&spec.instance_id, &host);
        }
        Ok(Running { pid: SIM_PID })
    }

    async fn adopt(&self, spec: &InstanceSpec) -> Result<Option<Running>, DriverError> {
        Ok(self
            .host(spec.instance_id.as_str())
            .map(|_| Running { pid: SIM_PID }))
    }

    async fn stop(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        if let Some(host) = self.host(spec.instance_id.as_str()) {
            host.stop();
        }
        Ok(())
    }

    async fn reboot(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        self.stop(spec).await?;
        self.agent
            .hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(spec.instance_id.as_str());
        self.launch(spec).await
    }

    async fn terminate(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        self.stop(spec).await
    }

    async fn next_happening(&self) -> (InstanceId, Happening) {
        loop {
            let next = self.stopped_rx.lock().await.recv().await;
            match next {
                Some(id) => return (id, Happening::GuestPoweredOff),
                None => std::future::pending::<()>().await,
            }
        }
    }
}
