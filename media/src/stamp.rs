//! The stamp: the frame number, the capture time and the last input the app applied, written into
//! the top-left corner of every frame as black and white blocks, so a receiver reads them back from
//! the decoded pixels and measures frame order, latency and input-to-photon time without any side
//! channel.
//!
//! Invariant: a stamp written by [`Stamp::write`] reads back exactly with [`Stamp::read`] after
//! lossy H.264 coding at any bitrate the adapter uses; a damaged read fails its 16-bit check and
//! gives `None` rather than a wrong value.
//!
//! Layout: 128 bits in 4 rows of 32 blocks of 16×16 luma pixels (512×64 pixels): frame number
//! (32 bits), capture time in µs since the Unix epoch (64), input sequence (16), check (16).

use crate::Picture;

/// Side of one bit's block, luma pixels.
pub const BLOCK: usize = 16;
const COLUMNS: usize = 32;
const ROWS: usize = 4;
/// Pixels the stamp covers: (width, height).
pub const AREA: (usize, usize) = (BLOCK * COLUMNS, BLOCK * ROWS);
const DARK: u8 = 24;
const LIGHT: u8 = 232;

/// What a frame carries in its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The frame's number, from 0.
    pub frame: u32,
    /// When the app captured it, µs since the Unix epoch (sender's clock).
    pub captured_at_us: u64,
    /// Sequence number of the last input message the app applied before rendering it.
    pub input_seq: u16,
}

impl Stamp {
    fn bits(&self) -> u128 {
        let body = (u128::from(self.frame) << 96)
            | (u128::from(self.captured_at_us) << 32)
            | (u128::from(self.input_seq) << 16);
        body | u128::from(check(body))
    }

    /// Writes the stamp into the picture's top-left 512×64 pixels (grey chroma there).
    ///
    /// ```
    /// use streamfleet_media::{Picture, Stamp};
    /// let mut p = Picture::new(640, 360);
    /// let s = Stamp { frame: 7, captured_at_us: 1_700_000_000_000_000, input_seq: 3 };
    /// s.write(&mut p);
    /// assert_eq!(Stamp::read(&p.y, p.width, p.width, p.height), Some(s));
    /// ```
    pub fn write(&self, picture: &mut Picture) {
        let bits = self.bits();
        let (w, h) = (AREA.0.min(picture.width), AREA.1.min(picture.height));
        for y in 0..h {
            let row = &mut picture.y[y * picture.width..y * picture.width + w];
            for (x, px) in row.iter_mut().enumerate() {
                let index = (y / BLOCK) * COLUMNS + x / BLOCK;
                *px = if bits >> (127 - index) & 1 == 1 {
                    LIGHT
                } else {
                    DARK
                };
            }
        }
        let cw = picture.width / 2;
        for y in 0..h / 2 {
            picture.u[y * cw..y * cw + w / 2].fill(128);
            picture.v[y * cw..y * cw + w / 2].fill(128);
        }
    }

    /// Reads a stamp from a luma plane (`stride` bytes per row); `None` when the picture is too
    /// small or the check does not match.
    pub fn read(luma: &[u8], stride: usize, width: usize, height: usize) -> Option<Self> {
        if width < AREA.0 || height < AREA.1 || luma.len() < stride * (AREA.1 - 1) + AREA.0 {
            return None;
        }
        let mut bits = 0u128;
        for index in 0..COLUMNS * ROWS {
            let (bx, by) = ((index % COLUMNS) * BLOCK, (index / COLUMNS) * BLOCK);
            // The block's centre 8×8, away from edges the codec blurs.
            let mut sum = 0u32;
            for y in by + 4..by + 12 {
                for x in bx + 4..bx + 12 {
                    sum += u32::from(luma[y * stride + x]);
                }
            }
            bits = (bits << 1) | u128::from(sum / 64 > 128);
        }
        let body = bits & !0xffff;
        if (bits & 0xffff) as u16 != check(body) {
            return None;
        }
        Some(Self {
            frame: (bits >> 96) as u32,
            captured_at_us: (bits >> 32) as u64,
            input_seq: (bits >> 16) as u16,
        })
    }
}

/// FNV-1a over the body's bytes, folded to 16 bits.
fn check(body: u128) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in body.to_be_bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    (hash ^ (hash >> 16)) as u16
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_block_is_refused_not_misread() {
        let mut p = Picture::new(640, 360);
        let s = Stamp {
            frame: 0xdead_beef,
            captured_at_us: 1_763_000_000_123_456,
            input_seq: 65535,
        };
        s.write(&mut p);
        for index in [0usize, 40, 97, 127] {
            let mut damaged = p.clone();
            let (bx, by) = ((index % COLUMNS) * BLOCK, (index / COLUMNS) * BLOCK);
            for y in by..by + BLOCK {
                for x in bx..bx + BLOCK {
                    let px = &mut damaged.y[y * damaged.width + x];
                    *px = if *px > 128 { DARK } else { LIGHT };
                }
            }
            assert_eq!(
                Stamp::read(&damaged.y, 640, 640, 360),
                None,
                "block {index}"
            );
        }
        assert_eq!(Stamp::read(&p.y, 640, 640, 360), Some(s));
        assert_eq!(Stamp::read(&p.y, 640, 500, 360), None);
    }
}
