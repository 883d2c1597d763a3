//! What a simulated device reports: plausible info, metrics and logs for its configuration.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use lichen_api::config::EdgeDevConfig;
use lichen_api::info::{
    z_info_msg::InfoContent, ZDeviceState, ZInfoApp, ZInfoDevice, ZInfoMsg, ZInfoTypes, ZSwState,
};
use lichen_api::logs::{LogBundle, LogEntry};
use lichen_api::metrics::{
    z_metric_msg::MetricContent, AppCpuMetric, DeviceMetric, MemoryMetric, ZMetricMsg,
};
use lichen_api::Timestamp;

fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

/// The device's own status.
pub fn device_info(uuid: &str, serial: &str) -> ZInfoMsg {
    ZInfoMsg {
        ztype: ZInfoTypes::ZiDevice as i32,
        dev_id: uuid.to_owned(),
        at_time_stamp: Some(now()),
        info_content: Some(InfoContent::Dinfo(ZInfoDevice {
            machine_arch: "x86_64".into(),
            cpu_arch: "x86_64".into(),
            platform: "lichen-devsim".into(),
            ncpu: 2,
            memory: 4096,
            storage: 32768,
            host_name: serial.to_owned(),
            state: ZDeviceState::ZdeviceStateOnline as i32,
            ..Default::default()
        })),
    }
}

/// One status message per configured application, each running.
pub fn app_infos(uuid: &str, config: &EdgeDevConfig) -> Vec<ZInfoMsg> {
    config
        .apps
        .iter()
        .map(|app| {
            let id = app.uuidandversion.clone().unwrap_or_default();
            ZInfoMsg {
                ztype: ZInfoTypes::ZiApp as i32,
                dev_id: uuid.to_owned(),
                at_time_stamp: Some(now()),
                info_content: Some(InfoContent::Ainfo(ZInfoApp {
                    app_id: id.uuid,
                    app_version: id.version,
                    app_name: app.displayname.clone(),
                    state: if app.activate {
                        ZSwState::Running
                    } else {
                        ZSwState::Halted
                    } as i32,
                    volume_refs: app
                        .volume_ref_list
                        .iter()
                        .map(|volume| volume.uuid.clone())
                        .collect(),
                    ..Default::default()
                })),
            }
        })
        .collect()
}

/// Cumulative device metrics after `uptime_s` seconds.
pub fn metrics(uuid: &str, uptime_s: u64) -> ZMetricMsg {
    ZMetricMsg {
        dev_id: uuid.to_owned(),
        at_time_stamp: Some(now()),
        metric_content: Some(MetricContent::Dm(DeviceMetric {
            memory: Some(MemoryMetric {
                used_mem: 512,
                avail_mem: 3584,
                ..Default::default()
            }),
            cpu_metric: Some(AppCpuMetric {
                total: uptime_s / 10,
                system_total: uptime_s * 2,
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A bundle of `count` log lines starting at message id `first_id`.
pub fn logs(uuid: &str, first_id: u64, count: u64) -> LogBundle {
    let log = (first_id..first_id + count)
        .map(|msgid| LogEntry {
            severity: "info".into(),
            source: "devsim".into(),
            content: format!("simulated log line {msgid}"),
            msgid,
            timestamp: Some(now()),
            ..Default::default()
        })
        .collect();
    LogBundle {
        dev_id: uuid.to_owned(),
        image: "IMGA".into(),
        log,
        timestamp: Some(now()),
        eve_version: "lichen-devsim".into(),
    }
}

/// A newlogs body: gzip of JSON log lines.
pub fn newlogs(lines: &[&str]) -> Vec<u8> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for line in lines {
        let entry = serde_json::json!({ "severity": "info", "source": "devsim", "content": line });
        writeln!(gzip, "{entry}").expect("writing to memory");
    }
    gzip.finish().expect("writing to memory")
}
