//! `disk-test`: exercises [`kernel::block`] on the machine's disks (the same image under Xen
//! and microvm: `scripts/run disk-test --disk FILE,name=data`).
//!
//! Options:
//! - `mode=check` (default): on disk `data`, transfers of several sizes (one sector to more than
//!   every request slot holds at once) written, flushed and read back; the refusals (past the
//!   end, not whole sectors); on disk `ro`, if there is one, a write refused as read-only; a
//!   missing disk reported by name. Prints `disk-test: check ok`.
//! - `mode=fill seed=N mib=M`: writes the pattern of seed N over the first M MiB of `data`
//!   and flushes (`disk-test: filled`); `mode=verify seed=N mib=M` reads it back
//!   (`disk-test: verified`). The pattern: byte `i` is byte `i % 8` of
//!   `(i / 8 + 1) * 0x9E3779B97F4A7C15 ^ seed` (little-endian), so the host can check the file.
//!
//! Several modes run in order when separated by commas (`mode=check,fill,verify`).
//!
//! Exit status: 0 when everything held, 1 on bad options or a missing disk, 2 on a failed check.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use kernel::block::{self, BlockDevice, Error};
use kernel::{error, info, Args};

kernel::service! {
    main: main,
    memory_floor_mib: 16,
    needs: [disk],
}

/// Bytes per pattern transfer.
const STEP: usize = 256 * 1024;

async fn main(args: Args) -> i32 {
    let mode = args.get("mode").unwrap_or("check");
    let number = |key: &str| args.parse_value::<u64>(key).ok().flatten();
    let mut disks = block::disks().await;
    for d in disks.iter() {
        let g = d.geometry();
        info!(
            "disk-test: disk {:?}: {} sectors of {} bytes{}",
            d.name(),
            g.sectors,
            g.sector_size,
            if g.read_only { ", read-only" } else { "" }
        );
    }
    let mut data = match disks.take("data") {
        Ok(disk) => disk,
        Err(e) => {
            error!("disk-test: {e}");
            return 1;
        }
    };
    for mode in mode.split(',') {
        let outcome = match mode {
            "check" => check(&mut data, &mut disks).await,
            "fill" | "verify" => {
                let (Some(seed), Some(mib)) = (number("seed"), number("mib")) else {
                    error!("disk-test: {mode} needs seed=N and mib=M");
                    return 1;
                };
                pattern(&mut data, seed, mib as usize * 1024 * 1024, mode == "fill").await
            }
            other => {
                error!("disk-test: unknown mode {other:?} (check, fill, verify)");
                return 1;
            }
        };
        match outcome {
            Ok(()) => info!("disk-test: {mode} ok"),
            Err(why) => {
                error!("disk-test: {mode} FAILED: {why}");
                return 2;
            }
        }
    }
    0
}

/// Byte `i` of the pattern of `seed`.
fn pattern_byte(seed: u64, i: u64) -> u8 {
    let word = (i / 8 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    word.to_le_bytes()[(i % 8) as usize]
}

async fn pattern(
    disk: &mut block::Disk,
    seed: u64,
    len: usize,
    fill: bool,
) -> Result<(), &'static str> {
    let size = disk.geometry().sector_size as usize;
    let mut buffer = vec![0u8; STEP];
    let mut at = 0;
    while at < len {
        let n = STEP.min(len - at) / size * size;
        let sector = (at / size) as u64;
        if fill {
            for (i, b) in buffer[..n].iter_mut().enumerate() {
                *b = pattern_byte(seed, (at + i) as u64);
            }
            disk.write(sector, &buffer[..n])
                .await
                .map_err(|_| "write failed")?;
        } else {
            disk.read(sector, &mut buffer[..n])
                .await
                .map_err(|_| "read failed")?;
            if buffer[..n]
                .iter()
                .enumerate()
                .any(|(i, &b)| b != pattern_byte(seed, (at + i) as u64))
            {
                return Err("the pattern read back differs");
            }
        }
        at += n;
    }
    if fill {
        disk.flush().await.map_err(|_| "flush failed")?;
    }
    Ok(())
}

async fn check(disk: &mut block::Disk, others: &mut block::Disks) -> Result<(), &'static str> {
    let g = disk.geometry();
    let size = g.sector_size as usize;
    if g.read_only || g.bytes() < 4 * 1024 * 1024 {
        return Err("disk data must be writable and at least 4 MiB");
    }
    // One sector, a few, one request's worth and a bit, and more than all slots hold at once.
    for (round, sectors) in [1usize, 7, 129, 2100].into_iter().enumerate() {
        let len = sectors * size;
        let start = (round * 3000) as u64 % (g.sectors - sectors as u64);
        let data: alloc::vec::Vec<u8> = (0..len)
            .map(|i| (i * 7 + round * 13 + i / 512) as u8)
            .collect();
        disk.write(start, &data).await.map_err(|_| "write failed")?;
        disk.flush().await.map_err(|_| "flush failed")?;
        let mut back = vec![0u8; len];
        disk.read(start, &mut back)
            .await
            .map_err(|_| "read failed")?;
        if back != data {
            return Err("data read back differs from data written");
        }
    }
    let mut sector = vec![0u8; size];
    if disk.read(g.sectors, &mut sector).await != Err(Error::OutOfRange)
        || disk.read(g.sectors - 1, &mut vec![0u8; 2 * size]).await != Err(Error::OutOfRange)
    {
        return Err("a read past the end was not refused");
    }
    if disk.write(0, &sector[..size / 2]).await != Err(Error::Unaligned) {
        return Err("a partial-sector write was not refused");
    }
    if let Ok(mut ro) = others.take("ro") {
        let mut first = vec![0u8; ro.geometry().sector_size as usize];
        ro.read(0, &mut first)
            .await
            .map_err(|_| "read of the read-only disk failed")?;
        if ro.write(0, &first).await != Err(Error::ReadOnly) {
            return Err("a write to the read-only disk was not refused");
        }
        info!("disk-test: read-only disk refuses writes");
    }
    match others.take("absent") {
        Err(e) => info!("disk-test: {e}"),
        Ok(_) => return Err("a disk that does not exist was found"),
    }
    Ok(())
}
