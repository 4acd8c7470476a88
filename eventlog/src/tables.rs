//! Table definitions and the format marker. Changing any of these changes the file format.

use redb::TableDefinition;

/// position → record bytes (see [`crate::record`]).
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// (stream, version) → position.
pub(crate) const STREAM_INDEX: TableDefinition<(&str, u64), u64> =
    TableDefinition::new("stream_index");
/// (category, first position) → the positions of that category written by one commit, packed
/// as ascending u64 LE (see [`pack_positions`]). One entry per category per commit, not per event.
pub(crate) const CATEGORY_INDEX: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("category_index");
/// command id → (first position, event count).
pub(crate) const COMMANDS: TableDefinition<u128, (u64, u32)> = TableDefinition::new("commands");
/// command id → its [`crate::CommandDigest`] (digest ‖ type). Written in the commit that records
/// the command's events, not through the tail, so that it is durable with them. Commands
/// recorded before this table existed have no entry and are deduplicated by id alone; adding it
/// did not change the format (an older build ignores it).
pub(crate) const COMMAND_DIGESTS: TableDefinition<u128, &[u8]> =
    TableDefinition::new("command_digests");
/// "format" → FORMAT; "indexed_through" → a position (decimal).
pub(crate) const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

pub(crate) const FORMAT_KEY: &str = "format";
/// "indexed_through" → the last position whose index entries are in the index tables.
pub(crate) const INDEXED_THROUGH_KEY: &str = "indexed_through";
/// The format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 2;
pub(crate) fn format_value() -> String {
    format!("streamfleet-eventlog/{FORMAT_VERSION}")
}

/// Packs ascending positions for a [`CATEGORY_INDEX`] value.
pub(crate) fn pack_positions(positions: &[u64]) -> Vec<u8> {
    positions.iter().flat_map(|p| p.to_le_bytes()).collect()
}

/// Unpacks a [`CATEGORY_INDEX`] value.
pub(crate) fn unpack_positions(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8")))
}
