//! The peer's events: ICE gathering done, the connection's state (connected, or the client gone),
//! and the data channel the client opens for input.

use super::{Shared, StreamEnd};
use crate::Input;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

/// What the peer's events drive.
pub(super) struct Events {
    /// Told when ICE gathering is complete (the answer then has every candidate).
    pub(super) gathered: mpsc::UnboundedSender<()>,
    /// Set once the client is connected.
    pub(super) connected: watch::Sender<bool>,
    /// The stream's end: [`StreamEnd::ClientGone`] when the connection fails or closes.
    pub(super) end_tx: watch::Sender<Option<StreamEnd>>,
    /// Where the data channel's input goes (the app thread).
    pub(super) inputs: std::sync::mpsc::Sender<Input>,
    /// The stream's report (input counts).
    pub(super) shared: Arc<Mutex<Shared>>,
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
        super::input::forward(channel, self.inputs.clone(), self.shared.clone());
    }
}
