//! What a simulated device reports: plausible info, metrics and logs for its configuration.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use lichen_api::config::EdgeDevConfig;
use lichen_api::flowlog::{AclAction, FlowMessage, FlowRecord, IpFlow, ScopeInfo};
use lichen_api::info::{
    z_info_msg::InfoContent, ZDeviceState, ZInfoApp, ZInfoDevSw, ZInfoDevice, ZInfoMsg,
    ZInfoNetworkInstance, ZInfoTypes, ZNetworkInstanceState, ZSwState, ZmetIpAssignmentEntry,
    ZmetVifInfo,
};
use lichen_api::logs::{LogBundle, LogEntry};
use lichen_api::metrics::{
    z_metric_msg::MetricContent, AppCpuMetric, DeviceMetric, MemoryMetric, NetworkMetric,
    ZMetricMsg, ZMetricNetworkInstance,
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
            sw_list: vec![ZInfoDevSw {
                activated: true,
                partition_label: "IMGA".into(),
                status: ZSwState::Running as i32,
                short_version: format!("lichen-devsim {}", env!("CARGO_PKG_VERSION")),
                ..Default::default()
            }],
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

/// One status message per configured network instance, each online, with the addresses of the
/// apps attached to it (an interface's `addr`, else the subnet's 10th address on; its
/// `macAddress`, else one made from the app's place in the configuration).
pub fn network_instance_infos(uuid: &str, config: &EdgeDevConfig) -> Vec<ZInfoMsg> {
    config
        .network_instances
        .iter()
        .enumerate()
        .map(|(index, instance)| {
            let id = instance.uuidandversion.clone().unwrap_or_default();
            let ip = instance.ip.clone().unwrap_or_default();
            let (vifs, ip_assignments) = attached(config, &id.uuid, &ip.subnet);
            ZInfoMsg {
                ztype: ZInfoTypes::ZiNetworkInstance as i32,
                dev_id: uuid.to_owned(),
                at_time_stamp: Some(now()),
                info_content: Some(InfoContent::Niinfo(ZInfoNetworkInstance {
                    network_id: id.uuid,
                    network_version: id.version,
                    inst_type: instance.inst_type as u32,
                    displayname: instance.displayname.clone(),
                    activated: instance.activate,
                    bridge_name: format!("bn{}", index + 1),
                    bridge_num: index as u32 + 1,
                    bridge_ip_addr: ip.gateway,
                    ports: vec!["eth0".into()],
                    ip_assignments,
                    vifs,
                    state: ZNetworkInstanceState::ZnetinstStateOnline as i32,
                    mtu: 1500,
                    ..Default::default()
                })),
            }
        })
        .collect()
}

/// The interfaces of `config`'s apps on network instance `network` and their addresses.
fn attached(
    config: &EdgeDevConfig,
    network: &str,
    subnet: &str,
) -> (Vec<ZmetVifInfo>, Vec<ZmetIpAssignmentEntry>) {
    let base = subnet
        .split('/')
        .next()
        .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .map_or(0, u32::from);
    let mut vifs = Vec::new();
    let mut assignments = Vec::new();
    let interfaces = config.apps.iter().enumerate().flat_map(|(n, app)| {
        app.interfaces
            .iter()
            .filter(|i| i.network_id == network)
            .map(move |i| (n, app, i))
    });
    for (n, app, interface) in interfaces {
        let mac = if interface.mac_address.is_empty() {
            format!("02:16:3e:00:00:{:02x}", n + 1)
        } else {
            interface.mac_address.clone()
        };
        let address = if interface.addr.is_empty() {
            std::net::Ipv4Addr::from(base.wrapping_add(10 + n as u32)).to_string()
        } else {
            interface.addr.clone()
        };
        vifs.push(ZmetVifInfo {
            vif_name: format!("nbu{}x1", n + 1),
            mac_address: mac.clone(),
            app_id: app
                .uuidandversion
                .as_ref()
                .map(|id| id.uuid.clone())
                .unwrap_or_default(),
        });
        assignments.push(ZmetIpAssignmentEntry {
            mac_address: mac,
            ip_address: vec![address],
        });
    }
    (vifs, assignments)
}

/// Each configured network instance's counters after `uptime_s` seconds: frames both ways, and
/// now and then a connection refused by an ACL or a packet over a rate limit.
pub fn network_instance_metrics(
    config: &EdgeDevConfig,
    uptime_s: u64,
) -> Vec<ZMetricNetworkInstance> {
    config
        .network_instances
        .iter()
        .enumerate()
        .map(|(index, instance)| {
            let id = instance.uuidandversion.clone().unwrap_or_default();
            let acl = uptime_s / 30 + 1;
            let limit = uptime_s / 45;
            ZMetricNetworkInstance {
                network_id: id.uuid,
                network_version: id.version,
                inst_type: instance.inst_type as u32,
                displayname: instance.displayname.clone(),
                activated: instance.activate,
                network: vec![NetworkMetric {
                    i_name: instance.displayname.clone(),
                    local_name: format!("bn{}", index + 1),
                    tx_pkts: uptime_s * 40,
                    rx_pkts: uptime_s * 35,
                    rx_drops: acl + limit,
                    rx_acl_drops: acl,
                    rx_acl_rate_limit_drops: limit,
                    ..Default::default()
                }],
            }
        })
        .collect()
}

/// Cumulative device metrics after `uptime_s` seconds (a load that varies over minutes).
pub fn metrics(uuid: &str, uptime_s: u64) -> ZMetricMsg {
    // A repeatable wave (15 % to 50 % busy over two minutes), memory that follows, traffic that
    // grows.
    let wave = |period: u64| (uptime_s % period) as f64 / period as f64;
    let busy = 0.15 + 0.7 * (0.5 - (wave(120) - 0.5).abs());
    ZMetricMsg {
        dev_id: uuid.to_owned(),
        at_time_stamp: Some(now()),
        metric_content: Some(MetricContent::Dm(DeviceMetric {
            memory: Some(MemoryMetric {
                used_mem: 512 + (busy * 1024.0) as u32,
                avail_mem: 3584 - (busy * 1024.0) as u32,
                ..Default::default()
            }),
            network: vec![NetworkMetric {
                i_name: "eth0".into(),
                tx_bytes: uptime_s * 1_500 + (uptime_s * uptime_s) % 7_919,
                rx_bytes: uptime_s * 9_000 + (uptime_s * 31) % 65_521,
                ..Default::default()
            }],
            cpu_metric: Some(AppCpuMetric {
                // CPU used grows at 5 % to 55 % of what is available (2 CPUs).
                total: uptime_s / 10 + (uptime_s as f64 * busy) as u64,
                system_total: uptime_s * 2,
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A bundle of `count` log lines starting at message id `first_id`: `text` followed by the id,
/// one in seven a warning and one in eleven an error.
pub fn logs(uuid: &str, first_id: u64, count: u64, text: &str) -> LogBundle {
    let log = (first_id..first_id + count)
        .map(|msgid| LogEntry {
            severity: match msgid {
                id if id % 11 == 10 => "error",
                id if id % 7 == 6 => "warning",
                _ => "info",
            }
            .into(),
            source: "devsim".into(),
            content: format!("{text} {msgid}"),
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

/// A flow log of an app instance of the device: a few accepted and dropped flows.
pub fn flows(uuid: &str, app: &str, round: u64) -> FlowMessage {
    let record = |dest: &str, port: i32, action: AclAction, bytes: i64| FlowRecord {
        flow: Some(IpFlow {
            src: "10.1.0.10".into(),
            src_port: 40_000 + (round % 20_000) as i32,
            dest: dest.into(),
            dest_port: port,
            protocol: 6,
        }),
        inbound: false,
        acl_id: 1,
        start_time: Some(now()),
        end_time: Some(now()),
        tx_bytes: bytes,
        tx_pkts: bytes / 1_000 + 1,
        rx_bytes: bytes * 3,
        rx_pkts: bytes * 3 / 1_000 + 1,
        action: action as i32,
        ..Default::default()
    };
    FlowMessage {
        dev_id: uuid.to_owned(),
        scope: Some(ScopeInfo {
            uuid: app.to_owned(),
            intf: "eth0".into(),
            local_intf: "nbu1x1".into(),
            ..Default::default()
        }),
        flows: vec![
            record(
                "93.184.216.34",
                443,
                AclAction::ActionAccept,
                4_200 + round as i64,
            ),
            record("10.1.0.1", 53, AclAction::ActionAccept, 120),
            record("198.51.100.7", 22, AclAction::ActionDrop, 60),
        ],
        ..Default::default()
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
