//! The node decider: recording a node failure once.

mod common;

use common::{rejected, run};
use streamfleet_bus_schemas::Command;
use streamfleet_bus_schemas::payloads::*;
use streamfleet_domain::Rejection;

#[test]
fn a_node_failure_is_recorded_once() {
    let cmd = Command::ReportNodeFailure(ReportNodeFailure {
        node_id: "n1".into(),
        reason: "silent".into(),
    });
    let state = run(std::slice::from_ref(&cmd));
    assert_eq!(
        rejected(&cmd, &state),
        Rejection::NodeAlreadyFailed {
            node_id: "n1".into()
        }
    );
}
