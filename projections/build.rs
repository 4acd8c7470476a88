//! Compiles `proto/views.proto` into the gRPC server and client, and writes the file descriptor
//! set that the reflection service serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // A request that does not decode is INVALID_ARGUMENT, not INTERNAL (src/codec.rs).
        .codec_path("crate::codec::ViewsCodec")
        .file_descriptor_set_path(out_dir.join("views_descriptor.bin"))
        .compile_protos(&["proto/views.proto"], &["proto"])?;
    Ok(())
}
