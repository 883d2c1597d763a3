//! The node's services (the launcher's rows, `launcher_api::services`) as metrics: for each,
//! EVE's open-ended `MetricItem`s keyed `service.<name>.<what>`:
//!
//! | what | type | value |
//! |---|---|---|
//! | `state` | other | `running`, `backoff`, `failed`, ... (a string) |
//! | `restarts` | counter | restarts since the node booted |
//! | `cpu_ms` | counter | CPU time its current domain used, ms |
//! | `memory_kib` | gauge | memory its current domain holds, KiB |
//! | `memory_mib` | gauge | memory the manifest gives it, MiB |
//!
//! **What the source may hold**: the rows come from dom0 (the launcher), which the reader
//! trusts; a value that does not parse is refused whole by `launcher_api::services::parse`,
//! before it gets here.

use alloc::format;
use alloc::vec::Vec;

use launcher_api::services::Service;
use lichen_api::metrics::{metric_item::MetricItemValue, MetricItem, MetricItemType};

/// The metric items of `services`.
pub fn metric_items(services: &[Service]) -> Vec<MetricItem> {
    let mut items = Vec::new();
    for s in services {
        let item = |what: &str, kind: MetricItemType, value: MetricItemValue| MetricItem {
            key: format!("service.{}.{what}", s.name),
            r#type: kind as i32,
            metric_item_value: Some(value),
        };
        items.push(item(
            "state",
            MetricItemType::MetricItemOther,
            MetricItemValue::StringValue(s.state.clone()),
        ));
        items.push(item(
            "restarts",
            MetricItemType::MetricItemCounter,
            MetricItemValue::Uint32Value(s.restarts),
        ));
        items.push(item(
            "cpu_ms",
            MetricItemType::MetricItemCounter,
            MetricItemValue::Uint64Value(s.cpu_ms),
        ));
        items.push(item(
            "memory_kib",
            MetricItemType::MetricItemGauge,
            MetricItemValue::Uint64Value(s.used_kib),
        ));
        items.push(item(
            "memory_mib",
            MetricItemType::MetricItemGauge,
            MetricItemValue::Uint32Value(s.memory_mib),
        ));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_has_its_state_restarts_cpu_and_memory() {
        let rows = launcher_api::services::parse(
            "vault running 1 24 3 2500 24576\nzedagent backoff 4 32 - 0 0\n",
        )
        .unwrap();
        let items = metric_items(&rows);
        let find = |key: &str| {
            items
                .iter()
                .find(|i| i.key == key)
                .unwrap_or_else(|| panic!("no {key}"))
        };
        assert_eq!(items.len(), 10);
        assert_eq!(
            find("service.vault.state").metric_item_value,
            Some(MetricItemValue::StringValue("running".into()))
        );
        let cpu = find("service.vault.cpu_ms");
        assert_eq!(cpu.r#type, MetricItemType::MetricItemCounter as i32);
        assert_eq!(
            cpu.metric_item_value,
            Some(MetricItemValue::Uint64Value(2500))
        );
        assert_eq!(
            find("service.vault.memory_kib").metric_item_value,
            Some(MetricItemValue::Uint64Value(24576))
        );
        assert_eq!(
            find("service.zedagent.restarts").metric_item_value,
            Some(MetricItemValue::Uint32Value(4))
        );
        assert_eq!(
            find("service.zedagent.state").metric_item_value,
            Some(MetricItemValue::StringValue("backoff".into()))
        );
    }
}
