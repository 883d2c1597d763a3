//! The dom0 peers' code, apart from the binaries so that tests and fuzz targets can reach it
//! (`fuzz/`, docs/fuzzing.md): the UDP peers' DNS answers, and the router benchmark's load.

pub mod bench;
pub mod dns;
