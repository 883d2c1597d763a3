//! netfront's transmit and receive rings against a lying backend: the fuzzer posts buffers
//! as the driver does, and as the backend writes any response slots, moves the response
//! producer index anywhere and sets any event index. Every response the rings hand out must
//! be one of a request outstanding; every frame netfront accepts must lie inside its page,
//! 14..=1514 bytes, in a buffer in flight, each buffer back at most once; an impossible index
//! breaks the ring for good; and nothing may panic or touch memory outside the pages.
#![no_main]

use std::collections::HashSet;

use kernel::net::netfront::{
    check_rx, check_tx, write_rx_request, write_tx_request, RxResponse, RxVerdict, TxResponse,
    TxVerdict, MAX_FRAME, MIN_FRAME, PAGE, RX_BUFFERS, RX_SLOT, TX_BUFFERS, TX_SLOT,
};
use kernel::platform::xen::shared_ring::{FrontRing, HEADER};
use libfuzzer_sys::fuzz_target;
use lichen_kernel_fuzz::{Pages, Script};

/// `rsp_prod` and `req_event` in the shared header.
const RSP_PROD: usize = 8;
const REQ_EVENT: usize = 4;

struct Side {
    page: Pages,
    ring: FrontRing,
    slot: usize,
    /// Buffers with the backend.
    posted: HashSet<usize>,
    buffers: usize,
    /// The backend's response producer (it may lie about it).
    rsp_prod: u32,
    broken: bool,
}

impl Side {
    fn new(slot: usize, buffers: usize) -> Side {
        let page = Pages::new(PAGE);
        // SAFETY: the page outlives the ring (both owned by this struct; the ring holds no
        // reference after drop).
        let ring = unsafe { FrontRing::init(page.base(), PAGE, slot) };
        assert_eq!(ring.size(), 256);
        Side {
            page,
            ring,
            slot,
            posted: HashSet::new(),
            buffers,
            rsp_prod: 0,
            broken: false,
        }
    }

    /// The backend writes `bytes` as the response in slot `index` and maybe publishes it.
    fn respond(&mut self, s: &mut Script) {
        let index = u32::from(s.byte());
        let offset = HEADER + (index as usize % 256) * self.slot;
        let bytes = s.bytes(self.slot);
        self.page.poke(offset, bytes);
        match s.byte() % 4 {
            0 => self.rsp_prod = s.u32(),
            1 => self.rsp_prod = self.rsp_prod.wrapping_add(1),
            _ => self.rsp_prod = self.ring.requests_produced(),
        }
        self.page.poke_u32(RSP_PROD, self.rsp_prod);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script::new(data);
    let mut tx = Side::new(TX_SLOT, TX_BUFFERS);
    let mut rx = Side::new(RX_SLOT, RX_BUFFERS);
    while !s.done() {
        let side = if s.byte() & 1 == 0 { &mut tx } else { &mut rx };
        let is_tx = side.slot == TX_SLOT;
        match s.byte() % 5 {
            0 => {
                // The driver posts an idle buffer.
                let id = s.below(side.buffers);
                if !side.posted.contains(&id) && !side.ring.is_full() {
                    let slot = side.ring.next_request().expect("room");
                    if is_tx {
                        let len = MIN_FRAME + s.below(MAX_FRAME - MIN_FRAME + 1);
                        write_tx_request(&slot, id as u16, 1000 + id as u32, len as u16);
                    } else {
                        write_rx_request(&slot, id as u16, 2000 + id as u32);
                    }
                    side.posted.insert(id);
                }
            }
            1 => {
                let _ = side.ring.push_requests();
            }
            2 => side.respond(&mut s),
            3 => side.page.poke_u32(REQ_EVENT, s.u32()),
            _ => {
                // The driver takes responses.
                for _ in 0..=s.byte() % 16 {
                    let before = side.ring.outstanding();
                    let response = match side.ring.next_response() {
                        Ok(None) => break,
                        Err(_) => {
                            side.broken = true;
                            break;
                        }
                        Ok(Some(slot)) => {
                            assert!(!side.broken, "a broken ring stays broken");
                            assert!(before > 0, "a response to no request");
                            if is_tx {
                                Err(TxResponse::read(&slot))
                            } else {
                                Ok(RxResponse::read(&slot))
                            }
                        }
                    };
                    let posted = side.posted.clone();
                    let in_flight = |id| posted.contains(&id);
                    match response {
                        Ok(r) => match check_rx(r, in_flight) {
                            RxVerdict::Frame { id, offset, len } => {
                                assert!((MIN_FRAME..=MAX_FRAME).contains(&len));
                                assert!(offset + len <= PAGE);
                                assert!(side.posted.remove(&id));
                            }
                            RxVerdict::Drop { id, .. } => assert!(side.posted.remove(&id)),
                            RxVerdict::BadId => {
                                assert!(!side.posted.contains(&usize::from(r.id)))
                            }
                        },
                        Err(r) => match check_tx(r, in_flight) {
                            TxVerdict::Done { id, .. } => assert!(side.posted.remove(&id)),
                            TxVerdict::BadId => {
                                assert!(!side.posted.contains(&usize::from(r.id)))
                            }
                        },
                    }
                }
            }
        }
        for side in [&tx, &rx] {
            assert!(side.ring.outstanding() <= side.ring.size());
            if side.broken {
                assert!(side.ring.broken().is_some());
            }
        }
    }
});
