//! Both sides of a vchan over shared memory, with a hostile peer scribbling on the control
//! page (ring indices, orders, live and notify bytes) and on the ring data between operations.
//! Nothing may panic or touch memory outside the rings; a read never returns more than asked
//! or than the ring holds; once an index is impossible the channel stays cut off; and while
//! the peer leaves the indices alone, every byte arrives in order.
#![no_main]

use std::collections::VecDeque;

use kernel::vchan::wire::{check_orders, ring_pages, Channel, Control, Error, RingMem, PAGE};
use libfuzzer_sys::fuzz_target;
use lichen_kernel_fuzz::{Pages, Script};

/// Offsets of the control page's fields the peer may overwrite (see wire.rs).
const INDEX_FIELDS: [usize; 4] = [0, 4, 8, 12];
const ORDER_FIELDS: [usize; 2] = [16, 18];

fuzz_target!(|data: &[u8]| {
    let mut s = Script::new(data);
    // Orders 10..=14: rings in page 0 and rings of several pages of their own.
    let left = 10 + s.byte() % 5;
    let mut right = 10 + s.byte() % 5;
    if check_orders(left.into(), right.into()).is_err() {
        right = 12;
    }
    let control = Pages::new(PAGE);
    let left_pages: Vec<Pages> = (0..ring_pages(left)).map(|_| Pages::new(PAGE)).collect();
    let right_pages: Vec<Pages> = (0..ring_pages(right)).map(|_| Pages::new(PAGE)).collect();
    let lp: Vec<*mut u8> = left_pages.iter().map(Pages::base).collect();
    let rp: Vec<*mut u8> = right_pages.iter().map(Pages::base).collect();
    // SAFETY: every page outlives the channels (declared before them, dropped after).
    let ctrl = unsafe { Control::new(control.base()) };
    let grants: Vec<u32> = (0..(lp.len() + rp.len()) as u32).collect();
    ctrl.init_server(left, right, &grants);

    // The server may lie about the layout before the client reads it.
    if s.byte() & 1 == 1 {
        control.poke_u16(ORDER_FIELDS[s.below(2)], s.u16());
    }
    match ctrl.read_layout() {
        Ok((l, r, g)) => {
            assert!(check_orders(l.into(), r.into()).is_ok());
            assert_eq!(g.len(), ring_pages(l) + ring_pages(r));
            if (l, r) != (left, right) {
                return;
            }
        }
        Err(Error::BadOrders { .. }) => return,
        Err(e) => panic!("unexpected error {e:?}"),
    }

    // SAFETY: as above.
    let (mut server, mut client) = unsafe {
        (
            Channel::new(
                ctrl,
                true,
                RingMem::new(left, control.base(), lp.clone()),
                RingMem::new(right, control.base(), rp.clone()),
            ),
            Channel::new(
                ctrl,
                false,
                RingMem::new(right, control.base(), rp),
                RingMem::new(left, control.base(), lp),
            ),
        )
    };
    // Bytes in flight each way (server -> client, client -> server), while nobody tampered.
    let mut to_client: VecDeque<u8> = VecDeque::new();
    let mut to_server: VecDeque<u8> = VecDeque::new();
    let mut tampered = false;
    let mut buf = vec![0u8; 1 << 15];

    while !s.done() {
        match s.byte() % 8 {
            0 | 1 => {
                let (from, sent) = if s.byte() & 1 == 0 {
                    (&mut server, &mut to_client)
                } else {
                    (&mut client, &mut to_server)
                };
                let payload = s.bytes(4096);
                let room = from.writable();
                match from.write(payload) {
                    Ok(n) => {
                        assert!(n <= payload.len());
                        if let Ok(room) = room {
                            assert!(n <= room as usize);
                        }
                        sent.extend(&payload[..n]);
                    }
                    Err(e) => assert!(tampered, "write failed untouched: {e:?}"),
                }
            }
            2 | 3 => {
                let (to, sent) = if s.byte() & 1 == 0 {
                    (&mut client, &mut to_client)
                } else {
                    (&mut server, &mut to_server)
                };
                let want = usize::from(s.u16()) % buf.len();
                match to.read(&mut buf[..want]) {
                    Ok(n) => {
                        assert!(n <= want && n as u32 <= to.read_size());
                        if !tampered {
                            let expected: Vec<u8> = sent.drain(..n).collect();
                            assert_eq!(&buf[..n], &expected[..], "bytes out of order");
                        }
                    }
                    Err(e) => assert!(tampered, "read failed untouched: {e:?}"),
                }
            }
            4 => {
                // The peer rewrites a ring index.
                control.poke_u32(INDEX_FIELDS[s.below(4)], s.u32());
                tampered = true;
            }
            5 => {
                // The peer rewrites orders, live or notify bytes (already copied: harmless).
                let offset = 16 + s.below(8);
                control.poke(offset, &[s.byte()]);
            }
            6 => {
                let side = if s.byte() & 1 == 0 { &server } else { &client };
                let bit = 1 + s.byte() % 2;
                side.request_notify(bit);
                let _ = side.take_notify(bit);
                let _ = side.peer_live();
            }
            _ => {
                // The peer scribbles on ring data (garbles bytes, never the indices).
                let pages = if s.byte() & 1 == 0 {
                    &left_pages
                } else {
                    &right_pages
                };
                let target = if pages.is_empty() {
                    &control
                } else {
                    &pages[s.below(pages.len())]
                };
                let offset = if pages.is_empty() { 1024 } else { 0 } + s.below(1024);
                target.poke(offset, s.bytes(64));
                tampered = true;
            }
        }
        for side in [&mut server, &mut client] {
            let readable = side.readable();
            let writable = side.writable();
            if let Ok(n) = readable {
                assert!(n <= side.read_size());
            }
            if let Ok(n) = writable {
                assert!(n <= side.write_size());
            }
            if readable.is_err() || writable.is_err() {
                // Cut off for good.
                assert!(side.readable().is_err() && side.writable().is_err());
            }
        }
    }
});
