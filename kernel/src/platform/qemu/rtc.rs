//! The MC146818 CMOS real-time clock: the time of day under QEMU.

#[cfg(target_os = "none")]
use crate::arch::cpu::{inb, outb};
use crate::time::UnixTime;

#[cfg(target_os = "none")]
const INDEX: u16 = 0x70;
#[cfg(target_os = "none")]
const DATA: u16 = 0x71;

/// The clock registers as read, before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawTime {
    /// Seconds register.
    pub second: u8,
    /// Minutes register.
    pub minute: u8,
    /// Hours register (bit 7 is PM in 12-hour mode).
    pub hour: u8,
    /// Day of month register.
    pub day: u8,
    /// Month register.
    pub month: u8,
    /// Year register (two digits).
    pub year: u8,
    /// Century register (0x32), 0 if absent.
    pub century: u8,
    /// Status register B: bit 2 binary (else BCD), bit 1 24-hour (else 12-hour).
    pub status_b: u8,
}

impl RawTime {
    /// Decodes the registers into a UTC time; `None` if they hold nonsense.
    pub fn decode(self) -> Option<UnixTime> {
        let binary = self.status_b & 0x04 != 0;
        let h24 = self.status_b & 0x02 != 0;
        let value = |v: u8| -> Option<u32> {
            if binary {
                Some(u32::from(v))
            } else if v >> 4 < 10 && v & 0xf < 10 {
                Some(u32::from(v >> 4) * 10 + u32::from(v & 0xf))
            } else {
                None
            }
        };
        let mut hour = value(self.hour & 0x7f)?;
        if !h24 {
            let pm = self.hour & 0x80 != 0;
            hour = match (hour, pm) {
                (12, false) => 0,
                (12, true) => 12,
                (h, true) => h + 12,
                (h, false) => h,
            };
        }
        let century = value(self.century)
            .filter(|c| (19..=30).contains(c))
            .unwrap_or(20);
        let year = i64::from(century * 100 + value(self.year)?);
        UnixTime::from_utc(
            year,
            value(self.month)?,
            value(self.day)?,
            hour,
            value(self.minute)?,
            value(self.second)?,
        )
    }
}

#[cfg(target_os = "none")]
fn register(index: u8) -> u8 {
    // SAFETY: CMOS index/data ports; bit 7 of the index (NMI disable) is left clear.
    unsafe {
        outb(INDEX, index);
        inb(DATA)
    }
}

#[cfg(target_os = "none")]
fn read_raw() -> RawTime {
    RawTime {
        second: register(0x00),
        minute: register(0x02),
        hour: register(0x04),
        day: register(0x07),
        month: register(0x08),
        year: register(0x09),
        century: register(0x32),
        status_b: register(0x0b),
    }
}

/// Reads the time of day: waits out an update in progress and reads until two reads agree.
#[cfg(target_os = "none")]
pub fn read() -> Option<UnixTime> {
    let mut previous = None;
    for _ in 0..8 {
        while register(0x0a) & 0x80 != 0 {
            core::hint::spin_loop();
        }
        let now = read_raw();
        if previous == Some(now) {
            return now.decode();
        }
        previous = Some(now);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(hour: u8, status_b: u8) -> RawTime {
        RawTime {
            second: 0x50,
            minute: 0x08,
            hour,
            day: 0x22,
            month: 0x11,
            year: 0x26,
            century: 0x20,
            status_b,
        }
    }

    #[test]
    fn bcd_24_hour() {
        assert_eq!(raw(0x21, 0x02).decode().unwrap().as_secs(), 1_795_381_730);
    }

    #[test]
    fn bcd_12_hour_pm() {
        assert_eq!(raw(0x89, 0x00).decode().unwrap().as_secs(), 1_795_381_730);
        assert_eq!(
            raw(0x12, 0x00).decode(),
            UnixTime::from_utc(2026, 11, 22, 0, 8, 50)
        );
    }

    #[test]
    fn binary_mode_and_garbage() {
        let t = RawTime {
            second: 50,
            minute: 8,
            hour: 21,
            day: 22,
            month: 11,
            year: 26,
            century: 20,
            status_b: 0x06,
        };
        assert_eq!(t.decode().unwrap().as_secs(), 1_795_381_730);
        assert_eq!(
            RawTime {
                month: 0x1f,
                ..raw(0x21, 0x02)
            }
            .decode(),
            None
        );
    }
}
