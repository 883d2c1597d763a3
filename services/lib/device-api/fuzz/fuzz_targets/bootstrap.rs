//! The config partition's onboarding files: any contents for each of them (split from the
//! input at 0xff bytes) through `device_api::bootstrap::Bootstrap::read`. Checked: no panic; a
//! partition that reads has a host and a port.
#![no_main]

use device_api::bootstrap::Bootstrap;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 5] = [
    "root-certificate.pem",
    "onboard.cert.pem",
    "onboard.key.pem",
    "server",
    "serial",
];

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.split(|b| *b == 0xff).collect();
    let file = |name: &str| {
        let i = NAMES.iter().position(|n| *n == name)?;
        parts.get(i).copied()
    };
    if let Ok(boot) = Bootstrap::read(file) {
        assert!(!boot.host.is_empty() && boot.port > 0);
    }
});
