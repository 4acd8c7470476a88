//! The H.264 encoder: openh264 (built from source, with nasm when present) in real-time mode,
//! constrained baseline, one slice per frame, SPS and PPS ahead of every keyframe.
//!
//! Invariant: the bitrate and frame rate can change between any two frames without a keyframe;
//! a resolution change starts a new sequence with a keyframe; every keyframe the encoder emits
//! begins with SPS and PPS so a receiver can join at any keyframe.
//!
//! This talks to openh264's C API directly (through `openh264-sys2`) because the `openh264`
//! crate's encoder cannot change its bitrate once created, which the adapter needs.

use crate::{Picture, Resolution};
use openh264_sys2 as sys;
use openh264_sys2::API;
use std::ptr::null_mut;

/// What the encoder is told to produce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSettings {
    /// Target bitrate, bits per second.
    pub bitrate_bps: u32,
    /// Frames per second.
    pub fps: f32,
    /// Resolution.
    pub resolution: Resolution,
}

/// Why the encoder failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncoderError {
    /// openh264 refused to create or configure the encoder.
    #[error("openh264 refused to {action} (code {code})")]
    Refused {
        /// What was asked.
        action: &'static str,
        /// openh264's return code.
        code: i32,
    },
    /// The picture does not have the configured resolution.
    #[error("picture is {got}, encoder is set to {expected}")]
    WrongSize {
        /// The picture's.
        got: Resolution,
        /// The encoder's.
        expected: Resolution,
    },
}

/// One encoded frame: Annex B NAL units.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// The NAL units, each after a 4-byte start code.
    pub data: Vec<u8>,
    /// Whether it is a keyframe (IDR, with SPS and PPS).
    pub keyframe: bool,
}

/// An openh264 encoder.
pub struct Encoder {
    api: sys::DynamicAPI,
    ptr: *mut sys::ISVCEncoder,
    settings: EncoderSettings,
    info: Box<sys::SFrameBSInfo>,
    initialised: bool,
}

// The encoder is used by one thread at a time (`&mut self`); openh264 keeps no thread-local state.
unsafe impl Send for Encoder {}

impl Encoder {
    /// Creates an encoder with `settings`.
    ///
    /// ```
    /// use streamfleet_media::{App, Encoder, EncoderSettings, Resolution};
    /// let settings = EncoderSettings { bitrate_bps: 1_000_000, fps: 30.0, resolution: Resolution::LOW };
    /// let mut encoder = Encoder::new(settings).unwrap();
    /// let frame = encoder.encode(&App::new().render(Resolution::LOW, 0)).unwrap().unwrap();
    /// assert!(frame.keyframe);
    /// ```
    pub fn new(settings: EncoderSettings) -> Result<Self, EncoderError> {
        let api = sys::DynamicAPI::from_source();
        let mut ptr: *mut sys::ISVCEncoder = null_mut();
        // SAFETY: `ptr` is a valid out-pointer; openh264 writes the new encoder into it.
        let code = unsafe { api.WelsCreateSVCEncoder(&mut ptr) };
        if code != 0 || ptr.is_null() {
            return Err(EncoderError::Refused {
                action: "create an encoder",
                code,
            });
        }
        let mut encoder = Self {
            api,
            ptr,
            settings,
            info: Box::default(),
            initialised: false,
        };
        encoder.configure(settings)?;
        Ok(encoder)
    }

    /// The settings in force.
    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    fn vtable(&self) -> &sys::ISVCEncoderVtbl {
        // SAFETY: `ptr` came from WelsCreateSVCEncoder and lives until drop.
        unsafe { &**self.ptr }
    }

    fn check(code: i32, action: &'static str) -> Result<(), EncoderError> {
        if code == 0 {
            Ok(())
        } else {
            Err(EncoderError::Refused { action, code })
        }
    }

    fn params(&self, settings: EncoderSettings) -> Result<sys::SEncParamExt, EncoderError> {
        let mut p = sys::SEncParamExt::default();
        let get_default = self
            .vtable()
            .GetDefaultParams
            .ok_or(EncoderError::Refused {
                action: "read default parameters",
                code: -1,
            })?;
        // SAFETY: valid encoder and out-pointer.
        Self::check(
            unsafe { get_default(self.ptr, &mut p) },
            "read default parameters",
        )?;
        let (w, h) = (
            settings.resolution.width as i32,
            settings.resolution.height as i32,
        );
        p.iUsageType = sys::CAMERA_VIDEO_REAL_TIME;
        p.iPicWidth = w;
        p.iPicHeight = h;
        p.iTargetBitrate = settings.bitrate_bps as i32;
        p.iMaxBitrate = (settings.bitrate_bps as i32).saturating_mul(3) / 2;
        p.iRCMode = sys::RC_BITRATE_MODE;
        p.fMaxFrameRate = settings.fps;
        p.bEnableFrameSkip = true;
        p.uiIntraPeriod = 0; // keyframes on request (PLI) and at start only
        p.eSpsPpsIdStrategy = sys::CONSTANT_ID;
        p.bPrefixNalAddingCtrl = false;
        p.iSpatialLayerNum = 1;
        p.iTemporalLayerNum = 1;
        p.iMultipleThreadIdc = 1;
        p.bEnableDenoise = false;
        p.bEnableBackgroundDetection = true;
        p.bEnableAdaptiveQuant = false;
        p.bEnableSceneChangeDetect = false;
        p.bEnableLongTermReference = false;
        p.iComplexityMode = sys::LOW_COMPLEXITY;
        let layer = &mut p.sSpatialLayers[0];
        layer.iVideoWidth = w;
        layer.iVideoHeight = h;
        layer.fFrameRate = settings.fps;
        layer.iSpatialBitrate = settings.bitrate_bps as i32;
        layer.iMaxSpatialBitrate = (settings.bitrate_bps as i32).saturating_mul(3) / 2;
        layer.uiProfileIdc = sys::PRO_BASELINE;
        layer.uiLevelIdc = if w * h > 1280 * 720 {
            sys::LEVEL_4_0
        } else {
            sys::LEVEL_3_1
        };
        layer.sSliceArgument.uiSliceMode = sys::SM_SINGLE_SLICE;
        layer.sSliceArgument.uiSliceNum = 1;
        Ok(p)
    }

    fn configure(&mut self, settings: EncoderSettings) -> Result<(), EncoderError> {
        let mut p = self.params(settings)?;
        let vt = self.vtable();
        if self.initialised {
            let set = vt.SetOption.ok_or(EncoderError::Refused {
                action: "set options",
                code: -1,
            })?;
            // SAFETY: valid encoder; the option is read during the call.
            let code = unsafe {
                set(
                    self.ptr,
                    sys::ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                    (&mut p as *mut sys::SEncParamExt).cast(),
                )
            };
            Self::check(code, "change the resolution")?;
        } else {
            let init = vt.InitializeExt.ok_or(EncoderError::Refused {
                action: "initialise",
                code: -1,
            })?;
            let set = vt.SetOption.ok_or(EncoderError::Refused {
                action: "set options",
                code: -1,
            })?;
            // SAFETY: valid encoder and parameters.
            Self::check(unsafe { init(self.ptr, &p) }, "initialise")?;
            let mut quiet: i32 = sys::WELS_LOG_QUIET;
            let mut format: i32 = sys::videoFormatI420;
            // SAFETY: as above; the options are plain ints read during the call.
            unsafe {
                set(
                    self.ptr,
                    sys::ENCODER_OPTION_TRACE_LEVEL,
                    (&mut quiet as *mut i32).cast(),
                );
                set(
                    self.ptr,
                    sys::ENCODER_OPTION_DATAFORMAT,
                    (&mut format as *mut i32).cast(),
                );
            }
            self.initialised = true;
        }
        self.settings = settings;
        Ok(())
    }

    /// Changes the target bitrate and frame rate in place, or restarts the sequence (with a
    /// keyframe) when the resolution changes.
    pub fn reconfigure(&mut self, settings: EncoderSettings) -> Result<(), EncoderError> {
        if settings.resolution != self.settings.resolution {
            self.configure(settings)?;
            self.force_keyframe();
            return Ok(());
        }
        let set = self.vtable().SetOption.ok_or(EncoderError::Refused {
            action: "set options",
            code: -1,
        })?;
        if settings.bitrate_bps != self.settings.bitrate_bps {
            for (layer, bps) in [
                (sys::SPATIAL_LAYER_ALL, settings.bitrate_bps),
                (sys::SPATIAL_LAYER_0, settings.bitrate_bps),
            ] {
                let mut max = sys::SBitrateInfo {
                    iLayer: layer,
                    iBitrate: (bps as i32).saturating_mul(3) / 2,
                };
                let mut target = sys::SBitrateInfo {
                    iLayer: layer,
                    iBitrate: bps as i32,
                };
                // SAFETY: valid encoder; the structs are read during the call.
                unsafe {
                    set(
                        self.ptr,
                        sys::ENCODER_OPTION_MAX_BITRATE,
                        (&mut max as *mut sys::SBitrateInfo).cast(),
                    );
                    let code = set(
                        self.ptr,
                        sys::ENCODER_OPTION_BITRATE,
                        (&mut target as *mut sys::SBitrateInfo).cast(),
                    );
                    Self::check(code, "change the bitrate")?;
                }
            }
        }
        if settings.fps != self.settings.fps {
            let mut fps = settings.fps;
            // SAFETY: as above.
            let code = unsafe {
                set(
                    self.ptr,
                    sys::ENCODER_OPTION_FRAME_RATE,
                    (&mut fps as *mut f32).cast(),
                )
            };
            Self::check(code, "change the frame rate")?;
        }
        self.settings = settings;
        Ok(())
    }

    /// Makes the next frame a keyframe (IDR with SPS and PPS).
    pub fn force_keyframe(&mut self) {
        if let Some(force) = self.vtable().ForceIntraFrame {
            // SAFETY: valid encoder.
            unsafe { force(self.ptr, true) };
        }
    }

    /// Encodes one picture; `None` when the rate control skipped it.
    pub fn encode(&mut self, picture: &Picture) -> Result<Option<EncodedFrame>, EncoderError> {
        let got = Resolution {
            width: picture.width as u32,
            height: picture.height as u32,
        };
        if got != self.settings.resolution {
            return Err(EncoderError::WrongSize {
                got,
                expected: self.settings.resolution,
            });
        }
        let encode = self.vtable().EncodeFrame.ok_or(EncoderError::Refused {
            action: "encode",
            code: -1,
        })?;
        let (w, h) = (picture.width as i32, picture.height as i32);
        let source = sys::SSourcePicture {
            iColorFormat: sys::videoFormatI420,
            iStride: [w, w / 2, w / 2, 0],
            pData: [
                picture.y.as_ptr().cast_mut(),
                picture.u.as_ptr().cast_mut(),
                picture.v.as_ptr().cast_mut(),
                null_mut(),
            ],
            iPicWidth: w,
            iPicHeight: h,
            uiTimeStamp: 0,
            bPsnrY: false,
            bPsnrU: false,
            bPsnrV: false,
        };
        // SAFETY: the planes match the configured size (checked above) and outlive the call;
        // openh264 only reads them. `info` is ours and written by the call.
        let code = unsafe { encode(self.ptr, &source, &mut *self.info) };
        Self::check(code, "encode")?;
        let info = &*self.info;
        if info.eFrameType == sys::videoFrameTypeSkip || info.iFrameSizeInBytes <= 0 {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(info.iFrameSizeInBytes as usize);
        for layer in &info.sLayerInfo[..info.iLayerNum.clamp(0, 128) as usize] {
            let mut length = 0usize;
            for n in 0..layer.iNalCount.max(0) as usize {
                // SAFETY: openh264 fills iNalCount lengths and a buffer holding their sum.
                length += unsafe { *layer.pNalLengthInByte.add(n) }.max(0) as usize;
            }
            if length > 0 && !layer.pBsBuf.is_null() {
                // SAFETY: as above.
                data.extend_from_slice(unsafe { std::slice::from_raw_parts(layer.pBsBuf, length) });
            }
        }
        Ok(Some(EncodedFrame {
            data,
            keyframe: info.eFrameType == sys::videoFrameTypeIDR,
        }))
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: `ptr` is valid and dropped once.
        unsafe {
            if self.initialised
                && let Some(uninit) = self.vtable().Uninitialize
            {
                uninit(self.ptr);
            }
            self.api.WelsDestroySVCEncoder(self.ptr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{App, Stamp};

    fn nal_types(annex_b: &[u8]) -> Vec<u8> {
        openh264::nal_units(annex_b)
            .filter_map(|nal| {
                let start = nal.iter().position(|b| *b == 1)? + 1;
                nal.get(start).map(|b| b & 0x1f)
            })
            .collect()
    }

    #[test]
    fn keyframes_carry_sps_and_pps_and_the_stamp_survives_decoding() {
        let r = Resolution::LOW;
        let mut encoder = Encoder::new(EncoderSettings {
            bitrate_bps: 800_000,
            fps: 30.0,
            resolution: r,
        })
        .unwrap();
        let mut decoder = openh264::decoder::Decoder::new().unwrap();
        let mut app = App::new();
        let mut read = vec![];
        for n in 0..40u64 {
            if n == 20 {
                encoder.force_keyframe();
                encoder
                    .reconfigure(EncoderSettings {
                        bitrate_bps: 300_000,
                        fps: 15.0,
                        resolution: r,
                    })
                    .unwrap();
            }
            let Some(frame) = encoder.encode(&app.render(r, 1000 + n)).unwrap() else {
                continue;
            };
            let types = nal_types(&frame.data);
            if frame.keyframe {
                assert_eq!(&types[..3], &[7, 8, 5], "SPS, PPS, IDR");
            }
            if let Some(yuv) = decoder.decode(&frame.data).unwrap() {
                use openh264::formats::YUVSource;
                let (w, h) = yuv.dimensions();
                read.push(Stamp::read(yuv.y(), yuv.strides().0, w, h).unwrap());
            }
        }
        assert!(read.len() >= 30);
        assert!(read.windows(2).all(|w| w[1].frame > w[0].frame));
        assert_eq!(read[0].captured_at_us, 1000);
    }
}
