//! `vbench-b`: the bench side that responds to the raw sessions and subscribes to the bus
//! samples, reporting its progress (src/image.rs).

#![no_std]
#![no_main]

extern crate alloc;

#[path = "../image.rs"]
mod image;

kernel::service! {
    main: image::main,
    memory_floor_mib: 32,
    publishes: &[topics::vbench_b::PROGRESS.decl()],
    subscribes: &[topics::vbench_a::SAMPLES.decl()],
}
