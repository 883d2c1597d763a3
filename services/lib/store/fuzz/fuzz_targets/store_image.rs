//! A store's disk damaged at will: the input formats a small store, commits a few values, then
//! lists changes to its disk image (flip bytes, zero or copy sectors, and re-seal a record's
//! checksums after changing it, so that the entry decoders and tags are reached), then opens
//! it, reads every key, commits, and reopens. Nothing may panic, and a value `get` returns must
//! be one that was committed for that key (plain and encrypted stores): damage is an error,
//! never data.
#![no_main]

use kernel::block::BlockDevice;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use store::format::{parse_body, seeded_crc, write_trailer, RecordHeader, HEADER_LEN};
use store::testing::FaultDisk;
use store::{block_on, Batch, FormatOptions, Key, Store};

const SS: usize = 512;
const SECTORS: u64 = 160;
const ID: [u8; 16] = *b"fuzz-store-id-00";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, ops)) = data.split_first() else { return };
    let key = (selector & 1 == 1).then(|| Key::new([0x42; 32]));
    let disk = FaultDisk::new(SS as u32, SECTORS, 1);
    let opts = FormatOptions { id: ID, key: key.clone(), max_value: 2048 };
    let mut s = block_on(Store::format(disk.clone(), &opts)).unwrap();
    let mut history: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for i in 0..12u8 {
        let k = vec![b'k', i % 5];
        let v = vec![i; 10 + 150 * usize::from(i % 4)];
        let mut b = Batch::new();
        b.put(&k, &v);
        block_on(s.commit(b)).unwrap();
        history.entry(k).or_default().insert(v);
    }
    drop(s);

    let mut image = disk.image();
    for op in ops.chunks(4) {
        let [kind, a, b, c] = *op else { break };
        let at = usize::from(u16::from_le_bytes([a, b])) % image.len();
        match kind % 4 {
            0 => image[at] ^= c | 1,
            1 => {
                let sector = at / SS * SS;
                image[sector..sector + SS].fill(c);
            }
            2 => {
                let from = usize::from(c) % SECTORS as usize * SS;
                let to = at / SS * SS;
                let copy = image[from..from + SS].to_vec();
                image[to..to + SS].copy_from_slice(&copy);
            }
            _ => reseal(&mut image, at / SS * SS, if key.is_some() { 16 } else { 8 }),
        }
    }
    disk.overwrite(0, &image);

    let Ok(mut s) = block_on(Store::open(disk.clone(), key.as_ref())) else { return };
    check(&mut s, &history);
    let mut b = Batch::new();
    b.put(b"new", b"value");
    if block_on(s.commit(b)).is_ok() {
        history.entry(b"new".to_vec()).or_default().insert(b"value".to_vec());
    }
    drop(s);
    if let Ok(mut s) = block_on(Store::open(disk, key.as_ref())) {
        check(&mut s, &history);
    }
});

/// Every value read must be one committed for its key.
fn check<D: BlockDevice>(s: &mut Store<D>, history: &BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>) {
    let keys: Vec<Vec<u8>> = s.keys_with_prefix(b"").map(<[u8]>::to_vec).collect();
    for k in keys {
        if let Ok(Some(v)) = block_on(s.get(&k)) {
            let known = history.get(&k).is_some_and(|h| h.contains(&v));
            assert!(known, "key {k:?} returned a value never committed");
        }
    }
}

/// Recomputes the header CRC and (when the body parses) the trailer of whatever record header
/// sits at `at`, so that a change inside the record reaches the entry and value checks.
fn reseal(image: &mut [u8], at: usize, tag: usize) {
    if image[at..at + 4] != *b"LKVR" {
        return;
    }
    let crc = seeded_crc(&ID, &image[at..at + 32]);
    image[at + 32..at + 40].copy_from_slice(&crc.to_le_bytes());
    let Some(h) = RecordHeader::decode(&image[at..], &ID) else { return };
    let len = h.record_len();
    if at + len > image.len() {
        return;
    }
    let body = &image[at + HEADER_LEN..at + HEADER_LEN + h.body_len as usize];
    if let Some(entries) = parse_body(body, h.count, tag) {
        write_trailer(&mut image[at..at + len], &h, &entries, tag, &ID);
    }
}
