//! The app's sound: a soft 440 Hz tone with an 880 Hz beep at the start of every second, encoded
//! with Opus (libopus from the distribution) in 20 ms frames, 48 kHz stereo.
//!
//! Invariant: frame `n` covers samples `n*960 .. (n+1)*960` of one continuous signal, so a
//! receiver decoding every frame hears no clicks, and the beeps mark whole seconds of stream time.

/// Samples per channel in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;

/// Produces the tone's Opus frames.
pub struct Tone {
    encoder: opus::Encoder,
    next_sample: u64,
    out: Vec<u8>,
}

impl Tone {
    /// A new tone from sample 0.
    ///
    /// ```
    /// let mut tone = streamfleet_media::Tone::new().unwrap();
    /// let frame = tone.next_frame().unwrap();
    /// assert!(!frame.is_empty() && frame.len() < 1500);
    /// ```
    pub fn new() -> Result<Self, opus::Error> {
        let mut encoder =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::LowDelay)?;
        encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
        Ok(Self {
            encoder,
            next_sample: 0,
            out: vec![0; 4000],
        })
    }

    /// The next 20 ms, encoded.
    pub fn next_frame(&mut self) -> Result<Vec<u8>, opus::Error> {
        let mut pcm = Vec::with_capacity(FRAME_SAMPLES * 2);
        for i in 0..FRAME_SAMPLES as u64 {
            let n = self.next_sample + i;
            let t = n as f64 / 48_000.0;
            let beep = n % 48_000 < 4_800;
            let f = if beep { 880.0 } else { 440.0 };
            let v = (t * f * std::f64::consts::TAU).sin() * if beep { 0.25 } else { 0.08 };
            let s = (v * f64::from(i16::MAX)) as i16;
            pcm.extend([s, s]);
        }
        self.next_sample += FRAME_SAMPLES as u64;
        let n = self.encoder.encode(&pcm, &mut self.out)?;
        Ok(self.out[..n].to_vec())
    }
}

/// Root mean square of decoded 16-bit samples, 0..1.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples
        .iter()
        .map(|s| (f64::from(*s) / f64::from(i16::MAX)).powi(2))
        .sum();
    (sum / samples.len() as f64).sqrt()
}
