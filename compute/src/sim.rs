//! The simulated driver: instances that exist only in the agent's memory, for scale tests and
//! benchmarks of the control plane itself (its own row of the capability table).
//!
//! Invariant: it keeps the same contract as the real drivers — what its row lacks is refused as
//! `unsupported` — and nothing happens to its instances unless asked.

use crate::driver::{Driver, DriverError, Happening, InstanceSpec, Running};
use std::collections::HashSet;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::ids::InstanceId;

/// The pid a simulated instance reports: it has no process of its own (0, which no process has).
pub const SIM_PID: u32 = 0;

/// The simulated driver.
#[derive(Default)]
pub struct SimDriver {
    running: std::sync::Mutex<HashSet<InstanceId>>,
}

impl SimDriver {
    /// How many instances run.
    pub fn running(&self) -> usize {
        self.running.lock().expect("sim instances").len()
    }
}

impl Driver for SimDriver {
    fn hypervisor(&self) -> Hypervisor {
        Hypervisor::Sim
    }

    fn detail(&self) -> String {
        "simulated in the agent".into()
    }

    async fn launch(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        self.running
            .lock()
            .expect("sim instances")
            .insert(spec.instance_id.clone());
        Ok(Running { pid: SIM_PID })
    }

    async fn adopt(&self, spec: &InstanceSpec) -> Result<Option<Running>, DriverError> {
        // Nothing of a simulated instance outlives the agent.
        let alive = self
            .running
            .lock()
            .expect("sim instances")
            .contains(&spec.instance_id);
        Ok(alive.then_some(Running { pid: SIM_PID }))
    }

    async fn stop(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        self.running
            .lock()
            .expect("sim instances")
            .remove(&spec.instance_id);
        Ok(())
    }

    async fn reboot(&self, spec: &InstanceSpec) -> Result<Running, DriverError> {
        self.launch(spec).await
    }

    async fn terminate(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        self.stop(spec).await
    }

    async fn next_happening(&self) -> (InstanceId, Happening) {
        std::future::pending().await
    }
}
