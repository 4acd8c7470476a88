//! Adaptation: from the congestion controller's estimate to what the encoder produces.
//!
//! The estimate comes from [`RateController`], fed by the receiver's RTCP receiver reports (loss
//! and round trip). [`Policy::decide`] and the controller are pure: plain values in, plain values
//! out.
//!
//! Invariant: the encoder's bitrate never exceeds the estimate (minus headroom for retransmissions
//! and packet overhead) nor the configured ceiling; a resolution step needs the estimate to cross
//! a band with hysteresis and at most one step per [`Policy::RESOLUTION_HOLD`], so the picture
//! does not flap.

use crate::{EncoderSettings, Resolution};
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
        // Below 1 Mbit/s the full resolution looks worse than a smaller, sharper one (and its
        // keyframes take too long on the wire); come back above 1.6 Mbit/s.
        let low = self.resolution != Resolution::LOW
            && self.resolution.width * self.resolution.height
                > Resolution::LOW.width * Resolution::LOW.height;
        let mut resolution = current.resolution;
        if low && since_resolution_change >= Self::RESOLUTION_HOLD {
            if current.resolution == self.resolution && bitrate < 1_000_000 {
                resolution = Resolution::LOW;
            } else if current.resolution == Resolution::LOW && bitrate > 1_600_000 {
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
    /// Round-trip time from the last receiver report.
    pub rtt: Option<Duration>,
    /// Fraction of packets the receiver reported lost (0..1).
    pub loss: Option<f64>,
}

/// A loss- and delay-based rate controller driven by the receiver's RTCP receiver reports
/// (fraction lost, and the round trip from their LSR/DLSR fields), in the manner of GCC's
/// loss-based half plus a queueing-delay check.
///
/// Invariant: the rate stays within `min..=max`; it falls when more than 10 % is lost or the
/// round trip grows 40 ms over the least seen (a queue is building), grows by 8 % a report while
/// under 2 % is lost and no queue builds, and holds in between: random loss of a few per cent,
/// which more bitrate would not cause and less would not cure, neither raises nor lowers it.
///
/// ```
/// use streamfleet_media::adapt::RateController;
/// use std::time::{Duration, Instant};
/// let mut rc = RateController::new(2_000_000.0, 150_000.0, 2_500_000.0);
/// let now = Instant::now();
/// let rtt = Some(Duration::from_millis(20));
/// assert!(rc.on_report(now, 0.30, rtt) < 2_000_000.0); // heavy loss: back off
/// let held = rc.rate();
/// assert_eq!(rc.on_report(now, 0.05, rtt), held);      // a few per cent: hold
/// assert!(rc.on_report(now, 0.0, rtt) > held);          // clean: probe upwards
/// ```
#[derive(Debug, Clone)]
pub struct RateController {
    rate: f64,
    min: f64,
    max: f64,
    least_rtt: Option<Duration>,
}

impl RateController {
    /// Loss above which the rate falls.
    pub const HIGH_LOSS: f64 = 0.10;
    /// Loss below which the rate may grow.
    pub const LOW_LOSS: f64 = 0.02;
    /// Round-trip growth over the least seen that counts as a queue building.
    pub const QUEUE: Duration = Duration::from_millis(40);

    /// Starts at `start`, within `min..=max` (bits per second).
    pub fn new(start: f64, min: f64, max: f64) -> Self {
        Self {
            rate: start.clamp(min, max),
            min,
            max,
            least_rtt: None,
        }
    }

    /// The current rate, bits per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes one receiver report: `loss` the fraction lost since the previous one, `rtt` the
    /// round trip it implies. Returns the new rate.
    pub fn on_report(&mut self, _now: Instant, loss: f64, rtt: Option<Duration>) -> f64 {
        let queueing = match (rtt, self.least_rtt) {
            (Some(rtt), Some(least)) => rtt.saturating_sub(least) > Self::QUEUE,
            _ => false,
        };
        if let Some(rtt) = rtt {
            self.least_rtt = Some(self.least_rtt.map_or(rtt, |l| l.min(rtt)));
        }
        self.rate = if loss > Self::HIGH_LOSS {
            self.rate * (1.0 - 0.5 * loss)
        } else if queueing {
            self.rate * 0.85
        } else if loss < Self::LOW_LOSS {
            self.rate * 1.08 + 10_000.0
        } else {
            self.rate
        }
        .clamp(self.min, self.max);
        self.rate
    }
}

/// Round trip from a reception report's LSR and DLSR fields (RFC 3550 §6.4.1), given the
/// middle 32 bits of the NTP time now; `None` when the report carries no sender report time or
/// the clocks make no sense.
pub fn round_trip(now_ntp_middle: u32, last_sender_report: u32, delay: u32) -> Option<Duration> {
    if last_sender_report == 0 {
        return None;
    }
    let units = now_ntp_middle
        .wrapping_sub(last_sender_report)
        .wrapping_sub(delay);
    // More than a minute means the subtraction wrapped: clocks disagree.
    (units < 60 * 65_536).then(|| Duration::from_micros(u64::from(units) * 1_000_000 / 65_536))
}

/// The middle 32 bits of the NTP time now (16 bits of seconds, 16 of fraction).
pub fn ntp_middle_now() -> u32 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs() + 2_208_988_800;
    let fraction = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (((seconds & 0xffff) << 16) | (fraction >> 16)) as u32
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
        let low = p.decide(1_000_000.0, start, long);
        assert_eq!(low.resolution, Resolution::LOW);
        // Above the step-down band: stays low until the bitrate clears 1.6 Mbit/s.
        assert_eq!(p.decide(1_500_000.0, low, long).resolution, Resolution::LOW);
        assert_eq!(p.decide(2_000_000.0, low, long).resolution, Resolution::HD);
        // Never twice within the hold.
        assert_eq!(
            p.decide(2_000_000.0, low, Duration::from_secs(1))
                .resolution,
            Resolution::LOW
        );
        assert!(p.decide(200_000.0, low, long).fps < 30.0);
    }

    #[test]
    fn the_rate_comes_down_to_a_cap_and_holds_under_random_loss() {
        // A 900 kbit/s link with 5 % random loss and a 60 ms queue: what exceeds the link is
        // lost too, and fills the queue first.
        let mut rc = RateController::new(2_000_000.0, 150_000.0, 2_500_000.0);
        let now = Instant::now();
        let mut rates = vec![];
        rc.on_report(now, 0.0, Some(Duration::from_millis(30)));
        for _ in 0..30 {
            let over = (rc.rate() - 900_000.0).max(0.0) / rc.rate();
            let loss = 0.05 + over * 0.95;
            let rtt = Duration::from_millis(if over > 0.0 { 90 } else { 30 });
            rates.push(rc.on_report(now, loss, Some(rtt)));
        }
        let last = *rates.last().unwrap();
        assert!(last <= 900_000.0 && last > 450_000.0, "{rates:?}");
        // A queue building (round trip up 50 ms) brings it down without loss.
        let before = rc.rate();
        assert!(rc.on_report(now, 0.0, Some(Duration::from_millis(80))) < before);
    }

    #[test]
    fn round_trips_come_from_lsr_and_dlsr() {
        // Sent at 1.0 s, held 0.25 s by the receiver, back at 1.5 s: 250 ms.
        let rtt = round_trip(3 * 32_768, 65_536, 16_384).unwrap();
        assert_eq!(rtt, Duration::from_millis(250));
        assert_eq!(round_trip(5, 0, 0), None);
        assert_eq!(round_trip(0, 65_536, 0), None, "wrapped");
    }
}
