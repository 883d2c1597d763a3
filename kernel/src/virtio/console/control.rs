//! virtio-console control messages (virtio 1.2, section 5.3.6.2): the codec and its checks.
//!
//! With the MULTIPORT feature, driver and device talk about ports over a pair of control
//! queues. Every message starts with the same 8-byte header, all fields little endian:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 4 | port id |
//! | 4 | 2 | event |
//! | 6 | 2 | value |
//!
//! `PORT_NAME` is followed by the name (QEMU ends it with one NUL byte, the specification
//! does not require one); `RESIZE` by the console's rows and columns (two `u16`). Everything
//! the device writes is checked here: a message that is short, carries an unknown or
//! driver-only event, an impossible value, unexpected trailing bytes or a name that is not
//! printable ASCII is a [`ControlError`], never a guess.

use core::fmt;

/// Bytes of the header every control message starts with.
pub const HEADER_LEN: usize = 8;
/// The longest port name accepted, in bytes (without its NUL).
pub const MAX_NAME_LEN: usize = 128;
/// Bytes of a `RESIZE` message: the header, rows and columns.
const RESIZE_LEN: usize = HEADER_LEN + 4;

/// The control events (`VIRTIO_CONSOLE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Event {
    /// Driver to device: the driver is ready (value 1) or failed (0).
    DeviceReady = 0,
    /// Device to driver: a port exists (`VIRTIO_CONSOLE_DEVICE_ADD`).
    PortAdd = 1,
    /// Device to driver: a port is gone (`VIRTIO_CONSOLE_DEVICE_REMOVE`).
    PortRemove = 2,
    /// Driver to device: the port's queues are set up (value 1) or it failed (0).
    PortReady = 3,
    /// Device to driver: the port is a console.
    ConsolePort = 4,
    /// Device to driver: the console's size changed.
    Resize = 5,
    /// Both ways: the sender's end of the port opened (value 1) or closed (0).
    PortOpen = 6,
    /// Device to driver: the port's name follows the header.
    PortName = 7,
}

impl Event {
    fn from_raw(raw: u16) -> Option<Event> {
        Some(match raw {
            0 => Event::DeviceReady,
            1 => Event::PortAdd,
            2 => Event::PortRemove,
            3 => Event::PortReady,
            4 => Event::ConsolePort,
            5 => Event::Resize,
            6 => Event::PortOpen,
            7 => Event::PortName,
            _ => return None,
        })
    }
}

/// A control message from the device, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceMessage<'a> {
    /// Port `0` exists.
    PortAdd(u32),
    /// Port `0` is gone.
    PortRemove(u32),
    /// Port `0` is a console.
    ConsolePort(u32),
    /// The console of port `0` changed size (the size itself does not matter here).
    Resize(u32),
    /// The host end of `port` opened or closed.
    PortOpen {
        /// The port.
        port: u32,
        /// Whether it is now open.
        open: bool,
    },
    /// `port` is called `name`.
    PortName {
        /// The port.
        port: u32,
        /// Its name: 1 to [`MAX_NAME_LEN`] bytes of printable ASCII.
        name: &'a str,
    },
}

impl DeviceMessage<'_> {
    /// The port the message is about.
    pub fn port(&self) -> u32 {
        match *self {
            DeviceMessage::PortAdd(port)
            | DeviceMessage::PortRemove(port)
            | DeviceMessage::ConsolePort(port)
            | DeviceMessage::Resize(port)
            | DeviceMessage::PortOpen { port, .. }
            | DeviceMessage::PortName { port, .. } => port,
        }
    }
}

/// A control message the driver sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverMessage {
    /// The driver is ready for port announcements (or failed).
    DeviceReady {
        /// Whether the driver is ready.
        ok: bool,
    },
    /// The queues of `port` are ready (or could not be set up).
    PortReady {
        /// The port.
        port: u32,
        /// Whether the port is usable.
        ok: bool,
    },
    /// The guest end of `port` opened or closed.
    PortOpen {
        /// The port.
        port: u32,
        /// Whether it is now open.
        open: bool,
    },
}

impl DriverMessage {
    /// The message's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let (port, event, value) = match *self {
            DriverMessage::DeviceReady { ok } => (0, Event::DeviceReady, ok),
            DriverMessage::PortReady { port, ok } => (port, Event::PortReady, ok),
            DriverMessage::PortOpen { port, open } => (port, Event::PortOpen, open),
        };
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0..4].copy_from_slice(&port.to_le_bytes());
        bytes[4..6].copy_from_slice(&(event as u16).to_le_bytes());
        bytes[6..8].copy_from_slice(&u16::from(value).to_le_bytes());
        bytes
    }
}

/// Why a control message from the device was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// Shorter than its event requires.
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// Longer than its event allows.
    TrailingBytes {
        /// The event.
        event: Event,
        /// Bytes received.
        len: usize,
    },
    /// An event number the specification does not define.
    UnknownEvent(u16),
    /// An event only the driver may send.
    DriverOnlyEvent(Event),
    /// A value the event does not allow.
    BadValue {
        /// The event.
        event: Event,
        /// The value found.
        value: u16,
    },
    /// A port name that is empty, too long, or not printable ASCII.
    BadName,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ControlError::TooShort { len } => write!(f, "control message of {len} bytes"),
            ControlError::TrailingBytes { event, len } => {
                write!(f, "{event:?} control message of {len} bytes")
            }
            ControlError::UnknownEvent(e) => write!(f, "unknown control event {e}"),
            ControlError::DriverOnlyEvent(e) => write!(f, "{e:?} sent by the device"),
            ControlError::BadValue { event, value } => write!(f, "{event:?} with value {value}"),
            ControlError::BadName => write!(
                f,
                "port name not 1 to {MAX_NAME_LEN} bytes of printable ASCII"
            ),
        }
    }
}

/// Decodes and checks one control message the device wrote (`bytes` is what it claims to
/// have written, already bounded by the buffer).
pub fn decode(bytes: &[u8]) -> Result<DeviceMessage<'_>, ControlError> {
    let len = bytes.len();
    if len < HEADER_LEN {
        return Err(ControlError::TooShort { len });
    }
    let port = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let raw_event = u16::from_le_bytes([bytes[4], bytes[5]]);
    let value = u16::from_le_bytes([bytes[6], bytes[7]]);
    let event = Event::from_raw(raw_event).ok_or(ControlError::UnknownEvent(raw_event))?;
    // Every event but PORT_NAME has a fixed length.
    let exactly = |expected: usize| match len.cmp(&expected) {
        core::cmp::Ordering::Less => Err(ControlError::TooShort { len }),
        core::cmp::Ordering::Greater => Err(ControlError::TrailingBytes { event, len }),
        core::cmp::Ordering::Equal => Ok(()),
    };
    match event {
        Event::DeviceReady | Event::PortReady => Err(ControlError::DriverOnlyEvent(event)),
        Event::PortName => Ok(DeviceMessage::PortName {
            port,
            name: decode_name(&bytes[HEADER_LEN..])?,
        }),
        Event::PortAdd => exactly(HEADER_LEN).map(|()| DeviceMessage::PortAdd(port)),
        Event::PortRemove => exactly(HEADER_LEN).map(|()| DeviceMessage::PortRemove(port)),
        Event::ConsolePort => exactly(HEADER_LEN).map(|()| DeviceMessage::ConsolePort(port)),
        Event::Resize => exactly(RESIZE_LEN).map(|()| DeviceMessage::Resize(port)),
        Event::PortOpen => {
            exactly(HEADER_LEN)?;
            match value {
                0 | 1 => Ok(DeviceMessage::PortOpen {
                    port,
                    open: value == 1,
                }),
                _ => Err(ControlError::BadValue { event, value }),
            }
        }
    }
}

/// The name after a `PORT_NAME` header: printable ASCII, optionally ended by NULs (QEMU
/// writes one; nothing may follow the first NUL but more NULs).
fn decode_name(raw: &[u8]) -> Result<&str, ControlError> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let (name, padding) = raw.split_at(end);
    let printable = name.iter().all(|b| (0x21..=0x7e).contains(b));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !printable || padding.iter().any(|&b| b != 0)
    {
        return Err(ControlError::BadName);
    }
    // Printable ASCII is UTF-8.
    core::str::from_utf8(name).map_err(|_| ControlError::BadName)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn message(port: u32, event: u16, value: u16, extra: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&port.to_le_bytes());
        m.extend_from_slice(&event.to_le_bytes());
        m.extend_from_slice(&value.to_le_bytes());
        m.extend_from_slice(extra);
        m
    }

    #[test]
    fn driver_messages_encode_as_the_specification_lays_them_out() {
        assert_eq!(
            DriverMessage::DeviceReady { ok: true }.encode(),
            [0, 0, 0, 0, 0, 0, 1, 0]
        );
        assert_eq!(
            DriverMessage::PortReady { port: 3, ok: true }.encode(),
            [3, 0, 0, 0, 3, 0, 1, 0]
        );
        assert_eq!(
            DriverMessage::PortOpen {
                port: 0x0102_0304,
                open: false
            }
            .encode(),
            [4, 3, 2, 1, 6, 0, 0, 0]
        );
    }

    #[test]
    fn device_messages_decode() {
        assert_eq!(
            decode(&message(1, 1, 1, &[])),
            Ok(DeviceMessage::PortAdd(1))
        );
        assert_eq!(
            decode(&message(2, 2, 1, &[])),
            Ok(DeviceMessage::PortRemove(2))
        );
        assert_eq!(
            decode(&message(0, 4, 1, &[])),
            Ok(DeviceMessage::ConsolePort(0))
        );
        assert_eq!(
            decode(&message(0, 5, 0, &[24, 0, 80, 0])),
            Ok(DeviceMessage::Resize(0))
        );
        assert_eq!(
            decode(&message(7, 6, 1, &[])),
            Ok(DeviceMessage::PortOpen {
                port: 7,
                open: true
            })
        );
        assert_eq!(
            decode(&message(7, 6, 0, &[])),
            Ok(DeviceMessage::PortOpen {
                port: 7,
                open: false
            })
        );
        // As QEMU sends it (one NUL), and without a NUL.
        let named = DeviceMessage::PortName {
            port: 1,
            name: "echo",
        };
        assert_eq!(decode(&message(1, 7, 1, b"echo\0")), Ok(named));
        assert_eq!(decode(&message(1, 7, 1, b"echo")), Ok(named));
        assert_eq!(decode(&message(1, 7, 1, b"echo\0\0\0")), Ok(named));
        assert_eq!(named.port(), 1);
    }

    #[test]
    fn lies_are_refused() {
        assert_eq!(decode(&[1, 0, 0]), Err(ControlError::TooShort { len: 3 }));
        assert_eq!(
            decode(&message(1, 8, 0, &[])),
            Err(ControlError::UnknownEvent(8))
        );
        assert_eq!(
            decode(&message(1, 0xffff, 0, &[])),
            Err(ControlError::UnknownEvent(0xffff))
        );
        assert_eq!(
            decode(&message(0, 0, 1, &[])),
            Err(ControlError::DriverOnlyEvent(Event::DeviceReady))
        );
        assert_eq!(
            decode(&message(1, 3, 1, &[])),
            Err(ControlError::DriverOnlyEvent(Event::PortReady))
        );
        assert_eq!(
            decode(&message(1, 6, 2, &[])),
            Err(ControlError::BadValue {
                event: Event::PortOpen,
                value: 2
            })
        );
        assert_eq!(
            decode(&message(1, 1, 1, &[0])),
            Err(ControlError::TrailingBytes {
                event: Event::PortAdd,
                len: 9
            })
        );
        assert_eq!(
            decode(&message(0, 5, 0, &[24, 0])),
            Err(ControlError::TooShort { len: 10 })
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let too_long = [b'a'; MAX_NAME_LEN + 1];
        let longest = [b'a'; MAX_NAME_LEN];
        for name in [
            &b""[..],
            b"\0",
            b"\0echo",
            b"ec ho",
            b"echo\n",
            b"\xc3\xa9cho",
            b"echo\0x",
            &too_long,
        ] {
            assert_eq!(
                decode(&message(1, 7, 1, name)),
                Err(ControlError::BadName),
                "{name:?}"
            );
        }
        assert!(decode(&message(1, 7, 1, &longest)).is_ok());
        assert!(decode(&message(1, 7, 1, b"org.qemu.guest_agent.0\0")).is_ok());
    }

    #[test]
    fn arbitrary_bytes_decode_consistently_or_are_refused() {
        // A small deterministic generator: every length up to 40, many contents, with small
        // byte values so that every event and both open values come up.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let (mut accepted, mut refused) = (0, 0);
        for len in 0..40 {
            for _ in 0..500 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state % 9) as u8
                    })
                    .collect();
                match decode(&bytes) {
                    Ok(message) => {
                        accepted += 1;
                        let port = u32::from_le_bytes(bytes[..4].try_into().unwrap());
                        assert_eq!(message.port(), port, "{bytes:?}");
                        if let DeviceMessage::PortName { name, .. } = message {
                            assert!(!name.is_empty() && name.bytes().all(|b| b > 0x20));
                        }
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        assert!(accepted > 0 && refused > 0, "{accepted} {refused}");
    }
}
