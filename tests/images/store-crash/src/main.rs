//! `store-crash`: the guest half of tests/tests/store_crash.rs. The host kills QEMU with
//! SIGKILL at random moments and boots this image again on the same disk.
//!
//! Modes (`mode=`):
//! - `format`: formats disk `data` as a vault (key from `key=`, 64 hex digits: what a boot
//!   module or the config partition would hold), prints `store-crash: formatted`.
//! - `run` (default): opens the vault, checks it (below), prints `store-crash: opened
//!   counter=C` and `store-crash: verified`, then commits forever, printing
//!   `store-crash: committed N` after each commit N returned `Ok`.
//! - `check`: opens and checks, then exits 0.
//!
//! Commit N (from 1) writes, atomically: `counter` = N; `v/<N % 16>` = value(N, small);
//! deletes `v/<(N + 8) % 16>`; every 10th commit, `big` = value(N, 40 KiB). So after any
//! crash the store must hold, for its counter C: each `v/j` present exactly when its last put
//! (at most C) is later than its last delete, with that put's value; `big` from the last
//! multiple of 10 up to C. A mismatch prints `store-crash: MISMATCH ...` and exits 2.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use kernel::block::{self, Disk};
use kernel::{error, info, Args};
use store::{Batch, FormatOptions, Key, Store};

kernel::service! {
    main: main,
    memory_floor_mib: 16,
    needs: [disk],
}

/// Largest value: the 40 KiB `big` fits, and compaction runs often on a small disk.
const MAX_VALUE: u32 = 64 * 1024;

async fn main(args: Args) -> i32 {
    let Some(key) = args.get("key").and_then(|k| Key::parse(k.as_bytes()).ok()) else {
        error!("store-crash: key=<64 hex digits> is required");
        return 1;
    };
    let disk = match block::open("data").await {
        Ok(d) => d,
        Err(e) => {
            error!("store-crash: {e}");
            return 1;
        }
    };
    let mode = args.get("mode").unwrap_or("run");
    if mode == "format" {
        // A test's store id: fixed is fine here (one key, formatted once per test disk).
        let opts = FormatOptions {
            id: *b"store-crash-test",
            key: Some(key),
            max_value: MAX_VALUE,
        };
        return match Store::format(disk, &opts).await {
            Ok(_) => {
                info!("store-crash: formatted");
                0
            }
            Err(e) => {
                error!("store-crash: format: {e}");
                2
            }
        };
    }
    let mut s = match Store::open(disk, Some(&key)).await {
        Ok(s) => s,
        Err(e) => {
            error!("store-crash: open: {e}");
            return 2;
        }
    };
    let counter = match verify(&mut s).await {
        Ok(c) => c,
        Err(why) => {
            error!("store-crash: MISMATCH {why}");
            return 2;
        }
    };
    info!("store-crash: verified");
    if mode == "check" {
        return 0;
    }
    let mut n = counter;
    loop {
        n += 1;
        let mut b = Batch::new();
        b.put(b"counter", &n.to_le_bytes());
        b.put_vec(format!("v/{}", n % 16).as_bytes(), value(n, small_len(n)));
        b.delete(format!("v/{}", (n + 8) % 16).as_bytes());
        if n.is_multiple_of(10) {
            b.put_vec(b"big", value(n, 40 * 1024));
        }
        if let Err(e) = s.commit(b).await {
            error!("store-crash: commit {n}: {e}");
            return 2;
        }
        info!("store-crash: committed {n}");
    }
}

/// Length of commit `n`'s small value.
fn small_len(n: u64) -> usize {
    8 + (n.wrapping_mul(7919) % 3000) as usize
}

/// The value commit `n` writes, `len` bytes.
fn value(n: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect();
    v[..8].copy_from_slice(&n.to_le_bytes());
    v
}

/// The largest `m` in 1..=c with `m % modulus == rest`.
fn last(c: u64, modulus: u64, rest: u64) -> Option<u64> {
    let m = c.checked_sub((c + modulus - rest) % modulus)?;
    (m >= 1).then_some(m)
}

/// Checks the whole store against its counter; returns the counter.
async fn verify(s: &mut Store<Disk>) -> Result<u64, alloc::string::String> {
    let counter = match s
        .get(b"counter")
        .await
        .map_err(|e| format!("counter: {e}"))?
    {
        None => 0,
        Some(v) => u64::from_le_bytes(v.try_into().map_err(|_| "counter is not 8 bytes")?),
    };
    info!("store-crash: opened counter={counter} keys={}", s.len());
    for j in 0..16u64 {
        let key = format!("v/{j}");
        let put = last(counter, 16, j);
        let deleted = last(counter, 16, (j + 8) % 16);
        let expected = match (put, deleted) {
            (Some(p), d) if d.is_none_or(|d| p > d) => Some(value(p, small_len(p))),
            _ => None,
        };
        let got = s
            .get(key.as_bytes())
            .await
            .map_err(|e| format!("{key}: {e}"))?;
        if got != expected {
            return Err(format!(
                "{key}: got {:?} bytes, expected {:?}",
                got.map(|v| v.len()),
                expected.map(|v| v.len())
            ));
        }
    }
    let big = s.get(b"big").await.map_err(|e| format!("big: {e}"))?;
    if big != last(counter, 10, 0).map(|m| value(m, 40 * 1024)) {
        return Err(format!("big differs (counter {counter})"));
    }
    let expected_keys = 1
        + usize::from(big.is_some())
        + (0..16u64)
            .filter(|&j| {
                let p = last(counter, 16, j);
                let d = last(counter, 16, (j + 8) % 16);
                matches!((p, d), (Some(p), d) if d.is_none_or(|d| p > d))
            })
            .count();
    if counter > 0 && s.len() != expected_keys {
        return Err(format!("{} keys, expected {expected_keys}", s.len()));
    }
    Ok(counter)
}
