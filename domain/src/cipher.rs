//! Cipher selection for a relayed connection (seeds/003): each hop takes the first cipher in the
//! destination-side's order that the sending side supports, preferring one cipher on both hops so
//! the relay need not re-encrypt.

use crate::{Rejection, non_empty};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::{Cipher, CipherSelected, SelectCipher};

/// A connection's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CipherState {
    /// Source → relay.
    pub inbound: Cipher,
    /// Relay → destination.
    pub outbound: Cipher,
}

/// Picks `(inbound, outbound)` ciphers: a cipher all three support when there is one (the
/// destination's order first), else each hop's own best common cipher.
///
/// ```
/// use streamfleet_bus_schemas::payloads::Cipher::*;
/// let pick = streamfleet_domain::select_ciphers(&[Aes256Gcm, Chacha20Poly1305], &[Chacha20Poly1305, Aes256Gcm], &[Chacha20Poly1305]);
/// assert_eq!(pick, Ok((Chacha20Poly1305, Chacha20Poly1305)));
/// ```
pub fn select_ciphers(
    source: &[Cipher],
    relay: &[Cipher],
    destination: &[Cipher],
) -> Result<(Cipher, Cipher), Rejection> {
    if let Some(c) = destination
        .iter()
        .find(|c| relay.contains(c) && source.contains(c))
    {
        return Ok((*c, *c));
    }
    let inbound = relay
        .iter()
        .find(|c| source.contains(c))
        .ok_or(Rejection::NoCommonCipher {
            hop: "source→relay",
        })?;
    let outbound =
        destination
            .iter()
            .find(|c| relay.contains(c))
            .ok_or(Rejection::NoCommonCipher {
                hop: "relay→destination",
            })?;
    Ok((*inbound, *outbound))
}

pub(crate) fn decide_select(
    c: &SelectCipher,
    state: Option<&CipherState>,
) -> Result<Vec<Event>, Rejection> {
    if state.is_some() {
        return Err(Rejection::CipherAlreadySelected {
            connection_id: c.connection_id.clone(),
        });
    }
    non_empty("connection_id", &c.connection_id)?;
    let (inbound, outbound) = select_ciphers(&c.source, &c.relay, &c.destination)?;
    Ok(vec![Event::CipherSelected(CipherSelected {
        connection_id: c.connection_id.clone(),
        inbound,
        outbound,
        reencrypt: inbound != outbound,
    })])
}

pub(crate) fn evolve(e: &CipherSelected) -> CipherState {
    CipherState {
        inbound: e.inbound,
        outbound: e.outbound,
    }
}
