//! Networking under Xen: `echo` with `network = "bridge"` gets a vif on dom0's bridge, a DHCP
//! lease from dom0's udhcpd, and dom0 talks to it over TCP (the `net-echo` dom0 hook in
//! xen/dom0/hooks: a line, then a few MiB through the echo with sha256 on both ends).
//!
//! The same boot runs a local network instance (issue 17, docs/router.md): `zedrouter` with
//! its uplink on dom0's bridge (static 10.77.0.250) and one port on the instance bridge
//! `lichenni1`, and `net-client`, a lichen guest standing in for an app on `lichenni1`. It
//! leases its address from zedrouter's DHCP server, reaches a TCP server in dom0 (the
//! `router-peer` hook; dom0 has no route to the instance's subnet) through NAT and an allowing
//! ACE (`ip:10.77.0.1`), is refused another host on that port and another port of dom0 by
//! default deny, and dom0 reaches its echo through a port map.
//!
//! One Xen boot (one to three minutes under TCG). The transfer is 32 MiB: QEMU emulates Xen,
//! dom0 and the guest on two cores, and 100 MiB (the microvm test's size) took two minutes
//! at 0.8 MB/s each way; 32 MiB keeps the suite short and still crosses every ring many times.

use lichen_xen_tests::{boot, field};

/// MiB sent through the echo (and back).
const MIB: u64 = 32;

/// zedrouter's settings in the test: its uplink on dom0's bridge, one instance from its
/// command line, an ACE allowing dom0's port 7007 and a port map 8007 -> 7.
const ROUTER_CMDLINE: &str = "uplink=10.77.0.250/24 uplink_gw=10.77.0.1 dns=off \
    subnet=10.1.0.1/24 flowlog_s=2 \
    acl=1#ip:10.77.0.1,protocol:tcp,fport:7007->accept;2#protocol:tcp,lport:8007->portmap:7";

#[test]
fn dom0_reaches_echo_over_netfront_with_a_dhcp_lease() {
    let manifest = format!(
        r#"
name = "net"
network_instances = 1

[test]
hooks = ["net-echo", "router-peer"]
settings = {{ net-echo-mib = "{MIB}", net-echo-await = "/run/router-peer.done" }}

[services.echo]
image = "echo"
memory = 32
network = "bridge"
restart = "never"

[services.zedrouter]
image = "zedrouter"
memory = 24
network = "bridge"
router = true
daemon = true
cmdline = "{ROUTER_CMDLINE}"

[services.net-client]
image = "net-client"
memory = 16
network = "lichenni1"
restart = "never"
cmdline = "connect=10.77.0.1:7007,10.77.0.2:7007,10.77.0.1:7008"
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
    router_scenario(&log);
}

/// What the local network instance did in the same boot.
fn router_scenario(log: &str) {
    let has = |text: &str| assert!(log.contains(text), "no `{text}` in the log:\n{log}");
    has("zedrouter: network instance static (static) on port 1: gateway 10.1.0.1/24");
    has("router-peer: app says: net-client: ipv4 address 10.1.0.");
    has("zedrouter: dhcp lease 10.1.0.");
    // Out through NAT: dom0 answered, and the record says which ACE let it out.
    has("router-peer: app says: net-client: reply from 10.77.0.1:7007: dom0 got: hello from net-client");
    has("-> 10.77.0.1:7007 out acl 1 Accept");
    // An ACE allowing one host (ip:10.77.0.1) blocks another on the same port.
    has("router-peer: app says: net-client: connect 10.77.0.2:7007:");
    has("-> 10.77.0.2:7007 out acl 0 Drop");
    // Default deny: no ACE allows dom0's 7008.
    has("router-peer: app says: net-client: connect 10.77.0.1:7008:");
    has("-> 10.77.0.1:7008 out acl 0 Drop");
    // In through the port map to the app's echo.
    has("router-peer: port map reply: through the port map");
    has(":7 in acl 2 Accept");
    assert!(
        !log.contains("netfront: backend error") && !log.contains("broke the"),
        "a backend was reported misbehaving"
    );
}
