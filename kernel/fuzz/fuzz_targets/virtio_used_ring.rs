//! A split virtqueue driven against a lying device: the fuzzer posts buffers as the driver
//! would, and as the device writes used entries with any id and length, moves the used index
//! anywhere, and sets any flags. Every buffer the queue hands back must be one in flight, with
//! a length within it, each at most once; its count of buffers in flight must match; after an
//! index runaway it must yield nothing more; and nothing may panic.
#![no_main]

use std::collections::HashMap;

use kernel::virtio::queue::{Layout, PostError, UsedError, Virtqueue};
use libfuzzer_sys::fuzz_target;
use lichen_kernel_fuzz::{Pages, Script};

fuzz_target!(|data: &[u8]| {
    let mut s = Script::new(data);
    let layout = Layout::new(1 << (s.byte() % 9)).expect("a power of two");
    let memory = Pages::new(layout.total);
    // SAFETY: zeroed, page-aligned, `layout.total` bytes, outlives the queue (dropped after it).
    let mut queue = unsafe { Virtqueue::new(memory.base(), layout) };
    let used_idx_at = layout.used + 2;
    let mut device_idx: u16 = 0;
    // The driver's view: capacity of each buffer in flight.
    let mut in_flight: HashMap<u16, u32> = HashMap::new();

    while !s.done() {
        match s.byte() % 7 {
            0 | 1 => {
                let id = s.u16() % (layout.size + 2);
                let len = s.u32() % 70_000;
                let device_writes = s.byte() & 1 == 1;
                match queue.post(id, 0x1000 * u64::from(id), len, device_writes) {
                    Ok(()) => {
                        // The device may write only into a writable buffer; the queue keeps
                        // at least 1 as the capacity of any buffer in flight.
                        let capacity = if device_writes { len } else { 0 };
                        assert!(in_flight.insert(id, capacity.max(1)).is_none());
                    }
                    Err(PostError::IdOutOfRange(i)) => assert!(i >= layout.size),
                    Err(PostError::AlreadyInFlight(i)) => assert!(in_flight.contains_key(&i)),
                    Err(PostError::EmptyChain) => unreachable!("one buffer is a chain"),
                }
                if s.byte() & 1 == 0 {
                    queue.publish();
                }
            }
            2 | 3 => {
                // The device writes a used entry, with any id and length.
                let slot = usize::from(device_idx % layout.size);
                let entry = layout.used + 4 + 8 * slot;
                let id = if s.byte() & 1 == 0 {
                    u32::from(s.u16() % layout.size)
                } else {
                    s.u32()
                };
                memory.poke_u32(entry, id);
                memory.poke_u32(entry + 4, s.u32() % 80_000);
                device_idx = device_idx.wrapping_add(1);
                memory.poke_u16(used_idx_at, device_idx);
            }
            4 => {
                // The device moves its index anywhere, or sets flags.
                if s.byte() & 1 == 0 {
                    device_idx = s.u16();
                    memory.poke_u16(used_idx_at, device_idx);
                } else {
                    memory.poke_u16(layout.used, s.u16());
                    let _ = queue.device_wants_notification();
                }
            }
            5 => queue.set_interrupts(s.byte() & 1 == 1),
            _ => {
                let broken_before = queue.is_broken();
                for _ in 0..=s.byte() % 8 {
                    match queue.pop_used() {
                        None => break,
                        Some(Ok(used)) => {
                            assert!(!broken_before);
                            let capacity = in_flight
                                .remove(&used.id)
                                .expect("a buffer handed back must be in flight");
                            assert!(used.len <= capacity);
                        }
                        Some(Err(UsedError::IndexRunaway { in_flight: n, .. })) => {
                            assert_eq!(usize::from(n), in_flight.len());
                            assert!(queue.is_broken());
                        }
                        Some(Err(UsedError::IdOutOfRange { id })) => {
                            assert!(id >= u32::from(layout.size));
                        }
                        Some(Err(UsedError::NotInFlight { id })) => {
                            assert!(!in_flight.contains_key(&id));
                        }
                        Some(Err(UsedError::LengthTooLong { id, len, capacity })) => {
                            assert_eq!(in_flight.remove(&id), Some(capacity));
                            assert!(len > capacity);
                        }
                    }
                }
                if broken_before {
                    assert!(queue.pop_used().is_none() && !queue.has_used());
                }
            }
        }
        assert_eq!(usize::from(queue.in_flight()), in_flight.len());
    }
    drop(queue);
});
