//! What the supervisor needs from Xen, as a trait: the real one drives `xl` and the xenstore
//! tools ([`crate::toolstack`]); tests use a scripted fake.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::manifest::Service;
use crate::wiring::Wiring;

/// Why a domain shut down (Xen's `SHUTDOWN_*` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff` (0).
    Poweroff,
    /// `SHUTDOWN_reboot` (1); also what Xen reports for a PVH guest's triple fault.
    Reboot,
    /// `SHUTDOWN_crash` (3).
    Crash,
    /// Any other code (suspend, watchdog, soft reset).
    Other(u32),
}

impl ShutdownReason {
    /// The reason for a Xen shutdown code.
    pub fn from_code(code: u32) -> ShutdownReason {
        match code {
            0 => ShutdownReason::Poweroff,
            1 => ShutdownReason::Reboot,
            3 => ShutdownReason::Crash,
            other => ShutdownReason::Other(other),
        }
    }
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownReason::Poweroff => write!(f, "powered off"),
            ShutdownReason::Reboot => write!(f, "rebooted"),
            ShutdownReason::Crash => write!(f, "crashed"),
            ShutdownReason::Other(code) => write!(f, "shut down with code {code}"),
        }
    }
}

/// The state of a domain as the toolstack reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// Running, blocked or paused.
    Alive,
    /// Shut down (and kept, so that its exit status and console can still be read).
    Shutdown(ShutdownReason),
    /// Being destroyed.
    Dying,
}

/// What Xen says a domain uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the domain was made, ns.
    pub cpu_ns: u64,
    /// Memory pages (4 KiB) it holds.
    pub pages: u64,
}

/// The files a service boots from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFiles {
    /// The PVH kernel image.
    pub kernel: PathBuf,
    /// An optional initial ramdisk.
    pub ramdisk: Option<PathBuf>,
    /// Where in `kernel` (a block device: the app data disk) the image lies: byte offset and
    /// the most bytes to read; `None`: all of `kernel`.
    pub kernel_window: Option<(u64, u64)>,
}

/// A domain [`Platform::create_paused`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// Its domid.
    pub domid: u32,
    /// The service's own xenstore entries, when the platform wrote them together with the
    /// domain's registration (the launcher's builder: in the same pipelined batch); `None`
    /// when the caller is to write them (`xl create`).
    pub wired: Option<Wiring>,
}

/// The operations the supervisor performs on Xen. Errors are messages for the log.
pub trait Platform {
    /// Creates `name`'s domain, paused. `entries` gives the service's own xenstore entries
    /// for the new domid; a platform that registers the domain itself writes them with that
    /// registration and says so in [`Created::wired`].
    fn create_paused(
        &mut self,
        name: &str,
        service: &Service,
        files: &BootFiles,
        entries: &dyn Fn(u32) -> Wiring,
    ) -> Result<Created, String>;
    /// Lets a paused domain run.
    fn unpause(&mut self, domid: u32) -> Result<(), String>;
    /// Destroys a domain.
    fn destroy(&mut self, domid: u32) -> Result<(), String>;
    /// The states of all domains but dom0.
    fn domains(&mut self) -> Result<HashMap<u32, DomainState>, String>;
    /// Whether some domain may have changed state since the last call (a hint to call
    /// [`Platform::domains`] now rather than at the next periodic poll).
    fn domains_changed(&mut self) -> bool;
    /// Where a shut-down domain's vCPU 0 stood (registers, stack words), for the log when it
    /// rebooted or crashed; `None` where the platform cannot tell.
    fn vcpu_report(&mut self, _domid: u32) -> Option<String> {
        None
    }
    /// The exit status the domain wrote to its `data/exit-status`, if any.
    fn exit_status(&mut self, domid: u32) -> Option<i64>;
    /// Applies xenstore changes: atomically when they remove nodes or set permissions; writes
    /// alone are applied in order, each at once (a reader may see the first ones before the
    /// rest, never a later one before an earlier one).
    fn write_store(&mut self, wiring: &Wiring) -> Result<(), String>;
    /// Sends `input` to the domain's console (asynchronously: errors are logged).
    fn send_console_input(&mut self, name: &str, domid: u32, input: &str);
    /// A dom0 block device for `size` bytes at byte `offset` of block device `disk` (an app
    /// volume: [`crate::loopdev`]); it lasts as long as the returned value is held.
    fn map_extent(
        &mut self,
        disk: &Path,
        offset: u64,
        size: u64,
        read_only: bool,
    ) -> Result<crate::loopdev::Mapped, String> {
        crate::loopdev::map(disk, offset, size, read_only)
    }
    /// The first page of the `size` bytes at byte `offset` of block device `disk` (an app
    /// volume's head: a PVH kernel's ELF header or a Linux VM's bundle, [`crate::bundle`]).
    fn read_volume_head(&mut self, disk: &Path, offset: u64, size: u64) -> Result<Vec<u8>, String> {
        crate::bundle::read_head(disk, offset, size)
    }
    /// The console lines `name` printed since the last call: the complete ones, and with `flush`
    /// also the text after the last line end.
    fn console_lines(&mut self, name: &str, flush: bool) -> Vec<String>;
    /// What each domain uses (none known by default).
    fn usage(&mut self) -> HashMap<u32, Usage> {
        HashMap::new()
    }
}
