//! The views API's protobuf codec: prost's, except that a request that does not decode is the
//! caller's mistake.
//!
//! Invariant: a message that is not valid protobuf for its type is answered `INVALID_ARGUMENT`
//! naming the decode error (tonic's own codec says `INTERNAL`, which reads as the server's
//! fault and is retried by some clients). Encoding, and every other status, is prost's as is.

use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Prost's codec with decode failures as `INVALID_ARGUMENT` (named in `build.rs`).
#[derive(Debug, Clone, Default)]
pub struct ViewsCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Codec for ViewsCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ViewsDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ViewsDecoder(self.0.decoder())
    }
}

/// Prost's decoder, its `INTERNAL` decode errors turned into `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct ViewsDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for ViewsDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            if status.code() == tonic::Code::Internal {
                Status::invalid_argument(format!("malformed request: {}", status.message()))
            } else {
                status
            }
        })
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}
