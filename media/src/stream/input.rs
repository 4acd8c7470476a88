//! The data-channel input: each message is parsed as an [`Input`] and handed to the app thread;
//! one that does not parse is counted, logged and answered on the channel with its error.

use super::Shared;
use crate::Input;
use std::sync::{Arc, Mutex};
use webrtc::data_channel::{DataChannel, DataChannelEvent};

/// Reads `channel` until it closes, on a task of its own.
pub(super) fn forward(
    channel: Arc<dyn DataChannel>,
    inputs: std::sync::mpsc::Sender<Input>,
    shared: Arc<Mutex<Shared>>,
) {
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
