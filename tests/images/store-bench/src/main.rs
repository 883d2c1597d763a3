//! `store-bench`: lichen's side of `scripts/bench store`. Formats disk `data` as a store (the
//! disk's previous content is lost) and measures, each commit flushed:
//! - `commit_64b`: commits of one key with a 64-byte value (256 keys in turn);
//! - `commit_10x4k`: commits of ten keys with 4 KiB values each (1000 keys in turn);
//! - `seq_1m`: commits of one new key with a 1 MiB value, `seq_mib` of them.
//!
//! Options: `seconds=S` per commit row (default 5), `seq_mib=M` (default 64),
//! `cipher=plain|vault|both` (default both: the plain store, then the encrypted vault with a
//! fixed test key). Prints one line per row:
//! `store-bench: <cipher> <row> ops=N bytes=B ns=T` and the heap it used
//! (`store-bench: <cipher> heap_peak=B index_keys=K`). Exit status 0, 1 on bad options or no
//! disk, 2 when the store fails.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec;
use kernel::block::{self, Disk};
use kernel::time::{now, Instant};
use kernel::{error, info, Args};
use store::{Batch, FormatOptions, Key, Store};

kernel::service! {
    main: main,
    memory_floor_mib: 32,
    needs: [disk],
}

async fn main(args: Args) -> i32 {
    let number = |key: &str, default: u64| match args.parse_value::<u64>(key) {
        Ok(v) => Ok(v.unwrap_or(default)),
        Err(e) => Err(e),
    };
    let (Ok(seconds), Ok(seq_mib)) = (number("seconds", 5), number("seq_mib", 64)) else {
        error!("store-bench: seconds and seq_mib are numbers");
        return 1;
    };
    let ciphers: &[&str] = match args.get("cipher").unwrap_or("both") {
        "plain" => &["plain"],
        "vault" => &["vault"],
        "both" => &["plain", "vault"],
        other => {
            error!("store-bench: unknown cipher {other:?} (plain, vault, both)");
            return 1;
        }
    };
    let mut disk = match block::open("data").await {
        Ok(d) => Some(d),
        Err(e) => {
            error!("store-bench: {e}");
            return 1;
        }
    };
    for &cipher in ciphers {
        match run(disk.take().unwrap(), cipher, seconds, seq_mib).await {
            Ok(d) => disk = Some(d),
            Err(e) => {
                error!("store-bench: {cipher}: {e}");
                return 2;
            }
        }
    }
    info!("store-bench: done");
    0
}

/// Heap in use now, and the most seen so far.
struct Heap {
    base: u64,
    peak: u64,
}

impl Heap {
    fn sample(&mut self) {
        self.peak = self
            .peak
            .max(kernel::mem::heap_used().saturating_sub(self.base));
    }
}

async fn run(disk: Disk, cipher: &str, seconds: u64, seq_mib: u64) -> Result<Disk, store::Error> {
    let mut heap = Heap {
        base: kernel::mem::heap_used(),
        peak: 0,
    };
    // The store's identity should be random; a benchmark that formats every run may use the
    // clock (no key is reused across runs that matter).
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&now().as_nanos().to_le_bytes());
    id[8..13].copy_from_slice(b"bench");
    let key = (cipher == "vault").then(|| Key::new([0x5c; 32]));
    let opts = FormatOptions {
        id,
        key,
        max_value: store::DEFAULT_MAX_VALUE,
    };
    let mut s = Store::format(disk, &opts).await?;
    let budget = seconds * 1_000_000_000;

    // One key of 64 bytes per commit.
    let value = [0xa5u8; 64];
    let start = now();
    let mut ops = 0u64;
    while ns_since(start) < budget {
        let mut b = Batch::new();
        b.put(format!("k{}", ops % 256).as_bytes(), &value);
        s.commit(b).await?;
        ops += 1;
    }
    report(cipher, "commit_64b", ops, ops * 64, ns_since(start));
    heap.sample();

    // Ten keys of 4 KiB per commit.
    let value = vec![0x3cu8; 4096];
    let start = now();
    let mut ops = 0u64;
    while ns_since(start) < budget {
        let mut b = Batch::new();
        for j in 0..10 {
            b.put(format!("b{}", (ops * 10 + j) % 1000).as_bytes(), &value);
        }
        s.commit(b).await?;
        ops += 1;
        if ops.is_multiple_of(64) {
            heap.sample();
        }
    }
    report(cipher, "commit_10x4k", ops, ops * 40960, ns_since(start));

    // Sequential: 1 MiB values, each its own commit.
    let start = now();
    for i in 0..seq_mib {
        let mut b = Batch::new();
        b.put_vec(format!("s{i}").as_bytes(), vec![i as u8; 1 << 20]);
        s.commit(b).await?;
        heap.sample();
    }
    report(cipher, "seq_1m", seq_mib, seq_mib << 20, ns_since(start));

    // A value read back, so that the run is also a check.
    let back = s.get(b"s0").await?;
    if back.as_deref().map(|v| v.len()) != Some(1 << 20) {
        return Err(store::Error::Corrupt { sector: 0 });
    }
    heap.sample();
    let stats = s.stats();
    info!(
        "store-bench: {cipher} heap_peak={} index_keys={} compaction_records={} checkpoints={}",
        heap.peak, stats.keys, stats.compaction_records, stats.checkpoints
    );
    Ok(s.into_device())
}

fn ns_since(start: Instant) -> u64 {
    now().saturating_duration_since(start).as_nanos() as u64
}

fn report(cipher: &str, row: &str, ops: u64, bytes: u64, ns: u64) {
    info!("store-bench: {cipher} {row} ops={ops} bytes={bytes} ns={ns}");
}
