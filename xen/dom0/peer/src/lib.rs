//! The UDP peers' protocol code, apart from the binary so that its fuzz target can reach it
//! (`fuzz/`, docs/fuzzing.md).

pub mod dns;
