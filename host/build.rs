//! Compiles the control plane's `.proto` (`proto/weir.proto`) into the gRPC service and client
//! that `src/server/` includes, with a vendored `protoc` so that no system package is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: the build script is single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/weir.proto");
    tonic_prost_build::configure().compile_protos(&["proto/weir.proto"], &["proto"])?;
    Ok(())
}
