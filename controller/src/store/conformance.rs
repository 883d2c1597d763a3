//! The behaviour every [`Store`] backend must have, as test cases run against each backend
//! (each case on a new, empty store from the backend's factory).

use super::{
    AttestCert, Attestation, ContactQuery, Device, DeviceConfig, KindRetention, LogLine, LogQuery,
    Onboarding, Retention, Store, StoreError, StoreFuture, Telemetry, TelemetryKind,
    TelemetryQuery,
};
use sha2::{Digest, Sha256};

fn device(uuid: &str, serial: &str, cert: &[u8]) -> Device {
    Device {
        uuid: uuid.into(),
        serial: serial.into(),
        onboarding_id: "onb".into(),
        cert_der: cert.to_vec(),
        registered_at: 1,
        last_seen_ms: 0,
    }
}

fn report(uuid: &str, kind: TelemetryKind, at_ms: u64, payload: &[u8]) -> Telemetry {
    Telemetry {
        uuid: uuid.into(),
        kind: kind as i32,
        seq: 0,
        received_at_ms: at_ms,
        payload: payload.to_vec(),
        ..Telemetry::default()
    }
}

fn line(at_ms: u64, severity: &str, text: &str) -> LogLine {
    LogLine {
        at_ms,
        severity: severity.into(),
        source: "agent".into(),
        text: text.into(),
        ..LogLine::default()
    }
}

/// Makes a new, empty store for a case.
pub(crate) type NewStore = Box<dyn Fn() -> StoreFuture<'static, Box<dyn Store>>>;

/// Runs every case, each on a store made by `new_store`.
pub(crate) async fn run_all(new_store: NewStore) {
    let store = || async { new_store().await.unwrap() };
    changes_are_kept_and_removal_cascades(&*store().await).await;
    conflicting_and_dangling_changes_are_refused(&*store().await).await;
    concurrent_inserts_of_one_serial_admit_exactly_one(&*store().await).await;
    devices_are_found_by_cert_hash_and_serial(&*store().await).await;
    onboarding_entries_are_replaced_and_removed(&*store().await).await;
    reports_are_queried_by_device_kind_time_and_order(&*store().await).await;
    contacts_keep_the_latest_and_select_devices(&*store().await).await;
    retention_applies_per_kind_by_age_count_and_size(&*store().await).await;
    reports_are_found_by_object_and_log_lines_by_severity_and_text(&*store().await).await;
    attestation_changes_one_version_at_a_time(&*store().await).await;
}

async fn attestation_changes_one_version_at_a_time(store: &dyn Store) {
    store
        .insert_device(device("u1", "s1", b"cert1"))
        .await
        .unwrap();
    assert_eq!(store.attestation("u1").await.unwrap(), None);
    let state = store.config_request("u1").await.unwrap().unwrap();
    assert_eq!((state.config, state.integrity_token.len()), (None, 0));
    assert_eq!(store.config_request("nobody").await.unwrap(), None);
    let first = Attestation {
        uuid: "u1".into(),
        version: 1,
        certs: vec![AttestCert {
            cert_type: 11,
            pem: "pem".into(),
            mutable: false,
        }],
        nonce: vec![1, 2, 3],
        integrity_token: Vec::new(),
    };
    store.put_attestation(first.clone()).await.unwrap();
    assert_eq!(store.attestation("u1").await.unwrap(), Some(first.clone()));
    // Another writer read version 1 too: only one of the two version 2s is kept.
    let second = Attestation {
        version: 2,
        nonce: Vec::new(),
        integrity_token: vec![9; 32],
        ..first.clone()
    };
    store.put_attestation(second.clone()).await.unwrap();
    let stale = Attestation {
        version: 2,
        nonce: vec![7],
        ..first.clone()
    };
    assert!(matches!(
        store.put_attestation(stale).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store.put_attestation(first).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.attestation("u1").await.unwrap(), Some(second.clone()));
    let config = DeviceConfig {
        uuid: "u1".into(),
        version: 1,
        config: vec![5],
        hash: "h1".into(),
    };
    store.set_config(config.clone()).await.unwrap();
    let state = store.config_request("u1").await.unwrap().unwrap();
    assert_eq!(state.config, Some(config));
    assert_eq!(state.integrity_token, vec![9; 32]);
    let unknown = Attestation {
        uuid: "nobody".into(),
        ..second
    };
    assert!(store.put_attestation(unknown).await.is_err());
    store.remove_device("u1").await.unwrap();
    assert_eq!(store.attestation("u1").await.unwrap(), None);
}

async fn reports_are_found_by_object_and_log_lines_by_severity_and_text(store: &dyn Store) {
    for (uuid, serial) in [("u1", "s1"), ("u2", "s2")] {
        store
            .insert_device(device(uuid, serial, serial.as_bytes()))
            .await
            .unwrap();
    }
    for (at, object) in [(1, "app-a"), (2, "app-b"), (3, "app-a")] {
        let about = Telemetry {
            object: object.into(),
            ..report("u1", TelemetryKind::Info, at, &[at as u8])
        };
        store.add_telemetry(about).await.unwrap();
    }
    let app_a = TelemetryQuery {
        object: Some("app-a".into()),
        ..TelemetryQuery::device("u1", &[TelemetryKind::Info], 10)
    };
    let found = store.telemetry(app_a).await.unwrap();
    assert_eq!(
        found
            .iter()
            .map(|r| (r.payload[0], r.object.as_str()))
            .collect::<Vec<_>>(),
        [(1, "app-a"), (3, "app-a")]
    );

    let logs = Telemetry {
        lines: vec![
            line(100, "info", "started 50% of it_all"),
            line(300, "error", "disk full"),
            line(200, "warning", "disk nearly full"),
        ],
        ..report("u1", TelemetryKind::Logs, 400, b"bundle")
    };
    let seq = store.add_telemetry(logs).await.unwrap();
    let other = Telemetry {
        lines: vec![line(150, "error", "disk on fire")],
        ..report("u2", TelemetryKind::NewLogs, 400, b"gzip")
    };
    store.add_telemetry(other).await.unwrap();
    let texts =
        |lines: Vec<LogLine>| -> Vec<String> { lines.into_iter().map(|l| l.text).collect() };

    let all_u1 = LogQuery {
        uuid: Some("u1".into()),
        limit: 10,
        ..LogQuery::default()
    };
    let lines = store.logs(all_u1.clone()).await.unwrap();
    assert_eq!(
        lines[0],
        LogLine {
            seq,
            uuid: "u1".into(),
            ..line(100, "info", "started 50% of it_all")
        }
    );
    assert_eq!(
        texts(lines),
        ["started 50% of it_all", "disk nearly full", "disk full"],
        "by time"
    );
    let errors_anywhere = LogQuery {
        severities: vec!["error".into()],
        limit: 10,
        ..LogQuery::default()
    };
    assert_eq!(
        texts(store.logs(errors_anywhere).await.unwrap()),
        ["disk on fire", "disk full"]
    );
    let text = |needle: &str| LogQuery {
        text: Some(needle.into()),
        ..all_u1.clone()
    };
    assert_eq!(
        texts(store.logs(text("disk")).await.unwrap()),
        ["disk nearly full", "disk full"]
    );
    // Characters special to LIKE patterns are matched as themselves.
    assert_eq!(
        texts(store.logs(text("50%")).await.unwrap()),
        ["started 50% of it_all"]
    );
    assert!(store.logs(text("it%all")).await.unwrap().is_empty());
    assert!(store.logs(text("_")).await.unwrap().len() == 1);
    let window = LogQuery {
        since_ms: Some(150),
        until_ms: Some(300),
        newest_first: true,
        severities: vec!["warning".into(), "error".into()],
        ..all_u1.clone()
    };
    assert_eq!(
        texts(store.logs(window).await.unwrap()),
        ["disk nearly full"]
    );

    // Lines go with their report: retention and device removal take them.
    store.remove_device("u2").await.unwrap();
    let everyone = LogQuery {
        limit: 10,
        ..LogQuery::default()
    };
    assert_eq!(store.logs(everyone.clone()).await.unwrap().len(), 3);
    let mut retention = Retention::FOREVER;
    retention.set(
        TelemetryKind::Logs,
        KindRetention {
            max_age_ms: None,
            max_per_device: Some(0),
            max_bytes_per_device: None,
        },
    );
    assert_eq!(store.retire(retention, 1_000).await.unwrap(), 1);
    assert!(store.logs(everyone).await.unwrap().is_empty());
}

async fn changes_are_kept_and_removal_cascades(store: &dyn Store) {
    store
        .insert_device(device("u1", "s1", b"cert1"))
        .await
        .unwrap();
    store
        .insert_device(device("u2", "s2", b"cert2"))
        .await
        .unwrap();
    let config = DeviceConfig {
        uuid: "u2".into(),
        version: 3,
        config: vec![1, 2],
        hash: "h".into(),
    };
    store.set_config(config.clone()).await.unwrap();
    assert_eq!(store.config("u2").await.unwrap(), Some(config.clone()));
    let newer = DeviceConfig {
        version: 4,
        ..config
    };
    store.set_config(newer.clone()).await.unwrap();
    assert_eq!(store.config("u2").await.unwrap(), Some(newer.clone()));
    // A writer that computed the same or an older version lost a race: refused.
    let stale = DeviceConfig {
        config: vec![9],
        ..newer.clone()
    };
    assert!(matches!(
        store.set_config(stale).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.config("u2").await.unwrap(), Some(newer));
    let first = store
        .add_telemetry(report("u2", TelemetryKind::Info, 5, b"i"))
        .await
        .unwrap();
    let second = store
        .add_telemetry(report("u1", TelemetryKind::Info, 5, b"j"))
        .await
        .unwrap();
    assert!(second > first);

    store.remove_device("u2").await.unwrap();
    assert_eq!(
        store.devices().await.unwrap(),
        vec![device("u1", "s1", b"cert1")]
    );
    assert_eq!(store.device("u2").await.unwrap(), None);
    assert_eq!(store.config("u2").await.unwrap(), None);
    let all = TelemetryQuery {
        uuid: None,
        ..TelemetryQuery::device("", &TelemetryKind::ALL, 100)
    };
    let left = store.telemetry(all).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (
            left[0].uuid.as_str(),
            left[0].seq,
            left[0].payload.as_slice()
        ),
        ("u1", second, &b"j"[..])
    );
    // The same serial and certificate may register again once the device is gone.
    store
        .insert_device(device("u3", "s2", b"cert2"))
        .await
        .unwrap();
    // Sequence numbers are never reused.
    let third = store
        .add_telemetry(report("u3", TelemetryKind::Logs, 6, b"l"))
        .await
        .unwrap();
    assert!(third > second);
}

async fn conflicting_and_dangling_changes_are_refused(store: &dyn Store) {
    store
        .insert_device(device("u1", "s1", b"cert1"))
        .await
        .unwrap();
    let refused = [
        store.insert_device(device("u1", "s9", b"cert9")).await,
        store.insert_device(device("u2", "s1", b"cert2")).await,
        store.insert_device(device("u3", "s3", b"cert1")).await,
    ];
    for result in refused {
        assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    }
    let unknown = store
        .add_telemetry(report("nobody", TelemetryKind::Info, 1, b""))
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    let config = DeviceConfig {
        uuid: "nobody".into(),
        version: 1,
        config: vec![],
        hash: String::new(),
    };
    assert!(matches!(
        store.set_config(config).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.remove_device("nobody").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.remove_onboarding("nothing").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.devices().await.unwrap().len(), 1);
}

async fn concurrent_inserts_of_one_serial_admit_exactly_one(store: &dyn Store) {
    let attempts = (0..8).map(|i| store.insert_device(device(&format!("u{i}"), "s", &[i])));
    let results = futures_util::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 1);
    assert!(results
        .iter()
        .all(|result| matches!(result, Ok(()) | Err(StoreError::Conflict))));
}

async fn devices_are_found_by_cert_hash_and_serial(store: &dyn Store) {
    store
        .insert_device(device("u1", "s1", b"cert1"))
        .await
        .unwrap();
    let hash: [u8; 32] = Sha256::digest(b"cert1").into();
    let found = |hash: Vec<u8>| async move {
        store
            .device_by_cert_hash(&hash)
            .await
            .unwrap()
            .map(|device| device.uuid)
    };
    assert_eq!(found(hash.to_vec()).await.as_deref(), Some("u1"));
    assert_eq!(found(hash[..16].to_vec()).await.as_deref(), Some("u1"));
    let mut wrong = hash;
    wrong[31] ^= 1;
    assert_eq!(found(wrong.to_vec()).await, None);
    assert_eq!(found(hash[..8].to_vec()).await, None);
    assert_eq!(found(Vec::new()).await, None);
    let by_serial = store.device_by_serial("onb", "s1").await.unwrap();
    assert_eq!(by_serial.map(|device| device.uuid).as_deref(), Some("u1"));
    assert_eq!(store.device_by_serial("other", "s1").await.unwrap(), None);
}

async fn onboarding_entries_are_replaced_and_removed(store: &dyn Store) {
    let entry = Onboarding {
        id: "b".into(),
        cert_der: vec![1, 2, 3],
        serials: vec!["sim-*".into(), "plant \"7\"".into()],
        subject: "CN=b".into(),
    };
    store.put_onboarding(entry.clone()).await.unwrap();
    let other = Onboarding {
        id: "a".into(),
        serials: vec![],
        ..entry.clone()
    };
    store.put_onboarding(other.clone()).await.unwrap();
    let replaced = Onboarding {
        serials: vec!["x".into()],
        ..entry
    };
    store.put_onboarding(replaced.clone()).await.unwrap();
    assert_eq!(
        store.onboarding().await.unwrap(),
        vec![other, replaced.clone()]
    );
    store.remove_onboarding("a").await.unwrap();
    assert_eq!(store.onboarding().await.unwrap(), vec![replaced]);
}

async fn reports_are_queried_by_device_kind_time_and_order(store: &dyn Store) {
    for (uuid, serial) in [("u1", "s1"), ("u2", "s2")] {
        store
            .insert_device(device(uuid, serial, serial.as_bytes()))
            .await
            .unwrap();
    }
    let mut seqs = Vec::new();
    for at in 0..10u64 {
        let kind = if at % 2 == 0 {
            TelemetryKind::Metrics
        } else {
            TelemetryKind::Logs
        };
        let uuid = if at < 8 { "u1" } else { "u2" };
        seqs.push(
            store
                .add_telemetry(report(uuid, kind, 1000 + at, &[at as u8]))
                .await
                .unwrap(),
        );
    }
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    let payloads = |found: Vec<Telemetry>| -> Vec<u8> {
        found.into_iter().map(|report| report.payload[0]).collect()
    };

    let metrics = TelemetryQuery::device("u1", &[TelemetryKind::Metrics], 100);
    assert_eq!(
        payloads(store.telemetry(metrics.clone()).await.unwrap()),
        [0, 2, 4, 6]
    );
    let window = TelemetryQuery {
        since_ms: Some(1002),
        until_ms: Some(1006),
        ..metrics.clone()
    };
    assert_eq!(payloads(store.telemetry(window).await.unwrap()), [2, 4]);
    let newest = TelemetryQuery {
        newest_first: true,
        limit: 2,
        ..metrics.clone()
    };
    assert_eq!(payloads(store.telemetry(newest).await.unwrap()), [6, 4]);
    let after = store
        .telemetry_after("u1", &TelemetryKind::ALL, seqs[4], 2)
        .await
        .unwrap();
    assert_eq!(payloads(after), [5, 6]);
    let everyone = TelemetryQuery {
        uuid: None,
        ..TelemetryQuery::device("", &[TelemetryKind::Metrics], 100)
    };
    assert_eq!(
        payloads(store.telemetry(everyone).await.unwrap()),
        [0, 2, 4, 6, 8]
    );
    let none = TelemetryQuery::device("u1", &[], 100);
    assert!(store.telemetry(none).await.unwrap().is_empty());
    let info = TelemetryQuery::device("u1", &[TelemetryKind::Info], 100);
    assert!(store.telemetry(info).await.unwrap().is_empty());
    let stored = store
        .telemetry(TelemetryQuery::device("u2", &TelemetryKind::ALL, 1))
        .await
        .unwrap();
    assert_eq!(
        stored,
        vec![Telemetry {
            seq: seqs[8],
            ..report("u2", TelemetryKind::Metrics, 1008, &[8])
        }]
    );
}

async fn contacts_keep_the_latest_and_select_devices(store: &dyn Store) {
    for (uuid, serial) in [("u1", "s1"), ("u2", "s2"), ("u3", "s3")] {
        store
            .insert_device(device(uuid, serial, serial.as_bytes()))
            .await
            .unwrap();
    }
    let contacts = vec![
        ("u1".to_owned(), 5_000),
        ("u2".to_owned(), 9_000),
        ("nobody".to_owned(), 1),
    ];
    store.record_contacts(contacts).await.unwrap();
    store
        .record_contacts(vec![("u2".to_owned(), 7_000)])
        .await
        .unwrap();
    let seen = |device: Option<Device>| device.unwrap().last_seen_ms;
    assert_eq!(seen(store.device("u1").await.unwrap()), 5_000);
    assert_eq!(seen(store.device("u2").await.unwrap()), 9_000, "later wins");
    assert_eq!(seen(store.device("u3").await.unwrap()), 0);
    let uuids = |devices: Vec<Device>| -> Vec<String> {
        devices.into_iter().map(|device| device.uuid).collect()
    };
    let recent = ContactQuery {
        seen_since: Some(6_000),
        not_seen_since: None,
    };
    assert_eq!(
        uuids(store.devices_by_contact(recent).await.unwrap()),
        ["u2"]
    );
    let stale = ContactQuery {
        seen_since: None,
        not_seen_since: Some(6_000),
    };
    assert_eq!(
        uuids(store.devices_by_contact(stale).await.unwrap()),
        ["u1", "u3"]
    );
}

async fn retention_applies_per_kind_by_age_count_and_size(store: &dyn Store) {
    for (uuid, serial) in [("u1", "s1"), ("u2", "s2")] {
        store
            .insert_device(device(uuid, serial, serial.as_bytes()))
            .await
            .unwrap();
    }
    for at in 0..6u64 {
        for uuid in ["u1", "u2"] {
            for kind in [
                TelemetryKind::Metrics,
                TelemetryKind::Logs,
                TelemetryKind::Info,
            ] {
                // Payloads of at + 1 bytes, the first telling `at`.
                let payload = vec![at as u8; at as usize + 1];
                store
                    .add_telemetry(report(uuid, kind, at * 1000, &payload))
                    .await
                    .unwrap();
            }
        }
    }
    let mut retention = Retention::FOREVER;
    retention.set(
        TelemetryKind::Metrics,
        KindRetention {
            max_age_ms: None,
            max_per_device: Some(2),
            max_bytes_per_device: None,
        },
    );
    retention.set(
        TelemetryKind::Logs,
        KindRetention {
            max_age_ms: Some(2_500),
            max_per_device: None,
            max_bytes_per_device: None,
        },
    );
    // Info: each payload is at + 1 bytes long, so 4 + 5 + 6 = 15 bytes keep the newest three.
    retention.set(
        TelemetryKind::Info,
        KindRetention {
            max_age_ms: None,
            max_per_device: None,
            max_bytes_per_device: Some(15),
        },
    );
    // Metrics: 4 of 6 per device over the count; logs: at 0, 1000 and 2000 older than 2500 ms;
    // info: 3 of 6 over the size.
    assert_eq!(
        store.retire(retention, 5_000).await.unwrap(),
        2 * 4 + 2 * 3 + 2 * 3
    );
    let kept = |uuid: &'static str, kind| async move {
        let found = store
            .telemetry(TelemetryQuery::device(uuid, &[kind], 100))
            .await
            .unwrap();
        found
            .into_iter()
            .map(|report| report.payload[0])
            .collect::<Vec<u8>>()
    };
    for uuid in ["u1", "u2"] {
        assert_eq!(kept(uuid, TelemetryKind::Metrics).await, [4, 5]);
        assert_eq!(kept(uuid, TelemetryKind::Logs).await, [3, 4, 5]);
        assert_eq!(kept(uuid, TelemetryKind::Info).await, [3, 4, 5]);
    }
    assert_eq!(store.retire(retention, 5_000).await.unwrap(), 0);
}
