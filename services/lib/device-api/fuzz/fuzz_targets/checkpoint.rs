//! A checkpoint read back from the vault: any signer certificate text and any response bytes
//! go through `device_api::checkpoint::open` against a fixed root. Checked: no panic, and
//! nothing opens (no input can be signed by the root's key, which the fuzzer does not have).
#![no_main]

use libfuzzer_sys::fuzz_target;
use topics::zedagent::Checkpoint;

/// A root certificate (P-256, self-signed), as the config partition holds it.
const ROOT_DER: &[u8] = include_bytes!("../root.der");

fuzz_target!(|data: &[u8]| {
    // The first byte says how many of the following bytes are the certificate text.
    let rest = data.get(1..).unwrap_or_default();
    let split = data.first().map_or(0, |b| *b as usize * 8).min(rest.len());
    let (pem, response) = rest.split_at(split);
    let checkpoint = Checkpoint {
        signer_pem: String::from_utf8_lossy(pem).into_owned(),
        response: response.to_vec(),
    };
    assert!(device_api::checkpoint::open(&checkpoint, ROOT_DER, Some(1_796_000_000)).is_err());
});
