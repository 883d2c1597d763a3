//! blkfront against a lying backend: the fuzzer posts requests from free slots as the driver
//! does, and as the backend writes any response slots, moves the response producer index
//! anywhere and publishes any backend keys. Every response the ring hands out must be one of a
//! request outstanding; every response blkfront accepts must name a slot in flight and echo its
//! operation, each slot answered at most once per request; an impossible index breaks the ring
//! for good; the backend's keys parse or are refused; nothing may panic.
#![no_main]

use std::collections::HashMap;

use kernel::block::blkfront::{
    check_response, parse_backend, segments, write_request, Response, Verdict, OP_FLUSH_DISKCACHE,
    OP_READ, OP_WRITE, PAGE, SECTOR, SEGMENTS, SLOT,
};
use kernel::platform::xen::shared_ring::{FrontRing, HEADER};
use libfuzzer_sys::fuzz_target;
use lichen_kernel_fuzz::{Pages, Script};

/// `rsp_prod` in the shared header.
const RSP_PROD: usize = 8;
/// Request slots of the driver.
const SLOTS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let mut s = Script::new(data);
    let page = Pages::new(PAGE);
    // SAFETY: the page outlives the ring (both live until the end of this closure).
    let mut ring = unsafe { FrontRing::init(page.base(), PAGE, SLOT) };
    assert_eq!(ring.size(), 32);
    let mut in_flight: HashMap<usize, u8> = HashMap::new();
    let mut rsp_prod = 0u32;
    let mut broken = false;
    let grefs: Vec<u32> = (0..SEGMENTS as u32).map(|g| 100 + g).collect();
    while !s.done() {
        match s.byte() % 5 {
            0 => {
                // The driver posts a request from a free slot.
                let slot = s.below(SLOTS);
                if !in_flight.contains_key(&slot) && !ring.is_full() {
                    let op = [OP_READ, OP_WRITE, OP_FLUSH_DISKCACHE][s.below(3)];
                    let len = SECTOR * s.below(SEGMENTS * PAGE / SECTOR + 1);
                    let request = ring.next_request().expect("room");
                    let data_len = if op == OP_FLUSH_DISKCACHE { 0 } else { len };
                    write_request(&request, op, 51712, slot as u64, u64::from(s.u32()), segments(&grefs, data_len));
                    assert!(usize::from(request.u8(1)) <= SEGMENTS);
                    in_flight.insert(slot, op);
                }
            }
            1 => {
                let _ = ring.push_requests();
            }
            2 => {
                // The backend writes anything in a slot and moves its producer index.
                let index = usize::from(s.byte()) % 32;
                page.poke(HEADER + index * SLOT, s.bytes(16));
                match s.byte() % 4 {
                    0 => rsp_prod = s.u32(),
                    1 => rsp_prod = rsp_prod.wrapping_add(1),
                    _ => rsp_prod = ring.requests_produced(),
                }
                page.poke_u32(RSP_PROD, rsp_prod);
            }
            3 => {
                // The backend publishes keys.
                let mut text = || {
                    let n = s.below(24);
                    (s.byte() & 1 == 0).then(|| String::from_utf8_lossy(s.bytes(n)).into_owned())
                };
                let keys: Vec<Option<String>> = (0..6).map(|_| text()).collect();
                if let Ok(info) = parse_backend(
                    keys[0].as_deref(),
                    keys[1].as_deref(),
                    keys[2].as_deref(),
                    keys[3].as_deref(),
                    keys[4].as_deref(),
                    keys[5].as_deref(),
                ) {
                    assert!(info.sector_size.is_power_of_two());
                    assert!((512..=4096).contains(&info.sector_size));
                }
            }
            _ => {
                // The driver takes responses.
                for _ in 0..=s.byte() % 16 {
                    let before = ring.outstanding();
                    let response = match ring.next_response() {
                        Ok(None) => break,
                        Err(_) => {
                            broken = true;
                            break;
                        }
                        Ok(Some(slot)) => {
                            assert!(!broken, "a broken ring stays broken");
                            assert!(before > 0, "a response to no request");
                            Response::read(&slot)
                        }
                    };
                    let flying = in_flight.clone();
                    match check_response(response, |i| flying.get(&i).copied()) {
                        Verdict::Answered { slot, result } => {
                            assert_eq!(in_flight.remove(&slot), Some(response.operation));
                            if let Err(status) = result {
                                assert!(status == -1 || status == -2);
                            }
                        }
                        Verdict::Lie(_) => {
                            // The driver gives up on the disk; the fuzzer goes on to check
                            // that the ring code stays sound anyway.
                        }
                    }
                }
            }
        }
        assert!(ring.outstanding() <= ring.size());
        if broken {
            assert!(ring.broken().is_some());
        }
    }
});
