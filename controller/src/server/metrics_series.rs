//! A device's metrics as time series, for charts: one point per `ZMetricMsg` with its device
//! CPU, memory and network figures, and the rates between consecutive points.
//!
//! What a device controls here: every value in its reports. Counters may go backwards (a reboot
//! resets them) or stand still; a rate is then left out rather than shown negative or infinite.
//! Reports that no longer decode are skipped.

use crate::admin_api::MetricPoint;
use crate::store::Telemetry;
use lichen_api::metrics::z_metric_msg::MetricContent;
use lichen_api::metrics::ZMetricMsg;
use prost::Message;

/// The points of `reports` (metrics reports, oldest first).
pub fn series(reports: &[Telemetry]) -> Vec<MetricPoint> {
    let mut points: Vec<MetricPoint> = Vec::new();
    for report in reports {
        let Ok(message) = ZMetricMsg::decode(&report.payload[..]) else {
            continue;
        };
        let at_ms = message
            .at_time_stamp
            .and_then(|at| {
                let ms = at.seconds.checked_mul(1000)? + i64::from(at.nanos) / 1_000_000;
                u64::try_from(ms).ok().filter(|ms| *ms > 0)
            })
            .unwrap_or(report.received_at_ms);
        let mut point = MetricPoint {
            at_ms,
            ..MetricPoint::default()
        };
        if let Some(MetricContent::Dm(device)) = message.metric_content {
            if let Some(cpu) = device.cpu_metric {
                point.cpu_total = cpu.total;
                point.cpu_system_total = cpu.system_total;
            }
            if let Some(memory) = device.memory {
                point.memory_used_mib = u64::from(memory.used_mem);
                point.memory_available_mib = u64::from(memory.avail_mem);
            }
            for interface in &device.network {
                point.network_tx_bytes = point.network_tx_bytes.saturating_add(interface.tx_bytes);
                point.network_rx_bytes = point.network_rx_bytes.saturating_add(interface.rx_bytes);
            }
        }
        if let Some(previous) = points.last() {
            let rate = |now: u64, before: u64, over: f64| {
                (now >= before && over > 0.0).then(|| (now - before) as f64 / over)
            };
            let seconds = at_ms.saturating_sub(previous.at_ms) as f64 / 1000.0;
            let system = point
                .cpu_system_total
                .checked_sub(previous.cpu_system_total);
            point.cpu_share = system
                .filter(|total| *total > 0)
                .and_then(|total| rate(point.cpu_total, previous.cpu_total, total as f64))
                .map(|share| share.min(1.0));
            point.network_tx_per_s =
                rate(point.network_tx_bytes, previous.network_tx_bytes, seconds);
            point.network_rx_per_s =
                rate(point.network_rx_bytes, previous.network_rx_bytes, seconds);
        }
        points.push(point);
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use lichen_api::metrics::{AppCpuMetric, DeviceMetric, MemoryMetric, NetworkMetric};

    fn report(at_s: i64, cpu: u64, system: u64, tx: u64) -> Telemetry {
        let message = ZMetricMsg {
            at_time_stamp: Some(lichen_api::Timestamp {
                seconds: at_s,
                nanos: 0,
            }),
            metric_content: Some(MetricContent::Dm(DeviceMetric {
                memory: Some(MemoryMetric {
                    used_mem: 512,
                    avail_mem: 1536,
                    ..Default::default()
                }),
                cpu_metric: Some(AppCpuMetric {
                    total: cpu,
                    system_total: system,
                    ..Default::default()
                }),
                network: vec![
                    NetworkMetric {
                        tx_bytes: tx,
                        rx_bytes: 10,
                        ..Default::default()
                    },
                    NetworkMetric {
                        tx_bytes: tx,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            })),
            ..Default::default()
        };
        Telemetry {
            payload: message.encode_to_vec(),
            received_at_ms: 1,
            ..Telemetry::default()
        }
    }

    #[test]
    fn points_carry_the_figures_and_rates_between_them() {
        let points = series(&[report(100, 10, 100, 1000), report(110, 40, 200, 6000)]);
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].at_ms, 100_000);
        assert_eq!(
            (points[0].memory_used_mib, points[0].network_tx_bytes),
            (512, 2000)
        );
        assert_eq!(points[0].cpu_share, None);
        assert_eq!(points[1].cpu_share, Some(0.3));
        assert_eq!(points[1].network_tx_per_s, Some(1000.0));
        assert_eq!(points[1].network_rx_per_s, Some(0.0));
    }

    #[test]
    fn counters_that_go_back_leave_no_rate_and_bad_reports_are_skipped() {
        let garbage = Telemetry {
            payload: vec![0xff, 0xff],
            ..Telemetry::default()
        };
        let points = series(&[report(100, 50, 100, 5000), garbage, report(110, 10, 20, 10)]);
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].cpu_share, None);
        assert_eq!(points[1].network_tx_per_s, None);
    }
}
