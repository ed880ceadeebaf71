//! Compiles the etcd protos with protox (no system `protoc`) and keeps the encoded descriptor
//! set for gRPC server reflection; generates the JSON (serde) mapping of every message.
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
        .compile_fds(fds.clone())?;
    // JSON mapping of every message as etcd's grpc-gateway writes it: proto field names,
    // 64-bit integers as strings, enums by name, zero values left out; unknown input fields are
    // ignored as the gateway ignores them.
    pbjson_build::Builder::new()
        .register_descriptors(&fds.encode_to_vec())?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[
            ".mvccpb",
            ".authpb",
            ".etcdserverpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;
    Ok(())
}
