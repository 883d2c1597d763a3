//! The node's objects that zedagent reports on (apps, content trees, volumes, network
//! instances), followed on the bus.
//!
//! They are *watched* (`watches:` in the service declaration): the subscriptions are wired only
//! where some pillar of the node publishes the topic, so zedagent runs as well on a node
//! without zedmanager, the downloader or volumemgr (their views then stay empty). Which reports are due is
//! `device_api::objects`'s.

use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::Poll;

use alloc::vec::Vec;
use bus_io::{Node, Subscription};
use device_api::objects::Reporter;
use lichen_api::info::ZInfoMsg;
use topics::downloader::{DownloadStatus, DOWNLOAD_STATUS};
use topics::volumemgr::{VolumeStatus, VOLUME_STATUS};
use topics::zedmanager::{AppInstanceStatus, APP_INSTANCE_STATUS};
use topics::zedrouter::{AppFlows, NetworkInstanceStatus, APP_FLOWS, NETWORK_INSTANCE_STATUS};

/// The watched topics, for `kernel::service!` (with the launcher's services, read from
/// xenstore: `crate::services`).
pub const WATCHES: &[topics::TopicDecl] = &[
    APP_INSTANCE_STATUS.decl(),
    DOWNLOAD_STATUS.decl(),
    VOLUME_STATUS.decl(),
    APP_FLOWS.decl(),
    NETWORK_INSTANCE_STATUS.decl(),
    crate::services::WATCH,
];

/// The subscriptions to the objects' statuses and what was last reported of them.
pub struct Watched {
    apps: Subscription<AppInstanceStatus>,
    downloads: Subscription<DownloadStatus>,
    volumes: Subscription<VolumeStatus>,
    flows: Subscription<AppFlows>,
    instances: Subscription<NetworkInstanceStatus>,
    reporter: Reporter,
    /// Which flow logs were posted (crate::flowlog).
    pub flow_logs: device_api::flowlog::FlowLogs,
}

impl Watched {
    /// Follows the objects' statuses on `node`.
    pub fn new(node: &Node) -> Result<Watched, bus_io::NodeError> {
        Ok(Watched {
            apps: node.subscribe(&APP_INSTANCE_STATUS)?,
            downloads: node.subscribe(&DOWNLOAD_STATUS)?,
            volumes: node.subscribe(&VOLUME_STATUS)?,
            flows: node.subscribe(&APP_FLOWS)?,
            instances: node.subscribe(&NETWORK_INSTANCE_STATUS)?,
            reporter: Reporter::new(),
            flow_logs: device_api::flowlog::FlowLogs::new(),
        })
    }

    /// Completes when a status changed (or a publisher came or went) since the last call.
    pub async fn changed(&self) {
        let mut apps = pin!(self.apps.next());
        let mut downloads = pin!(self.downloads.next());
        let mut volumes = pin!(self.volumes.next());
        let mut flows = pin!(self.flows.next());
        let mut instances = pin!(self.instances.next());
        poll_fn(|cx| {
            let a = apps.as_mut().poll(cx).is_ready();
            let d = downloads.as_mut().poll(cx).is_ready();
            let v = volumes.as_mut().poll(cx).is_ready();
            let f = flows.as_mut().poll(cx).is_ready();
            let n = instances.as_mut().poll(cx).is_ready();
            if a || d || v || f || n {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        // The views hold the changes: the queued updates are only the signal.
        while self.apps.try_next().is_some() {}
        while self.downloads.try_next().is_some() {}
        while self.volumes.try_next().is_some() {}
        while self.flows.try_next().is_some() {}
        while self.instances.try_next().is_some() {}
    }

    /// The network instances' metrics now (zedrouter's statuses; `device_api::netinst`).
    pub fn network_metrics(&self) -> Vec<lichen_api::metrics::ZMetricNetworkInstance> {
        self.instances
            .with(|view| device_api::netinst::metrics(view.iter()))
    }

    /// The flow logs due (zedrouter's `zedrouter/AppFlows`), as `(app, seq, FlowMessage)`.
    pub fn flows_due(
        &mut self,
        device: &str,
    ) -> Vec<(alloc::string::String, u64, lichen_api::flowlog::FlowMessage)> {
        let logs = &mut self.flow_logs;
        self.flows.with(|view| logs.due(device, view.iter()))
    }

    /// The reports due now (Unix time `now`): objects new, changed or gone.
    pub fn reports(&mut self, now: u64) -> Vec<ZInfoMsg> {
        let mut reports = self.apps.with(|view| self.reporter.apps(view.iter(), now));
        reports.extend(
            self.downloads
                .with(|view| self.reporter.content_trees(view.iter(), now)),
        );
        reports.extend(
            self.volumes
                .with(|view| self.reporter.volumes(view.iter(), now)),
        );
        reports.extend(
            self.instances
                .with(|view| self.reporter.network_instances(view.iter(), now)),
        );
        reports
    }

    /// Forgets what was reported (the controller now knows the device under another UUID and
    /// has none of its reports): every object is reported again.
    pub fn forget(&mut self) {
        self.reporter = Reporter::new();
    }
}
