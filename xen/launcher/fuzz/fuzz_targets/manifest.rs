//! Arbitrary manifests: parsing and validation may refuse, never panic; a manifest that passes
//! has a start order naming every service once, and bus wiring derived from any declarations.
#![no_main]

use lichen_launcher::bus;
use lichen_launcher::manifest::Manifest;
use lichen_launcher::order::start_order;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = Manifest::parse(text) else {
        return;
    };
    // No image directory: every image is missing, every other check still runs.
    let _ = manifest.validate(&[]);
    if let Ok(order) = start_order(&manifest) {
        assert_eq!(order.len(), manifest.services.len());
    }
    let _ = manifest.test.environment();
    // Every service declares publishing a topic named after the next one and subscribing to
    // its own: derivation must report, not panic, whatever the names.
    let names: Vec<String> = manifest.services.keys().cloned().collect();
    let declarations = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let next = &names[(i + 1) % names.len()];
            let topic = |n: &str| declare::ParsedTopic {
                name: format!("{n}/T"),
                schema: i as u32 % 2,
                persistence: declare::Persistence::Volatile,
            };
            let decl = declare::Parsed {
                memory_floor_mib: i as u32,
                needs: declare::Needs::NONE,
                publishes: vec![topic(next)],
                subscribes: vec![topic(name)],
                watches: vec![topic(name)],
            };
            (name.clone(), Some(decl))
        })
        .collect();
    if let Ok(channels) = bus::derive(&manifest, &declarations) {
        for channel in channels {
            assert_ne!(channel.server, channel.client);
            assert!(channel.is_bus());
        }
    }
});
