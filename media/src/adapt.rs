//! Adaptation: from the congestion controller's estimate to what the encoder produces.
//!
//! The estimate comes from Google Congestion Control in webrtc-rs's interceptor chain, fed by the
//! receiver's transport-wide congestion control feedback (delay-based) and its loss reports
//! (loss-based). [`Policy::decide`] is pure: it maps an estimate and the current settings to the
//! next settings.
//!
//! Invariant: the encoder's bitrate never exceeds the estimate (minus headroom for retransmissions
//! and packet overhead) nor the configured ceiling; a resolution step needs the estimate to cross
//! a band with hysteresis and at most one step per [`Policy::RESOLUTION_HOLD`], so the picture
//! does not flap.

use crate::{EncoderSettings, Resolution};
use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc, PacketReport};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The host's adaptation policy for one stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The bitrate a stream starts at, bits per second.
    pub start_bps: u32,
    /// The most a stream is sent at.
    pub max_bps: u32,
    /// The least.
    pub min_bps: u32,
    /// Full frame rate.
    pub fps: f32,
    /// The app's own resolution.
    pub resolution: Resolution,
}

impl Policy {
    /// Share of the estimate the encoder may use; the rest covers RTX, FEC and headers.
    pub const HEADROOM: f64 = 0.85;
    /// Least time between two resolution steps.
    pub const RESOLUTION_HOLD: Duration = Duration::from_secs(4);

    /// The default for a resolution: 2.5 Mbit/s at 720p, scaled by pixel count.
    pub fn for_resolution(resolution: Resolution, fps: f32) -> Self {
        let pixels = f64::from(resolution.width * resolution.height);
        let max = (2_500_000.0 * pixels / (1280.0 * 720.0)).clamp(600_000.0, 8_000_000.0) as u32;
        Self {
            start_bps: max.min(1_500_000),
            max_bps: max,
            min_bps: 150_000,
            fps,
            resolution,
        }
    }

    /// The settings a stream starts with.
    pub fn start(&self) -> EncoderSettings {
        EncoderSettings {
            bitrate_bps: self.start_bps,
            fps: self.fps,
            resolution: self.resolution,
        }
    }

    /// The next settings, given the estimate (bits per second), the current settings and how
    /// long ago the resolution last changed.
    ///
    /// ```
    /// use streamfleet_media::{Resolution, adapt::Policy};
    /// use std::time::Duration;
    /// let policy = Policy::for_resolution(Resolution::HD, 30.0);
    /// let now = policy.start();
    /// let squeezed = policy.decide(300_000.0, now, Duration::from_secs(10));
    /// assert!(squeezed.bitrate_bps <= 255_000);
    /// assert_eq!(squeezed.resolution, Resolution::LOW);
    /// ```
    pub fn decide(
        &self,
        estimate_bps: f64,
        current: EncoderSettings,
        since_resolution_change: Duration,
    ) -> EncoderSettings {
        let bitrate = (estimate_bps * Self::HEADROOM)
            .clamp(f64::from(self.min_bps), f64::from(self.max_bps)) as u32;
        let fps = if bitrate < 300_000 {
            (self.fps / 2.0).max(10.0)
        } else {
            self.fps
        };
        // Below 600 kbit/s the full resolution looks worse than a smaller, sharper one; come
        // back above 1 Mbit/s.
        let low = self.resolution != Resolution::LOW
            && self.resolution.width * self.resolution.height
                > Resolution::LOW.width * Resolution::LOW.height;
        let mut resolution = current.resolution;
        if low && since_resolution_change >= Self::RESOLUTION_HOLD {
            if current.resolution == self.resolution && bitrate < 600_000 {
                resolution = Resolution::LOW;
            } else if current.resolution == Resolution::LOW && bitrate > 1_000_000 {
                resolution = self.resolution;
            }
        }
        EncoderSettings {
            bitrate_bps: bitrate,
            fps,
            resolution,
        }
    }
}

/// What the congestion controller last said.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimate {
    /// Target bitrate, bits per second.
    pub target_bps: f64,
    /// Round-trip time from the last feedback.
    pub rtt: Option<Duration>,
    /// Fraction of packets lost (0..1).
    pub loss: Option<f64>,
    /// When it was last updated.
    pub at: Option<Instant>,
}

/// GCC, publishing each estimate where the stream's sender reads it.
pub struct PublishingGcc {
    inner: Gcc,
    out: Arc<Mutex<Estimate>>,
}

impl PublishingGcc {
    /// A GCC within the policy's bounds, and the cell it publishes to.
    pub fn new(policy: &Policy) -> (Self, Arc<Mutex<Estimate>>) {
        let inner = Gcc::new(
            f64::from(policy.start_bps),
            f64::from(policy.min_bps),
            f64::from(policy.max_bps),
        );
        let out = Arc::new(Mutex::new(Estimate {
            target_bps: inner.target_bitrate(),
            ..Estimate::default()
        }));
        (
            Self {
                inner,
                out: out.clone(),
            },
            out,
        )
    }

    fn publish(&self, now: Instant) {
        let stats = self.inner.stats();
        if let Ok(mut e) = self.out.lock() {
            *e = Estimate {
                target_bps: self.inner.target_bitrate(),
                rtt: stats.round_trip_time.or(e.rtt),
                loss: stats.packet_loss.or(e.loss),
                at: Some(now),
            };
        }
    }
}

impl BandwidthEstimator for PublishingGcc {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.inner.on_reports(now, reports);
        self.publish(now);
    }
    fn target_bitrate(&self) -> f64 {
        self.inner.target_bitrate()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        self.publish(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn stats(&self) -> EstimatorStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrate_follows_the_estimate_within_bounds_and_resolution_has_hysteresis() {
        let p = Policy::for_resolution(Resolution::HD, 30.0);
        let start = p.start();
        let long = Duration::from_secs(10);
        assert_eq!(p.decide(50e6, start, long).bitrate_bps, p.max_bps);
        assert_eq!(p.decide(1.0, start, long).bitrate_bps, p.min_bps);
        let low = p.decide(500_000.0, start, long);
        assert_eq!(low.resolution, Resolution::LOW);
        // Just above the step-down band: stays low until the estimate clears 1 Mbit/s.
        assert_eq!(p.decide(900_000.0, low, long).resolution, Resolution::LOW);
        assert_eq!(p.decide(1_400_000.0, low, long).resolution, Resolution::HD);
        // Never twice within the hold.
        assert_eq!(p.decide(1_400_000.0, low, Duration::from_secs(1)).resolution, Resolution::LOW);
        assert!(p.decide(200_000.0, low, long).fps < 30.0);
    }
}
