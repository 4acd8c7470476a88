//! Streamfleet's replay and audit tooling: read, verify, state as of a moment, rebuild and diff
//! projections, export — from a live node or a copy of the log file.
//!
//! Empty until the audit issue; the log's own `verify` already checks checksums and the hash
//! chain. See ARCHITECTURE.md.
