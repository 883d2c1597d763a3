//! What a device says about itself: the newest info report of each object it reports on (the
//! device, its app instances, network instances, volumes and content trees) and its network
//! instances' counters from its newest metrics report, for the admin API's status route and the
//! fleet list.
//!
//! What a device controls here: every value shown. They are passed on as JSON data (the web UI
//! escapes them); a report that does not map to proto3 JSON is shown by field number.

use std::collections::HashSet;

use serde_json::Value;

use super::{report_json, ApiError, App};
use crate::admin_api::{DeviceBrief, DeviceStatus, InfoItem};
use crate::store::{TelemetryKind, TelemetryQuery};

/// Most info reports read to find the newest of each object.
const SCAN: usize = 2_000;

/// The newest info of each object of device `uuid`.
pub(super) async fn status(app: &App, uuid: &str) -> Result<DeviceStatus, ApiError> {
    let reports = app
        .store
        .telemetry(TelemetryQuery {
            newest_first: true,
            ..TelemetryQuery::device(uuid, &[TelemetryKind::Info], SCAN)
        })
        .await?;
    let mut seen = HashSet::new();
    let mut status = DeviceStatus::default();
    for report in reports {
        if !seen.insert(report.object.clone()) {
            continue;
        }
        let report = report_json::to_report(report);
        let Some((content, info)) = info_content(&report.message) else {
            continue;
        };
        let item = InfoItem {
            object: report.object,
            received_at_ms: report.received_at_ms,
            info,
        };
        match content {
            "dinfo" => status.device = Some(item),
            "ainfo" => status.apps.push(item),
            "niinfo" => status.network_instances.push(item),
            "vinfo" => status.volumes.push(item),
            "cinfo" => status.content_trees.push(item),
            _ => {}
        }
    }
    status.network_metrics = network_metrics(app, uuid).await?;
    for list in [
        &mut status.apps,
        &mut status.network_instances,
        &mut status.network_metrics,
        &mut status.volumes,
        &mut status.content_trees,
    ] {
        list.sort_by(|a, b| a.object.cmp(&b.object));
    }
    Ok(status)
}

/// Each network instance's counters (`nm`) in device `uuid`'s newest metrics report, by
/// `networkID` (none if it sent no metrics, or they hold no network instance).
async fn network_metrics(app: &App, uuid: &str) -> Result<Vec<InfoItem>, ApiError> {
    let newest = app
        .store
        .telemetry(TelemetryQuery {
            newest_first: true,
            ..TelemetryQuery::device(uuid, &[TelemetryKind::Metrics], 1)
        })
        .await?;
    let Some(report) = newest.into_iter().next() else {
        return Ok(Vec::new());
    };
    let report = report_json::to_report(report);
    Ok(instance_metrics(&report.message)
        .into_iter()
        .map(|info| InfoItem {
            object: info
                .get("networkID")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            received_at_ms: report.received_at_ms,
            info,
        })
        .collect())
}

/// The network instances' metrics (`nm`) of a `ZMetricMsg` in proto3 JSON.
fn instance_metrics(message: &Value) -> Vec<Value> {
    message
        .get("nm")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The gist of device `uuid`'s newest device info (empty fields if it sent none).
pub(super) async fn brief(app: &App, uuid: &str) -> Result<DeviceBrief, ApiError> {
    let newest = app
        .store
        .telemetry(TelemetryQuery {
            newest_first: true,
            object: Some(uuid.to_owned()),
            ..TelemetryQuery::device(uuid, &[TelemetryKind::Info], 1)
        })
        .await?;
    let Some(report) = newest.into_iter().next() else {
        return Ok(DeviceBrief::default());
    };
    let message = report_json::to_report(report).message;
    let Some(("dinfo", info)) = info_content(&message) else {
        return Ok(DeviceBrief::default());
    };
    let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or("").to_owned();
    let software = info.get("swList").and_then(Value::as_array);
    let active = software.and_then(|list| {
        list.iter()
            .find(|sw| sw.get("activated").and_then(Value::as_bool) == Some(true))
            .or_else(|| list.first())
    });
    Ok(DeviceBrief {
        state: match info.get("state") {
            Some(Value::String(name)) => name.clone(),
            Some(Value::Number(number)) => number.to_string(),
            _ => "ZDEVICE_STATE_UNSPECIFIED".to_owned(),
        },
        version: text(active.and_then(|sw| sw.get("shortVersion"))),
        host_name: text(info.get("HostName").or_else(|| info.get("hostName"))),
    })
}

/// The info content of a `ZInfoMsg` in proto3 JSON: which one (`dinfo`, `ainfo`, ...) and its
/// value.
fn info_content(message: &Value) -> Option<(&'static str, Value)> {
    const CONTENTS: [&str; 6] = ["dinfo", "ainfo", "niinfo", "vinfo", "cinfo", "binfo"];
    let object = message.as_object()?;
    CONTENTS.into_iter().find_map(|name| {
        object
            .get(name)
            .or_else(|| object.get(&name.replace("info", "Info")))
            .map(|value| (name, value.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_content_is_found_by_its_json_name() {
        let message = serde_json::json!({"devId": "d", "dinfo": {"state": "X"}});
        let (name, value) = info_content(&message).unwrap();
        assert_eq!((name, value["state"].as_str()), ("dinfo", Some("X")));
        assert!(info_content(&serde_json::json!({"wireFields": {}})).is_none());
    }
}
