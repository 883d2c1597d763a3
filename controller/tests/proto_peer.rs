//! A configuration using every official `EdgeDevConfig` field goes through the admin API to a
//! device, and Google's protobuf (Python, from PyPI) agrees with what the device got. Needs
//! LICHEN_TEST_PROTOBUF_PYTHON (set by controller/tests/with-protobuf.sh), hence #[ignore].

mod common;

use std::path::Path;
use std::process::Command;

use lichen_api::config::EdgeDevConfig;
use lichen_controller::device_config;
use lichen_controller::devsim::ConfigPoll;
use lichen_controller::server;
use prost::Message;

const EVERY_FIELD: &str = include_str!("../src/device_config/every_field.yaml");

#[tokio::test]
#[ignore = "needs Python's protobuf: controller/tests/with-protobuf.sh"]
async fn every_official_field_reaches_the_device_as_google_protobuf_reads_it() {
    let python = std::env::var("LICHEN_TEST_PROTOBUF_PYTHON")
        .expect("LICHEN_TEST_PROTOBUF_PYTHON: run through controller/tests/with-protobuf.sh");
    let state = tempfile::tempdir().unwrap();
    let options = server::Options::new(state.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    let controller = server::start(options).await.unwrap();
    let url = format!("https://{}", controller.addr);
    let (admin, target) = common::connect(&url, state.path()).await;

    let mut device = target.device("sim-every-field").unwrap();
    device.fetch_certs().await.unwrap();
    device.register().await.unwrap();
    device.poll_config().await.unwrap();
    let uuid = device.uuid().unwrap().to_owned();

    // The example names another device in `id`: leave it to the controller.
    let text: String = EVERY_FIELD
        .lines()
        .filter(|line| !line.starts_with("id:"))
        .map(|line| format!("{line}\n"))
        .collect();
    let set = admin.set_config(&uuid, &text).await.unwrap();
    assert_eq!(
        device.poll_config().await.unwrap(),
        ConfigPoll::Changed(set.version.to_string())
    );
    let mut expected = device_config::parse(&text).unwrap();
    expected.id = device.config().id.clone();
    assert_eq!(device.config(), &expected, "the device gets every field");

    let served = device.config().encode_to_vec();
    assert_eq!(EdgeDevConfig::decode(&served[..]).unwrap(), expected);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("served.pb"), &served).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(device.config()).unwrap(),
    )
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python)
        .arg(root.join("tests/proto_peer/check_config.py"))
        .arg("--proto-dir")
        .arg(root.join("../services/lib/api/proto"))
        .arg("--served")
        .arg(dir.path().join("served.pb"))
        .arg("--json")
        .arg(dir.path().join("config.json"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
    controller.stop().await;
}
