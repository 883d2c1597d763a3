//! Time: the monotonic clock, the wall clock and the TSC scale behind both.
//!
//! The monotonic clock counts nanoseconds since the PVH entry, from the TSC and a scale
//! factor in pvclock form (`ns = ticks * mul >> (32 - shift)`), which KVM's kvmclock and Xen's
//! shared info provide directly and which is otherwise calibrated against the PIT. That
//! calibration is started at boot and finished on the first use of the scale (the PIT keeps
//! counting meanwhile), so boot does not wait for it and a longer window makes it more precise.
//! The wall clock is the platform's time of day, read once from the source boot sets
//! ([`set_wall_clock_source`]), plus the monotonic time since.

use core::fmt;
use core::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
pub use core::time::Duration;

/// Converts between TSC ticks and nanoseconds in pvclock form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscScale {
    /// Multiplier, a 32.32 fixed-point fraction after shifting.
    pub mul: u32,
    /// Binary exponent applied to the tick count before multiplying.
    pub shift: i8,
}

impl TscScale {
    /// The scale for a TSC running at `hz`, at the best precision that fits; `None` for 0 Hz.
    pub fn from_hz(hz: u64) -> Option<TscScale> {
        if hz == 0 {
            return None;
        }
        (-31i8..=31).find_map(|shift| {
            let mul = (1_000_000_000u128 << (32 - i32::from(shift))) / u128::from(hz);
            u32::try_from(mul)
                .ok()
                .filter(|&m| m > 0)
                .map(|mul| TscScale { mul, shift })
        })
    }

    /// Nanoseconds in `ticks`.
    pub fn ticks_to_ns(self, ticks: u64) -> u64 {
        let product = u128::from(ticks) * u128::from(self.mul);
        let exponent = 32 - i32::from(self.shift);
        let ns = if exponent >= 0 {
            product >> exponent
        } else {
            product << -exponent
        };
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Ticks in `ns` nanoseconds (the inverse of [`ticks_to_ns`](Self::ticks_to_ns), rounded up).
    pub fn ns_to_ticks(self, ns: u64) -> u64 {
        if self.mul == 0 {
            return 0;
        }
        let exponent = 32 - i32::from(self.shift);
        let scaled = if exponent >= 0 {
            u128::from(ns) << exponent
        } else {
            u128::from(ns) >> -exponent
        };
        u64::try_from(scaled.div_ceil(u128::from(self.mul))).unwrap_or(u64::MAX)
    }

    /// The TSC frequency this scale describes.
    pub fn hz(self) -> u64 {
        self.ns_to_ticks(1_000_000_000)
    }
}

/// A point on the monotonic clock: nanoseconds since the PVH entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The boot instant.
    pub const BOOT: Instant = Instant(0);

    /// An instant `ns` nanoseconds after boot.
    pub const fn from_nanos(ns: u64) -> Instant {
        Instant(ns)
    }

    /// Nanoseconds since boot.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time since boot.
    pub const fn since_boot(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// Time from `self` until now.
    #[cfg(target_os = "none")]
    pub fn elapsed(self) -> Duration {
        now().saturating_duration_since(self)
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

/// Seconds and microseconds, the way log lines show a time since boot.
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:5}.{:06}",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000 / 1000
        )
    }
}

/// A time of day: nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// Builds a time from a UTC calendar date and time; `None` if a field is out of range.
    pub fn from_utc(
        year: i64,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    ) -> Option<UnixTime> {
        if !(1..=12).contains(&month)
            || day == 0
            || day > 31
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        // Days from civil (proleptic Gregorian), counting years from March.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y.rem_euclid(400);
        let m = i64::from(month);
        let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        let seconds =
            days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
        Some(UnixTime(seconds * 1_000_000_000))
    }

    /// Whole seconds since the epoch.
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }
}

/// TSC value at the PVH entry.
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
/// The TSC scale, packed as `mul << 8 | shift as u8` (0 until the clock is set up).
static SCALE: AtomicU64 = AtomicU64::new(0);
/// Wall-clock time at boot, in ns since the epoch (`i64::MIN` while unknown).
static WALL_AT_BOOT: AtomicI64 = AtomicI64::new(i64::MIN);

/// How the platform learned the TSC rate at boot.
#[derive(Clone, Copy, Debug)]
pub enum TscRate {
    /// Stated by the hypervisor (kvmclock, Xen's shared info, a CPUID leaf).
    Known(TscScale),
    /// Being measured: the function finishes the measurement (waiting if it has not run long
    /// enough yet) and is called, interrupts off, on the first use of the scale.
    Measuring(fn() -> TscScale),
}

/// The function that finishes a [`TscRate::Measuring`] calibration (0: none pending).
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Starts the monotonic clock: `boot_tsc` is time zero.
pub fn init_clock(boot_tsc: u64, rate: TscRate) {
    BOOT_TSC.store(boot_tsc, Ordering::Relaxed);
    match rate {
        TscRate::Known(scale) => store_scale(scale),
        TscRate::Measuring(finish) => PENDING.store(finish as usize, Ordering::Release),
    }
}

fn store_scale(scale: TscScale) {
    SCALE.store(
        (u64::from(scale.mul) << 8) | u64::from(scale.shift as u8),
        Ordering::Release,
    );
}

/// The current TSC scale, if the clock has been set up (finishing a pending calibration).
pub fn scale() -> Option<TscScale> {
    known_scale().or_else(finish_calibration)
}

/// The TSC scale if it is known already: never waits for a calibration.
pub fn known_scale() -> Option<TscScale> {
    let packed = SCALE.load(Ordering::Acquire);
    (packed != 0).then_some(TscScale {
        mul: (packed >> 8) as u32,
        shift: packed as u8 as i8,
    })
}

#[cfg(target_os = "none")]
#[cold]
fn finish_calibration() -> Option<TscScale> {
    use crate::arch::cpu;
    let enabled = cpu::interrupts_enabled();
    cpu::disable_interrupts();
    // One CPU and interrupts off: nothing else can take the pending function meanwhile.
    let finish = PENDING.swap(0, Ordering::AcqRel);
    if finish != 0 {
        // SAFETY: PENDING only ever holds 0 or a `fn() -> TscScale` stored by `init_clock`.
        let finish: fn() -> TscScale = unsafe { core::mem::transmute(finish) };
        store_scale(finish());
    }
    if enabled {
        cpu::enable_interrupts();
    }
    known_scale()
}

#[cfg(not(target_os = "none"))]
fn finish_calibration() -> Option<TscScale> {
    None
}

/// TSC value at boot.
pub fn boot_tsc() -> u64 {
    BOOT_TSC.load(Ordering::Relaxed)
}

/// The instant a TSC reading corresponds to (the boot instant before the clock is set up).
pub fn instant_of_tsc(tsc: u64) -> Instant {
    scale().map_or(Instant::BOOT, |s| {
        Instant(s.ticks_to_ns(tsc.saturating_sub(boot_tsc())))
    })
}

/// The TSC value at which `instant` is reached.
pub fn tsc_of_instant(instant: Instant) -> u64 {
    scale().map_or(u64::MAX, |s| {
        boot_tsc().saturating_add(s.ns_to_ticks(instant.0))
    })
}

/// Now, on the monotonic clock.
#[cfg(target_os = "none")]
pub fn now() -> Instant {
    instant_of_tsc(crate::arch::cpu::rdtsc())
}

/// The simulated monotonic clock of host unit tests: it stands still until the executor,
/// with nothing left to run, jumps it to the next timer ([`advance_to`]).
#[cfg(all(test, not(target_os = "none")))]
static SIMULATED_NS: AtomicU64 = AtomicU64::new(0);

/// Now, on the simulated clock (host unit tests).
#[cfg(all(test, not(target_os = "none")))]
pub fn now() -> Instant {
    Instant(SIMULATED_NS.load(Ordering::Relaxed))
}

/// Moves the simulated clock forward to `at` (host unit tests; never backwards).
#[cfg(all(test, not(target_os = "none")))]
pub fn advance_to(at: Instant) {
    SIMULATED_NS.fetch_max(at.0, Ordering::Relaxed);
}

/// Records the wall-clock time that corresponds to `at` on the monotonic clock.
pub fn set_wall_clock(wall: UnixTime, at: Instant) {
    WALL_AT_BOOT.store(wall.0.saturating_sub(at.0 as i64), Ordering::Relaxed);
}

/// Where the time of day comes from: set by boot (the platform's clock), read on the first
/// [`wall_clock`] call. Reading it lazily keeps it off the boot path: under QEMU it is a few
/// dozen CMOS port accesses, each a VM exit, and most services never ask for the time of day.
static WALL_SOURCE: crate::sync::IrqMutex<Option<WallClockSource>> =
    crate::sync::IrqMutex::new(None);

/// A function that reads the time of day (`None`: no clock to read it from).
pub type WallClockSource = fn() -> Option<UnixTime>;

/// Sets where [`wall_clock`] reads the time of day from (boot, once the platform is up).
pub fn set_wall_clock_source(read: WallClockSource) {
    *WALL_SOURCE.lock() = Some(read);
}

/// Now, as a time of day; `None` if the platform has no clock to read it from.
#[cfg(target_os = "none")]
pub fn wall_clock() -> Option<UnixTime> {
    if WALL_AT_BOOT.load(Ordering::Relaxed) == i64::MIN {
        let at = now();
        let read = (*WALL_SOURCE.lock())?;
        set_wall_clock(read()?, at);
    }
    Some(UnixTime(
        WALL_AT_BOOT
            .load(Ordering::Relaxed)
            .saturating_add(now().0 as i64),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn scale_round_trips_common_frequencies() {
        for hz in [
            1_000_000u64,
            1_193_182,
            100_000_000,
            999_999_999,
            1_000_000_000,
            2_400_000_000,
            3_999_999_999,
        ] {
            let s = TscScale::from_hz(hz).unwrap();
            assert!(s.mul >= 1 << 31, "{hz}: precision lost: {s:?}");
            let one_second = s.ticks_to_ns(hz);
            assert!(
                one_second.abs_diff(1_000_000_000) <= 2,
                "{hz}: {one_second}"
            );
            assert!(
                s.hz().abs_diff(hz) <= hz / 1_000_000 + 1,
                "{hz}: {}",
                s.hz()
            );
            let ticks = s.ns_to_ticks(1_500_000);
            assert!(
                s.ticks_to_ns(ticks) >= 1_500_000,
                "rounding up keeps deadlines late, never early"
            );
        }
        assert_eq!(TscScale::from_hz(0), None);
    }

    #[test]
    fn scale_matches_pvclock_formula() {
        // A kvmclock-style record: 2 GHz is mul 2^31, shift 0.
        let s = TscScale {
            mul: 1 << 31,
            shift: 0,
        };
        assert_eq!(s.ticks_to_ns(2_000), 1_000);
        let s = TscScale {
            mul: 1 << 31,
            shift: 1,
        };
        assert_eq!(s.ticks_to_ns(1_000), 1_000);
        let s = TscScale {
            mul: 1 << 31,
            shift: -1,
        };
        assert_eq!(s.ticks_to_ns(4_000), 1_000);
        assert_eq!(s.ticks_to_ns(u64::MAX), (u128::from(u64::MAX) >> 2) as u64);
    }

    #[test]
    fn calendar() {
        assert_eq!(UnixTime::from_utc(1970, 1, 1, 0, 0, 0), Some(UnixTime(0)));
        assert_eq!(
            UnixTime::from_utc(2000, 3, 1, 0, 0, 0).unwrap().as_secs(),
            951_868_800
        );
        assert_eq!(
            UnixTime::from_utc(2026, 11, 22, 21, 8, 50)
                .unwrap()
                .as_secs(),
            1_795_381_730
        );
        assert_eq!(
            UnixTime::from_utc(2024, 2, 29, 12, 0, 0).unwrap().as_secs(),
            1_709_208_000
        );
        assert_eq!(UnixTime::from_utc(2024, 13, 1, 0, 0, 0), None);
    }

    #[test]
    fn instant_display() {
        assert_eq!(
            Instant::from_nanos(1_234_567_890).to_string(),
            "    1.234567"
        );
    }
}
