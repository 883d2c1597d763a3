//! Channels: named byte streams between a service and its peer, the same API on every
//! platform, so that a service never sees which one it runs on.
//!
//! - Under Xen, channel `name` is the vchan the launcher wired from the manifest's
//!   `[[channels]]` entry (see [`crate::vchan::open_wired`] and xen/README.md); the peer is
//!   another service or a dom0 program.
//! - Under QEMU microvm, it is the virtio-console port called `name`
//!   ([`crate::virtio::console`]); `scripts/run --channel NAME=PATH` backs one with a unix
//!   socket on the host, so that a service can be tested alone against a host-side program.
//!
//! ```ignore
//! let mut ch = kernel::channel::open("events", Duration::from_secs(30)).await?;
//! ch.write_all(b"ping").await?;
//! let n = ch.read(&mut buf).await?; // Ok(0): the peer closed and everything was read
//! ch.close();
//! ```
//!
//! Both are reliable, ordered, full-duplex byte streams. A peer that closes (or dies) reads as
//! end of stream (`Ok(0)`) once what it sent before is read, and writes then fail with
//! [`Error::Closed`]. Channel names follow the manifest's rule ([`check_name`]).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// What one `transfer` on a channel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transferred {
    /// Wrote this many bytes (at least one).
    Wrote(usize),
    /// Read this many bytes; 0: the peer closed and everything it sent was read.
    Read(usize),
}

/// The longest channel name, in bytes.
pub const MAX_NAME_LEN: usize = 32;

/// Why a channel name is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    TooLong,
    /// The name does not start with a letter.
    BadStart,
    /// The name holds a character other than `a-z`, `0-9` and `-`.
    BadCharacter(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("empty"),
            NameError::TooLong => write!(f, "longer than {MAX_NAME_LEN} bytes"),
            NameError::BadStart => f.write_str("does not start with a letter a-z"),
            NameError::BadCharacter(c) => write!(f, "{c:?} is not one of a-z, 0-9, -"),
        }
    }
}

/// Checks a channel name: 1 to [`MAX_NAME_LEN`] of `a-z`, `0-9` and `-`, starting with a
/// letter (the manifest's rule for names, xen/README.md).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let first = name.chars().next().ok_or(NameError::Empty)?;
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if !first.is_ascii_lowercase() {
        return Err(NameError::BadStart);
    }
    match name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        Some(c) => Err(NameError::BadCharacter(c)),
        None => Ok(()),
    }
}

/// Why a channel could not be opened or used.
#[derive(Debug)]
pub enum Error {
    /// The name breaks the naming rule.
    BadName {
        /// The name asked for.
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// This machine has no channel of that name.
    NotFound {
        /// The name asked for.
        name: String,
        /// The channels that do exist.
        known: Vec<String>,
    },
    /// The channel is already open.
    Busy(String),
    /// The peer did not show up in time.
    NoPeer(String),
    /// The peer closed the channel or went away.
    Closed,
    /// The vchan failed (Xen).
    Vchan(crate::vchan::Error),
    /// The virtio console failed (microvm).
    #[cfg(target_os = "none")]
    Console(crate::virtio::console::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadName { name, reason } => write!(f, "bad channel name {name:?}: {reason}"),
            Error::NotFound { name, known } if known.is_empty() => {
                write!(f, "no channel named {name:?} (this machine has none)")
            }
            Error::NotFound { name, known } => write!(
                f,
                "no channel named {name:?} (channels: {})",
                known.join(", ")
            ),
            Error::Busy(name) => write!(f, "channel {name:?} is already open"),
            Error::NoPeer(name) => write!(f, "no peer on channel {name:?}"),
            Error::Closed => f.write_str("the peer closed the channel"),
            Error::Vchan(e) => write!(f, "{e}"),
            #[cfg(target_os = "none")]
            Error::Console(e) => write!(f, "{e}"),
        }
    }
}

impl From<crate::vchan::Error> for Error {
    fn from(e: crate::vchan::Error) -> Self {
        match e {
            crate::vchan::Error::Closed => Error::Closed,
            crate::vchan::Error::NoPeer(name) => Error::NoPeer(name),
            e => Error::Vchan(e),
        }
    }
}

#[cfg(target_os = "none")]
pub use platform::*;

#[cfg(target_os = "none")]
mod platform {
    use alloc::string::String;

    use super::{check_name, Error};
    use crate::vchan::{self, Vchan};
    use crate::virtio::console::{self, Port};
    use crate::Duration;

    impl From<console::Error> for Error {
        fn from(e: console::Error) -> Self {
            match e {
                console::Error::NotFound { name, known } => Error::NotFound { name, known },
                console::Error::Busy(name) => Error::Busy(name),
                console::Error::NoPeer(name) => Error::NoPeer(name),
                console::Error::Closed => Error::Closed,
                e => Error::Console(e),
            }
        }
    }

    /// The platform's end of a channel.
    enum End {
        Vchan(Vchan),
        Console(Port),
    }

    /// One end of an open channel.
    pub struct Channel {
        name: String,
        end: End,
    }

    /// Opens channel `name`, waiting up to `wait` for it to appear and for its peer: under
    /// Xen the manifest-wired vchan, under microvm the virtio-console port of that name.
    pub async fn open(name: &str, wait: Duration) -> Result<Channel, Error> {
        check_name(name).map_err(|reason| Error::BadName {
            name: name.into(),
            reason,
        })?;
        let end = if crate::platform::kind() == crate::platform::Kind::Xen {
            End::Vchan(open_wired(name, wait).await?)
        } else {
            End::Console(console::open(name, wait).await.map_err(|e| match e {
                // No console at all: no channel of any name.
                console::Error::NoDevice => Error::NotFound {
                    name: name.into(),
                    known: alloc::vec::Vec::new(),
                },
                e => e.into(),
            })?)
        };
        Ok(Channel {
            name: name.into(),
            end,
        })
    }

    /// The service's name in its node: the manifest's name for it under Xen, the image's name
    /// under microvm.
    pub async fn service_name() -> String {
        if crate::platform::kind() == crate::platform::Kind::Xen {
            if let Ok(name) = crate::platform::xen::store::read("data/lichen/name").await {
                return name;
            }
        }
        crate::service().name.into()
    }

    /// The channels that carry the bus to this service's peers (the launcher derives them from
    /// the images' declarations, one per pair of services that talk; each is named after the
    /// peer). Under microvm there are none: bus logic is tested on the host.
    pub async fn bus_channels() -> alloc::vec::Vec<String> {
        if crate::platform::kind() != crate::platform::Kind::Xen {
            return alloc::vec::Vec::new();
        }
        crate::platform::xen::store::read("data/lichen/bus")
            .await
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// Every channel the launcher wired to this service (under microvm: none is listed; a
    /// test names its ports on the command line).
    pub async fn wired() -> alloc::vec::Vec<String> {
        if crate::platform::kind() != crate::platform::Kind::Xen {
            return alloc::vec::Vec::new();
        }
        crate::platform::xen::store::read("data/lichen/channels")
            .await
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// The vchan of channel `name`, after checking that the launcher wired one.
    async fn open_wired(name: &str, wait: Duration) -> Result<Vchan, Error> {
        let listed = crate::platform::xen::store::read("data/lichen/channels")
            .await
            .unwrap_or_default();
        if !listed.split_whitespace().any(|c| c == name) {
            return Err(Error::NotFound {
                name: name.into(),
                known: listed.split_whitespace().map(String::from).collect(),
            });
        }
        Ok(vchan::open_wired(name, wait).await?)
    }

    impl Channel {
        /// The channel's name.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Reads at least one byte (up to `buf.len()`), waiting for them; `Ok(0)` once the
        /// peer closed and everything it sent was read.
        pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
            Ok(match &mut self.end {
                End::Vchan(v) => v.read(buf).await?,
                End::Console(p) => p.read(buf).await?,
            })
        }

        /// Writes some of `buf` (at least one byte), waiting for room; [`Error::Closed`] once
        /// the peer is gone.
        pub async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
            Ok(match &mut self.end {
                End::Vchan(v) => v.write(buf).await?,
                End::Console(p) => p.write(buf).await?,
            })
        }

        /// Writes all of `buf`.
        pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Error> {
            while !buf.is_empty() {
                let n = self.write(buf).await?;
                buf = &buf[n..];
            }
            Ok(())
        }

        /// Reads into `inp` or writes some of `out`, whichever the channel allows first,
        /// waiting for either; with `out` empty it only reads. A peer that shares a channel
        /// among many conversations needs it: waiting to write while not reading could
        /// deadlock two peers that both write. Cancel-safe.
        pub async fn transfer(
            &mut self,
            out: &[u8],
            inp: &mut [u8],
        ) -> Result<super::Transferred, Error> {
            Ok(match &mut self.end {
                End::Vchan(v) => v.transfer(out, inp).await?,
                End::Console(p) => p.transfer(out, inp).await?,
            })
        }

        /// Reads exactly `buf.len()` bytes; [`Error::Closed`] if the peer closes first.
        pub async fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<(), Error> {
            while !buf.is_empty() {
                let n = self.read(buf).await?;
                if n == 0 {
                    return Err(Error::Closed);
                }
                buf = &mut buf[n..];
            }
            Ok(())
        }

        /// Waits until everything written so far left this side: read by the peer (vchan) or
        /// handed to the host end (virtio console).
        pub async fn flush(&mut self) -> Result<(), Error> {
            match &mut self.end {
                End::Vchan(v) => v.flush().await?,
                End::Console(p) => p.flush().await?,
            }
            Ok(())
        }

        /// Closes the channel; the peer reads end of stream.
        pub fn close(self) {
            match self.end {
                End::Vchan(v) => v.close(),
                End::Console(p) => p.close(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn names_follow_the_manifest_rule() {
        for good in ["echo", "a", "events-2", "a0-b1", &"x".repeat(MAX_NAME_LEN)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let too_long = "x".repeat(MAX_NAME_LEN + 1);
        let cases = [
            ("", NameError::Empty),
            (too_long.as_str(), NameError::TooLong),
            ("1abc", NameError::BadStart),
            ("-abc", NameError::BadStart),
            ("Echo", NameError::BadStart),
            ("echo_1", NameError::BadCharacter('_')),
            ("ec ho", NameError::BadCharacter(' ')),
            ("echO", NameError::BadCharacter('O')),
            ("écho", NameError::BadStart),
            ("eché", NameError::BadCharacter('é')),
        ];
        for (name, error) in cases {
            assert_eq!(check_name(name), Err(error), "{name:?}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = Error::NotFound {
            name: "echo".into(),
            known: ["other".to_string(), "logs".to_string()].into(),
        };
        assert_eq!(
            e.to_string(),
            "no channel named \"echo\" (channels: other, logs)"
        );
        let e = Error::NotFound {
            name: "echo".into(),
            known: Vec::new(),
        };
        assert_eq!(
            e.to_string(),
            "no channel named \"echo\" (this machine has none)"
        );
        let e = Error::BadName {
            name: "Echo".into(),
            reason: NameError::BadStart,
        };
        assert_eq!(
            e.to_string(),
            "bad channel name \"Echo\": does not start with a letter a-z"
        );
        assert!(matches!(
            Error::from(crate::vchan::Error::Closed),
            Error::Closed
        ));
    }
}
