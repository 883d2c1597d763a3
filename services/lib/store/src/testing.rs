//! A disk that fails the way real ones do, for tests: power cuts that drop or tear unflushed
//! writes, and bit rot in what was flushed.
//!
//! [`FaultDisk`] keeps two images: what reads see (every write so far) and what survives a
//! power cut (every write before the last successful flush). [`FaultDisk::arm`] makes the
//! power fail after a number of further writes and flushes: that operation and every later one
//! fails with [`block::Error::Broken`] until [`FaultDisk::power_cut`] decides, sector by sector
//! and independently (so in any order), what each unflushed write left on the platter: all of
//! it, nothing, or a torn mix of old and new bytes, some with flipped bits. The handle is
//! shared (clones see the same disk), so a test keeps it across a store that consumed it.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use kernel::block::{self, BlockDevice, Geometry};

/// A small deterministic PRNG (xorshift64*), so that a failing seed can be replayed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

/// What a power cut did to the unflushed sectors, summed over the disk's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutStats {
    /// Power cuts.
    pub cuts: u64,
    /// Unflushed sector writes that made it whole.
    pub kept: u64,
    /// Unflushed sector writes that vanished.
    pub dropped: u64,
    /// Unflushed sector writes left half old, half new.
    pub torn: u64,
    /// Unflushed sector writes left with flipped bits.
    pub flipped: u64,
}

struct Inner {
    geometry: Geometry,
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Sectors written since the last flush, in order (a sector may appear more than once).
    pending: Vec<(u64, Vec<u8>)>,
    countdown: Option<u64>,
    dead: bool,
    rng: Rng,
    stats: CutStats,
    writes: u64,
    flushes: u64,
}

/// The fault-injecting disk (a shared handle).
#[derive(Clone)]
pub struct FaultDisk(Rc<RefCell<Inner>>);

impl FaultDisk {
    /// A zeroed disk; `seed` drives every fault it injects.
    pub fn new(sector_size: u32, sectors: u64, seed: u64) -> FaultDisk {
        let len = sector_size as usize * sectors as usize;
        FaultDisk(Rc::new(RefCell::new(Inner {
            geometry: Geometry {
                sector_size,
                sectors,
                read_only: false,
            },
            current: vec![0; len],
            durable: vec![0; len],
            pending: Vec::new(),
            countdown: None,
            dead: false,
            rng: Rng::new(seed),
            stats: CutStats::default(),
            writes: 0,
            flushes: 0,
        })))
    }

    /// The power fails during the `ops`-th write or flush from now (1 = the next one).
    pub fn arm(&self, ops: u64) {
        self.0.borrow_mut().countdown = Some(ops.max(1));
    }

    /// No power failure pending.
    pub fn disarm(&self) {
        self.0.borrow_mut().countdown = None;
    }

    /// Whether the power has failed (every operation fails until [`FaultDisk::power_cut`]).
    pub fn is_dead(&self) -> bool {
        self.0.borrow().dead
    }

    /// The power comes back: each unflushed sector write is kept, dropped, torn or bit-flipped
    /// at random; reads then see only what survived.
    pub fn power_cut(&self) {
        let mut d = self.0.borrow_mut();
        let d = &mut *d;
        let ss = d.geometry.sector_size as usize;
        let pending = core::mem::take(&mut d.pending);
        for (sector, data) in pending {
            let at = sector as usize * ss;
            let old = &mut d.durable[at..at + ss];
            match d.rng.below(10) {
                0..=3 => {
                    old.copy_from_slice(&data);
                    d.stats.kept += 1;
                }
                4..=6 => d.stats.dropped += 1,
                7 | 8 => {
                    // A torn sector: new bytes up to some point, old ones after (or before).
                    let cut = d.rng.below(ss as u64) as usize;
                    if d.rng.below(2) == 0 {
                        old[..cut].copy_from_slice(&data[..cut]);
                    } else {
                        old[cut..].copy_from_slice(&data[cut..]);
                    }
                    d.stats.torn += 1;
                }
                _ => {
                    old.copy_from_slice(&data);
                    for _ in 0..1 + d.rng.below(4) {
                        let bit = d.rng.below(ss as u64 * 8) as usize;
                        old[bit / 8] ^= 1 << (bit % 8);
                    }
                    d.stats.flipped += 1;
                }
            }
        }
        d.current.copy_from_slice(&d.durable);
        d.dead = false;
        d.countdown = None;
        d.stats.cuts += 1;
    }

    /// Bit rot: flips bit `bit` of byte `byte`, on the platter and in what reads see.
    pub fn rot(&self, byte: usize, bit: u8) {
        let mut d = self.0.borrow_mut();
        d.current[byte] ^= 1 << (bit % 8);
        d.durable[byte] ^= 1 << (bit % 8);
    }

    /// What reads see now.
    pub fn image(&self) -> Vec<u8> {
        self.0.borrow().current.clone()
    }

    /// Overwrites the disk (flushed) with `bytes` from byte `at`.
    pub fn overwrite(&self, at: usize, bytes: &[u8]) {
        let mut d = self.0.borrow_mut();
        d.current[at..at + bytes.len()].copy_from_slice(bytes);
        d.durable[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Makes the disk refuse writes (or accept them again).
    pub fn set_read_only(&self, read_only: bool) {
        self.0.borrow_mut().geometry.read_only = read_only;
    }

    /// What power cuts did so far.
    pub fn cut_stats(&self) -> CutStats {
        self.0.borrow().stats
    }

    /// Writes and flushes so far.
    pub fn io_counts(&self) -> (u64, u64) {
        let d = self.0.borrow();
        (d.writes, d.flushes)
    }

    /// Counts one operation towards an armed power failure; `Err` once it has failed.
    fn tick(d: &mut Inner) -> Result<(), block::Error> {
        if d.dead {
            return Err(block::Error::Broken);
        }
        if let Some(n) = d.countdown {
            if n <= 1 {
                d.dead = true;
                d.countdown = None;
                return Err(block::Error::Broken);
            }
            d.countdown = Some(n - 1);
        }
        Ok(())
    }
}

impl BlockDevice for FaultDisk {
    fn geometry(&self) -> Geometry {
        self.0.borrow().geometry
    }

    async fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), block::Error> {
        let d = self.0.borrow();
        if d.dead {
            return Err(block::Error::Broken);
        }
        d.geometry.check(sector, buffer.len())?;
        let at = sector as usize * d.geometry.sector_size as usize;
        buffer.copy_from_slice(&d.current[at..at + buffer.len()]);
        Ok(())
    }

    async fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), block::Error> {
        let mut d = self.0.borrow_mut();
        let d = &mut *d;
        if d.geometry.read_only {
            return Err(block::Error::ReadOnly);
        }
        d.geometry.check(sector, data.len())?;
        let ss = d.geometry.sector_size as usize;
        if d.dead {
            return Err(block::Error::Broken);
        }
        // The write that the power failure interrupts may still have reached some sectors:
        // it joins the unflushed writes that the cut decides about.
        let failing = FaultDisk::tick(d);
        for (i, chunk) in data.chunks(ss).enumerate() {
            d.pending.push((sector + i as u64, chunk.to_vec()));
            let at = (sector as usize + i) * ss;
            d.current[at..at + ss].copy_from_slice(chunk);
        }
        d.writes += 1;
        failing
    }

    async fn flush(&mut self) -> Result<(), block::Error> {
        let mut d = self.0.borrow_mut();
        let d = &mut *d;
        FaultDisk::tick(d)?;
        let ss = d.geometry.sector_size as usize;
        for (sector, data) in core::mem::take(&mut d.pending) {
            let at = sector as usize * ss;
            d.durable[at..at + ss].copy_from_slice(&data);
        }
        d.flushes += 1;
        Ok(())
    }
}
