//! Two controller processes sharing one PostgreSQL database (stateless controllers behind one
//! address): a device may talk to either, an admin may use either, and one killed with SIGKILL
//! loses nothing it acknowledged. Needs a PostgreSQL server, so it is ignored by a plain
//! `cargo test`: `controller/tests/with-postgres.sh cargo test -p lichen-controller --
//! --include-ignored` starts Debian's, sets `LICHEN_TEST_POSTGRES` and runs it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use lichen_controller::admin_cli::AdminClient;
use lichen_controller::devsim::fleet::Target;
use lichen_controller::devsim::{reports, ConfigPoll, SimError};
use tokio_postgres::NoTls;

fn server() -> String {
    std::env::var("LICHEN_TEST_POSTGRES").expect(
        "LICHEN_TEST_POSTGRES is not set: run controller/tests/with-postgres.sh cargo test -p lichen-controller -- --include-ignored",
    )
}

/// A new, empty database; returns its connection configuration.
async fn new_database(server: &str, name: &str) -> String {
    let name = format!("{name}_{}", std::process::id());
    let (client, connection) = tokio_postgres::connect(server, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    format!("{server} dbname={name}")
}

/// Starts the controller binary on `listen` with `database`; returns it and its URL.
fn start(state_dir: &Path, database: &str, listen: &str) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lichen-controller"));
    command
        .args(["serve", "--listen", listen, "--database-url", database])
        .arg("--state-dir")
        .arg(state_dir)
        .stderr(Stdio::inherit());
    common::serve(command)
}

/// The same fleet as `target`, reaching the controller at `url`.
fn through(target: &Target, url: &str, ca_pem: &str) -> Target {
    target.at(url, ca_pem).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (controller/tests/with-postgres.sh)"]
async fn two_controllers_share_one_database() {
    let server = server();
    let database = new_database(&server, "lichen_two_controllers").await;
    let state = tempfile::tempdir().unwrap();
    // The first creates the certificates and token; the second uses the same ones.
    let (mut a, url_a) = start(state.path(), &database, "127.0.0.1:0");
    let (mut b, url_b) = start(state.path(), &database, "127.0.0.1:0");
    let ca_pem = std::fs::read_to_string(state.path().join("ca.pem")).unwrap();
    let token = std::fs::read_to_string(state.path().join("admin.token")).unwrap();
    let (admin_a, mut target_a) = common::connect(&url_a, state.path()).await;
    let admin_b = AdminClient::new(&url_b, &ca_pem, &token).unwrap();
    target_a.identities = Some(state.path().join("identities"));
    let target_b = through(&target_a, &url_b, &ca_pem);

    // Onboarding admitted through A is known to B.
    assert_eq!(admin_b.onboarding().await.unwrap().len(), 1);

    // One device, through A then B with the same keys.
    let mut via_a = target_a.device("sim-1").unwrap();
    via_a.fetch_certs().await.unwrap();
    assert_eq!(via_a.register().await.unwrap(), StatusCode::CREATED);
    via_a.poll_config().await.unwrap();
    let uuid = via_a.uuid().unwrap().to_owned();
    let mut via_b = target_b.device("sim-1").unwrap();
    via_b.fetch_certs().await.unwrap();
    assert_eq!(via_b.register().await.unwrap(), StatusCode::OK);
    via_b.poll_config().await.unwrap();
    assert_eq!(via_b.uuid(), Some(uuid.as_str()));

    // Configuration set through either is served by both, versions one by one.
    let set = admin_b.set_config(&uuid, common::NODE_YAML).await.unwrap();
    assert_eq!(set.version, 1);
    assert_eq!(
        via_a.poll_config().await.unwrap(),
        ConfigPoll::Changed("1".into())
    );
    let set = admin_a
        .set_config(
            &uuid,
            "configItems: [{ key: timer.config.interval, value: '5' }]",
        )
        .await
        .unwrap();
    assert_eq!(set.version, 2);
    assert_eq!(
        via_b.poll_config().await.unwrap(),
        ConfigPoll::Changed("2".into())
    );
    // Concurrent changes through both: no version is lost or repeated.
    let writes = futures_util::future::join_all((0..6).map(|i| {
        let admin = if i % 2 == 0 { &admin_a } else { &admin_b };
        let text = format!("configItems: [{{ key: timer.config.interval, value: '{i}' }}]");
        let uuid = uuid.clone();
        async move { admin.set_config(&uuid, &text).await.unwrap().version }
    }))
    .await;
    let mut versions = writes.clone();
    versions.sort_unstable();
    assert_eq!(versions, [3, 4, 5, 6, 7, 8], "{writes:?}");

    // Reports posted through B are read through A.
    via_b
        .post_report("info", &reports::device_info(&uuid, "sim-1"))
        .await
        .unwrap();
    via_a
        .post_report("metrics", &reports::metrics(&uuid, 60))
        .await
        .unwrap();
    let kinds = |reports: lichen_controller::admin_api::Reports| -> Vec<String> {
        reports
            .reports
            .into_iter()
            .map(|report| report.kind)
            .collect()
    };
    let seen = admin_a
        .reports(&uuid, &[], 0, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(kinds(seen), ["info", "metrics"]);

    // The same new serial registered through both at once with different keys: one device.
    let mut race_a = target_a.device("sim-race").unwrap();
    let mut race_b = through(&target_a, &url_b, &ca_pem);
    race_b.identities = None;
    let mut race_b = race_b.device("sim-race").unwrap();
    race_a.fetch_certs().await.unwrap();
    race_b.fetch_certs().await.unwrap();
    let (first, second) = tokio::join!(race_a.register(), race_b.register());
    let mut statuses = [first, second].map(|result| match result {
        Ok(status) | Err(SimError::Status(status, _)) => status,
        Err(other) => panic!("{other:?}"),
    });
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);

    // SIGKILL A: B has everything A acknowledged; A restarted too.
    a.kill().unwrap();
    a.wait().unwrap();
    let devices = admin_b.devices().await.unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices
        .iter()
        .any(|device| device.uuid == uuid && device.config_version == 8));
    let (mut a, url_a) = start(
        state.path(),
        &database,
        url_a.trim_start_matches("https://"),
    );
    let admin_a = AdminClient::new(&url_a, &ca_pem, &token).unwrap();
    assert_eq!(admin_a.devices().await.unwrap().len(), 2);

    // Deleted through A: B no longer serves the device, although it had it cached.
    admin_a.delete_device(&uuid).await.unwrap();
    match via_b.poll_config().await {
        Err(SimError::Status(StatusCode::UNAUTHORIZED, _)) => {}
        other => panic!("a deleted device was served: {other:?}"),
    }

    for child in [&mut a, &mut b] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
