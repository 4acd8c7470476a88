//! The video sender: packetizes each encoded frame (H.264, RFC 6184) and sends its packets paced
//! at a multiple of the congestion controller's estimate.

use crate::adapt::Estimate;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

/// Pacing: a frame's packets leave at this multiple of the estimate, so a keyframe spreads over
/// several frame intervals instead of arriving at the bottleneck in one burst.
const PACING: f64 = 1.25;

/// Packetizes each encoded frame (H.264, RFC 6184 FU-A) and sends its packets paced.
pub(super) async fn send_frames(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
    mut frames: mpsc::Receiver<(crate::EncodedFrame, Duration)>,
    estimate: Arc<Mutex<Estimate>>,
) {
    use rtc::rtp::packetizer::Packetizer;
    let mut packetizer = rtc::rtp::packetizer::new_packetizer(
        Instant::now(),
        1200,
        payload_type,
        ssrc,
        Box::<rtc::rtp::codec::h264::H264Payloader>::default(),
        Box::new(rtc::rtp::sequence::new_random_sequencer()),
        90_000,
    );
    while let Some((frame, duration)) = frames.recv().await {
        let samples = (duration.as_secs_f64() * 90_000.0) as u32;
        let packets =
            match packetizer.packetize(Instant::now(), &bytes::Bytes::from(frame.data), samples) {
                Ok(p) => p,
                Err(error) => {
                    tracing::warn!(%error, "frame not packetized");
                    continue;
                }
            };
        let rate = estimate
            .lock()
            .map(|e| e.target_bps)
            .unwrap_or(1e6)
            .max(100_000.0)
            * PACING;
        let mut due = tokio::time::Instant::now();
        for packet in packets {
            let bits = (packet.payload.len() + 40) as f64 * 8.0;
            if let Err(error) = track.write_rtp(packet).await {
                tracing::debug!(%error, "packet not sent");
            }
            due += Duration::from_secs_f64(bits / rate);
            if due > tokio::time::Instant::now() + Duration::from_millis(2) {
                tokio::time::sleep_until(due).await;
            }
        }
    }
}
