//! QEMU harness for lichen boot tests and benchmarks.
