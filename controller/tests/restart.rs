//! A controller killed with SIGKILL and started again has everything it acknowledged.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use http::StatusCode;
use lichen_controller::devsim::{reports, ConfigPoll};

/// Starts the controller binary on `listen`; returns it and its URL.
fn start(state_dir: &Path, listen: &str) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lichen-controller"));
    command
        .args(["serve", "--listen", listen, "--state-dir"])
        .arg(state_dir)
        .stderr(Stdio::null());
    common::serve(command)
}

#[tokio::test]
async fn a_crash_loses_nothing_acknowledged() {
    let state = tempfile::tempdir().unwrap();
    let (mut first, url) = start(state.path(), "127.0.0.1:0");
    let (admin, target) = common::connect(&url, state.path()).await;

    let mut devices = Vec::new();
    for serial in ["sim-a", "sim-b", "sim-c"] {
        let mut device = target.device(serial).unwrap();
        device.fetch_certs().await.unwrap();
        assert_eq!(device.register().await.unwrap(), StatusCode::CREATED);
        device.poll_config().await.unwrap();
        devices.push(device);
    }
    let uuid = devices[0].uuid().unwrap().to_owned();
    let set = admin.set_config(&uuid, common::NODE_YAML).await.unwrap();
    devices[0]
        .post_report("info", &reports::device_info(&uuid, "sim-a"))
        .await
        .unwrap();
    devices[0]
        .post_report("logs", &reports::logs(&uuid, 0, 5, "simulated log line"))
        .await
        .unwrap();
    admin
        .delete_device(devices[2].uuid().unwrap())
        .await
        .unwrap();
    let before = admin.devices().await.unwrap();

    first.kill().unwrap(); // SIGKILL: no chance to flush anything
    first.wait().unwrap();
    // Same address, so that the devices find it again.
    let (mut second, url) = start(state.path(), url.trim_start_matches("https://"));
    let (admin, target) = common::connect(&url, state.path()).await;

    let after = admin.devices().await.unwrap();
    let identity = |list: &[lichen_controller::admin_api::DeviceSummary]| {
        list.iter()
            .map(|d| {
                (
                    d.uuid.clone(),
                    d.serial.clone(),
                    d.config_version,
                    d.config_hash.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(identity(&after), identity(&before));
    assert_eq!(after.len(), 2);
    assert!(after
        .iter()
        .any(|device| device.uuid == uuid && device.config_hash == set.hash));
    let kept = admin
        .reports(&uuid, &[], 0, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        kept.reports
            .iter()
            .map(|r| r.kind.as_str())
            .collect::<Vec<_>>(),
        ["info", "logs"]
    );

    // The devices carry on against the restarted controller with the same keys.
    let mut device = devices.remove(0);
    device.fetch_certs().await.unwrap();
    assert_eq!(device.register().await.unwrap(), StatusCode::OK);
    assert_eq!(
        device.poll_config().await.unwrap(),
        ConfigPoll::Changed("1".into())
    );
    assert_eq!(device.poll_config().await.unwrap(), ConfigPoll::Unchanged);
    let version = admin
        .set_config(
            &uuid,
            "configItems: [{ key: timer.config.interval, value: '5' }]",
        )
        .await
        .unwrap();
    assert_eq!(version.version, 2);
    assert_eq!(
        device.poll_config().await.unwrap(),
        ConfigPoll::Changed("2".into())
    );
    drop(target);

    second.kill().unwrap();
    second.wait().unwrap();
}

/// A state directory of an earlier version: `serve` refuses it and says to migrate; `migrate`
/// moves it (here an empty log) and keeps the old file; then `serve` starts.
#[test]
fn an_old_state_directory_is_migrated_not_silently_replaced() {
    let state = tempfile::tempdir().unwrap();
    let old_log = state.path().join("store").join("lichen.log");
    std::fs::create_dir_all(old_log.parent().unwrap()).unwrap();
    std::fs::write(&old_log, b"").unwrap();
    let binary = env!("CARGO_BIN_EXE_lichen-controller");

    let refused = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("lichen-controller migrate"), "{message}");
    assert!(!state.path().join("lichen.db").exists());

    let migrated = Command::new(binary)
        .args(["migrate", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("0 devices"));
    assert!(!old_log.exists());
    assert!(old_log.with_extension("log.migrated").exists());
    let again = Command::new(binary)
        .args(["migrate", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!again.status.success(), "nothing left to migrate");

    let (mut child, _url) = start(state.path(), "127.0.0.1:0");
    child.kill().unwrap();
    child.wait().unwrap();
}
