//! What `domainmgr` publishes (services/domainmgr, docs/apps.md): each app domain's state as
//! the launcher's domain service reports it.

use alloc::string::String;
use serde::{Deserialize, Serialize};

use crate::Topic;

/// Where an app's domain is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainState {
    /// Not asked for yet, or waiting for the launcher.
    #[default]
    Pending,
    /// Being built and started.
    Booting,
    /// Running.
    Running,
    /// Being stopped.
    Halting,
    /// No domain: stopped, or powered off by itself.
    Halted,
    /// The domain crashed (the reason in `error`); it stays down until its configuration's
    /// generation changes.
    Crashed,
    /// The launcher refused or failed the domain (the reason in `error`).
    Error,
}

/// An app domain's state (EVE's `DomainStatus`), keyed by the app's UUID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainStatus {
    /// The app's display name.
    pub name: String,
    /// Where it is.
    pub state: DomainState,
    /// Its Xen domain, while it has one.
    pub domid: Option<u32>,
    /// The configuration generation the state is about.
    pub generation: u32,
    /// Domains made for this app since domainmgr started (boots).
    pub boots: u32,
    /// Why it crashed or failed; empty otherwise.
    pub error: String,
}

impl core::fmt::Display for DomainStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "domain {} {:?} generation {} boots {}",
            self.name, self.state, self.generation, self.boots
        )?;
        if let Some(domid) = self.domid {
            write!(f, " domid {domid}")?;
        }
        if !self.error.is_empty() {
            write!(f, " error {:?}", self.error)?;
        }
        Ok(())
    }
}

/// Every app domain's state.
pub const DOMAIN_STATUS: Topic<String, DomainStatus> = Topic::volatile("domainmgr/DomainStatus", 1);
