//! Answering an offer: builds the peer (codecs, interceptors, ICE settings), its video and audio
//! tracks, produces the SDP answer, and starts the app thread, the senders and the feedback loop,
//! all stopped by the stream's end.

use super::app_thread::run_app;
use super::audio::send_tone;
use super::events::Events;
use super::feedback::{FeedbackForApplication, watch_feedback};
use super::video::send_frames;
use super::{OfferError, Shared, Stream, StreamConfig, StreamEnd, check_offer, h264_engine};
use crate::adapt::{Estimate, RateController};
use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports,
};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{PeerConnection, PeerConnectionBuilder, SettingEngineBuilder};

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
}

fn rand_ssrc() -> u32 {
    let t = crate::now_us();
    (t as u32) ^ ((t >> 32) as u32).rotate_left(16) ^ 0x5f37_59df
}
