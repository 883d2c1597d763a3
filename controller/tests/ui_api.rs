//! The admin routes behind the web UI, against an in-process controller: the onboarding queue
//! and its admission, device status, and configuration checks and versioned applies.

mod common;

use http::StatusCode;
use lichen_controller::devsim::{reports, SimError};
use lichen_controller::pki::Identity;
use lichen_controller::server;

#[tokio::test]
async fn refused_devices_wait_in_the_queue_until_admitted() {
    let state = tempfile::tempdir().unwrap();
    let options = server::Options::new(state.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    let controller = server::start(options).await.unwrap();
    let url = format!("https://{}", controller.addr);
    let (admin, target) = common::connect(&url, state.path()).await;

    // A serial the admitted certificate does not cover, and a certificate not admitted at all.
    let mut outside = target.device("lab-7").unwrap();
    outside.fetch_certs().await.unwrap();
    let unknown_cert = Identity::self_signed("unknown onboarding").unwrap();
    let mut stranger_target = target.clone();
    stranger_target.onboarding = std::sync::Arc::new(unknown_cert);
    let mut stranger = stranger_target.device("sim-1").unwrap();
    stranger.fetch_certs().await.unwrap();
    for device in [&outside, &stranger, &outside] {
        match device.register().await {
            Err(SimError::Status(StatusCode::FORBIDDEN, _)) => {}
            other => panic!("expected 403, got {other:?}"),
        }
    }
    let pending = admin.pending().await.unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    let lab = pending.iter().find(|p| p.serial == "lab-7").unwrap();
    assert_eq!(lab.attempts, 2);
    assert_eq!(lab.subject, "CN=test onboarding");
    let strange = pending.iter().find(|p| p.serial == "sim-1").unwrap();
    assert_eq!(strange.subject, "CN=unknown onboarding");

    // Admitting lab-7 adds its serial to the certificate's patterns.
    let entry = admin.admit(&lab.id, &[]).await.unwrap();
    assert_eq!(entry.serials, [common::SERIALS, "lab-7"]);
    assert_eq!(outside.register().await.unwrap(), StatusCode::CREATED);
    // Admitting the stranger with a pattern admits its certificate for that pattern.
    let entry = admin
        .admit(&strange.id, &["sim-1*".to_owned()])
        .await
        .unwrap();
    assert_eq!(entry.serials, ["sim-1*"]);
    assert_eq!(stranger.register().await.unwrap(), StatusCode::CREATED);
    assert!(admin.pending().await.unwrap().is_empty());
    assert!(admin.admit(&lab.id, &[]).await.is_err(), "admitted twice");

    // The fleet view's pages: by UUID, with the total.
    let mut all: Vec<String> = admin
        .devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.uuid)
        .collect();
    all.sort();
    let (page, total) = admin.devices_page(1, 1).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].uuid, all[1]);
    assert!(page[0].status.is_some());
    assert!(admin.devices_page(2, 1).await.unwrap().0.is_empty());
    controller.stop().await;
}

#[tokio::test]
async fn configuration_is_checked_before_and_applied_at_a_version() {
    let state = tempfile::tempdir().unwrap();
    let options = server::Options::new(state.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    let controller = server::start(options).await.unwrap();
    let url = format!("https://{}", controller.addr);
    let (admin, target) = common::connect(&url, state.path()).await;
    let mut device = target.device("sim-1").unwrap();
    device.fetch_certs().await.unwrap();
    device.register().await.unwrap();
    device.poll_config().await.unwrap();
    let uuid = device.uuid().unwrap().to_owned();

    // A bad reference is a problem; nothing changes.
    let broken = common::NODE_YAML.replace(
        "networkId: 2a4f8c1e-0b1d-4d6e-9a53-6c0f3f0e1a01",
        "networkId: 2a4f8c1e-0b1d-4d6e-9a53-6c0f3f0e1a99",
    );
    let check = admin.check_config(&uuid, &broken).await.unwrap();
    assert_eq!(check.current_version, 0);
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("is not configured")),
        "{check:?}"
    );
    let check = admin
        .check_config(&uuid, "apps: [{ nosuchfield: 1 }]")
        .await
        .unwrap();
    assert!(check.problems[0].contains("nosuchfield"), "{check:?}");
    assert!(check.proposed_yaml.is_empty());

    let with_id = format!(
        "id: {{ uuid: {uuid}, version: \"9\" }}\n{}",
        common::NODE_YAML
    );
    let check = admin.check_config(&uuid, &with_id).await.unwrap();
    assert!(check.problems.is_empty(), "{check:?}");
    assert!(check.proposed_yaml.contains("displayname: nginx"));
    assert!(
        !check
            .proposed_yaml
            .lines()
            .any(|line| line.starts_with("id:")),
        "the controller sets id: {}",
        check.proposed_yaml
    );
    assert_eq!(check.current_yaml, "{}\n");

    let set = admin
        .set_config_at(&uuid, common::NODE_YAML, 0)
        .await
        .unwrap();
    assert_eq!(set.version, 1);
    // A change reviewed against version 0 is refused now.
    let stale = admin.set_config_at(&uuid, common::NODE_YAML, 0).await;
    assert!(stale.unwrap_err().to_string().starts_with("409"));
    let check = admin.check_config(&uuid, common::NODE_YAML).await.unwrap();
    assert_eq!(check.current_version, 1);
    assert_eq!(check.current_yaml, check.proposed_yaml);

    // The device's own account of its objects, newest per object.
    device.poll_config().await.unwrap();
    let mut infos = vec![reports::device_info(&uuid, "sim-1")];
    infos.extend(reports::app_infos(&uuid, device.config()));
    infos.extend(reports::network_instance_infos(&uuid, device.config()));
    for info in &infos {
        device.post_report("info", info).await.unwrap();
    }
    let status = admin.status(&uuid).await.unwrap();
    let dinfo = status.device.unwrap().info;
    assert_eq!(dinfo["state"], "ZDEVICE_STATE_ONLINE");
    assert_eq!(status.apps.len(), 1);
    assert_eq!(status.apps[0].info["state"], "RUNNING");
    assert_eq!(status.network_instances[0].info["displayname"], "local");
    assert!(status.network_metrics.is_empty(), "no metrics yet");
    // The network instance's counters, from the newest metrics report; `devices show`'s lines.
    let mut metrics = reports::metrics(&uuid, 90);
    metrics.nm = reports::network_instance_metrics(device.config(), 90);
    device.post_report("metrics", &metrics).await.unwrap();
    let status = admin.status(&uuid).await.unwrap();
    assert_eq!(
        status.network_metrics[0].object,
        "2a4f8c1e-0b1d-4d6e-9a53-6c0f3f0e1a01"
    );
    let lines = lichen_controller::admin_show::network_lines(&status);
    assert_eq!(
        lines,
        vec![
            "network-instance 2a4f8c1e-0b1d-4d6e-9a53-6c0f3f0e1a01 \"local\" ZNETINST_STATE_ONLINE \
             local bridge bn1 gateway 10.1.0.1",
            "network-instance 2a4f8c1e-0b1d-4d6e-9a53-6c0f3f0e1a01 app \
             7e8f9a0b-1c2d-4e3f-a4b5-c6d7e8f90a07 02:16:3e:00:00:01 10.1.0.10",
            "network-instance 2a4f8c1e-0b1d-4d6e-9a53-6c0f3f0e1a01 counters to-apps 3600 \
             from-apps 3150 dropped 6 acl-drops 4 limit-drops 2",
        ],
        "{status:?}"
    );
    let summary = admin.device(&uuid).await.unwrap();
    let brief = summary.status.unwrap();
    assert_eq!(brief.state, "ZDEVICE_STATE_ONLINE");
    assert!(brief.version.starts_with("lichen-devsim "), "{brief:?}");
    controller.stop().await;
}
