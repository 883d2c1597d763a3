//! `vbench-a`: the bench side that controls the raw sessions and publishes the bus samples
//! (src/image.rs).

#![no_std]
#![no_main]

extern crate alloc;

#[path = "../image.rs"]
mod image;

kernel::service! {
    main: image::main,
    memory_floor_mib: 32,
    publishes: &[topics::vbench_a::SAMPLES.decl()],
    subscribes: &[topics::vbench_b::PROGRESS.decl()],
}
