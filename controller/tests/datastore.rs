//! The controller's datastore and `admin app deploy`, end to end: the CLI uploads a file and
//! configures the only device; the device's next config poll carries the EVE objects; the file
//! is served byte-exact to curl (a client no one here wrote) over HTTPS under the controller's
//! CA and over plain HTTP, with byte ranges for resuming, and refused without the datastore's
//! credentials.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use lichen_controller::devsim::ConfigPoll;
use lichen_controller::server;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs curl; its output (body on stdout).
fn curl(args: &[&str]) -> Output {
    let output = Command::new("curl")
        .args(["--silent", "--show-error"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(output.status.success(), "curl {args:?}: {output:?}");
    output
}

/// The HTTP status curl saw.
fn status(args: &[&str]) -> String {
    let mut all = vec!["--output", "/dev/null", "--write-out", "%{http_code}"];
    all.extend_from_slice(args);
    String::from_utf8(curl(&all).stdout).unwrap()
}

fn deploy(url: &str, state: &Path, file: &Path, name: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lichen-controller"))
        .args(["admin", "--url", url, "--state-dir"])
        .arg(state)
        .args(["app", "deploy"])
        .arg(file)
        .args(["--name", name, "--memory-mib", "32"])
        .output()
        .expect("run lichen-controller admin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_serves_the_file_and_configures_the_device() {
    let state = tempfile::tempdir().unwrap();
    let mut options = server::Options::new(state.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    options.datastore_http = Some("127.0.0.1:0".parse().unwrap());
    let controller = server::start(options).await.unwrap();
    let url = format!("https://{}", controller.addr);
    let (_admin, target) = common::connect(&url, state.path()).await;

    // No device yet: deploy says so and changes nothing.
    let image = state.path().join("echo.elf");
    let bytes: Vec<u8> = (0..300_001u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&image, &bytes).unwrap();
    let refused = tokio::task::block_in_place(|| deploy(&url, state.path(), &image, "echo"));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no device"));

    let mut device = target.device("sim-1").unwrap();
    device.fetch_certs().await.unwrap();
    device.register().await.unwrap();
    device.fetch_uuid().await.unwrap();
    let deployed = tokio::task::block_in_place(|| deploy(&url, state.path(), &image, "echo"));
    assert!(deployed.status.success(), "{deployed:?}");

    assert!(matches!(
        device.poll_config().await.unwrap(),
        ConfigPoll::Changed(_)
    ));
    let config = device.config().clone();
    let sha = hex(&Sha256::digest(&bytes));
    let [datastore] = &config.datastores[..] else {
        panic!("one datastore: {config:?}")
    };
    let [tree] = &config.content_info[..] else {
        panic!("one content tree")
    };
    let [volume] = &config.volumes[..] else {
        panic!("one volume")
    };
    let [app] = &config.apps[..] else {
        panic!("one app")
    };
    assert_eq!(datastore.fqdn, url, "no server name: the listen address");
    assert_eq!((tree.sha256.as_str(), tree.url.as_str()), (&*sha, &*sha));
    assert_eq!(tree.max_size_bytes, bytes.len() as u64);
    assert_eq!(tree.ds_ids_list, std::slice::from_ref(&datastore.id));
    assert_eq!(
        volume.origin.as_ref().unwrap().download_content_tree_id,
        tree.uuid
    );
    assert_eq!(app.volume_ref_list[0].uuid, volume.uuid);
    assert_eq!(app.fixedresources.as_ref().unwrap().memory, 32 * 1024);

    // What the device downloads: fqdn/dpath/URL with the datastore's credentials.
    let ca = state.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let file_url = format!("{}/{}/{}", datastore.fqdn, datastore.dpath, tree.url);
    let user = format!("{}:{}", datastore.api_key, datastore.password);
    let got = curl(&["--cacert", ca, "--user", &user, &file_url]).stdout;
    assert!(got == bytes, "served byte-exact over HTTPS");
    let tail = curl(&[
        "--cacert", ca, "--user", &user, "--range", "1000-", &file_url,
    ])
    .stdout;
    assert!(tail == bytes[1000..], "a range from an offset");
    let middle = curl(&[
        "--cacert",
        ca,
        "--user",
        &user,
        "--include",
        "--range",
        "10-19",
        &file_url,
    ])
    .stdout;
    let middle = String::from_utf8_lossy(&middle).to_lowercase();
    assert!(middle.starts_with("http/1.1 206"), "{middle}");
    assert!(
        middle.contains("content-range: bytes 10-19/300001"),
        "{middle}"
    );
    assert!(middle.contains("content-length: 10"), "{middle}");
    let head = curl(&["--cacert", ca, "--user", &user, "--head", &file_url]).stdout;
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 300001"), "{head}");
    assert!(head.contains("accept-ranges: bytes"), "{head}");
    let plain = format!(
        "http://{}/datastore/{sha}",
        controller.datastore_http_addr.unwrap()
    );
    let got = curl(&["--user", &user, &plain]).stdout;
    assert!(got == bytes, "served byte-exact over plain HTTP");

    // Refusals.
    assert_eq!(status(&["--cacert", ca, &file_url]), "401");
    assert_eq!(
        status(&["--cacert", ca, "--user", "lichen:wrong", &file_url]),
        "401"
    );
    let missing = format!("{}/datastore/{}", datastore.fqdn, "0".repeat(64));
    assert_eq!(status(&["--cacert", ca, "--user", &user, &missing]), "404");
    let sneaky = format!("{}/datastore/identity.json", datastore.fqdn);
    assert_eq!(status(&["--cacert", ca, "--user", &user, &sneaky]), "404");
    assert_eq!(
        status(&["--cacert", ca, "--user", &user, "--range", "300001-", &file_url]),
        "416"
    );

    // Deploying a new image under the same name replaces it.
    std::fs::write(&image, b"version two").unwrap();
    let again = tokio::task::block_in_place(|| deploy(&url, state.path(), &image, "echo"));
    assert!(again.status.success(), "{again:?}");
    device.poll_config().await.unwrap();
    let config = device.config();
    assert_eq!(config.apps.len(), 1);
    assert_eq!(config.apps[0].uuidandversion.as_ref().unwrap().version, "2");
    assert_eq!(config.content_info.len(), 1);
    assert_eq!(
        config.content_info[0].sha256,
        hex(&Sha256::digest(b"version two"))
    );
    controller.stop().await;
}
