//! The offer check, before any peer is built: size, SDP that parses, and an H.264 video codec
//! with packetization mode 1.

use super::{MAX_OFFER_BYTES, OfferError};
use rtc::peer_connection::sdp::RTCSessionDescription;

/// Checks an offer's text before any peer is built.
///
/// ```
/// use streamfleet_media::stream::{check_offer, OfferError};
/// assert!(matches!(check_offer("hello"), Err(OfferError::Malformed(_))));
/// ```
pub fn check_offer(sdp: &str) -> Result<RTCSessionDescription, OfferError> {
    if sdp.len() > MAX_OFFER_BYTES {
        return Err(OfferError::TooLarge(sdp.len()));
    }
    if !sdp.starts_with("v=0") {
        return Err(OfferError::Malformed("SDP must start with `v=0`".into()));
    }
    let offer = RTCSessionDescription::offer(sdp.to_string())
        .map_err(|e| OfferError::Malformed(e.to_string()))?;
    // Find H264/90000 payload types in video sections and check one has packetization-mode=1.
    let mut in_video = false;
    let mut h264 = vec![];
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video ");
        } else if in_video && let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let mut parts = rest.splitn(2, ' ');
            let (pt, codec) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if codec.to_ascii_uppercase().starts_with("H264/90000") {
                h264.push(pt.to_string());
            }
        }
    }
    if h264.is_empty() {
        return Err(OfferError::NoH264(
            "no H264/90000 in any video section".into(),
        ));
    }
    let mode1 = sdp.lines().map(str::trim).any(|line| {
        line.strip_prefix("a=fmtp:").is_some_and(|rest| {
            let (pt, params) = rest.split_once(' ').unwrap_or((rest, ""));
            h264.iter().any(|p| p == pt) && params.contains("packetization-mode=1")
        })
    });
    if !mode1 {
        return Err(OfferError::NoH264(
            "H.264 is offered only in packetization mode 0".into(),
        ));
    }
    Ok(offer)
}
