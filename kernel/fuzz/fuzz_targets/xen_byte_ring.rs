//! A Xen byte ring (the console's and xenstore's) between our side and a peer that writes the
//! index it owns at will, and sometimes ours too. Nothing may panic or touch memory outside
//! the ring; counts stay within the ring and the buffer; the peer's impossible indices are
//! reported; and while the indices are honest, bytes come out in the order they went in.
#![no_main]

use std::collections::VecDeque;

use kernel::platform::xen::ring::{self, ByteRing};
use libfuzzer_sys::fuzz_target;
use lichen_kernel_fuzz::{Pages, Script};

/// Where the indices live: after the largest ring's data, as in xenstore's page.
const CONS: usize = 2048;
const PROD: usize = 2052;

/// A ring of `size` (at most 2048) data bytes at the start of `page`.
fn ring_in(page: &Pages, size: u32) -> ByteRing {
    // SAFETY: `page` is 4096 bytes and outlives the ring: the data fits before the indices,
    // which are aligned.
    unsafe { ByteRing::new(page.base(), 0, size, CONS, PROD) }
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script::new(data);
    let size = 1u32 << (1 + s.byte() % 11);
    let page = Pages::new(4096);
    // Both ends of one ring over one page: ours, and an honest peer the fuzzer drives.
    let ours = ring_in(&page, size);
    let peer = ring_in(&page, size);
    let (cons_at, prod_at) = (CONS, PROD);
    let mut in_flight: VecDeque<u8> = VecDeque::new();
    let mut honest = true;
    let mut buf = vec![0u8; 4096];

    while !s.done() {
        match s.byte() % 6 {
            0 | 1 => {
                let bytes = s.bytes(3000);
                match peer.write(bytes) {
                    Ok(n) => {
                        assert!(n <= bytes.len() && n <= size as usize);
                        in_flight.extend(&bytes[..n]);
                    }
                    Err(e) => assert!(!honest, "honest ring refused a write: {e}"),
                }
            }
            2 | 3 => {
                let want = s.below(buf.len() + 1);
                match ours.read(&mut buf[..want]) {
                    Ok(n) => {
                        assert!(n <= want && n <= size as usize);
                        if honest {
                            let expected: Vec<u8> = in_flight.drain(..n).collect();
                            assert_eq!(&buf[..n], &expected[..], "bytes out of order");
                        }
                    }
                    Err(e) => {
                        assert!(!honest, "honest ring refused a read: {e}");
                        assert_eq!(e.size, size);
                    }
                }
            }
            4 => {
                let at = if s.byte() & 1 == 0 { prod_at } else { cons_at };
                page.poke_u32(at, s.u32());
                honest = false;
            }
            _ => {
                let bytes = s.bytes(64);
                match ours.write(bytes) {
                    Ok(n) => assert!(n <= bytes.len()),
                    Err(e) => assert!(!honest, "honest ring refused a write: {e}"),
                }
                // Our own writes into the ring we read from garble the model.
                honest = false;
            }
        }
        match ours.used() {
            Ok(used) => assert!(used <= size),
            Err(e) => assert!(!honest && e.prod.wrapping_sub(e.cons) > size, "{e}"),
        }
        for (offset, len) in ring::pieces(s.u32(), s.u32() % (size + 1), size) {
            assert!(offset + len <= size as usize);
        }
    }
});
