//! Streamfleet's projections (views for dashboards): heartbeat, consistency, sessions, hosts and
//! capacity, rollouts. Each will follow the log with `streamfleet_node::Follower`, keep its own
//! state and checkpoint, and rebuild from position 1 to exactly the live result.
//!
//! Empty until the session issue builds the first views; see ARCHITECTURE.md.
