//! Generates the EVE API types from `proto/` with protox (no protoc) and prost-build, plus
//! proto3-JSON serde impls with pbjson-build when the `json` feature is on.

use std::{env, path::PathBuf};

use prost::Message;

/// Every .proto file lichen compiles; imports are found under `proto/`.
const PROTOS: &[&str] = &[
    "attest/attest.proto",
    "auth/auth.proto",
    "certs/certs.proto",
    "config/devconfig.proto",
    "eveuuid/eveuuid.proto",
    "flowlog/flowlog.proto",
    "hardwarehealth/hardware_health.proto",
    "info/info.proto",
    "logs/log.proto",
    "metrics/metrics.proto",
    "register/register.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let json = env::var_os("CARGO_FEATURE_JSON").is_some();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let descriptors = protox::compile(PROTOS, ["proto"])?;

    let mut config = prost_build::Config::new();
    // BTreeMap keeps the no_std build free of HashMap.
    config.btree_map(["."]);
    // Well-known types come from prost-types, or with JSON from pbjson-types (same wire format,
    // plus serde).
    if json {
        config.compile_well_known_types();
        config.extern_path(".google.protobuf", "::pbjson_types");
    }
    config.out_dir(&out_dir);
    config.compile_fds(descriptors.clone())?;

    if json {
        // The schema itself, for readers that render messages by descriptor (unknown enum
        // values as numbers, unknown fields kept).
        std::fs::write(
            out_dir.join("file_descriptor_set.bin"),
            descriptors.encode_to_vec(),
        )?;
        pbjson_build::Builder::new()
            .register_descriptors(&descriptors.encode_to_vec())?
            .out_dir(&out_dir)
            .btree_map(["."])
            .build(&[".org.lfedge.eve"])?;
    }
    Ok(())
}
