//! Compiles the etcd protos with protox (no system `protoc`) and keeps the encoded descriptor
//! set for gRPC server reflection.
use prost::Message;
use std::path::PathBuf;

const FILES: &[&str] = &[
    "protos/mvccpb/kv.proto",
    "protos/authpb/auth.proto",
    "protos/etcdserverpb/rpc.proto",
    "protos/v3lockpb/v3lock.proto",
    "protos/v3electionpb/v3election.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=protos");
    let fds = protox::compile(FILES, ["protos"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("etcd_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
