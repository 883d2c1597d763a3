//! Networking under Xen: `echo` with `network = "bridge"` gets a vif on dom0's bridge, a DHCP
//! lease from dom0's udhcpd, and dom0 talks to it over TCP (the `net-echo` dom0 hook in
//! xen/dom0/hooks: a line, then a few MiB through the echo with sha256 on both ends).
//!
//! One Xen boot (one to three minutes under TCG). The transfer is 32 MiB: QEMU emulates Xen,
//! dom0 and the guest on two cores, and 100 MiB (the microvm test's size) took two minutes
//! at 0.8 MB/s each way; 32 MiB keeps the suite short and still crosses every ring many times.

use lichen_xen_tests::{boot, field};

/// MiB sent through the echo (and back).
const MIB: u64 = 32;

#[test]
fn dom0_reaches_echo_over_netfront_with_a_dhcp_lease() {
    let manifest = format!(
        r#"
name = "net"

[test]
hooks = ["net-echo"]
settings = {{ net-echo-mib = "{MIB}" }}

[services.echo]
image = "echo"
memory = 32
network = "bridge"
restart = "never"
"#
    );
    let run = boot("net-echo", &manifest, false, 420);
    let (status, log) = (run.status, run.log);
    let has = |text: &str| assert!(log.contains(text), "no `{text}` in the log:\n{log}");
    has("netfront: connected to backend domain 0");
    has("net: dhcp: leased 10.77.0.");
    has("echo: ipv4 address 10.77.0.");
    has("net-echo: reply: hello through netfront");
    let sent = field(&log, "net-echo: transfer", "sent").expect("no transfer line");
    let got = field(&log, "net-echo: transfer", "got").unwrap();
    assert_eq!(field(&log, "net-echo: transfer", "rc"), Some("0"));
    assert_eq!(sent, got, "the echo changed the bytes");
    assert_eq!(
        field(&log, "net-echo: transfer", "bytes"),
        Some((MIB << 20).to_string().as_str())
    );
    has("net-echo: status: {");
    assert!(
        !log.contains("netfront: backend error") && !log.contains("broke the"),
        "the backend was reported misbehaving"
    );
    assert!(status.is_some(), "the node did not stop");
}
