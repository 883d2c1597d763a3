//! The node's objects as EVE's info reports them, and which of them changed since they were
//! last reported: apps (`ZInfoApp`, from zedmanager's `AppInstanceStatus`), content trees
//! (`ZInfoContentTree`, from the downloader's `DownloadStatus`), volumes (`ZInfoVolume`,
//! from volumemgr's `VolumeStatus`) and network instances (`ZInfoNetworkInstance`, from
//! zedrouter's `NetworkInstanceStatus`: `crate::netinst`; its counters are metrics, not info).
//!
//! [`Reporter`] keeps what it last reported of each object. Given the objects' statuses as
//! they are now (a subscription's view), it returns an info report for each object that is
//! new or whose report would differ, and, as EVE does for an object that is gone, a report
//! holding only the object's UUID for each one that vanished (except a content tree last
//! reported LOADED: the downloader's status goes once its volume is made, the content tree
//! stays). A status that changes and
//! changes back between two looks is not reported (each report is the state at the time).
//!
//! Times: zedmanager stamps an error in its own uptime, which means nothing to the controller;
//! an error's time is when zedagent first saw that error text, and an app's boot time when
//! zedagent first saw it running (both within a look of the real time).
//!
//! **What the publishers may send**: anything their topic's types hold (a pillar on the node's
//! bus is trusted to say what it does, not to be sensible): names and errors are passed on as
//! they are, clipped to [`MAX_TEXT`] bytes; progress past 100 % is reported as 100 %.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use lichen_api::info::z_info_msg::InfoContent;
use lichen_api::info::{
    ErrorInfo, Severity, ZInfoApp, ZInfoContentTree, ZInfoMsg, ZInfoNetworkInstance, ZInfoTypes,
    ZInfoVolume, ZSwState,
};
use topics::downloader::{DownloadState, DownloadStatus};
use topics::volumemgr::{VolumeState, VolumeStatus};
use topics::zedmanager::{AppInstanceStatus, SwState};
use topics::zedrouter::{NetworkInstanceState, NetworkInstanceStatus};

/// The longest name or error text reported, in bytes.
pub const MAX_TEXT: usize = 1024;

/// The kinds of objects reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// An app instance (`ZInfoApp`).
    App,
    /// A content tree (`ZInfoContentTree`).
    ContentTree,
    /// A volume (`ZInfoVolume`).
    Volume,
    /// A network instance (`ZInfoNetworkInstance`).
    NetworkInstance,
}

/// What is remembered of an object between looks.
#[derive(Default)]
struct Seen {
    /// The report last made.
    content: Option<InfoContent>,
    /// Its error text and when it was first seen.
    error: Option<(String, u64)>,
    /// When the app was first seen running (in this run).
    running_since: Option<u64>,
}

impl Seen {
    /// Notes `error` (empty: none) seen at `now`, keeping the first time of the same text.
    fn note_error(&mut self, error: &str, now: u64) -> Option<(String, u64)> {
        if error.is_empty() {
            self.error = None;
        } else if self.error.as_ref().map(|(text, _)| text.as_str()) != Some(clip(error)) {
            self.error = Some((clip(error).into(), now));
        }
        self.error.clone()
    }
}

/// What was last reported of each object.
#[derive(Default)]
pub struct Reporter {
    seen: BTreeMap<(Kind, String), Seen>,
}

impl Reporter {
    /// A reporter that has reported nothing yet.
    pub fn new() -> Reporter {
        Reporter::default()
    }

    /// The reports due for the apps whose statuses are now `current` (keyed by app UUID), at
    /// Unix time `now`.
    pub fn apps<'a>(
        &mut self,
        current: impl IntoIterator<Item = (&'a str, &'a AppInstanceStatus)>,
        now: u64,
    ) -> Vec<ZInfoMsg> {
        self.diff(Kind::App, current, now, |uuid, status, seen| {
            let error = seen.note_error(&status.error, now);
            if status.state == SwState::Running {
                seen.running_since.get_or_insert(now);
            } else {
                seen.running_since = None;
            }
            InfoContent::Ainfo(ZInfoApp {
                app_id: uuid.into(),
                app_version: clip(&status.version).into(),
                app_name: clip(&status.name).into(),
                boot_time: seen.running_since.map(crate::timestamp),
                app_err: error
                    .map(|e| error_info(e, Severity::Error))
                    .into_iter()
                    .collect(),
                state: status.state.eve_number(),
                volume_refs: vec![],
            })
        })
    }

    /// The reports due for the content trees whose downloads are now `current` (keyed by
    /// content tree UUID), at Unix time `now`.
    pub fn content_trees<'a>(
        &mut self,
        current: impl IntoIterator<Item = (&'a str, &'a DownloadStatus)>,
        now: u64,
    ) -> Vec<ZInfoMsg> {
        self.diff(Kind::ContentTree, current, now, |uuid, status, seen| {
            let error = seen.note_error(&status.error, now);
            // An error while retrying is a warning; one that stops the download is an error.
            let severity = match status.state {
                DownloadState::Error => Severity::Error,
                _ => Severity::Warning,
            };
            InfoContent::Cinfo(ZInfoContentTree {
                uuid: uuid.into(),
                display_name: clip(&status.name).into(),
                sha256: clip(&status.sha256).into(),
                state: download_state(status.state) as i32,
                progress_percentage: percent(status.bytes, status.total),
                err: error.map(|e| error_info(e, severity)),
                generation_count: 0,
            })
        })
    }

    /// The reports due for the volumes whose statuses are now `current` (keyed by volume
    /// UUID), at Unix time `now`.
    pub fn volumes<'a>(
        &mut self,
        current: impl IntoIterator<Item = (&'a str, &'a VolumeStatus)>,
        now: u64,
    ) -> Vec<ZInfoMsg> {
        self.diff(Kind::Volume, current, now, |uuid, status, seen| {
            let error = seen.note_error(&status.error, now);
            let severity = match status.state {
                VolumeState::Error => Severity::Error,
                _ => Severity::Warning,
            };
            InfoContent::Vinfo(ZInfoVolume {
                uuid: uuid.into(),
                display_name: clip(&status.name).into(),
                state: volume_state(status.state) as i32,
                progress_percentage: match status.state {
                    VolumeState::Created => 100,
                    _ => percent(status.bytes, status.total),
                },
                volume_err: error.map(|e| error_info(e, severity)),
                generation_count: status.generation,
            })
        })
    }

    /// The reports due for the network instances whose statuses are now `current` (keyed by
    /// instance UUID), at Unix time `now`: what they are, their state, bridge, apps and their
    /// addresses, and their error (zedrouter's counters change all the time: they are in the
    /// metrics, `crate::netinst::metrics`).
    pub fn network_instances<'a>(
        &mut self,
        current: impl IntoIterator<Item = (&'a str, &'a NetworkInstanceStatus)>,
        now: u64,
    ) -> Vec<ZInfoMsg> {
        self.diff(Kind::NetworkInstance, current, now, |uuid, status, seen| {
            let error = seen.note_error(&status.error, now);
            if status.state == NetworkInstanceState::Online {
                seen.running_since.get_or_insert(now);
            } else {
                seen.running_since = None;
            }
            InfoContent::Niinfo(crate::netinst::info(
                uuid,
                status,
                seen.running_since,
                error.map(|(_, at)| at),
            ))
        })
    }

    /// Reports for the objects of `kind` that are new or changed in `current`, and deletions
    /// for those that are gone; `build` makes an object's report (and updates what is
    /// remembered of it).
    fn diff<'a, S: 'a>(
        &mut self,
        kind: Kind,
        current: impl IntoIterator<Item = (&'a str, &'a S)>,
        now: u64,
        mut build: impl FnMut(&str, &S, &mut Seen) -> InfoContent,
    ) -> Vec<ZInfoMsg> {
        let mut reports = Vec::new();
        let mut present = Vec::new();
        for (uuid, status) in current {
            present.push(String::from(uuid));
            let seen = self.seen.entry((kind, uuid.into())).or_default();
            let content = build(uuid, status, seen);
            if seen.content.as_ref() != Some(&content) {
                reports.push(message(kind, content.clone(), now));
                seen.content = Some(content);
            }
        }
        let gone: Vec<String> = self
            .seen
            .keys()
            .filter(|(k, uuid)| *k == kind && !present.contains(uuid))
            .map(|(_, uuid)| uuid.clone())
            .collect();
        for uuid in gone {
            let last = self
                .seen
                .remove(&(kind, uuid.clone()))
                .and_then(|s| s.content);
            if !loaded(last.as_ref()) {
                reports.push(message(kind, deleted(kind, uuid), now));
            }
        }
        reports
    }
}

/// Whether `content` is a content tree's report saying it is loaded. The downloader's status
/// of a content tree goes once volumemgr took the volume it filled: the content tree is still
/// configured and loaded, so its last report stands (no deletion). The controller knows when
/// its configuration no longer holds it.
fn loaded(content: Option<&InfoContent>) -> bool {
    matches!(content, Some(InfoContent::Cinfo(tree)) if tree.state == ZSwState::Loaded as i32)
}

/// The report of an object that is gone: its UUID only (EVE's).
fn deleted(kind: Kind, uuid: String) -> InfoContent {
    match kind {
        Kind::App => InfoContent::Ainfo(ZInfoApp {
            app_id: uuid,
            ..Default::default()
        }),
        Kind::ContentTree => InfoContent::Cinfo(ZInfoContentTree {
            uuid,
            ..Default::default()
        }),
        Kind::Volume => InfoContent::Vinfo(ZInfoVolume {
            uuid,
            ..Default::default()
        }),
        Kind::NetworkInstance => InfoContent::Niinfo(ZInfoNetworkInstance {
            network_id: uuid,
            ..Default::default()
        }),
    }
}

/// The `ZInfoMsg` of `content`, made at `now` (the device UUID is set when it is sent).
fn message(kind: Kind, content: InfoContent, now: u64) -> ZInfoMsg {
    let ztype = match kind {
        Kind::App => ZInfoTypes::ZiApp,
        Kind::ContentTree => ZInfoTypes::ZiContentTree,
        Kind::Volume => ZInfoTypes::ZiVolume,
        Kind::NetworkInstance => ZInfoTypes::ZiNetworkInstance,
    };
    ZInfoMsg {
        ztype: ztype as i32,
        dev_id: String::new(),
        info_content: Some(content),
        at_time_stamp: Some(crate::timestamp(now)),
    }
}

/// The object a queued report is about, for the reports a newer one of the same object
/// makes useless: `app:UUID`, `contenttree:UUID`; `None` for the device's own reports (each
/// is kept: they tell the controller about every start) and for anything else.
pub fn superseded_key(info: &ZInfoMsg) -> Option<String> {
    let (kind, uuid) = match &info.info_content {
        Some(InfoContent::Ainfo(app)) => ("app", &app.app_id),
        Some(InfoContent::Cinfo(tree)) => ("contenttree", &tree.uuid),
        Some(InfoContent::Vinfo(volume)) => ("volume", &volume.uuid),
        Some(InfoContent::Niinfo(instance)) => ("netinst", &instance.network_id),
        _ => return None,
    };
    Some(alloc::format!("{kind}:{uuid}"))
}

fn download_state(state: DownloadState) -> ZSwState {
    match state {
        DownloadState::Pending => ZSwState::Initial,
        DownloadState::Downloading => ZSwState::DownloadStarted,
        DownloadState::Verifying => ZSwState::Verifying,
        // Verified and kept on its volume: EVE's content tree is LOADED then.
        DownloadState::Verified => ZSwState::Loaded,
        DownloadState::Error => ZSwState::Error,
    }
}

fn volume_state(state: VolumeState) -> ZSwState {
    match state {
        VolumeState::Pending => ZSwState::Initial,
        VolumeState::Filling => ZSwState::CreatingVolume,
        VolumeState::Created => ZSwState::CreatedVolume,
        // EVE has no state for a volume being released (its status just goes); no app may
        // use it any more: halting is the nearest.
        VolumeState::Deleting => ZSwState::Halting,
        VolumeState::Error => ZSwState::Error,
    }
}

/// `part` of `total` in whole per cent (0 while the total is not known, at most 100).
pub fn percent(part: u64, total: u64) -> u32 {
    if total == 0 {
        return 0;
    }
    (u128::from(part) * 100 / u128::from(total)).min(100) as u32
}

fn error_info((description, at): (String, u64), severity: Severity) -> ErrorInfo {
    ErrorInfo {
        description,
        timestamp: Some(crate::timestamp(at)),
        severity: severity as i32,
    }
}

/// `text` cut to at most [`MAX_TEXT`] bytes, on a character boundary.
pub(crate) fn clip(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
