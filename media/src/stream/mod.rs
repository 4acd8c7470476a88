//! The host side of one session's stream: a WebRTC peer that answers the client's offer, runs
//! the session's [`App`](crate::App), encodes its frames and sends them on an H.264 video track,
//! applies the input that arrives on the data channel, and adapts to the congestion controller's
//! estimate.
//!
//! Invariant: a [`Stream`] ends exactly once, with the first of: [`Stream::close`] (the client's
//! DELETE or the session's end), the client's connection failing (ICE consent lost, e.g. the
//! client vanished), or an unrecoverable encoder error. After its end no frame is sent.
//!
//! The offer is checked before any peer is built: unreadable SDP, or no H.264 with packetization
//! mode 1 among its video codecs, is refused with an [`OfferError`] naming the problem.
//!
//! Its parts: [`check_offer`] reads the offer; `engine` is the codecs the host speaks; `answer`
//! builds the peer and its tracks and starts everything else; `events` follows the peer's state;
//! `input` applies what arrives on the data channel; `app_thread` renders and encodes at the
//! policy's pace; `video` packetizes and paces the frames; `audio` sends the tone; `feedback`
//! acts on the receiver's RTCP (keyframe requests, receiver reports).

mod answer;
mod app_thread;
mod audio;
mod engine;
mod events;
mod feedback;
mod input;
mod offer;
mod video;

pub use offer::check_offer;

pub(crate) use engine::h264_engine;

use crate::adapt::Policy;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Largest SDP offer read, bytes.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;

/// How a host streams.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The address the peer's UDP socket binds (the host's address, as handed to clients).
    pub bind_ip: IpAddr,
    /// Bitrate bounds, frame rate and resolution.
    pub policy: Policy,
    /// How long without the client's consent before the stream counts it gone.
    pub consent_timeout: Duration,
}

impl StreamConfig {
    /// 720p30 on `bind_ip`, the client counted gone after 5 s of silence.
    pub fn new(bind_ip: IpAddr) -> Self {
        Self {
            bind_ip,
            policy: Policy::for_resolution(crate::Resolution::HD, 30.0),
            consent_timeout: Duration::from_secs(5),
        }
    }
}

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Larger than [`MAX_OFFER_BYTES`].
    #[error("offer of {0} bytes is over the {MAX_OFFER_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not SDP, or SDP the WebRTC stack cannot apply.
    #[error("malformed SDP offer: {0}")]
    Malformed(String),
    /// No video section offering H.264 with packetization mode 1.
    #[error(
        "the offer has no usable H.264 video codec (need H264/90000 with packetization-mode=1): {0}"
    )]
    NoH264(String),
    /// The WebRTC stack failed while answering.
    #[error("could not answer the offer: {0}")]
    Answer(String),
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// Closed by the host (the client's DELETE, or the session ended).
    Closed,
    /// The client stopped answering (connection failed).
    ClientGone,
    /// The encoder or the track failed.
    Failed(String),
}

/// What a stream reports in its session's heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct StreamReport {
    /// Sent bitrate over the last two seconds, kbit/s.
    pub bitrate_kbps: u32,
    /// Frames sent per second over the last two seconds.
    pub fps: u32,
    /// Round-trip time, ms (0 until measured).
    pub rtt_ms: u32,
    /// Loss the receiver reported, per mille.
    pub loss_permille: u32,
    /// Keyframes sent so far.
    pub keyframes: u64,
    /// Frames sent so far.
    pub frames: u64,
    /// The congestion controller's estimate, kbit/s.
    pub estimate_kbps: u32,
    /// The encoder's target, kbit/s.
    pub target_kbps: u32,
    /// Width sent.
    pub width: u32,
    /// Height sent.
    pub height: u32,
    /// Input messages applied.
    pub inputs: u64,
    /// Input messages refused.
    pub input_errors: u64,
    /// Frames rendered but not encoded: the link could not take them yet (after a keyframe, or
    /// when the estimate fell).
    pub dropped: u64,
}

#[derive(Default)]
struct Shared {
    report: StreamReport,
}

/// One session's stream.
pub struct Stream {
    shared: Arc<Mutex<Shared>>,
    end_tx: watch::Sender<Option<StreamEnd>>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("report", &self.report())
            .finish()
    }
}

impl Stream {
    /// What the stream reports now.
    pub fn report(&self) -> StreamReport {
        self.shared.lock().map(|s| s.report).unwrap_or_default()
    }

    /// Ends the stream (no-op when already ended).
    pub fn close(&self) {
        self.end_tx.send_if_modified(|end| {
            end.is_none()
                .then(|| *end = Some(StreamEnd::Closed))
                .is_some()
        });
    }

    /// Resolves when the stream ends, with how.
    pub async fn ended(&self) -> StreamEnd {
        let mut rx = self.end_tx.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(end) => end.clone().unwrap_or(StreamEnd::Closed),
            Err(_) => StreamEnd::Closed,
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.close();
    }
}
