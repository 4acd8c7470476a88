//! Streamfleet's workers: processes that react to events (provisioning, reaping idle hosts,
//! rollouts, migration, recovery) by sending new commands through `streamfleet_node::CommandClient`.
//!
//! Empty until the session issue builds the first workers; see ARCHITECTURE.md.
