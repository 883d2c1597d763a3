//! The node's services as the launcher writes them in xenstore (`launcher_api::services`):
//! dom0 lets zedagent read them because its image watches `launcher/Services` (below).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use launcher_api::services::{parse, Service, PATH, READER};
use topics::{Persistence, TopicDecl};

/// The watch that asks the launcher for read access to the services (no service publishes it
/// on the bus).
pub const WATCH: TopicDecl = TopicDecl {
    name: READER,
    schema: 1,
    persistence: Persistence::Volatile,
};

/// The services now; none outside Xen. An error says why they cannot be read (no launcher
/// rows yet, no access, a value that does not parse).
pub async fn read() -> Result<Vec<Service>, String> {
    if kernel::platform::kind() != kernel::platform::Kind::Xen {
        return Ok(Vec::new());
    }
    let value = kernel::platform::xen::store::read(PATH)
        .await
        .map_err(|e| format!("{PATH}: {e}"))?;
    parse(&value)
}
