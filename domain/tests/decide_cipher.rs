//! The cipher decider: choosing ciphers end to end, or failing clearly without a common one.

mod common;

use common::ctx;
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::{Rejection, State, decide};

#[test]
fn ciphers_prefer_one_cipher_end_to_end_and_fail_clearly_without_one() {
    use Cipher::*;
    let sel = |s: &[Cipher], r: &[Cipher], d: &[Cipher]| {
        decide(
            &Command::SelectCipher(SelectCipher {
                connection_id: "c1".into(),
                source: s.to_vec(),
                relay: r.to_vec(),
                destination: d.to_vec(),
            }),
            &State::Empty,
            &ctx(),
        )
    };
    assert_eq!(
        sel(
            &[Aes128Gcm],
            &[Aes128Gcm, Chacha20Poly1305],
            &[Chacha20Poly1305]
        ),
        Ok(vec![Event::CipherSelected(CipherSelected {
            connection_id: "c1".into(),
            inbound: Aes128Gcm,
            outbound: Chacha20Poly1305,
            reencrypt: true
        })])
    );
    assert_eq!(
        sel(&[Aes128Gcm], &[Aes256Gcm], &[Aes256Gcm]),
        Err(Rejection::NoCommonCipher {
            hop: "source→relay"
        })
    );
    assert_eq!(
        sel(&[Aes128Gcm], &[Aes128Gcm], &[Aes256Gcm]),
        Err(Rejection::NoCommonCipher {
            hop: "relay→destination"
        })
    );
}
