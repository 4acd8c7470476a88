//! Streamfleet's media plane: what a session's host streams to its client, and the client that
//! watches it. The media goes host → client over WebRTC and never through NATS.
//!
//! - [`App`] renders the session's frames (a moving scene, the pointer, a [`Stamp`] in pixels)
//!   and applies the user's [`Input`];
//! - [`Encoder`] turns them into H.264 with openh264, at a bitrate the [`adapt`] policy sets from
//!   the congestion controller's estimate;
//! - [`Tone`] is its sound, encoded with Opus;
//! - [`stream`] is the host side: one WebRTC peer per session, answering a WHEP offer;
//! - [`client`] is the receiving side: offers, decodes with openh264 and reads the stamps back.

pub mod adapt;
mod app;
pub mod client;
mod encoder;
mod picture;
pub mod signal;
mod stamp;
pub mod stream;
mod tone;

pub use app::{App, Input, InputError};
pub use encoder::{EncodedFrame, Encoder, EncoderError, EncoderSettings};
pub use picture::{Picture, Resolution};
pub use stamp::{Stamp, now_us};
pub use tone::{FRAME_SAMPLES, Tone, rms};
