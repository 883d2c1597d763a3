//! What zedagent tells the controller about the device: the device info (`ZInfoMsg` dinfo,
//! sent when it changes, queued until delivered) and the metrics (`ZMetricMsg`, sent every
//! `timer.metric.interval`, lossy).
//!
//! What a guest can measure of itself: its memory (the heap of zedagent's domain), its uptime
//! and the counters of its network card (the uplink). The node's services (every pillar's
//! domain: state, restarts, CPU time, memory) are the launcher's, read from xenstore
//! (`crate::services`).

use alloc::format;
use alloc::string::String;
use alloc::vec;

use device_api::timestamp;

use lichen_api::info::{
    ErrorInfo, Severity, ZDeviceState, ZInfoDevSw, ZInfoDevice, ZInfoMsg, ZInfoTypes, ZSwState,
};
use lichen_api::metrics::{
    z_metric_msg::MetricContent, AppCpuMetric, DeviceMetric, MemoryMetric, NetworkMetric,
    ZMetricMsg,
};

/// The device info: what the device is and runs. `boot_time` is zedagent's start,
/// `host_name` the serial, `error` the last configuration refused (with when), if any.
pub fn device_info(
    boot_time: Option<u64>,
    host_name: &str,
    error: Option<&(String, u64)>,
) -> ZInfoDevice {
    let platform = match kernel::platform::kind() {
        kernel::platform::Kind::Xen => "xen-pvh",
        _ => "qemu-microvm",
    };
    ZInfoDevice {
        machine_arch: "x86_64".into(),
        cpu_arch: "x86_64".into(),
        platform: platform.into(),
        ncpu: 1,
        memory: kernel::mem::heap_size() >> 20,
        boot_time: boot_time.map(timestamp),
        sw_list: vec![ZInfoDevSw {
            activated: true,
            short_version: kernel::service().version.into(),
            long_version: format!("lichen zedagent {}", kernel::service().version),
            status: ZSwState::Running as i32,
            sw_err: error.map(|(description, at)| ErrorInfo {
                description: description.clone(),
                timestamp: Some(timestamp(*at)),
                severity: Severity::Error as i32,
            }),
            ..Default::default()
        }],
        host_name: host_name.into(),
        state: ZDeviceState::ZdeviceStateOnline as i32,
        ..Default::default()
    }
}

/// The `ZInfoMsg` around `device`, made at `now`; the device UUID is set when it is sent.
pub fn info_message(device: ZInfoDevice, now: Option<u64>) -> ZInfoMsg {
    ZInfoMsg {
        ztype: ZInfoTypes::ZiDevice as i32,
        dev_id: String::new(),
        info_content: Some(lichen_api::info::z_info_msg::InfoContent::Dinfo(device)),
        at_time_stamp: now.map(timestamp),
    }
}

/// The metrics of device `uuid` now: memory, uptime (since `boot_time`), the uplink's
/// counters, and the node's `services` (the launcher's rows: each one's state, restarts, CPU
/// time and memory as metric items; the CPU time of them all as the device's; the app
/// domains' rows as app metrics, named from `apps`: UUID to name and version).
pub fn metrics(
    uuid: &str,
    boot_time: Option<u64>,
    now: Option<u64>,
    services: &[launcher_api::services::Service],
    apps: &alloc::collections::BTreeMap<String, (String, String)>,
) -> ZMetricMsg {
    let cpu_ns: u64 = services
        .iter()
        .filter(|s| !s.name.starts_with(device_api::services::APP_ROW_PREFIX))
        .map(|s| s.cpu_ms.saturating_mul(1_000_000))
        .fold(0, u64::saturating_add);
    let (size, used) = (kernel::mem::heap_size(), kernel::mem::heap_used());
    let free = size.saturating_sub(used);
    let percent = |part: u64| {
        if size == 0 {
            0.0
        } else {
            part as f64 * 100.0 / size as f64
        }
    };
    let network = kernel::net::status()
        .map(|s| {
            let d = s.device;
            vec![NetworkMetric {
                i_name: "uplink".into(),
                tx_bytes: d.tx_bytes,
                rx_bytes: d.rx_bytes,
                tx_drops: d.tx_ring_full,
                rx_drops: d.rx_malformed,
                tx_pkts: d.tx_frames,
                rx_pkts: d.rx_frames,
                tx_errors: 0,
                rx_errors: d.device_errors,
                ..Default::default()
            }]
        })
        .unwrap_or_default();
    ZMetricMsg {
        dev_id: uuid.into(),
        at_time_stamp: now.map(timestamp),
        metric_content: Some(MetricContent::Dm(DeviceMetric {
            memory: Some(MemoryMetric {
                // Used rounded up: a heap in use is never reported as 0 MiB.
                used_mem: used.div_ceil(1 << 20) as u32,
                avail_mem: (free >> 20) as u32,
                used_percentage: percent(used),
                avail_percentage: percent(free),
            }),
            network,
            disk: vec![],
            cpu_metric: Some(AppCpuMetric {
                up_time: boot_time.map(timestamp),
                // The control plane's: every service domain's, as Xen counts it (none
                // outside Xen: a guest does not measure its own).
                total: cpu_ns / 1_000_000_000,
                system_total: 0,
                total_ns: cpu_ns,
            }),
            metric_items: device_api::services::metric_items(services),
        })),
        am: device_api::services::app_metrics(services, apps),
        ..Default::default()
    }
}
