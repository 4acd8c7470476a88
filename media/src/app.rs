//! The session's app: a synthetic but honest one. It renders a moving scene, draws the pointer
//! where the user's input put it, changes colour on key presses, and stamps every frame
//! ([`Stamp`]) so a receiver can measure what it sees.
//!
//! Invariant: rendering depends only on the frame number, the resolution and the inputs applied
//! so far; the stamp's `input_seq` is the sequence of the last input applied before the frame.

use crate::{Picture, Resolution, Stamp};

/// One input message from the client's data channel (JSON, at most [`Input::MAX_BYTES`]).
///
/// ```
/// let i = streamfleet_media::Input::parse(br#"{"type":"pointer","seq":4,"x":10,"y":20}"#).unwrap();
/// assert_eq!(i.seq(), 4);
/// assert!(streamfleet_media::Input::parse(b"\xff garbage").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Input {
    /// The pointer moved to (x, y) in frame pixels.
    Pointer {
        /// Sequence number, increasing per client.
        seq: u16,
        /// Column.
        x: u32,
        /// Row.
        y: u32,
    },
    /// A key went down or up (`key` as the browser's `KeyboardEvent.key`).
    Key {
        /// Sequence number, increasing per client.
        seq: u16,
        /// The key.
        key: String,
        /// Down (true) or up.
        down: bool,
    },
}

/// Why an input message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Longer than [`Input::MAX_BYTES`].
    #[error("input message of {0} bytes is over the 1024-byte limit")]
    TooLarge(usize),
    /// Not an input message.
    #[error("unreadable input message: {0}")]
    Unreadable(String),
}

impl Input {
    /// Largest input message accepted, bytes.
    pub const MAX_BYTES: usize = 1024;

    /// Reads one message.
    pub fn parse(bytes: &[u8]) -> Result<Self, InputError> {
        if bytes.len() > Self::MAX_BYTES {
            return Err(InputError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|e| InputError::Unreadable(e.to_string()))
    }

    /// Its sequence number.
    pub fn seq(&self) -> u16 {
        match self {
            Self::Pointer { seq, .. } | Self::Key { seq, .. } => *seq,
        }
    }
}

/// The app's state.
#[derive(Debug, Clone)]
pub struct App {
    frame: u32,
    pointer: Option<(u32, u32)>,
    hue: u8,
    input_seq: u16,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    /// A freshly started app.
    pub fn new() -> Self {
        Self {
            frame: 0,
            pointer: None,
            hue: 0,
            input_seq: 0,
        }
    }

    /// Applies one input.
    pub fn apply(&mut self, input: &Input) {
        match input {
            Input::Pointer { x, y, .. } => self.pointer = Some((*x, *y)),
            Input::Key { down: true, .. } => self.hue = self.hue.wrapping_add(48),
            Input::Key { .. } => {}
        }
        self.input_seq = input.seq();
    }

    /// Renders the next frame at `resolution`, stamped with `captured_at_us`.
    ///
    /// ```
    /// use streamfleet_media::{App, Resolution, Stamp};
    /// let mut app = App::new();
    /// let p = app.render(Resolution::LOW, 42);
    /// let s = Stamp::read(&p.y, p.width, p.width, p.height).unwrap();
    /// assert_eq!((s.frame, s.captured_at_us), (0, 42));
    /// ```
    pub fn render(&mut self, resolution: Resolution, captured_at_us: u64) -> Picture {
        let mut p = Picture::new(resolution.width as usize, resolution.height as usize);
        let (w, h) = (p.width, p.height);
        let t = self.frame as usize;
        // A diagonal luma ramp scrolling 4 pixels a frame.
        for y in 0..h {
            let row = &mut p.y[y * w..(y + 1) * w];
            for (x, px) in row.iter_mut().enumerate() {
                *px = 48 + (((x + y + 4 * t) & 0xff) as u8 >> 1);
            }
        }
        // A band of sparkle along the bottom quarter: 8×8 tiles of fresh detail every other
        // frame, as a game's particles or foliage, so the encoder has a realistic amount to
        // spend bits on (about 1–2 Mbit/s at 720p30).
        let band = (h - h / 4) & !7;
        let epoch = (t / 2) as u32;
        for y in band..h {
            let row = &mut p.y[y * w..(y + 1) * w];
            for (x, px) in row.iter_mut().enumerate() {
                let mut v = ((x / 8) as u32).wrapping_mul(0x9e37_79b1)
                    ^ ((y / 8) as u32).wrapping_mul(0x85eb_ca77)
                    ^ epoch.wrapping_mul(0xc2b2_ae3d);
                v ^= v >> 15;
                v = v.wrapping_mul(0x2c1b_3c6d);
                *px = 72 + ((v >> 24) as u8 >> 2) + *px / 4;
            }
        }
        // A box bouncing across the picture, coloured by the keys pressed so far.
        let side = (h / 6).max(16) & !1;
        let (bx, by) = (bounce(t * 6, w - side), bounce(t * 4, h - side));
        fill(
            &mut p,
            bx,
            by,
            side,
            side,
            200,
            64u8.wrapping_add(self.hue),
            200u8.wrapping_sub(self.hue),
        );
        if let Some((x, y)) = self.pointer {
            let (x, y) = ((x as usize).min(w - 24), (y as usize).min(h - 24));
            fill(&mut p, x & !1, y & !1, 24, 24, 250, 128, 128);
        }
        Stamp {
            frame: self.frame,
            captured_at_us,
            input_seq: self.input_seq,
        }
        .write(&mut p);
        self.frame = self.frame.wrapping_add(1);
        p
    }
}

fn bounce(travel: usize, span: usize) -> usize {
    if span == 0 {
        return 0;
    }
    let phase = travel % (2 * span);
    if phase < span {
        phase
    } else {
        2 * span - phase
    }
}

#[allow(clippy::too_many_arguments)]
fn fill(p: &mut Picture, x: usize, y: usize, w: usize, h: usize, luma: u8, u: u8, v: u8) {
    let (x, y) = (x & !1, y & !1);
    let (w, h) = (w.min(p.width - x), h.min(p.height - y));
    for row in y..y + h {
        p.y[row * p.width + x..row * p.width + x + w].fill(luma);
    }
    let cw = p.width / 2;
    for row in y / 2..(y + h) / 2 {
        p.u[row * cw + x / 2..row * cw + (x + w) / 2].fill(u);
        p.v[row * cw + x / 2..row * cw + (x + w) / 2].fill(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_shows_in_the_next_frame() {
        let mut app = App::new();
        let before = app.render(Resolution::LOW, 1);
        app.apply(&Input::Pointer {
            seq: 9,
            x: 600,
            y: 300,
        });
        let after = app.render(Resolution::LOW, 2);
        let s = Stamp::read(&after.y, 640, 640, 360).unwrap();
        assert_eq!((s.frame, s.input_seq), (1, 9));
        assert_eq!(after.y[300 * 640 + 600], 250);
        assert_ne!(before.y[300 * 640 + 600], 250);
    }

    #[test]
    fn garbage_and_oversize_input_are_refused_by_name() {
        assert!(matches!(
            Input::parse(b"{\"type\":\"warp\"}"),
            Err(InputError::Unreadable(_))
        ));
        assert!(matches!(
            Input::parse(&[b' '; 2000]),
            Err(InputError::TooLarge(2000))
        ));
    }
}
