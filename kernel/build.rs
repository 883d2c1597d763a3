//! Hands the image linker script to every unikernel that links the kernel.
//!
//! The script is written to OUT_DIR and OUT_DIR is added to the library search path, which
//! cargo propagates to the final binary; `.cargo/config.toml` passes `-Tlichen.ld` for the
//! unikernel target and the linker finds the script there.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("lichen.ld"), include_str!("lichen.ld")).expect("write linker script");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=lichen.ld");
}
