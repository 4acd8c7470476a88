//! The host side of one session's stream: a WebRTC peer that answers the client's offer, runs
//! the session's [`App`], encodes its frames and sends them on an H.264 video track, applies the
//! input that arrives on the data channel, and adapts to the congestion controller's estimate.
//!
//! Invariant: a [`Stream`] ends exactly once, with the first of: [`Stream::close`] (the client's
//! DELETE or the session's end), the client's connection failing (ICE consent lost, e.g. the
//! client vanished), or an unrecoverable encoder error. After its end no frame is sent.
//!
//! The offer is checked before any peer is built: unreadable SDP, or no H.264 with packetization
//! mode 1 among its video codecs, is refused with an [`OfferError`] naming the problem.

use crate::adapt::{Estimate, Policy, RateController};
use crate::{App, Encoder, EncoderSettings, Input};
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::media::Sample;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MediaEngine,
};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState, SettingEngineBuilder,
};

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

/// Marks keyframe requests (PLI, FIR) and receiver reports for the application, so the stream's
/// track sees them.
struct FeedbackForApplication {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
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

pub(crate) fn is_keyframe_request(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

struct Events {
    gathered: mpsc::UnboundedSender<()>,
    connected: watch::Sender<bool>,
    end_tx: watch::Sender<Option<StreamEnd>>,
    inputs: std::sync::mpsc::Sender<Input>,
    shared: Arc<Mutex<Shared>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(state = %state, "stream connection state");
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(true);
        }
        if matches!(
            state,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            self.end_tx.send_if_modified(|end| {
                end.is_none()
                    .then(|| *end = Some(StreamEnd::ClientGone))
                    .is_some()
            });
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let inputs = self.inputs.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Some(event) = channel.poll().await {
                let DataChannelEvent::OnMessage(message) = event else {
                    continue;
                };
                match Input::parse(&message.data) {
                    Ok(input) => {
                        if let Ok(mut s) = shared.lock() {
                            s.report.inputs += 1;
                        }
                        let _ = inputs.send(input);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "input refused");
                        if let Ok(mut s) = shared.lock() {
                            s.report.input_errors += 1;
                        }
                        let reply = serde_json::json!({ "error": error.to_string() }).to_string();
                        let _ = channel.send_text(&reply).await;
                    }
                }
            }
        });
    }
}

impl Stream {
    /// Answers `offer_sdp`: builds the peer, starts the app and its encoder, and returns the
    /// stream and the SDP answer (with every candidate, so no trickle is needed).
    pub async fn answer(
        offer_sdp: &str,
        config: &StreamConfig,
    ) -> Result<(Self, String), OfferError> {
        let offer = check_offer(offer_sdp)?;
        let mut engine = h264_engine()?;
        let estimate = Arc::new(Mutex::new(Estimate {
            target_bps: f64::from(config.policy.start_bps),
            ..Estimate::default()
        }));
        let err = |e: rtc::shared::error::Error| OfferError::Answer(e.to_string());
        let registry = Registry::new();
        let registry = configure_nack(registry, &mut engine);
        let registry = configure_rtcp_reports(registry);
        let registry = registry.with(
            Slot::from(14_000),
            FeedbackForApplication {
                read: VecDeque::new(),
                write: VecDeque::new(),
            },
        );
        let settings = SettingEngineBuilder::default()
            .with_ice_timeouts(
                Some(config.consent_timeout / 2),
                Some(config.consent_timeout),
                Some(Duration::from_millis(500)),
            )
            .with_include_loopback_candidate(config.bind_ip.is_loopback())
            .build();
        let (gathered_tx, mut gathered) = mpsc::unbounded_channel();
        let (end_tx, _) = watch::channel(None);
        let (connected_tx, mut connected) = watch::channel(false);
        let connected_audio = connected.clone();
        let (input_tx, input_rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .with_handler(Arc::new(Events {
                gathered: gathered_tx,
                connected: connected_tx,
                end_tx: end_tx.clone(),
                inputs: input_tx,
                shared: shared.clone(),
            }))
            .with_udp_addrs(vec![std::net::SocketAddr::new(config.bind_ip, 0)])
            .build()
            .await
            .map_err(err)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let ssrc = rand_ssrc();
        let codec = RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
                .to_owned(),
            rtcp_feedback: vec![],
        };
        // The video track takes RTP packets: the stream packetizes and paces each frame itself
        // (a keyframe sent in one burst overflows a slow link's queue).
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "streamfleet".to_owned(),
            "video".to_owned(),
            "app".to_owned(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        let sender = pc
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .map_err(err)?;
        let audio_ssrc = ssrc.wrapping_add(0x1000_0001);
        let audio_track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "streamfleet".to_owned(),
                    "audio".to_owned(),
                    "app".to_owned(),
                    RtpCodecKind::Audio,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(audio_ssrc),
                            ..Default::default()
                        },
                        codec: RTCRtpCodec {
                            mime_type: MIME_TYPE_OPUS.to_owned(),
                            clock_rate: 48000,
                            channels: 2,
                            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                            rtcp_feedback: vec![],
                        },
                        ..Default::default()
                    }],
                ),
            )
            .map_err(err)?,
        );
        let audio_sender = pc
            .add_track(Arc::clone(&audio_track) as Arc<dyn TrackLocal>)
            .await
            .map_err(err)?;
        let abandon = |pc: Arc<dyn PeerConnection>| async move {
            let _ = pc.close().await;
        };
        if let Err(e) = pc.set_remote_description(offer).await {
            abandon(pc).await;
            return Err(OfferError::Malformed(e.to_string()));
        }
        let answer = match pc.create_answer(None).await {
            Ok(a) => a,
            Err(e) => {
                abandon(pc).await;
                return Err(OfferError::NoH264(e.to_string()));
            }
        };
        if let Err(e) = pc.set_local_description(answer).await {
            abandon(pc).await;
            return Err(OfferError::Answer(e.to_string()));
        }
        let payload_type = match sender.get_parameters().await {
            Ok(p) => p.rtp_parameters.codecs.first().map(|c| c.payload_type),
            Err(_) => None,
        };
        let Some(payload_type) = payload_type else {
            abandon(pc).await;
            return Err(OfferError::NoH264(
                "no H.264 codec was negotiated for the video track".into(),
            ));
        };
        // Audio only when the offer asked for it.
        let audio_payload_type = match audio_sender.get_parameters().await {
            Ok(p) => p.rtp_parameters.codecs.first().map(|c| c.payload_type),
            Err(_) => None,
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
        let Some(local) = pc.local_description().await else {
            abandon(pc).await;
            return Err(OfferError::Answer(
                "no local description after answering".into(),
            ));
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stream = Self {
            shared: shared.clone(),
            end_tx: end_tx.clone(),
        };
        let (frames_tx, frames_rx) = mpsc::channel::<(crate::EncodedFrame, Duration)>(4);
        let keyframe = Arc::new(AtomicBool::new(false));
        let estimate_feedback = estimate.clone();
        // The app and its encoder run on their own thread (encoding is CPU work), started once
        // the client is connected so its first frame is the first one the client can get.
        {
            let (policy, shared, end_tx, stop, keyframe) = (
                config.policy,
                shared.clone(),
                end_tx.clone(),
                stop.clone(),
                keyframe.clone(),
            );
            let estimate_app = estimate.clone();
            let mut ended = end_tx.subscribe();
            tokio::spawn(async move {
                tokio::select! {
                    c = connected.wait_for(|c| *c) => if c.is_err() { return },
                    _ = ended.wait_for(Option::is_some) => return,
                }
                let failed = end_tx.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("sf-stream".into())
                        .spawn(move || {
                            if let Err(e) = run_app(
                                policy,
                                estimate_app,
                                input_rx,
                                frames_tx,
                                shared,
                                stop,
                                keyframe,
                            ) {
                                end_tx.send_if_modified(|end| {
                                    end.is_none()
                                        .then(|| *end = Some(StreamEnd::Failed(e.clone())))
                                        .is_some()
                                });
                            }
                        });
                if let Err(e) = spawned {
                    failed.send_if_modified(|end| {
                        end.is_none()
                            .then(|| {
                                *end = Some(StreamEnd::Failed(format!(
                                    "cannot start the app thread: {e}"
                                )))
                            })
                            .is_some()
                    });
                }
            });
        }
        tokio::spawn(send_frames(
            track.clone(),
            ssrc,
            payload_type,
            frames_rx,
            estimate.clone(),
        ));
        if let Some(pt) = audio_payload_type {
            tokio::spawn(send_tone(
                audio_track,
                audio_ssrc,
                pt,
                connected_audio,
                end_tx.subscribe(),
            ));
        }
        let controller = RateController::new(
            f64::from(config.policy.start_bps),
            f64::from(config.policy.min_bps),
            f64::from(config.policy.max_bps),
        );
        tokio::spawn(watch_feedback(
            track,
            ssrc,
            keyframe,
            estimate_feedback,
            controller,
        ));
        // Whatever ends the stream stops the app and closes the peer.
        {
            let mut end = end_tx.subscribe();
            tokio::spawn(async move {
                let _ = end.wait_for(Option::is_some).await;
                stop.store(true, Ordering::SeqCst);
                let _ = pc.close().await;
            });
        }
        Ok((stream, local.sdp))
    }

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

fn rand_ssrc() -> u32 {
    let t = crate::now_us();
    (t as u32) ^ ((t >> 32) as u32).rotate_left(16) ^ 0x5f37_59df
}

/// Acts on the receiver's feedback: keyframe requests set the flag the app thread reads; receiver
/// reports about our stream drive the rate controller.
async fn watch_feedback(
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

/// Sends the app's sound, 20 ms at a time, from connection to the stream's end.
async fn send_tone(
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

/// Pacing: a frame's packets leave at this multiple of the estimate, so a keyframe spreads over
/// several frame intervals instead of arriving at the bottleneck in one burst.
const PACING: f64 = 1.25;

/// Packetizes each encoded frame (H.264, RFC 6184 FU-A) and sends its packets paced.
async fn send_frames(
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

/// The app thread: renders, encodes and hands frames to the sender, at the policy's pace.
fn run_app(
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
