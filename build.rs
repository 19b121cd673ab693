//! Compiles proto/ebm/v1 with the pure-Rust `protox` compiler (no `protoc` needed) and
//! generates the tonic/prost code, plus the descriptor set that server reflection serves.
use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "ebm/v1/common.proto",
    "ebm/v1/jobs.proto",
    "ebm/v1/datasets.proto",
    "ebm/v1/models.proto",
    "ebm/v1/sweeps.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("ebm_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // Every message is serde-serializable so the CLI can print it as JSON and the
        // server can store specs and results as JSON text.
        .message_attribute(
            ".",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        .enum_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .compile_fds(fds)?;
    Ok(())
}
