//! zedagent under QEMU microvm (TCG) against the real lichen-controller on the host: TLS 1.3
//! verified against the pinned root, onboarding (403 until the host admits the onboarding
//! certificate, then 201), config polls (a config set on the host arrives at the next poll),
//! info; and a controller that does not chain to the pinned root, or is not the host dialled,
//! refused before anything is sent.
//!
//! The guest runs with `identity=volatile` (zedagent's test mode without a vault): each boot is
//! a new device. The identity's persistence is the vault's, tested under Xen.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use lichen_tests::controller::{self, onboarding_cert, Controller, TempDir};
use lichen_tests::{run_console_watching, Accel, Boot, Run};

/// A config partition without a vault key (zedagent runs alone, identity=volatile).
fn config_partition(dir: &Path, root_pem: &Path, server: &str, serial: &str) -> std::path::PathBuf {
    controller::config_partition(dir, root_pem, server, serial, false)
}

/// Builds the zedagent image once (just it: these tests boot nothing else).
fn build_zedagent() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(lichen_tests::root().join("scripts/build"))
            .arg("zedagent")
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/build");
        assert!(status.success(), "scripts/build zedagent failed");
    });
}

/// zedagent's QEMU command with `image` as its config disk.
fn zedagent(image: &Path, args: &[&str]) -> Vec<String> {
    let mut run = Run::new("zedagent")
        .accel(Accel::Tcg)
        .timeout(Duration::from_secs(180))
        .script_option("--hostfwd", Some("none"))
        .script_option(
            "--disk",
            Some(&format!("{},ro,name=config", image.display())),
        )
        .arg("identity=volatile");
    for arg in args {
        run = run.arg(arg);
    }
    build_zedagent();
    run.command()
}

/// The index of the first line containing `needle`.
fn index_of(boot: &Boot, needle: &str) -> usize {
    boot.lines
        .iter()
        .position(|l| l.text.contains(needle))
        .unwrap_or_else(|| panic!("no line contains {needle:?}; output:\n{}", boot.output()))
}

#[test]
fn onboards_once_admitted_polls_its_config_and_reports_info() {
    let dir = TempDir::new("onboard");
    let controller = Controller::start(&dir.0.join("state"), &["10.0.2.2"]);
    onboarding_cert(&dir.0);
    let image = config_partition(
        &dir.0,
        &dir.0.join("state/ca.pem"),
        &format!("10.0.2.2:{}", controller.port),
        "zt-1",
    );
    let argv = zedagent(
        &image,
        &["polls=7", "config_interval=1", "metric_interval=1"],
    );
    let onboard_pem = dir.0.join("onboard.pem");
    let config_file = dir.0.join("config.yaml");
    std::fs::write(
        &config_file,
        "configItems:\n  - { key: timer.config.interval, value: \"2\" }\n",
    )
    .unwrap();
    let mut uuid: Option<String> = None;
    let mut admitted = false;
    let mut deleted = false;
    let boot = run_console_watching(&argv, Duration::from_secs(180), None, |line| {
        // Admit the node only once it was refused: the guest must report 403 and retry.
        if !admitted && line.text.contains("403 Forbidden") {
            admitted = true;
            controller.admin(&[
                "onboarding",
                "add",
                onboard_pem.to_str().unwrap(),
                "--serial",
                "zt-*",
            ]);
        }
        if let Some(rest) = line.text.split("onboarded as device ").nth(1) {
            let id = rest.trim().to_string();
            controller.admin(&["config", "set", &id, config_file.to_str().unwrap()]);
            uuid = Some(id);
        }
        // Once the new configuration is in force, the operator deletes the device: the node
        // must notice (its requests are refused) and onboard again.
        if !deleted && line.text.contains("polling every 2 s") {
            deleted = true;
            controller.admin(&["devices", "delete", uuid.as_deref().unwrap()]);
        }
    });
    boot.expect("TLS 1.3 with 10.0.2.2");
    boot.expect("controller signing certificate verified against the root");
    let refused = index_of(&boot, "register: 403 Forbidden for serial \"zt-1\"");
    let created = index_of(&boot, "register: 201 Created");
    assert!(refused < created, "403 came after 201:\n{}", boot.output());
    let changed = boot.expect("config version 1 from the controller");
    assert!(
        changed.text.contains("1 config items; polling every 2 s"),
        "{}",
        changed.text
    );
    boot.expect("config unchanged (304)");
    boot.expect("info: device report delivered (201)");
    boot.expect("metrics delivered (201)");
    let again = index_of(&boot, "onboarding again");
    let created_again = boot
        .lines
        .iter()
        .rposition(|l| l.text.contains("register: 201 Created"))
        .unwrap();
    assert!(again < created_again, "{}", boot.output());
    boot.expect("heap peak");
    boot.expect_status(0);

    let uuid = uuid.expect("the guest said its UUID");
    let devices = controller.admin(&["devices", "list"]);
    assert!(
        devices.contains(&uuid) && devices.contains("zt-1"),
        "{devices}"
    );
    let info = controller.admin(&["follow", &uuid, "--kinds", "info", "--no-wait"]);
    assert!(
        info.contains("\"platform\":\"qemu-microvm\"") && info.contains("ZDEVICE_STATE_ONLINE"),
        "{info}"
    );
    let metrics = controller.admin(&["follow", &uuid, "--kinds", "metrics", "--no-wait"]);
    assert!(
        metrics.contains("\"availMem\"") && metrics.contains("\"iName\":\"uplink\""),
        "{metrics}"
    );
}

#[test]
fn refuses_a_controller_off_the_pinned_root_or_under_another_name() {
    let dir = TempDir::new("refuse");
    onboarding_cert(&dir.0);
    // The controller's certificate does not name 10.0.2.2, the address dialled.
    let unnamed = Controller::start(&dir.0.join("state"), &[]);
    let image = config_partition(
        &dir.0,
        &dir.0.join("state/ca.pem"),
        &format!("10.0.2.2:{}", unnamed.port),
        "zt-2",
    );
    let boot = lichen_tests::run_console(
        &zedagent(&image, &[]),
        Duration::from_secs(120),
        Some("retrying"),
    );
    boot.expect("invalid peer certificate: NotValidForNameContext { expected: IpAddress(V4(Ipv4Addr([10, 0, 2, 2])))");
    assert!(boot.line("register").is_none(), "{}", boot.output());
    drop(unnamed);

    // A root that did not issue the controller's certificate (the onboarding certificate,
    // self-signed, stands in for another root).
    let named = Controller::start(&dir.0.join("state2"), &["10.0.2.2"]);
    let image = config_partition(
        &dir.0,
        &dir.0.join("onboard.pem"),
        &format!("10.0.2.2:{}", named.port),
        "zt-2",
    );
    let boot = lichen_tests::run_console(
        &zedagent(&image, &[]),
        Duration::from_secs(120),
        Some("retrying"),
    );
    boot.expect("invalid peer certificate: UnknownIssuer");
    assert!(boot.line("register").is_none(), "{}", boot.output());
}

/// A man in the middle with the controller's own TLS certificate (so the guest's TLS checks
/// pass): it forwards requests to the controller and flips the last byte (the signature's) of
/// the first `tamper` config responses with a body. Returns the port it listens on.
fn tampering_proxy(controller: &Controller, tamper: usize) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(controller.state.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(controller.state.join("server.key")).unwrap();
    let server = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(controller.state.join("ca.pem")).unwrap())
        .unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let upstream = controller.port;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let left = Arc::new(AtomicUsize::new(tamper));

    /// Reads one HTTP message (head and Content-Length body) from `stream`.
    fn message(stream: &mut impl Read) -> Option<Vec<u8>> {
        let mut data = Vec::new();
        let mut byte = [0u8; 1];
        while !data.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).ok()? == 0 {
                return None;
            }
            data.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&data).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).ok()?;
        data.extend_from_slice(&body);
        Some(data)
    }

    std::thread::spawn(move || {
        for guest in listener.incoming().map_while(Result::ok) {
            let (server, client, left) = (server.clone(), client.clone(), left.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(server).unwrap();
                let mut guest = rustls::StreamOwned::new(conn, guest);
                let tcp = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let name = ServerName::try_from("127.0.0.1").unwrap();
                let conn = rustls::ClientConnection::new(client, name).unwrap();
                let mut controller = rustls::StreamOwned::new(conn, tcp);
                while let Some(request) = message(&mut guest) {
                    let config = String::from_utf8_lossy(&request[..request.len().min(200)])
                        .contains("/config ");
                    controller.write_all(&request).unwrap();
                    let Some(mut response) = message(&mut controller) else {
                        return;
                    };
                    if config
                        && response.starts_with(b"HTTP/1.1 200")
                        && left
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                    {
                        *response.last_mut().unwrap() ^= 0x01;
                    }
                    guest.write_all(&response).unwrap();
                }
            });
        }
    });
    port
}

#[test]
fn a_tampered_config_is_refused_and_the_next_good_one_taken() {
    let dir = TempDir::new("tamper");
    let controller = Controller::start(&dir.0.join("state"), &["10.0.2.2"]);
    onboarding_cert(&dir.0);
    controller.admin(&[
        "onboarding",
        "add",
        dir.0.join("onboard.pem").to_str().unwrap(),
        "--serial",
        "zt-3",
    ]);
    let proxy = tampering_proxy(&controller, 1);
    let image = config_partition(
        &dir.0,
        &dir.0.join("state/ca.pem"),
        &format!("10.0.2.2:{proxy}"),
        "zt-3",
    );
    let boot = lichen_tests::run_console(
        &zedagent(&image, &["polls=2", "config_interval=1"]),
        Duration::from_secs(180),
        None,
    );
    let refused = index_of(
        &boot,
        "config poll failed: config refused: controller envelope: signature does not verify",
    );
    let taken = index_of(&boot, "config version 0 from the controller");
    assert!(refused < taken, "{}", boot.output());
    boot.expect_status(0);
}
