//! The EVE API v2 device routes against an in-process controller: onboarding, config changes,
//! reports, and refusal of bad bodies.

mod common;

use http::StatusCode;
use lichen_api::common::HashAlgorithm;
use lichen_api::config::ConfigRequest;
use lichen_api::envelope::Signer;
use lichen_api::info::ZInfoMsg;
use lichen_controller::devsim::{reports, ConfigPoll, SimDevice, SimError};
use lichen_controller::pki::Identity;
use lichen_controller::server::{self, Running};
use prost::Message;

struct Fixture {
    _state: tempfile::TempDir,
    controller: Running,
    admin: lichen_controller::admin_cli::AdminClient,
    target: lichen_controller::devsim::fleet::Target,
}

async fn start() -> Fixture {
    let state = tempfile::tempdir().unwrap();
    let options = server::Options::new(state.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    let controller = server::start(options).await.unwrap();
    let url = format!("https://{}", controller.addr);
    let (admin, target) = common::connect(&url, state.path()).await;
    Fixture {
        _state: state,
        controller,
        admin,
        target,
    }
}

/// A device that has fetched the controller's certificates.
async fn device(fixture: &Fixture, serial: &str) -> SimDevice {
    let mut device = fixture.target.device(serial).unwrap();
    device.fetch_certs().await.unwrap();
    device
}

fn status_of(result: Result<impl std::fmt::Debug, SimError>) -> StatusCode {
    match result {
        Err(SimError::Status(status, _)) => status,
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_device_onboards_and_follows_config_changes() {
    let fixture = start().await;
    let mut device = device(&fixture, "sim-1").await;

    assert_eq!(device.register().await.unwrap(), StatusCode::CREATED);
    assert_eq!(
        device.register().await.unwrap(),
        StatusCode::OK,
        "registering again is idempotent"
    );

    // The first configuration carries only the UUID.
    assert_eq!(
        device.poll_config().await.unwrap(),
        ConfigPoll::Changed("0".into())
    );
    let uuid = device.uuid().unwrap().to_owned();
    assert!(device.config().apps.is_empty());
    assert_eq!(device.poll_config().await.unwrap(), ConfigPoll::Unchanged);
    assert_eq!(device.fetch_uuid().await.unwrap().uuid, uuid);

    let set = fixture
        .admin
        .set_config(&uuid, common::NODE_YAML)
        .await
        .unwrap();
    assert_eq!(set.version, 1);
    assert_eq!(
        device.poll_config().await.unwrap(),
        ConfigPoll::Changed("1".into())
    );
    let config = device.config();
    assert_eq!(
        (
            config.apps.len(),
            config.network_instances.len(),
            config.volumes.len()
        ),
        (1, 1, 1)
    );
    assert_eq!(config.apps[0].displayname, "nginx");
    assert_eq!(device.poll_config().await.unwrap(), ConfigPoll::Unchanged);

    // The uuid route answers with the manufacturer and product name the operator set.
    fixture
        .admin
        .set_config(&uuid, "manufacturer: Acme\nproductName: Edge 7\n")
        .await
        .unwrap();
    let identity = device.fetch_uuid().await.unwrap();
    assert_eq!(
        (
            identity.uuid.as_str(),
            identity.manufacturer.as_str(),
            identity.product_name.as_str()
        ),
        (uuid.as_str(), "Acme", "Edge 7")
    );
    let set = fixture
        .admin
        .set_config(&uuid, common::NODE_YAML)
        .await
        .unwrap();
    device.poll_config().await.unwrap();

    let listed = fixture.admin.devices().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].uuid.as_str(), listed[0].serial.as_str()),
        (uuid.as_str(), "sim-1")
    );
    assert_eq!(listed[0].config_hash, set.hash);
    assert!(listed[0].last_seen_ms.is_some());
    fixture.controller.stop().await;
}

#[tokio::test]
async fn reports_are_stored_and_followed() {
    let fixture = start().await;
    let mut device = device(&fixture, "sim-2").await;
    device.register().await.unwrap();
    device.poll_config().await.unwrap();
    let uuid = device.uuid().unwrap().to_owned();

    device
        .post_report("info", &reports::device_info(&uuid, "sim-2"))
        .await
        .unwrap();
    device
        .post_report("metrics", &reports::metrics(&uuid, 60))
        .await
        .unwrap();
    device
        .post_report("logs", &reports::logs(&uuid, 0, 2, "simulated log line"))
        .await
        .unwrap();
    device
        .post_report(
            "flowlog",
            &lichen_api::flowlog::FlowMessage {
                dev_id: uuid.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let newlogs = device
        .signer()
        .seal_to_bytes_raw(reports::newlogs(&["booted", "ready"]));
    assert_eq!(
        device.post_raw("newlogs", newlogs).await.unwrap().status,
        StatusCode::CREATED
    );

    let page = fixture
        .admin
        .reports(&uuid, &[], 0, std::time::Duration::ZERO)
        .await
        .unwrap();
    let kinds: Vec<&str> = page
        .reports
        .iter()
        .map(|report| report.kind.as_str())
        .collect();
    assert_eq!(kinds, ["info", "metrics", "logs", "flowlog", "newlogs"]);
    assert_eq!(page.reports[0].message["dinfo"]["HostName"], "sim-2");
    assert_eq!(page.reports[4].message[1]["content"], "ready");

    // A follower waiting for news gets the next report as soon as it arrives.
    let last = page.reports[4].seq;
    let admin = fixture.admin.clone();
    let follower = {
        let uuid = uuid.clone();
        tokio::spawn(async move {
            admin
                .reports(
                    &uuid,
                    &["logs".into()],
                    last,
                    std::time::Duration::from_secs(10),
                )
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    device
        .post_report("logs", &reports::logs(&uuid, 2, 1, "simulated log line"))
        .await
        .unwrap();
    let followed = follower.await.unwrap().unwrap();
    assert_eq!(followed.reports.len(), 1);
    assert_eq!(
        followed.reports[0].message["log"][0]["content"],
        "simulated log line 2"
    );
    fixture.controller.stop().await;
}

#[tokio::test]
async fn register_refuses_conflicts_and_unknown_serials() {
    let fixture = start().await;
    let first = device(&fixture, "sim-3").await;
    assert_eq!(first.register().await.unwrap(), StatusCode::CREATED);

    // Same onboarding certificate and serial, another device certificate.
    let impostor = device(&fixture, "sim-3").await;
    assert_eq!(status_of(impostor.register().await), StatusCode::CONFLICT);
    // A serial the onboarding certificate does not admit.
    let stranger = device(&fixture, "other-3").await;
    assert_eq!(status_of(stranger.register().await), StatusCode::FORBIDDEN);
    // An onboarding certificate the controller does not know.
    let mut rogue_target = fixture.target.clone();
    rogue_target.onboarding =
        std::sync::Arc::new(Identity::self_signed("rogue onboarding").unwrap());
    let rogue = rogue_target.device("sim-4").unwrap();
    assert_eq!(status_of(rogue.register().await), StatusCode::FORBIDDEN);

    assert_eq!(
        fixture.admin.devices().await.unwrap().len(),
        1,
        "refused registrations store nothing"
    );
    fixture.controller.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_clear_statuses_and_store_nothing() {
    let fixture = start().await;
    let mut device = device(&fixture, "sim-5").await;
    device.register().await.unwrap();
    device.poll_config().await.unwrap();
    let uuid = device.uuid().unwrap().to_owned();
    let info = reports::device_info(&uuid, "sim-5");
    let status = |reply: lichen_controller::client::Reply| reply.status;

    // Not an AuthContainer at all. Errors have no body (the EVE API allows only protobuf
    // bodies); the reason is in a header.
    let garbage = device.post_raw("info", vec![0xff; 64]).await.unwrap();
    assert!(garbage.body.is_empty(), "{:?}", garbage.body);
    assert!(
        garbage
            .reason
            .as_deref()
            .is_some_and(|reason| reason.contains("AuthContainer")),
        "{:?}",
        garbage.reason
    );
    assert_eq!(status(garbage), StatusCode::UNPROCESSABLE_ENTITY);
    // Signed, but the payload is not a ZInfoMsg.
    let not_info = device.signer().seal_to_bytes_raw(vec![0xff; 8]);
    assert_eq!(
        status(device.post_raw("info", not_info).await.unwrap()),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // newlogs that are not gzip.
    let not_gzip = device.signer().seal_to_bytes_raw(b"plain text".to_vec());
    assert_eq!(
        status(device.post_raw("newlogs", not_gzip).await.unwrap()),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Larger than the 1 MiB limit.
    let huge = device.signer().seal_to_bytes_raw(vec![0; 2 << 20]);
    assert_eq!(
        status(device.post_raw("logs", huge).await.unwrap()),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Unsigned.
    let mut unsigned = device.signer().seal_message(&info);
    unsigned.signature_hash.clear();
    assert_eq!(
        status(
            device
                .post_raw("info", unsigned.encode_to_vec())
                .await
                .unwrap()
        ),
        StatusCode::UNAUTHORIZED
    );
    // Claims to be the device, but signed with another key.
    let forger = Identity::self_signed("forger").unwrap();
    let mut forged =
        Signer::new(forger.key, b"-", HashAlgorithm::Sha25632bytes).seal_message(&info);
    forged.sender_cert_hash = device.signer().cert_hash().to_vec();
    assert_eq!(
        status(
            device
                .post_raw("info", forged.encode_to_vec())
                .await
                .unwrap()
        ),
        StatusCode::UNAUTHORIZED
    );
    // Signed by a certificate the controller does not know.
    let unknown = Identity::self_signed("unknown").unwrap();
    let unknown = Signer::new(unknown.key, &unknown.cert_der, HashAlgorithm::Sha25632bytes)
        .seal_to_bytes(&info);
    assert_eq!(
        status(device.post_raw("info", unknown).await.unwrap()),
        StatusCode::UNAUTHORIZED
    );

    // Another device's UUID in the path.
    let mut other = fixture.target.device("sim-6").unwrap();
    other.fetch_certs().await.unwrap();
    other.register().await.unwrap();
    other.poll_config().await.unwrap();
    let other_path = format!(
        "{}/id/{}/info",
        lichen_api::API_PREFIX,
        other.uuid().unwrap()
    );
    let body = Some((
        lichen_api::CONTENT_TYPE,
        device.signer().seal_to_bytes(&info),
    ));
    let reply = fixture
        .target
        .client
        .send(http::Method::POST, &other_path, body, None)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // A UUID no device has: "Unknown Device" is 400 in the EVE API.
    let unknown_path = format!(
        "{}/id/0b7e0f43-52b5-4b36-9f0c-8f3c5b4f1b0a/info",
        lichen_api::API_PREFIX
    );
    let body = Some((
        lichen_api::CONTENT_TYPE,
        device.signer().seal_to_bytes(&info),
    ));
    let reply = fixture
        .target
        .client
        .send(http::Method::POST, &unknown_path, body, None)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.is_empty(), "device API errors have no body");
    // The wrong content type.
    let path = format!("{}/id/{uuid}/config", lichen_api::API_PREFIX);
    let body = Some((
        "application/json",
        device.signer().seal_to_bytes(&ConfigRequest::default()),
    ));
    let reply = fixture
        .target
        .client
        .send(http::Method::POST, &path, body, None)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let page = fixture
        .admin
        .reports(&uuid, &[], 0, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(
        page.reports.is_empty(),
        "refused bodies store nothing: {page:?}"
    );
    // A good one still works.
    device.post_report("info", &info).await.unwrap();
    let stored = fixture
        .admin
        .reports(&uuid, &[], 0, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(stored.reports.len(), 1);
    assert_eq!(ZInfoMsg::decode(&info.encode_to_vec()[..]).unwrap(), info);
    fixture.controller.stop().await;
}

#[tokio::test]
async fn admin_api_needs_the_token_and_validates_configs() {
    let fixture = start().await;
    let url = format!("https://{}", fixture.controller.addr);
    let intruder = lichen_controller::admin_cli::AdminClient::new(
        &url,
        &fixture.controller.ca_pem,
        "not-the-token",
    )
    .unwrap();
    let error = intruder.devices().await.unwrap_err();
    assert!(error.0.starts_with("401"), "{error}");

    let mut device = device(&fixture, "sim-7").await;
    device.register().await.unwrap();
    device.poll_config().await.unwrap();
    let uuid = device.uuid().unwrap().to_owned();
    let dangling = "apps: [{ uuidandversion: { uuid: 7e8f9a0b-1c2d-4e3f-a4b5-c6d7e8f90a07 }, volumeRefList: [{ uuid: 1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e506 }] }]";
    let error = fixture.admin.set_config(&uuid, dangling).await.unwrap_err();
    assert!(
        error.0.starts_with("422") && error.0.contains("not configured"),
        "{error}"
    );
    assert_eq!(
        device.poll_config().await.unwrap(),
        ConfigPoll::Unchanged,
        "a refused config changes nothing"
    );

    fixture.admin.delete_device(&uuid).await.unwrap();
    assert_eq!(
        status_of(device.poll_config().await),
        StatusCode::UNAUTHORIZED,
        "a deleted device is unknown"
    );
    assert!(fixture.admin.devices().await.unwrap().is_empty());
    fixture.controller.stop().await;
}

#[tokio::test]
async fn log_lines_are_queried_by_severity_text_and_time() {
    let fixture = start().await;
    let mut device = device(&fixture, "sim-logs").await;
    device.register().await.unwrap();
    device.poll_config().await.unwrap();
    let uuid = device.uuid().unwrap().to_owned();

    device
        .post_report("logs", &reports::logs(&uuid, 0, 3, "simulated log line"))
        .await
        .unwrap();
    let newlogs = device
        .signer()
        .seal_to_bytes_raw(reports::newlogs(&["disk 90% full", "disk fine"]));
    let posted = device.post_raw("newlogs", newlogs).await.unwrap();
    assert_eq!(posted.status, StatusCode::CREATED);

    let admin = &fixture.admin;
    let all = admin.logs(&uuid, &[], None, None, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    let disk = admin
        .logs(&uuid, &[], Some("90% full"), None, 100)
        .await
        .unwrap();
    assert_eq!(
        disk.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        ["disk 90% full"]
    );
    let none = admin
        .logs(&uuid, &["error".into()], None, None, 100)
        .await
        .unwrap();
    assert!(none.is_empty());
    let recent = admin
        .logs(
            &uuid,
            &["info".into()],
            Some("simulated"),
            Some(std::time::Duration::from_secs(600)),
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        recent.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        ["simulated log line 2", "simulated log line 1"],
        "newest first, at most 2"
    );
    fixture.controller.stop().await;
}

#[tokio::test]
async fn app_instance_logs_are_kept_for_apps_the_device_runs() {
    use lichen_api::logs::{AppInstanceLogBundle, LogEntry};
    let fixture = start().await;
    let mut device = device(&fixture, "sim-apps").await;
    device.register().await.unwrap();
    device.poll_config().await.unwrap();
    let uuid = device.uuid().unwrap().to_owned();
    // The app of the test configuration.
    let app = "7e8f9a0b-1c2d-4e3f-a4b5-c6d7e8f90a07";
    let bundle = AppInstanceLogBundle {
        log: vec![LogEntry {
            severity: "err".into(),
            content: "nginx: bind failed".into(),
            ..Default::default()
        }],
        timestamp: None,
    };
    let route = format!("apps/instanceid/{app}/logs");
    // Not in the device's configuration yet: unknown app instance.
    let early = device.post_signed(&route, &bundle).await.unwrap();
    assert_eq!(early.status, StatusCode::BAD_REQUEST);
    fixture
        .admin
        .set_config(&uuid, common::NODE_YAML)
        .await
        .unwrap();
    device.poll_config().await.unwrap();
    assert_eq!(
        device.post_signed(&route, &bundle).await.unwrap().status,
        StatusCode::CREATED
    );
    let newlogs = device
        .signer()
        .seal_to_bytes_raw(reports::newlogs(&["worker started"]));
    let posted = device
        .post_raw(&format!("apps/instanceid/{app}/newlogs"), newlogs)
        .await
        .unwrap();
    assert_eq!(posted.status, StatusCode::CREATED);
    for bad in ["not-a-uuid", "00000000-0000-4000-8000-000000000000"] {
        let reply = device
            .post_signed(&format!("apps/instanceid/{bad}/logs"), &bundle)
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    let kept = fixture
        .admin
        .reports(
            &uuid,
            &["applogs".into(), "appnewlogs".into()],
            0,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    let summary: Vec<(&str, &str)> = kept
        .reports
        .iter()
        .map(|r| (r.kind.as_str(), r.object.as_str()))
        .collect();
    assert_eq!(summary, [("applogs", app), ("appnewlogs", app)]);
    let lines = fixture
        .admin
        .logs(&uuid, &[], None, None, 10)
        .await
        .unwrap();
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["worker started", "nginx: bind failed"]);
    fixture.controller.stop().await;
}

#[tokio::test]
async fn attestation_earns_the_integrity_token_config_requests_then_need() {
    use lichen_api::attest::ZAttestResponseCode;
    let fixture = start().await;
    let mut device = device(&fixture, "sim-attest").await;
    device.register().await.unwrap();
    device.poll_config().await.unwrap();

    // Not attested: no token needed. A quote before any certificate: no certificate found.
    assert_eq!(device.poll_config().await.unwrap(), ConfigPoll::Unchanged);
    let key = device.new_attestation_key().unwrap();
    assert_eq!(
        device.quote(&key, b"whatever").await.unwrap(),
        ZAttestResponseCode::NoCertFound
    );
    assert_eq!(
        status_of(device.poll_config().await),
        StatusCode::FORBIDDEN,
        "a failed attestation locks configuration out"
    );

    // Certificate, nonce, quote: a token, which config requests must then carry.
    device.post_attestation_cert(&key, false).await.unwrap();
    let nonce = device.attestation_nonce().await.unwrap();
    assert_eq!(nonce.len(), 32);
    assert_eq!(
        device.quote(&key, &nonce).await.unwrap(),
        ZAttestResponseCode::Success
    );
    assert_eq!(device.integrity_token.len(), 32);
    device.poll_config().await.unwrap();
    let token = std::mem::replace(&mut device.integrity_token, vec![1; 32]);
    assert_eq!(status_of(device.poll_config().await), StatusCode::FORBIDDEN);
    device.integrity_token = token;
    device.poll_config().await.unwrap();

    // The nonce is used once; a quote by another key fails.
    assert_eq!(
        device.quote(&key, &nonce).await.unwrap(),
        ZAttestResponseCode::NonceMismatch
    );
    let nonce = device.attestation_nonce().await.unwrap();
    let other = device.new_attestation_key().unwrap();
    assert_eq!(
        device.quote(&other, &nonce).await.unwrap(),
        ZAttestResponseCode::QuoteFailed
    );
    assert_eq!(status_of(device.poll_config().await), StatusCode::FORBIDDEN);

    // The certificate was posted immutable: it cannot be replaced.
    assert_eq!(
        status_of(device.post_attestation_cert(&other, true).await),
        StatusCode::FORBIDDEN
    );
    // A certificate the device certificate did not issue is refused.
    let stranger = Identity::self_signed("not issued by the device").unwrap();
    let mut imposter = self::device(&fixture, "sim-attest-2").await;
    imposter.register().await.unwrap();
    imposter.poll_config().await.unwrap();
    assert_eq!(
        status_of(imposter.post_attestation_cert(&stranger, true).await),
        StatusCode::FORBIDDEN
    );

    // Attesting again with the registered key restores access.
    let nonce = device.attestation_nonce().await.unwrap();
    assert_eq!(
        device.quote(&key, &nonce).await.unwrap(),
        ZAttestResponseCode::Success
    );
    device.poll_config().await.unwrap();
    fixture.controller.stop().await;
}

#[tokio::test]
async fn hardware_health_reports_are_kept() {
    use lichen_api::hardwarehealth::{EccMemoryControllerInfo, EccMemoryReport, ZHardwareHealth};
    use lichen_api::info::{SmartAttr, StorageDiskInfo};
    let fixture = start().await;
    let mut device = device(&fixture, "sim-hw").await;
    device.register().await.unwrap();
    device.poll_config().await.unwrap();
    let uuid = device.uuid().unwrap().to_owned();
    let health = ZHardwareHealth {
        dev_id: uuid.clone(),
        at_time_stamp: None,
        mr: Some(EccMemoryReport {
            memory_controllers: vec![EccMemoryControllerInfo {
                controller_name: "mc0".into(),
                ce_count: 3,
                ue_count: 0,
                ranks: Vec::new(),
            }],
        }),
        disks: vec![StorageDiskInfo {
            disk_name: "nvme0n1".into(),
            smart_attr: vec![SmartAttr {
                id: 194,
                raw_value: 41,
                attribute_name: "Temperature_Celsius".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    device.post_report("hardwarehealth", &health).await.unwrap();
    let not_health = device.signer().seal_to_bytes_raw(vec![0xff; 4]);
    assert_eq!(
        device
            .post_raw("hardwarehealth", not_health)
            .await
            .unwrap()
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let kept = fixture
        .admin
        .reports(
            &uuid,
            &["hardwarehealth".into()],
            0,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(kept.reports.len(), 1);
    let message = &kept.reports[0].message;
    assert_eq!(message["mr"]["memoryControllers"][0]["ceCount"], "3");
    assert_eq!(message["disks"][0]["smartAttr"][0]["id"], 194);
    fixture.controller.stop().await;
}

#[tokio::test]
async fn devices_are_listed_by_last_contact() {
    let state = tempfile::tempdir().unwrap();
    let mut options = server::Options::new(state.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    options.contact_interval = std::time::Duration::from_millis(50);
    let controller = server::start(options).await.unwrap();
    let url = format!("https://{}", controller.addr);
    let (admin, target) = common::connect(&url, state.path()).await;
    let mut active = target.device("sim-active").unwrap();
    active.fetch_certs().await.unwrap();
    active.register().await.unwrap();
    active.poll_config().await.unwrap();
    // Registered, never heard from with its device certificate.
    let mut quiet = target.device("sim-quiet").unwrap();
    quiet.fetch_certs().await.unwrap();
    quiet.register().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let minute = Some(std::time::Duration::from_secs(60));
    let serials = |devices: Vec<lichen_controller::admin_api::DeviceSummary>| -> Vec<String> {
        devices.into_iter().map(|device| device.serial).collect()
    };
    let recent = admin.devices_by_contact(minute, None).await.unwrap();
    assert_eq!(serials(recent), ["sim-active"]);
    let silent = admin.devices_by_contact(None, minute).await.unwrap();
    assert_eq!(serials(silent), ["sim-quiet"]);
    assert_eq!(admin.devices_by_contact(None, None).await.unwrap().len(), 2);
    controller.stop().await;
}

#[tokio::test]
async fn metrics_come_back_as_time_series() {
    let fixture = start().await;
    let mut device = device(&fixture, "sim-metrics").await;
    device.register().await.unwrap();
    device.poll_config().await.unwrap();
    let uuid = device.uuid().unwrap().to_owned();
    for uptime in [60, 70, 80] {
        device
            .post_report("metrics", &reports::metrics(&uuid, uptime))
            .await
            .unwrap();
    }
    let points = fixture.admin.metrics(&uuid, 2).await.unwrap();
    assert_eq!(points.len(), 2, "the newest 2");
    assert!(points[0].at_ms <= points[1].at_ms);
    // What was sent at uptimes 70 and 80.
    let sent = |uptime| {
        use lichen_api::metrics::z_metric_msg::MetricContent;
        let Some(MetricContent::Dm(device)) = reports::metrics(&uuid, uptime).metric_content else {
            panic!("device metrics");
        };
        let cpu = device.cpu_metric.unwrap();
        let network = &device.network[0];
        (
            u64::from(device.memory.unwrap().used_mem),
            cpu.total,
            cpu.system_total,
            network.tx_bytes,
        )
    };
    let (before, after) = (sent(70), sent(80));
    assert_eq!(
        (
            points[1].memory_used_mib,
            points[1].cpu_total,
            points[1].cpu_system_total,
            points[1].network_tx_bytes
        ),
        after
    );
    let share = (after.1 - before.1) as f64 / (after.2 - before.2) as f64;
    assert_eq!(points[1].cpu_share, Some(share));
    assert!(points[1].network_tx_per_s.is_some_and(|rate| rate > 0.0));
    fixture.controller.stop().await;
}

#[tokio::test]
async fn reports_keep_values_lichen_does_not_model() {
    use lichen_api::info::ZInfoApp;
    let fixture = start().await;
    let mut device = device(&fixture, "sim-newer-eve").await;
    device.register().await.unwrap();
    device.poll_config().await.unwrap();
    let uuid = device.uuid().unwrap().to_owned();

    // App info from a newer EVE: a state lichen's enum does not name, and a field (900) lichen's
    // ZInfoApp does not have.
    let mut app = ZInfoApp {
        app_id: "7e8f9a0b-1c2d-4e3f-a4b5-c6d7e8f90a07".into(),
        state: 77,
        ..Default::default()
    }
    .encode_to_vec();
    app.extend_from_slice(&[0xa0, 0x38, 5]); // field 900, varint 5
    let mut payload = ZInfoMsg {
        dev_id: uuid.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    payload.push(0x2a); // field 5 (ainfo), length-delimited
    payload.push(u8::try_from(app.len()).unwrap());
    payload.extend_from_slice(&app);
    let reply = device
        .post_raw("info", device.signer().seal_to_bytes_raw(payload))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::CREATED);

    let stored = fixture
        .admin
        .reports(&uuid, &[], 0, std::time::Duration::ZERO)
        .await
        .unwrap();
    let message = &stored.reports.last().unwrap().message;
    assert_eq!(message["devId"], uuid.as_str(), "{message}");
    assert_eq!(message["ainfo"]["state"], 77, "{message}");
    assert_eq!(message["ainfo"]["unknownFields"]["900"], 5, "{message}");
    assert_eq!(
        message["ainfo"]["AppID"], "7e8f9a0b-1c2d-4e3f-a4b5-c6d7e8f90a07",
        "{message}"
    );
    fixture.controller.stop().await;
}
