//! What a controller (or anyone on the path) may send a node: arbitrary bytes as a signed
//! envelope and as certificates. Decoding may refuse, never panic, and no envelope the fuzzer
//! makes may open with a key it does not hold.
#![no_main]

use lichen_api::{cert, envelope};
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::SigningKey;

const CA: &str = include_str!("../../src/testdata/ca.pem");

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let verifying = *key.verifying_key();
    if let Ok((container, _algo)) = envelope::decode(data) {
        assert!(envelope::open(&container, &verifying).is_err(), "a forged envelope opened");
    }
    let ca = cert::pem_to_der(CA).unwrap();
    let _ = cert::subject(data);
    let _ = cert::public_key(data);
    let _ = cert::verify_issued_by(data, &ca);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cert::pem_to_der(text);
    }
    let _ = cert::decode_base64_pem(data);
});
