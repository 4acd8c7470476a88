//! A raw video picture in I420 (planar Y, then U and V at half resolution), as the app renders it
//! and the encoder reads it.
//!
//! Invariant: `width` and `height` are even and non-zero, and the planes hold exactly
//! `width*height`, `width*height/4` and `width*height/4` bytes (strides equal the widths).

/// One I420 picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Width in pixels (even).
    pub width: usize,
    /// Height in pixels (even).
    pub height: usize,
    /// Luma, `width` bytes per row.
    pub y: Vec<u8>,
    /// Blue-difference chroma, `width/2` bytes per row.
    pub u: Vec<u8>,
    /// Red-difference chroma, `width/2` bytes per row.
    pub v: Vec<u8>,
}

impl Picture {
    /// A mid-grey picture.
    ///
    /// ```
    /// let p = streamfleet_media::Picture::new(64, 32);
    /// assert_eq!((p.y.len(), p.u.len()), (64 * 32, 32 * 16));
    /// ```
    pub fn new(width: usize, height: usize) -> Self {
        let (width, height) = (width.max(2) & !1, height.max(2) & !1);
        Self {
            width,
            height,
            y: vec![128; width * height],
            u: vec![128; width * height / 4],
            v: vec![128; width * height / 4],
        }
    }
}

/// A resolution the app renders at and the encoder encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Resolution {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Resolution {
    /// 1280×720.
    pub const HD: Self = Self {
        width: 1280,
        height: 720,
    };
    /// 1920×1080.
    pub const FULL_HD: Self = Self {
        width: 1920,
        height: 1080,
    };
    /// 640×360: the smallest the adapter steps down to.
    pub const LOW: Self = Self {
        width: 640,
        height: 360,
    };
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl std::str::FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (w, h) = s
            .split_once('x')
            .ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT"))?;
        let parse = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("`{s}` is not WIDTHxHEIGHT"))
        };
        let r = Self {
            width: parse(w)?,
            height: parse(h)?,
        };
        if r.width < 640 || r.height < 360 || r.width > 3840 || r.height > 2160 {
            return Err(format!("{r} is outside 640x360 … 3840x2160"));
        }
        if r.width % 2 == 1 || r.height % 2 == 1 {
            return Err(format!("{r}: width and height must be even"));
        }
        Ok(r)
    }
}
