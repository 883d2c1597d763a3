//! What a broker sends: `mqtt::decode` at protocol level 3.1.1 or 5 (the first byte's low bit)
//! on any bytes, properties and reason codes included. Checked: no panic; a decoded packet
//! took no more than it was given and no more than the limit; it is the same on every longer
//! input and on no prefix (a prefix is "not all here yet" or an error in the fixed header);
//! what decodes encodes again to bytes that decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqtt::{decode, encode, Version};

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&select, data)) = data.split_first() else {
        return;
    };
    let version = if select & 1 == 0 {
        Version::V311
    } else {
        Version::V5
    };
    let Ok(Some((packet, used))) = decode(data, version, MAX) else {
        return;
    };
    assert!(used <= data.len() && used <= MAX);
    for cut in 0..used {
        assert!(
            !matches!(decode(&data[..cut], version, MAX), Ok(Some(_))),
            "a prefix decoded"
        );
    }
    let mut longer = data[..used].to_vec();
    longer.extend_from_slice(&[0x30, 0, 0xff]);
    assert_eq!(decode(&longer, version, MAX), Ok(Some((packet.clone(), used))));
    let mut again = Vec::new();
    if encode(&packet, version, &mut again).is_ok() {
        let (back, n) = decode(&again, version, 1 << 20)
            .expect("re-encoded bytes decode")
            .expect("whole");
        assert_eq!(n, again.len());
        assert_eq!(back, packet);
    }
});
