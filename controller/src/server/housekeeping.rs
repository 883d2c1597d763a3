//! Background work: writing when devices were last heard from, and applying retention.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{now_ms, App};
use crate::store::Retention;

/// When to do what.
pub(super) struct Schedule {
    pub retention: Retention,
    pub retention_interval: Duration,
    pub contact_interval: Duration,
}

/// Runs until `stopped` changes, then writes the last contacts once more.
pub(super) async fn run(app: Arc<App>, schedule: Schedule, mut stopped: watch::Receiver<bool>) {
    let mut contacts = tokio::time::interval(schedule.contact_interval);
    let mut retention = tokio::time::interval(schedule.retention_interval);
    loop {
        tokio::select! {
            _ = contacts.tick() => flush_contacts(&app).await,
            _ = retention.tick() => {
                match app.store.retire(schedule.retention, now_ms()).await {
                    Ok(0) => {}
                    Ok(deleted) => eprintln!("lichen-controller: retention deleted {deleted} reports"),
                    Err(error) => eprintln!("lichen-controller: applying retention: {error}"),
                }
            }
            _ = stopped.changed() => break,
        }
    }
    flush_contacts(&app).await;
}

async fn flush_contacts(app: &App) {
    let contacts = app.devices.unflushed_contacts();
    if contacts.is_empty() {
        return;
    }
    let written = contacts.clone();
    match app.store.record_contacts(contacts).await {
        Ok(()) => app.devices.mark_flushed(&written),
        Err(error) => eprintln!("lichen-controller: recording last contacts: {error}"),
    }
}
