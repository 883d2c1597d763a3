//! The port table of a multiport virtio console: what the device said about each port, and
//! which port a name refers to.
//!
//! The table applies checked control messages ([`super::control::DeviceMessage`]) and refuses
//! the ones that contradict what it knows: a port id beyond the ports the driver serves, a
//! message about a port never added, a port added twice, named twice, or given a name another
//! port already has. A refused message changes nothing. Port ids index the table directly, so
//! an id the device makes up can never reach beyond it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::control::DeviceMessage;

/// What the driver knows about one port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortState {
    /// The device announced the port (and has not removed it).
    pub added: bool,
    /// Its name, once the device sent one.
    pub name: Option<String>,
    /// The device said it is a console.
    pub console: bool,
    /// The host end is open (a program is connected to the backend).
    pub host_open: bool,
    /// The guest end is open (a channel uses the port).
    pub guest_open: bool,
}

/// How a message changed the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The port appeared: the driver sets up its buffers and answers `PORT_READY`.
    Added(u32),
    /// The port disappeared, with everything known about it.
    Removed(u32),
    /// The port got its name.
    Named(u32),
    /// The host end opened.
    HostOpened(u32),
    /// The host end closed.
    HostClosed(u32),
    /// Nothing that matters to the driver (a console flag, a resize, a repeated state).
    Nothing,
}

/// A control message that contradicts the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortError {
    /// The id is not below the number of ports served.
    IdOutOfRange {
        /// The id found.
        port: u32,
        /// Ports served.
        served: u32,
    },
    /// The port was never added (or was removed).
    NotAdded(u32),
    /// The port is already there.
    AlreadyAdded(u32),
    /// The port already has a name.
    AlreadyNamed(u32),
    /// Another port already has this name.
    DuplicateName {
        /// The port that asked for it.
        port: u32,
        /// The name.
        name: String,
    },
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortError::IdOutOfRange { port, served } => {
                write!(f, "port {port} beyond the {served} ports served")
            }
            PortError::NotAdded(port) => write!(f, "port {port} was never added"),
            PortError::AlreadyAdded(port) => write!(f, "port {port} added twice"),
            PortError::AlreadyNamed(port) => write!(f, "port {port} named twice"),
            PortError::DuplicateName { port, name } => {
                write!(f, "port {port} named {name:?} like another port")
            }
        }
    }
}

/// Queue indices of port `port`: receive, transmit (virtio 1.2, 5.3.2: port 0 uses queues 0
/// and 1, the control queues are 2 and 3, port `n >= 1` uses `2n + 2` and `2n + 3`).
/// `None` when they do not fit a queue index.
pub fn queue_indices(port: u32) -> Option<(u16, u16)> {
    let receive = if port == 0 {
        0
    } else {
        u16::try_from(port.checked_mul(2)?.checked_add(2)?).ok()?
    };
    Some((receive, receive.checked_add(1)?))
}

/// Every port the driver serves, indexed by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortTable {
    ports: Vec<PortState>,
}

impl PortTable {
    /// A table for ports `0..served`.
    pub fn new(served: u32) -> PortTable {
        PortTable {
            ports: (0..served).map(|_| PortState::default()).collect(),
        }
    }

    /// How many ports the table serves.
    pub fn served(&self) -> u32 {
        self.ports.len() as u32
    }

    /// Port `port`, if served.
    pub fn port(&self, port: u32) -> Option<&PortState> {
        self.ports.get(port as usize)
    }

    fn slot(&mut self, port: u32) -> Result<&mut PortState, PortError> {
        let served = self.served();
        self.ports
            .get_mut(port as usize)
            .ok_or(PortError::IdOutOfRange { port, served })
    }

    fn added(&mut self, port: u32) -> Result<&mut PortState, PortError> {
        let state = self.slot(port)?;
        if !state.added {
            return Err(PortError::NotAdded(port));
        }
        Ok(state)
    }

    /// Applies one message from the device.
    pub fn apply(&mut self, message: &DeviceMessage<'_>) -> Result<Change, PortError> {
        match *message {
            DeviceMessage::PortAdd(port) => {
                let state = self.slot(port)?;
                if state.added {
                    return Err(PortError::AlreadyAdded(port));
                }
                *state = PortState {
                    added: true,
                    ..PortState::default()
                };
                Ok(Change::Added(port))
            }
            DeviceMessage::PortRemove(port) => {
                let state = self.added(port)?;
                *state = PortState::default();
                Ok(Change::Removed(port))
            }
            DeviceMessage::ConsolePort(port) => {
                self.added(port)?.console = true;
                Ok(Change::Nothing)
            }
            DeviceMessage::Resize(port) => {
                self.added(port)?;
                Ok(Change::Nothing)
            }
            DeviceMessage::PortOpen { port, open } => {
                let state = self.added(port)?;
                if state.host_open == open {
                    return Ok(Change::Nothing);
                }
                state.host_open = open;
                Ok(if open {
                    Change::HostOpened(port)
                } else {
                    Change::HostClosed(port)
                })
            }
            DeviceMessage::PortName { port, name } => {
                if self.added(port)?.name.is_some() {
                    return Err(PortError::AlreadyNamed(port));
                }
                if self.find(name).is_some() {
                    return Err(PortError::DuplicateName {
                        port,
                        name: name.into(),
                    });
                }
                self.added(port)?.name = Some(name.into());
                Ok(Change::Named(port))
            }
        }
    }

    /// The added port called `name`.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.ports
            .iter()
            .position(|p| p.added && p.name.as_deref() == Some(name))
            .map(|i| i as u32)
    }

    /// The names of the added ports, in id order.
    pub fn names(&self) -> Vec<String> {
        self.ports
            .iter()
            .filter(|p| p.added)
            .filter_map(|p| p.name.clone())
            .collect()
    }

    /// Records whether the guest end of `port` is open; `false` if the port is not there.
    pub fn set_guest_open(&mut self, port: u32, open: bool) -> bool {
        match self.added(port) {
            Ok(state) => {
                state.guest_open = open;
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn open(port: u32, open: bool) -> DeviceMessage<'static> {
        DeviceMessage::PortOpen { port, open }
    }

    fn name(port: u32, name: &str) -> DeviceMessage<'_> {
        DeviceMessage::PortName { port, name }
    }

    #[test]
    fn queue_indices_follow_the_specification() {
        assert_eq!(queue_indices(0), Some((0, 1)));
        assert_eq!(queue_indices(1), Some((4, 5)));
        assert_eq!(queue_indices(30), Some((62, 63)));
        assert_eq!(queue_indices(32766), Some((65534, 65535)));
        assert_eq!(queue_indices(32767), None);
        assert_eq!(queue_indices(u32::MAX), None);
    }

    #[test]
    fn a_port_as_qemu_announces_it() {
        let mut t = PortTable::new(4);
        assert_eq!(t.apply(&DeviceMessage::PortAdd(1)), Ok(Change::Added(1)));
        assert_eq!(t.find("echo"), None);
        assert_eq!(t.apply(&name(1, "echo")), Ok(Change::Named(1)));
        assert_eq!(t.apply(&open(1, true)), Ok(Change::HostOpened(1)));
        assert_eq!(t.find("echo"), Some(1));
        assert!(t.set_guest_open(1, true));
        let state = t.port(1).unwrap();
        assert!(state.added && state.host_open && state.guest_open && !state.console);
        assert_eq!(t.apply(&open(1, true)), Ok(Change::Nothing));
        assert_eq!(t.apply(&open(1, false)), Ok(Change::HostClosed(1)));
        assert_eq!(t.apply(&DeviceMessage::Resize(1)), Ok(Change::Nothing));
        assert_eq!(t.apply(&DeviceMessage::ConsolePort(1)), Ok(Change::Nothing));
        assert!(t.port(1).unwrap().console);
        assert_eq!(t.names(), ["echo".to_string()]);
    }

    #[test]
    fn removal_forgets_everything_and_a_port_may_come_back() {
        let mut t = PortTable::new(4);
        t.apply(&DeviceMessage::PortAdd(2)).unwrap();
        t.apply(&name(2, "events")).unwrap();
        t.apply(&open(2, true)).unwrap();
        assert_eq!(
            t.apply(&DeviceMessage::PortRemove(2)),
            Ok(Change::Removed(2))
        );
        assert_eq!(t.port(2), Some(&PortState::default()));
        assert_eq!(t.find("events"), None);
        assert!(!t.set_guest_open(2, true));
        assert_eq!(t.apply(&DeviceMessage::PortAdd(2)), Ok(Change::Added(2)));
        assert_eq!(t.apply(&name(2, "events")), Ok(Change::Named(2)));
    }

    #[test]
    fn contradictions_are_refused_and_change_nothing() {
        let mut t = PortTable::new(4);
        t.apply(&DeviceMessage::PortAdd(1)).unwrap();
        t.apply(&name(1, "echo")).unwrap();
        t.apply(&DeviceMessage::PortAdd(3)).unwrap();
        let before = t.clone();
        let refused = [
            (
                DeviceMessage::PortAdd(4),
                PortError::IdOutOfRange { port: 4, served: 4 },
            ),
            (
                DeviceMessage::PortAdd(u32::MAX),
                PortError::IdOutOfRange {
                    port: u32::MAX,
                    served: 4,
                },
            ),
            (DeviceMessage::PortAdd(1), PortError::AlreadyAdded(1)),
            (DeviceMessage::PortRemove(2), PortError::NotAdded(2)),
            (open(0, true), PortError::NotAdded(0)),
            (DeviceMessage::ConsolePort(2), PortError::NotAdded(2)),
            (
                DeviceMessage::Resize(9),
                PortError::IdOutOfRange { port: 9, served: 4 },
            ),
            (name(2, "x"), PortError::NotAdded(2)),
            (name(1, "other"), PortError::AlreadyNamed(1)),
            (
                name(3, "echo"),
                PortError::DuplicateName {
                    port: 3,
                    name: "echo".into(),
                },
            ),
        ];
        for (message, error) in refused {
            assert_eq!(t.apply(&message), Err(error), "{message:?}");
        }
        assert_eq!(t, before);
    }

    #[test]
    fn an_empty_table_serves_nothing() {
        let mut t = PortTable::new(0);
        assert_eq!(
            t.apply(&DeviceMessage::PortAdd(0)),
            Err(PortError::IdOutOfRange { port: 0, served: 0 })
        );
        assert!(t.names().is_empty());
    }
}
