//! The bytes of one stored event.
//!
//! ```text
//! 0..4      CRC-32 (IEEE) of bytes 4..
//! 4..36     chain hash = BLAKE3(previous chain hash ‖ position LE ‖ bytes 36..)
//! 36..44    stream version, u64 LE
//! 44..60    id of the command that appended it, u128 LE (0: none)
//! 60..62    length n of the stream id, u16 LE
//! 62..62+n  stream id (ASCII)
//! 62+n..    body: the event's JSON object without `position` and `streamversion`
//! ```
//! The first event's previous chain hash is 32 zero bytes. The position is the table key.
//! A record names its stream and command, so every index can be rebuilt from records alone.

use crate::error::Corruption;
use uuid::Uuid;

/// Bytes before the stream id.
pub const FIXED_HEADER_LEN: usize = 62;
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
    /// The stream.
    pub stream: String,
    /// The command that appended it, if one was named.
    pub command_id: Option<Uuid>,
    /// The JSON body (no position, no version).
    pub body: Vec<u8>,
}

fn chain_hash(prev: &[u8; 32], position: u64, after_chain: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(&position.to_le_bytes());
    for part in after_chain {
        h.update(part);
    }
    *h.finalize().as_bytes()
}

/// Encodes a record; returns it with its chain hash. `stream` is at most `u16::MAX` bytes (the
/// log admits 256).
pub fn encode(
    prev: &[u8; 32],
    position: u64,
    version: u64,
    command_id: Option<Uuid>,
    stream: &str,
    body: &[u8],
) -> (Vec<u8>, [u8; 32]) {
    let mut out = Vec::with_capacity(FIXED_HEADER_LEN + stream.len() + body.len());
    out.extend_from_slice(&[0; 36]);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&command_id.map_or(0, |c| c.as_u128()).to_le_bytes());
    out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(body);
    let chain = chain_hash(prev, position, &[&out[36..]]);
    out[4..36].copy_from_slice(&chain);
    let crc = crc32fast::hash(&out[4..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    (out, chain)
}

/// Checks a record's length and CRC; returns where its body starts.
fn check_frame(bytes: &[u8]) -> Result<usize, Corruption> {
    if bytes.len() < FIXED_HEADER_LEN {
        return Err(Corruption::Truncated { len: bytes.len() });
    }
    let stored = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&bytes[4..]);
    if stored != computed {
        return Err(Corruption::Checksum { stored, computed });
    }
    let stream_len = usize::from(u16::from_le_bytes(
        bytes[60..62].try_into().expect("2 bytes"),
    ));
    let body_at = FIXED_HEADER_LEN + stream_len;
    if bytes.len() < body_at {
        return Err(Corruption::Truncated { len: bytes.len() });
    }
    Ok(body_at)
}

impl StoredEvent {
    /// Decodes a record read at `position`, checking its CRC (not its chain: that needs the
    /// previous record; see [`crate::EventLog::verify`]).
    pub fn decode(position: u64, bytes: &[u8]) -> Result<Self, Corruption> {
        let body_at = check_frame(bytes)?;
        let stream = std::str::from_utf8(&bytes[FIXED_HEADER_LEN..body_at])
            .map_err(|_| Corruption::UnreadableBody)?;
        let command = u128::from_le_bytes(bytes[44..60].try_into().expect("16 bytes"));
        Ok(StoredEvent {
            position,
            chain: bytes[4..36].try_into().expect("32 bytes"),
            stream_version: u64::from_le_bytes(bytes[36..44].try_into().expect("8 bytes")),
            command_id: (command != 0).then(|| Uuid::from_u128(command)),
            stream: stream.to_string(),
            body: bytes[body_at..].to_vec(),
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

    /// Checks a record's bytes at `position` without decoding them: its length, its CRC, and
    /// that its chain hash follows from `prev`. Returns its chain hash.
    pub fn check_chain(
        position: u64,
        bytes: &[u8],
        prev: &[u8; 32],
    ) -> Result<[u8; 32], Corruption> {
        check_frame(bytes)?;
        let chain = chain_hash(prev, position, &[&bytes[36..]]);
        if chain[..] != bytes[4..36] {
            return Err(Corruption::ChainBroken);
        }
        Ok(chain)
    }

    /// The chain hash this record should have, given the previous one.
    pub fn expected_chain(&self, prev: &[u8; 32]) -> [u8; 32] {
        chain_hash(
            prev,
            self.position,
            &[
                &self.stream_version.to_le_bytes(),
                &self.command_id.map_or(0, |c| c.as_u128()).to_le_bytes(),
                &(self.stream.len() as u16).to_le_bytes(),
                self.stream.as_bytes(),
                &self.body,
            ],
        )
    }
}
