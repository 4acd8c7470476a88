//! The receiving side: connects to a host's WHEP endpoint with a session's credentials, decodes
//! the H.264 it receives with openh264, reads every frame's [`Stamp`] back from the pixels, and
//! optionally sends input and measures how long the app takes to show it.
//!
//! Invariant: a frame counts as decoded only when openh264 produced a picture whose stamp reads
//! back intact; the report's latency figures come from those stamps alone (host and client share
//! a clock on one machine; across machines they include the clock offset).

use crate::signal;
use crate::{Input, Stamp};
use bytes::BytesMut;
use rtc::interceptor::{NackGeneratorBuilder, Registry, Slot};
use rtc::media::io::sample_builder::SampleBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState, SettingEngineBuilder,
};

/// What to watch and for how long.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The host's WHEP endpoint, `http(s)://host:port/sessions/<id>/whep`.
    pub url: String,
    /// How the endpoint is reached (for `https://`: the authorities its certificate is checked
    /// against).
    pub via: signal::Via,
    /// The session's credentials.
    pub credentials: String,
    /// The local address to receive on.
    pub bind_ip: IpAddr,
    /// Stop after this many decoded frames (`None`: until `limit`).
    pub frames: Option<u64>,
    /// Stop after this long in any case.
    pub limit: Duration,
    /// Send a pointer move every this many frames and measure input to photon.
    pub input_every: Option<u64>,
    /// End the session with DELETE when done (otherwise just close the connection).
    pub delete_at_end: bool,
    /// Decode the frames (otherwise only reassemble and count them: a load generator).
    pub decode: bool,
}

/// Why watching failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The host could not be reached.
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// Why.
        detail: String,
    },
    /// The host refused the offer (wrong credentials, bad offer, session already watched…).
    #[error("host refused: {status} {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its body (a JSON error naming the reason).
        body: String,
    },
    /// The WebRTC stack failed.
    #[error("WebRTC: {0}")]
    Webrtc(String),
    /// No frame was decoded before the limit.
    #[error("no frame decoded within {0:?}")]
    NoFrames(Duration),
}

/// One decoded frame, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenFrame {
    /// The stamp read from its pixels.
    pub stamp: Stamp,
    /// Its decoded size.
    pub width: u32,
    /// Its decoded size.
    pub height: u32,
    /// When it was decoded, µs since the epoch.
    pub shown_at_us: u64,
}

/// What a watch measured.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct WatchReport {
    /// Frames decoded with an intact stamp.
    pub frames: u64,
    /// Decoded pictures whose stamp did not read back.
    pub unreadable: u64,
    /// Frame numbers in decode order went backwards this many times.
    pub out_of_order: u64,
    /// First and last frame number seen.
    pub first_frame: Option<u32>,
    /// Last frame number seen.
    pub last_frame: Option<u32>,
    /// Resolution of the last frame.
    pub width: u32,
    /// Resolution of the last frame.
    pub height: u32,
    /// Decoded frames per second over the watch.
    pub fps: f64,
    /// The longest time between two decoded frames, ms (how long the picture froze at worst).
    pub longest_gap_ms: f64,
    /// Received video bitrate, kbit/s, over the watch.
    pub bitrate_kbps: f64,
    /// Capture-to-decode latency, ms: median.
    pub latency_p50_ms: f64,
    /// 95th percentile.
    pub latency_p95_ms: f64,
    /// Input-to-photon, ms: median (when input was sent).
    pub input_p50_ms: Option<f64>,
    /// Keyframe requests (PLI) sent.
    pub plis: u64,
    /// Opus audio frames received and decoded.
    pub audio_frames: u64,
    /// Loudness of the decoded audio (RMS, 0..1), over the watch.
    pub audio_rms: f64,
    /// Packets that arrived after a later one: retransmissions (NACK) filling gaps, or reordering.
    pub late_packets: u64,
    /// RTP packets received.
    pub packets: u64,
    /// Seconds watched.
    pub seconds: f64,
}

struct Events {
    gathered: mpsc::UnboundedSender<()>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
    state: mpsc::UnboundedSender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

/// A running watch: its frames as they are decoded, and its end.
pub struct Watch {
    /// Every decoded frame, in order.
    pub frames: mpsc::UnboundedReceiver<SeenFrame>,
    task: tokio::task::JoinHandle<Result<WatchReport, WatchError>>,
}

impl Watch {
    /// Waits for the watch to end and returns what it measured.
    pub async fn finish(self) -> Result<WatchReport, WatchError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(WatchError::Webrtc(format!("watch task failed: {e}"))),
        }
    }
}

/// Connects and starts watching; frames arrive on [`Watch::frames`].
pub async fn start(config: WatchConfig) -> Result<Watch, WatchError> {
    let (frame_tx, frames) = mpsc::unbounded_channel();
    let session = connect(&config).await?;
    let task = tokio::spawn(run(config, session, frame_tx));
    Ok(Watch { frames, task })
}

/// Connects, watches until done and returns the report.
pub async fn watch(config: WatchConfig) -> Result<WatchReport, WatchError> {
    start(config).await?.finish().await
}

struct Connected {
    pc: Arc<dyn PeerConnection>,
    input: Arc<dyn DataChannel>,
    tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    states: mpsc::UnboundedReceiver<RTCPeerConnectionState>,
    resource: Option<String>,
    host: String,
    port: u16,
}

async fn connect(config: &WatchConfig) -> Result<Connected, WatchError> {
    let w = |e: rtc::shared::error::Error| WatchError::Webrtc(e.to_string());
    let (host, port, path) =
        signal::split_url(&config.url).map_err(|e| WatchError::Unreachable {
            url: config.url.clone(),
            detail: e.to_string(),
        })?;
    let mut engine = crate::stream::h264_engine().map_err(|e| WatchError::Webrtc(e.to_string()))?;
    let registry = register_default_interceptors(Registry::new(), &mut engine).map_err(w)?;
    // The default NACK generator asks for a missing packet every 100 ms until it arrives, so a
    // retransmission that takes longer (a queue on a slow link) is asked for again and again and
    // the repairs crowd out the stream. Ask at most twice, 150 ms apart.
    let registry = registry.with(
        Slot::NackGenerator,
        NackGeneratorBuilder::new()
            .with_interval(Duration::from_millis(150))
            .with_max_nacks_per_packet(2)
            .build(),
    );
    let (gathered_tx, mut gathered) = mpsc::unbounded_channel();
    let (tracks_tx, tracks) = mpsc::unbounded_channel();
    let (state_tx, states) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(
            SettingEngineBuilder::default()
                .with_include_loopback_candidate(config.bind_ip.is_loopback())
                .with_ice_timeouts(
                    Some(Duration::from_secs(3)),
                    Some(Duration::from_secs(6)),
                    Some(Duration::from_millis(500)),
                )
                .build(),
        )
        .with_handler(Arc::new(Events {
            gathered: gathered_tx,
            tracks: tracks_tx,
            state: state_tx,
        }))
        .with_udp_addrs(vec![std::net::SocketAddr::new(config.bind_ip, 0)])
        .build()
        .await
        .map_err(w)?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    pc.add_transceiver_from_kind(
        RtpCodecKind::Audio,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        }),
    )
    .await
    .map_err(w)?;
    pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        }),
    )
    .await
    .map_err(w)?;
    let input = pc.create_data_channel("input", None).await.map_err(w)?;
    let offer = pc.create_offer(None).await.map_err(w)?;
    pc.set_local_description(offer).await.map_err(w)?;
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
    let offer = pc
        .local_description()
        .await
        .ok_or_else(|| WatchError::Webrtc("no local offer".into()))?;
    let bearer = format!("Bearer {}", config.credentials);
    let reply = signal::request_via(
        &config.via,
        &host,
        port,
        "POST",
        &path,
        &[("authorization", &bearer)],
        Some(("application/sdp", offer.sdp.as_bytes())),
    )
    .await
    .map_err(|e| WatchError::Unreachable {
        url: config.url.clone(),
        detail: e.to_string(),
    })?;
    if reply.status != 201 {
        let _ = pc.close().await;
        return Err(WatchError::Refused {
            status: reply.status,
            body: reply.body,
        });
    }
    let answer = RTCSessionDescription::answer(reply.body.clone()).map_err(w)?;
    pc.set_remote_description(answer).await.map_err(w)?;
    Ok(Connected {
        pc,
        input,
        tracks,
        states,
        resource: reply.header("location").map(str::to_string),
        host,
        port,
    })
}

/// What the decoder thread shares with the watch loop.
#[derive(Default)]
struct Tally {
    report: WatchReport,
    latencies: Vec<f64>,
    bytes: u64,
    need_keyframe: bool,
    audio_square_sum: f64,
    audio_samples: u64,
    last_shown_us: Option<u64>,
}

async fn run(
    config: WatchConfig,
    mut c: Connected,
    frame_tx: mpsc::UnboundedSender<SeenFrame>,
) -> Result<WatchReport, WatchError> {
    let started = Instant::now();
    let deadline = started + config.limit;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<SeenFrame>();
    let mut input_sent: BTreeMap<u16, u64> = BTreeMap::new();
    let mut input_latency = vec![];
    let mut next_seq: u16 = 1;
    let mut reader = None;
    let mut audio: Option<tokio::task::JoinHandle<()>> = None;
    let result = loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => break Ok(()),
            track = c.tracks.recv() => {
                if let Some(track) = track {
                    if track.kind().await == RtpCodecKind::Audio {
                        audio = Some(tokio::spawn(read_audio(track, tally.clone())));
                    } else if reader.is_none() {
                        reader = Some(tokio::spawn(read_track(track, tally.clone(), seen_tx.clone(), config.decode)));
                    }
                }
            }
            state = c.states.recv() => match state {
                Some(RTCPeerConnectionState::Failed) | Some(RTCPeerConnectionState::Closed) | None => {
                    break Err(WatchError::Webrtc("connection to the host failed".into()));
                }
                _ => {}
            },
            frame = seen_rx.recv() => {
                let Some(frame) = frame else { break Ok(()) };
                let _ = frame_tx.send(frame);
                // Input to photon: the first frame showing an input's effect.
                let shown: Vec<u16> = input_sent.range(..=frame.stamp.input_seq).map(|(k, _)| *k).collect();
                for seq in shown {
                    if let Some(sent) = input_sent.remove(&seq) {
                        input_latency.push(frame.shown_at_us.saturating_sub(sent) as f64 / 1000.0);
                    }
                }
                let frames = tally.lock().map(|t| t.report.frames).unwrap_or(0);
                if let Some(every) = config.input_every
                    && frames % every.max(1) == 0 {
                        let input = Input::Pointer { seq: next_seq, x: (frames as u32 * 7) % 600, y: 100 };
                        if let Ok(text) = serde_json::to_string(&input)
                            && c.input.send(BytesMut::from(text.as_bytes())).await.is_ok() {
                                input_sent.insert(next_seq, crate::now_us());
                                next_seq = next_seq.wrapping_add(1).max(1);
                            }
                    }
                if config.frames.is_some_and(|n| frames >= n) {
                    break Ok(());
                }
            }
        }
    };
    if let Some(r) = reader {
        r.abort();
    }
    if let Some(a) = audio {
        a.abort();
    }
    if config.delete_at_end
        && let Some(resource) = &c.resource
    {
        let bearer = format!("Bearer {}", config.credentials);
        let _ = signal::request_via(
            &config.via,
            &c.host,
            c.port,
            "DELETE",
            resource,
            &[("authorization", &bearer)],
            None,
        )
        .await;
    }
    let _ = c.pc.close().await;
    result?;
    let seconds = started.elapsed().as_secs_f64();
    let mut t = tally
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    if t.report.frames == 0 {
        return Err(WatchError::NoFrames(config.limit));
    }
    t.latencies.sort_by(f64::total_cmp);
    input_latency.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let mut report = t.report;
    report.seconds = seconds;
    report.fps = report.frames as f64 / seconds;
    report.bitrate_kbps = t.bytes as f64 * 8.0 / seconds / 1000.0;
    report.latency_p50_ms = pct(&t.latencies, 0.5);
    report.latency_p95_ms = pct(&t.latencies, 0.95);
    report.input_p50_ms = (!input_latency.is_empty()).then(|| pct(&input_latency, 0.5));
    if t.audio_samples > 0 {
        report.audio_rms = (t.audio_square_sum / t.audio_samples as f64).sqrt();
    }
    Ok(report)
}

/// Reassembles frames from RTP, decodes them on a thread of their own and reads their stamps;
/// asks for a keyframe (PLI) at the start and whenever a frame was lost or undecodable.
async fn read_track(
    track: Arc<dyn TrackRemote>,
    tally: Arc<Mutex<Tally>>,
    seen: mpsc::UnboundedSender<SeenFrame>,
    decode: bool,
) {
    let media_ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
    let (samples_tx, samples_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    {
        let tally = tally.clone();
        if decode {
            std::thread::spawn(move || decode_loop(samples_rx, tally, seen));
        } else {
            std::thread::spawn(move || count_loop(samples_rx, tally, seen));
        }
    }
    // Wait up to a second (or 512 packets) for a missing packet's retransmission before giving
    // the frame up.
    let mut builder = SampleBuilder::new(512, H264Packet::default(), 90_000)
        .with_max_time_delay(Duration::from_secs(1));
    let mut last_pli: Option<Instant> = None;
    let mut highest: Option<u16> = None;
    if let Ok(mut t) = tally.lock() {
        t.need_keyframe = true;
    }
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            if matches!(event, TrackRemoteEvent::OnEnded) {
                break;
            }
            continue;
        };
        let now = Instant::now();
        let seq = packet.header.sequence_number;
        tracing::trace!(
            seq,
            ssrc = packet.header.ssrc,
            timestamp = packet.header.timestamp,
            marker = packet.header.marker,
            bytes = packet.payload.len(),
            "rtp"
        );
        let late = highest.is_some_and(|h| seq.wrapping_sub(h) > 0x8000);
        if !late {
            highest = Some(seq);
        }
        if let Ok(mut t) = tally.lock() {
            t.bytes += packet.payload.len() as u64;
            t.report.packets += 1;
            t.report.late_packets += u64::from(late);
        }
        builder.push(now, packet);
        while let Some(sample) = builder.pop(now) {
            // A gap alone is no reason for a keyframe: a retransmission that came too late counts
            // as dropped too. The decoder says when a frame's references are missing.
            if samples_tx.send(sample.data.to_vec()).is_err() {
                return;
            }
        }
        let need = tally.lock().map(|t| t.need_keyframe).unwrap_or(false);
        // At most one request a second: a keyframe takes a while to arrive on a slow link, and
        // asking again meanwhile only makes the next one later.
        if need && last_pli.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
            last_pli = Some(Instant::now());
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            if track.write_rtcp(vec![Box::new(pli)]).await.is_ok()
                && let Ok(mut t) = tally.lock()
            {
                t.report.plis += 1;
                t.need_keyframe = false;
            }
        }
    }
}

/// Decodes the Opus track and measures its loudness.
async fn read_audio(track: Arc<dyn TrackRemote>, tally: Arc<Mutex<Tally>>) {
    let Ok(mut decoder) = opus::Decoder::new(48_000, opus::Channels::Stereo) else {
        return;
    };
    let mut pcm = vec![0i16; 5760 * 2];
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            if matches!(event, TrackRemoteEvent::OnEnded) {
                break;
            }
            continue;
        };
        let Ok(n) = decoder.decode(&packet.payload, &mut pcm, false) else {
            continue;
        };
        let rms = crate::rms(&pcm[..n * 2]);
        if let Ok(mut t) = tally.lock() {
            t.report.audio_frames += 1;
            t.audio_square_sum += rms * rms * (n * 2) as f64;
            t.audio_samples += (n * 2) as u64;
        }
    }
}

/// Counts reassembled frames without decoding them (no stamps: frame numbers are counts).
fn count_loop(
    samples: std::sync::mpsc::Receiver<Vec<u8>>,
    tally: Arc<Mutex<Tally>>,
    seen: mpsc::UnboundedSender<SeenFrame>,
) {
    while samples.recv().is_ok() {
        let Ok(mut t) = tally.lock() else { return };
        let r = &mut t.report;
        let frame = r.last_frame.map_or(0, |f| f + 1);
        r.first_frame.get_or_insert(0);
        r.last_frame = Some(frame);
        r.frames += 1;
        let stamp = Stamp {
            frame,
            captured_at_us: 0,
            input_seq: 0,
        };
        let _ = seen.send(SeenFrame {
            stamp,
            width: 0,
            height: 0,
            shown_at_us: crate::now_us(),
        });
    }
}

fn decode_loop(
    samples: std::sync::mpsc::Receiver<Vec<u8>>,
    tally: Arc<Mutex<Tally>>,
    seen: mpsc::UnboundedSender<SeenFrame>,
) {
    use openh264::formats::YUVSource;
    let Ok(mut decoder) = openh264::decoder::Decoder::new() else {
        return;
    };
    while let Ok(sample) = samples.recv() {
        let decoded = decoder.decode(&sample);
        let mut t = match tally.lock() {
            Ok(t) => t,
            Err(_) => return,
        };
        match decoded {
            Ok(Some(yuv)) => {
                let (w, h) = yuv.dimensions();
                let shown_at_us = crate::now_us();
                match Stamp::read(yuv.y(), yuv.strides().0, w, h) {
                    Some(stamp) => {
                        let r = &mut t.report;
                        if r.last_frame.is_some_and(|last| stamp.frame <= last) {
                            r.out_of_order += 1;
                        }
                        r.first_frame.get_or_insert(stamp.frame);
                        r.last_frame = Some(stamp.frame);
                        r.frames += 1;
                        (r.width, r.height) = (w as u32, h as u32);
                        let latency =
                            shown_at_us.saturating_sub(stamp.captured_at_us) as f64 / 1000.0;
                        t.latencies.push(latency);
                        if let Some(last) = t.last_shown_us {
                            let gap = shown_at_us.saturating_sub(last) as f64 / 1000.0;
                            t.report.longest_gap_ms = t.report.longest_gap_ms.max(gap);
                        }
                        t.last_shown_us = Some(shown_at_us);
                        let _ = seen.send(SeenFrame {
                            stamp,
                            width: w as u32,
                            height: h as u32,
                            shown_at_us,
                        });
                    }
                    None => {
                        t.report.unreadable += 1;
                        t.need_keyframe = true;
                    }
                }
            }
            Ok(None) => {}
            Err(_) => t.need_keyframe = true,
        }
    }
}
