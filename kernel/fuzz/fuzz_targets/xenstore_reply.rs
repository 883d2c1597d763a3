//! xenstored's side of the xenstore response ring, played by the fuzzer: any bytes (headers
//! with any type, id and length, in any pieces) and any ring indices. The reader must hand out
//! only whole messages whose body is the announced length (at most 4096 bytes), refuse an
//! oversized header, and never panic; answers, directory listings and watch events parse
//! without panicking.
#![no_main]

use kernel::platform::xen::ring::ByteRing;
use kernel::platform::xen::xenstore::{
    check_answer, kind, split_list, Error, Header, MessageReader, WatchEvent, HEADER_SIZE,
    PAYLOAD_MAX,
};
use libfuzzer_sys::fuzz_target;
use lichen_kernel_fuzz::{Pages, Script};

/// Where the response ring lives in the xenstore page: data at 1024, `rsp_cons` at 2056 and
/// `rsp_prod` at 2060.
const DATA: usize = 1024;
const CONS: usize = 2056;
const PROD: usize = 2060;

fuzz_target!(|data: &[u8]| {
    let mut s = Script::new(data);
    let page = Pages::new(4096);
    // SAFETY: the page outlives both views of the ring and has the xenstore layout.
    let (ours, xenstored) = unsafe {
        (
            ByteRing::new(page.base(), DATA, 1024, CONS, PROD),
            ByteRing::new(page.base(), DATA, 1024, CONS, PROD),
        )
    };
    let mut reader = MessageReader::default();
    let mut pending: Vec<u8> = Vec::new();

    while !s.done() {
        match s.byte() % 5 {
            0 => {
                // A well-formed message with fuzzed fields (length honest or not).
                let body = s.bytes(300).to_vec();
                let mut len = body.len() as u32;
                if s.byte() & 7 == 0 {
                    len = s.u32();
                }
                let header = Header {
                    kind: u32::from(s.byte() % 18),
                    req_id: u32::from(s.byte()),
                    tx_id: 0,
                    len,
                };
                pending.extend_from_slice(&header.encode());
                pending.extend_from_slice(&body);
            }
            1 => pending.extend_from_slice(s.bytes(200)),
            2 => {
                let n = xenstored.write(&pending).unwrap_or(0);
                pending.drain(..n);
            }
            3 => page.poke_u32(if s.byte() & 1 == 0 { PROD } else { CONS }, s.u32()),
            _ => {
                let result = reader.poll(|buf| {
                    ours.read(buf)
                        .map_err(|_| Error::Protocol("corrupt response ring indices"))
                });
                match result {
                    Ok(Some((header, body))) => {
                        assert!(header.len <= PAYLOAD_MAX);
                        assert_eq!(body.len(), header.len as usize);
                        let _ = check_answer(&header, kind::READ, body.clone());
                        let _ = split_list(&body);
                        if let Some(event) = WatchEvent::parse(&body) {
                            assert!(!event.path.is_empty() && !event.token.is_empty());
                        }
                    }
                    Ok(None) => {}
                    Err(Error::Protocol(_)) => {}
                    Err(e) => panic!("unexpected error {e:?}"),
                }
            }
        }
        // Headers alone decode or are refused, never panic.
        let mut raw = [0u8; HEADER_SIZE];
        raw.iter_mut().for_each(|b| *b = s.byte());
        if let Ok(h) = Header::decode(&raw) {
            assert!(h.len <= PAYLOAD_MAX);
        }
    }
});
