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
//! App domains have rows too, named `app-<uuid>` (the launcher's domain names): they are not
//! services but apps, reported as EVE's `AppMetric`s ([`app_metrics`]): CPU time and memory,
//! with the app's name and version from the configuration in force.
//!
//! **What the source may hold**: the rows come from dom0 (the launcher), which the reader
//! trusts; a value that does not parse is refused whole by `launcher_api::services::parse`,
//! before it gets here.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use launcher_api::services::Service;
use lichen_api::metrics::{
    metric_item::MetricItemValue, AppCpuMetric, AppMetric, MemoryMetric, MetricItem, MetricItemType,
};

/// How the launcher names an app's row: `app-` and the app's UUID.
pub const APP_ROW_PREFIX: &str = "app-";

/// The UUID of the app whose row this is, if it is an app's.
fn app_uuid(row: &Service) -> Option<&str> {
    row.name.strip_prefix(APP_ROW_PREFIX)
}

/// The metric items of `services` (app rows left out: see [`app_metrics`]).
pub fn metric_items(services: &[Service]) -> Vec<MetricItem> {
    let mut items = Vec::new();
    for s in services.iter().filter(|s| app_uuid(s).is_none()) {
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

/// The apps' metrics from their rows: CPU time as Xen counts it for the app's domain since
/// it was made, and its memory (what the domain holds against what the app was given). An
/// app's name and version come from `apps` (UUID to name and version, the configuration in
/// force); an app the configuration no longer names is reported by UUID alone.
pub fn app_metrics(
    services: &[Service],
    apps: &BTreeMap<String, (String, String)>,
) -> Vec<AppMetric> {
    services
        .iter()
        .filter_map(|row| {
            let uuid = app_uuid(row)?;
            let (name, version) = apps.get(uuid).cloned().unwrap_or_default();
            let given_kib = u64::from(row.memory_mib) * 1024;
            let free_kib = given_kib.saturating_sub(row.used_kib);
            let percent = |part: u64| {
                if given_kib == 0 {
                    0.0
                } else {
                    part as f64 * 100.0 / given_kib as f64
                }
            };
            Some(AppMetric {
                app_id: String::from(uuid),
                app_name: name,
                app_version: version,
                cpu: Some(AppCpuMetric {
                    up_time: None,
                    total: row.cpu_ms / 1000,
                    system_total: 0,
                    total_ns: row.cpu_ms.saturating_mul(1_000_000),
                }),
                memory: Some(MemoryMetric {
                    used_mem: row.used_kib.div_ceil(1024) as u32,
                    avail_mem: (free_kib / 1024) as u32,
                    used_percentage: percent(row.used_kib.min(given_kib)),
                    avail_percentage: percent(free_kib),
                }),
                network: Vec::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_rows_are_app_metrics_not_services() {
        let uuid = "6f1c1b36-0d4e-4a43-9a35-1b8f44c5c1aa";
        let rows = launcher_api::services::parse(&format!(
            "vault running 1 24 3 2500 24576\napp-{uuid} running 0 32 12 1500 16384\napp-gone halted 0 16 - 0 0\n"
        ))
        .unwrap();
        let items = metric_items(&rows);
        assert_eq!(items.len(), 5, "the vault's five items only");
        let mut apps = BTreeMap::new();
        apps.insert(
            String::from(uuid),
            (String::from("echo"), String::from("3")),
        );
        let metrics = app_metrics(&rows, &apps);
        assert_eq!(metrics.len(), 2);
        let echo = &metrics[0];
        assert_eq!(
            (
                echo.app_id.as_str(),
                echo.app_name.as_str(),
                echo.app_version.as_str()
            ),
            (uuid, "echo", "3")
        );
        let cpu = echo.cpu.as_ref().unwrap();
        assert_eq!((cpu.total, cpu.total_ns), (1, 1_500_000_000));
        let memory = echo.memory.as_ref().unwrap();
        assert_eq!((memory.used_mem, memory.avail_mem), (16, 16));
        assert_eq!(memory.used_percentage, 50.0);
        let gone = &metrics[1];
        assert_eq!((gone.app_id.as_str(), gone.app_name.as_str()), ("gone", ""));
        assert_eq!(gone.memory.as_ref().unwrap().used_mem, 0);
    }

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
