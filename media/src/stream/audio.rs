//! The audio track: the app's tone, Opus, 20 ms a frame, from connection to the stream's end.

use super::StreamEnd;
use rtc::media::Sample;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;

/// Sends the app's sound, 20 ms at a time, from connection to the stream's end.
pub(super) async fn send_tone(
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    payload_type: u8,
    mut connected: watch::Receiver<bool>,
    mut ended: watch::Receiver<Option<StreamEnd>>,
) {
    tokio::select! {
        c = connected.wait_for(|c| *c) => if c.is_err() { return },
        _ = ended.wait_for(Option::is_some) => return,
    }
    let mut tone = match crate::Tone::new() {
        Ok(t) => t,
        Err(error) => {
            tracing::warn!(%error, "no sound: the Opus encoder did not start");
            return;
        }
    };
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = ended.wait_for(Option::is_some) => return,
        }
        let Ok(data) = tone.next_frame() else { return };
        let sample = Sample {
            data: data.into(),
            duration: Duration::from_millis(20),
            ..Sample::new(Instant::now())
        };
        if let Err(error) = track
            .sample_writer(ssrc, payload_type)
            .write_sample(&sample)
            .await
        {
            tracing::debug!(%error, "audio frame not sent");
        }
    }
}
