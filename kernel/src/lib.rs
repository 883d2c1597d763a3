//! The lichen library OS.
//!
//! A lichen unikernel is one service linked with this kernel: a PVH ELF that boots as a Xen
//! PVH domU or directly under QEMU's microvm machine. The kernel brings up the CPU, memory,
//! console, clock and timer, then runs the service's async `main` on a small executor and
//! stops the machine with its exit status. A service declares itself with [`service!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! kernel::service!(main);
//! async fn main(args: kernel::Args) -> i32 {
//!     kernel::info!("hello");
//!     0
//! }
//! ```
//!
//! Pure logic (command-line parsing, time arithmetic, memory-map handling, log formatting)
//! also builds on the host, where its unit tests run.

#![no_std]
#![warn(missing_docs)]

pub extern crate alloc;
#[cfg(test)]
extern crate std;

pub use declare;

pub mod block;
pub mod channel;
pub mod cmdline;
pub mod log;
pub mod logring;
pub mod mem;
pub mod net;
pub mod platform;
pub mod pvh;
pub mod random;
pub mod sync;
pub mod time;
pub mod vchan;
pub mod virtio;

#[cfg(target_os = "none")]
pub mod arch {
    //! Architecture support (x86-64 only).
    mod x86_64;
    pub use self::x86_64::*;
}
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
mod log_forward;
// The executor and interrupt events also build for the host's unit tests, on a simulated
// clock (see `time`), so that the network layer is tested there.
#[cfg(any(target_os = "none", test))]
pub mod executor;
#[cfg(target_os = "none")]
pub mod exit;
#[cfg(target_os = "none")]
mod fault;
#[cfg(any(target_os = "none", test))]
pub mod irq;

pub use cmdline::Args;
#[cfg(target_os = "none")]
pub use {
    boot::{boot_timings, BootTimings},
    exit::{exit, Status},
    time::wall_clock,
};
#[cfg(any(target_os = "none", test))]
pub use {
    executor::{sleep, sleep_until, spawn, timeout, yield_now, JoinHandle},
    time::{now, Duration, Instant},
};

/// The future a service's `main` returns: its exit status.
pub type MainFuture = core::pin::Pin<alloc::boxed::Box<dyn core::future::Future<Output = i32>>>;

/// What a service image tells the kernel about itself (see [`service!`]).
pub struct Service {
    /// Image name (the service crate's name).
    pub name: &'static str,
    /// Image version (the service crate's version).
    pub version: &'static str,
    /// Starts the service's `main`.
    pub main: fn(Args) -> MainFuture,
    /// What the image declares (also in its `lichen` ELF note, for the launcher).
    pub declaration: &'static declare::Declaration,
    /// The log forwarder that runs beside `main` (docs/logs.md), or `None` for an image that
    /// keeps its lines on its console only (`log_forwarding: false` in [`service!`]): the
    /// forwarder and the channel code it needs are then not linked in.
    pub log_forwarder: Option<fn(Args) -> ForwarderFuture>,
}

/// The future of the log forwarder task.
pub type ForwarderFuture = core::pin::Pin<alloc::boxed::Box<dyn core::future::Future<Output = ()>>>;

/// The log forwarder, as [`Service::log_forwarder`] holds it ([`service!`] names it).
#[doc(hidden)]
#[cfg(target_os = "none")]
pub fn __log_forwarder(args: Args) -> ForwarderFuture {
    alloc::boxed::Box::pin(log_forward::run(args))
}

/// The service linked into this image.
#[cfg(target_os = "none")]
pub fn service() -> &'static Service {
    unsafe extern "Rust" {
        static LICHEN_SERVICE: Service;
    }
    // SAFETY: every image defines LICHEN_SERVICE through `service!`, once; it is immutable.
    unsafe { &*core::ptr::addr_of!(LICHEN_SERVICE) }
}

/// The memory floor of an image that declares none, in MiB.
pub const DEFAULT_MEMORY_FLOOR_MIB: u32 = 4;

/// Declares the image's service and what it needs from its node.
///
/// `service!(main)`, where `main` is `async fn main(args: kernel::Args) -> i32`, declares a
/// service that uses no bus topic and runs in [`DEFAULT_MEMORY_FLOOR_MIB`]. The full form
/// declares its topics (`topics::...` values), its memory floor and its devices:
///
/// ```ignore
/// kernel::service! {
///     main: main,
///     memory_floor_mib: 8,
///     needs: [uplink],                        // uplink, disk, modules; optional
///     publishes: &[topics::pong::ACK.decl()],  // optional
///     subscribes: &[topics::ping::SEQ.decl()], // optional
///     watches: topics::status::TOPICS,         // optional: followed when published
///     log_forwarding: false,                   // optional: lines stay on the console
/// }
/// ```
///
/// Every image forwards its log lines to the node's logs pillar unless it says
/// `log_forwarding: false` (docs/logs.md); `hello`, the size and boot-time reference, does.
///
/// The declaration is checked at compile time and written into the image as an ELF note that
/// the launcher reads to wire the node (services/lib/declare); the bus
/// (`bus_io::Node`) refuses a topic the image does not declare.
#[macro_export]
macro_rules! service {
    ($main:path) => {
        $crate::service! { main: $main, memory_floor_mib: $crate::DEFAULT_MEMORY_FLOOR_MIB }
    };
    (
        main: $main:path,
        memory_floor_mib: $memory:expr
        $(, needs: [$($need:ident),* $(,)?])?
        $(, publishes: $publishes:expr)?
        $(, subscribes: $subscribes:expr)?
        $(, watches: $watches:expr)?
        $(, log_forwarding: $forwarding:tt)?
        $(,)?
    ) => {
        static LICHEN_DECLARATION: $crate::declare::Declaration = $crate::declare::Declaration {
            memory_floor_mib: $memory,
            needs: $crate::declare::Needs {
                $($($need: true,)*)?
                ..$crate::declare::Needs::NONE
            },
            publishes: $crate::__or_empty!($($publishes)?),
            subscribes: $crate::__or_empty!($($subscribes)?),
            watches: $crate::__or_empty!($($watches)?),
        };
        #[unsafe(link_section = ".note.lichen")]
        #[used]
        static LICHEN_NOTE: $crate::declare::Note<
            { $crate::declare::note_len(&LICHEN_DECLARATION) },
        > = $crate::declare::Note($crate::declare::note(&LICHEN_DECLARATION));
        #[unsafe(no_mangle)]
        static LICHEN_SERVICE: $crate::Service = $crate::Service {
            name: env!("CARGO_BIN_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            main: |args| $crate::alloc::boxed::Box::pin($main(args)),
            declaration: &LICHEN_DECLARATION,
            log_forwarder: $crate::__forwarder!($($forwarding)?),
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __forwarder {
    () => {
        Some($crate::__log_forwarder)
    };
    (true) => {
        Some($crate::__log_forwarder)
    };
    (false) => {
        None
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __or_empty {
    () => {
        &[]
    };
    ($list:expr) => {
        $list
    };
}
