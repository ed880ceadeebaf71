//! Compiles the internal protos with protox. etcd messages are not generated again: they map
//! to the types in `metastore-proto`.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=protos");
    println!("cargo:rerun-if-changed=../proto/protos");
    let fds = protox::compile(
        ["protos/metastore/storage.proto"],
        ["protos", "../proto/protos"],
    )?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("internal_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".etcdserverpb", "::metastore_proto::etcdserverpb")
        .extern_path(".mvccpb", "::metastore_proto::mvccpb")
        .extern_path(".authpb", "::metastore_proto::authpb")
        .compile_fds(fds)?;
    Ok(())
}
