//! The codecs the host (and the watching client) speak: H.264 in packetization mode 1 with its
//! keyframe and NACK feedback, and Opus.

use super::OfferError;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};

pub(crate) fn h264_engine() -> Result<MediaEngine, OfferError> {
    let mut engine = MediaEngine::default();
    let feedback = vec![
        RTCPFeedback {
            typ: "ccm".into(),
            parameter: "fir".into(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: "pli".into(),
        },
    ];
    let profiles = [(102u8, "42e01f"), (104, "42001f"), (106, "640c1f")];
    for (pt, profile) in profiles {
        let codec = RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: format!(
                    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"
                ),
                rtcp_feedback: feedback.clone(),
            },
            payload_type: pt,
        };
        // No RTX (RFC 4588): webrtc-rs 0.21's NACK generator does not count a packet repaired
        // on the RTX stream as received and asks for it again and again (we saw one packet
        // resent 89 times). Without RTX, retransmissions travel on the media SSRC, which every
        // receiver (Chromium included) accepts.
        engine
            .register_codec(codec, RtpCodecKind::Video)
            .map_err(|e| OfferError::Answer(e.to_string()))?;
    }
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_OPUS.to_owned(),
                    clock_rate: 48000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| OfferError::Answer(e.to_string()))?;
    Ok(engine)
}
