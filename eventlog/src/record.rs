//! The bytes of one stored event.
//!
//! ```text
//! 0..4    CRC-32 (IEEE) of bytes 4..
//! 4..36   chain hash = BLAKE3(previous chain hash ‖ position LE ‖ version LE ‖ body)
//! 36..44  stream version, u64 LE
//! 44..    body: the event's JSON object without `position` and `streamversion`
//! ```
//! The first event's previous chain hash is 32 zero bytes. The position is the table key.

use crate::error::Corruption;

/// Bytes before the body.
pub const HEADER_LEN: usize = 44;
/// The chain hash before the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// One event as stored, checked against its CRC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Global position.
    pub position: u64,
    /// Version in its stream.
    pub stream_version: u64,
    /// Chain hash through this event.
    pub chain: [u8; 32],
    /// The JSON body (no position, no version).
    pub body: Vec<u8>,
}

/// The chain hash of an event.
pub fn chain_hash(prev: &[u8; 32], position: u64, version: u64, body: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(&position.to_le_bytes());
    h.update(&version.to_le_bytes());
    h.update(body);
    *h.finalize().as_bytes()
}

/// Encodes a record; returns it with its chain hash.
pub fn encode(prev: &[u8; 32], position: u64, version: u64, body: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let chain = chain_hash(prev, position, version, body);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&chain);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out[4..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    (out, chain)
}

impl StoredEvent {
    /// Decodes a record read at `position`, checking its CRC (not its chain: that needs the
    /// previous record; see [`crate::EventLog::verify`]).
    pub fn decode(position: u64, bytes: &[u8]) -> Result<Self, Corruption> {
        if bytes.len() < HEADER_LEN {
            return Err(Corruption::Truncated { len: bytes.len() });
        }
        let stored = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&bytes[4..]);
        if stored != computed {
            return Err(Corruption::Checksum { stored, computed });
        }
        Ok(StoredEvent {
            position,
            chain: bytes[4..36].try_into().expect("32 bytes"),
            stream_version: u64::from_le_bytes(bytes[36..44].try_into().expect("8 bytes")),
            body: bytes[HEADER_LEN..].to_vec(),
        })
    }

    /// The full CloudEvents JSON of the event: `position` and `streamversion` spliced into the
    /// body's object, without re-parsing it.
    pub fn envelope_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 48);
        out.extend_from_slice(b"{\"position\":");
        out.extend_from_slice(self.position.to_string().as_bytes());
        out.extend_from_slice(b",\"streamversion\":");
        out.extend_from_slice(self.stream_version.to_string().as_bytes());
        out.push(b',');
        // The log only accepts bodies that are non-empty JSON objects, so skipping the opening
        // brace leaves `"key":…}`.
        out.extend_from_slice(&self.body[1..]);
        out
    }

    /// The chain hash this record should have, given the previous one.
    pub fn expected_chain(&self, prev: &[u8; 32]) -> [u8; 32] {
        chain_hash(prev, self.position, self.stream_version, &self.body)
    }
}
