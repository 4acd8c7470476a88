//! The receiver's RTCP feedback: an interceptor that hands keyframe requests and receiver reports
//! to the application, and the loop that acts on them (keyframes, the rate controller).

use crate::adapt::{Estimate, RateController};
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

/// Marks keyframe requests (PLI, FIR) and receiver reports for the application, so the stream's
/// track sees them.
pub(super) struct FeedbackForApplication {
    pub(super) read: VecDeque<TaggedPacket>,
    pub(super) write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackForApplication {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && packets
                .iter()
                .any(|p| is_keyframe_request(p.as_ref()) || is_receiver_report(p.as_ref()))
        {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for FeedbackForApplication {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

fn is_receiver_report(p: &dyn rtc::rtcp::Packet) -> bool {
    p.as_any().is::<ReceiverReport>()
}

fn is_keyframe_request(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Acts on the receiver's feedback: keyframe requests set the flag the app thread reads; receiver
/// reports about our stream drive the rate controller.
pub(super) async fn watch_feedback(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    keyframe: Arc<AtomicBool>,
    estimate: Arc<Mutex<Estimate>>,
    mut controller: RateController,
) {
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        for packet in &packets {
            if is_keyframe_request(packet.as_ref()) {
                keyframe.store(true, Ordering::SeqCst);
            }
            let Some(rr) = packet.as_any().downcast_ref::<ReceiverReport>() else {
                continue;
            };
            for report in rr.reports.iter().filter(|r| r.ssrc == ssrc) {
                let now = Instant::now();
                let loss = f64::from(report.fraction_lost) / 256.0;
                let rtt = crate::adapt::round_trip(
                    crate::adapt::ntp_middle_now(),
                    report.last_sender_report,
                    report.delay,
                );
                let target = controller.on_report(now, loss, rtt);
                if let Ok(mut e) = estimate.lock() {
                    *e = Estimate {
                        target_bps: target,
                        rtt: rtt.or(e.rtt),
                        loss: Some(loss),
                    };
                }
            }
        }
    }
}
