//! The app thread's loop: applies input, renders, adapts the encoder to the estimate, drops frames
//! the link cannot take yet, encodes, keeps the stream's report and hands frames to the sender.

use super::Shared;
use crate::adapt::{Estimate, Policy};
use crate::{App, Encoder, EncoderSettings, Input};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The app thread: renders, encodes and hands frames to the sender, at the policy's pace.
pub(super) fn run_app(
    policy: Policy,
    estimate: Arc<Mutex<Estimate>>,
    inputs: std::sync::mpsc::Receiver<Input>,
    frames: mpsc::Sender<(crate::EncodedFrame, Duration)>,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    keyframe: Arc<AtomicBool>,
) -> Result<(), String> {
    let mut app = App::new();
    let mut settings: EncoderSettings = policy.start();
    let mut encoder = Encoder::new(settings).map_err(|e| e.to_string())?;
    let mut resolution_changed = Instant::now();
    let mut next_adapt = Instant::now();
    let mut window: VecDeque<(Instant, usize)> = VecDeque::new();
    let mut next_frame = Instant::now();
    // Frames are dropped at the source while what was encoded exceeds what the estimate lets
    // through (bits, may go negative after a keyframe); otherwise they would queue in the pacer
    // and arrive ever later.
    let mut budget_bits: f64 = 0.0;
    let mut budget_at = Instant::now();
    let (mut frames_sent, mut keyframes) = (0u64, 0u64);
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now < next_frame {
            std::thread::sleep(next_frame - now);
        }
        let interval = Duration::from_secs_f32(1.0 / settings.fps);
        next_frame += interval;
        if next_frame < Instant::now() {
            // Fell behind (slow machine): skip ahead instead of bursting.
            next_frame = Instant::now() + interval;
        }
        while let Ok(input) = inputs.try_recv() {
            app.apply(&input);
        }
        let est = estimate.lock().map(|e| *e).unwrap_or_default();
        if Instant::now() >= next_adapt {
            next_adapt = Instant::now() + Duration::from_millis(250);
            let next = policy.decide(est.target_bps, settings, resolution_changed.elapsed());
            if next != settings {
                if next.resolution != settings.resolution {
                    resolution_changed = Instant::now();
                    tracing::info!(from = %settings.resolution, to = %next.resolution, bitrate = next.bitrate_bps, "stream resolution changed");
                }
                encoder.reconfigure(next).map_err(|e| e.to_string())?;
                settings = next;
            }
        }
        if keyframe.swap(false, Ordering::SeqCst) {
            encoder.force_keyframe();
        }
        let now = Instant::now();
        let rate = est.target_bps.max(f64::from(policy.min_bps));
        budget_bits =
            (budget_bits + rate * now.duration_since(budget_at).as_secs_f64()).min(rate * 0.25);
        budget_at = now;
        tracing::trace!(estimate = est.target_bps, rtt = ?est.rtt, loss = ?est.loss, target = settings.bitrate_bps, budget = budget_bits, resolution = %settings.resolution, "stream frame");
        let picture = app.render(settings.resolution, crate::now_us());
        if budget_bits < 0.0 {
            if let Ok(mut s) = shared.lock() {
                s.report.dropped += 1;
            }
            continue;
        }
        let Some(frame) = encoder.encode(&picture).map_err(|e| e.to_string())? else {
            continue;
        };
        budget_bits -= frame.data.len() as f64 * 8.0;
        let sent_at = Instant::now();
        window.push_back((sent_at, frame.data.len()));
        while window
            .front()
            .is_some_and(|(t, _)| sent_at.duration_since(*t) > Duration::from_secs(2))
        {
            window.pop_front();
        }
        frames_sent += 1;
        keyframes += u64::from(frame.keyframe);
        if let Ok(mut s) = shared.lock() {
            let span = window
                .front()
                .map(|(t, _)| sent_at.duration_since(*t).as_secs_f64())
                .filter(|s| *s > 0.5)
                .unwrap_or(1.0);
            let bytes: usize = window.iter().map(|(_, b)| b).sum();
            let r = &mut s.report;
            r.bitrate_kbps = (bytes as f64 * 8.0 / span / 1000.0) as u32;
            r.fps = ((window.len().saturating_sub(1)) as f64 / span).round() as u32;
            r.rtt_ms = est.rtt.map(|d| d.as_millis() as u32).unwrap_or(0);
            r.loss_permille = est.loss.map(|l| (l * 1000.0) as u32).unwrap_or(0);
            r.keyframes = keyframes;
            r.frames = frames_sent;
            r.estimate_kbps = (est.target_bps / 1000.0) as u32;
            r.target_kbps = settings.bitrate_bps / 1000;
            r.width = settings.resolution.width;
            r.height = settings.resolution.height;
        }
        match frames.try_send((frame, interval)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // The network side is behind: drop this frame, ask for a clean start.
                encoder.force_keyframe();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
        }
    }
    Ok(())
}
