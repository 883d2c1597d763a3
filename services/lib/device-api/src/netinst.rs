//! Network-instance metrics from zedrouter's `zedrouter/NetworkInstanceStatus`: one EVE
//! `ZMetricNetworkInstance` per instance (its bridge's frames and drops) and, since EVE's
//! `networkMetric` has no field for them, the ACL and rate-limit drops as `MetricItem`s keyed
//! `network_instance.<uuid>.acl_drops` and `.limit_drops` (counters).
//!
//! From the bridge's side: `tx` is what zedrouter sent to the apps, `rx` what it took from
//! them to the uplink; `rx_drops` every frame it dropped (either side), `tx_drops` the
//! rate-limit drops.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use lichen_api::metrics::{
    metric_item::MetricItemValue, MetricItem, MetricItemType, NetworkMetric, ZMetricNetworkInstance,
};
use topics::zedrouter::{NetworkInstanceState, NetworkInstanceStatus};

/// EVE's `ZNetworkInstType` of a local instance.
const LOCAL: u32 = 2;

/// The metrics of `statuses` (instance UUID, status).
pub fn metrics<'a>(
    statuses: impl Iterator<Item = (&'a str, &'a NetworkInstanceStatus)>,
) -> (Vec<ZMetricNetworkInstance>, Vec<MetricItem>) {
    let mut instances = Vec::new();
    let mut items = Vec::new();
    for (uuid, s) in statuses {
        instances.push(ZMetricNetworkInstance {
            network_id: uuid.into(),
            network_version: String::new(),
            inst_type: LOCAL,
            displayname: s.name.clone(),
            activated: s.state == NetworkInstanceState::Online,
            network: alloc::vec![NetworkMetric {
                i_name: s.bridge.clone(),
                tx_pkts: s.to_app,
                rx_pkts: s.to_uplink,
                rx_drops: s.dropped,
                tx_drops: s.limit_drops,
                ..Default::default()
            }],
        });
        for (what, value) in [("acl_drops", s.acl_drops), ("limit_drops", s.limit_drops)] {
            items.push(MetricItem {
                key: format!("network_instance.{uuid}.{what}"),
                r#type: MetricItemType::MetricItemCounter as i32,
                metric_item_value: Some(MetricItemValue::Uint64Value(value)),
            });
        }
    }
    (instances, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_become_counters_and_each_instance_a_network_metric() {
        let s = NetworkInstanceStatus {
            name: "default".into(),
            state: NetworkInstanceState::Online,
            bridge: "lichenni1".into(),
            to_uplink: 10,
            to_app: 9,
            dropped: 7,
            acl_drops: 4,
            limit_drops: 2,
            ..Default::default()
        };
        let (nm, items) = metrics([("ni-1", &s)].into_iter());
        assert_eq!(nm.len(), 1);
        assert!(nm[0].activated && nm[0].network_id == "ni-1");
        let n = &nm[0].network[0];
        assert_eq!(
            (n.tx_pkts, n.rx_pkts, n.rx_drops, n.tx_drops),
            (9, 10, 7, 2)
        );
        let keys: Vec<(&str, Option<&MetricItemValue>)> = items
            .iter()
            .map(|i| (i.key.as_str(), i.metric_item_value.as_ref()))
            .collect();
        assert_eq!(
            keys,
            alloc::vec![
                (
                    "network_instance.ni-1.acl_drops",
                    Some(&MetricItemValue::Uint64Value(4))
                ),
                (
                    "network_instance.ni-1.limit_drops",
                    Some(&MetricItemValue::Uint64Value(2))
                ),
            ]
        );
    }
}
