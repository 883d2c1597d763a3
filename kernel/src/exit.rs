//! Stopping the image with an exit status.

/// Exit statuses with a fixed meaning; services may exit with any other value too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    /// Clean exit.
    Success = 0,
    /// The service reported failure.
    Failure = 1,
    /// A panic (including heap exhaustion).
    Panic = 101,
    /// A CPU exception.
    Fault = 102,
    /// The kernel could not start the service (bad boot data, bad command line).
    BootFailure = 103,
}

/// Stops the image with `status`.
pub fn exit(status: impl Into<i32>) -> ! {
    crate::platform::current().exit(status.into())
}

impl From<Status> for i32 {
    fn from(s: Status) -> i32 {
        s as i32
    }
}
