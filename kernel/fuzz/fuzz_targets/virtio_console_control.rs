//! Control messages from a virtio console device: any bytes, of any length, decoded and
//! applied to the port table in sequence. Decoding never panics and refuses what the spec does
//! not allow; the table stays consistent (names unique among added ports, only added ports
//! named or open, ids within the ports served).
#![no_main]

use kernel::virtio::console::control::{decode, DeviceMessage};
use kernel::virtio::console::ports::PortTable;
use libfuzzer_sys::fuzz_target;
use lichen_kernel_fuzz::Script;

fuzz_target!(|data: &[u8]| {
    let mut s = Script::new(data);
    let served = u32::from(s.byte() % 8) + 1;
    let mut table = PortTable::new(served);
    while !s.done() {
        let message = s.bytes(96);
        let Ok(decoded) = decode(message) else {
            continue;
        };
        assert!(message.len() >= 8);
        let port = decoded.port();
        if let DeviceMessage::PortName { name, .. } = decoded {
            assert!(!name.is_empty() && name.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }
        let _ = table.apply(&decoded);
        if s.byte() & 3 == 0 {
            let _ = table.set_guest_open(port, s.byte() & 1 == 1);
        }
        let names = table.names();
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "duplicate name {name}");
            let id = table.find(name).expect("a listed name is found");
            assert!(id < served && table.port(id).is_some_and(|p| p.added));
        }
        for id in 0..served {
            let state = table.port(id).expect("served");
            if !state.added {
                assert!(
                    state.name.is_none() && !state.host_open && !state.console && !state.guest_open
                );
            }
        }
        assert!(table.port(served).is_none());
    }
});
