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
//! default deny, and dom0 reaches its echo through a port map. It resolves a name through
//! zedrouter's DNS forwarder (dom0 answers as the uplink's resolver: `lichen-udp-peer dns`), and
//! the answer shows in zedrouter's DNS records (`dnsReqs`). Last, once dom0's transfer is over
//! (dom0 triggers it through a port map), it floods UDP at 40 datagrams a second for 20 s
//! through an ACE limiting it to 10 a second (burst 20) to a sink in dom0, which counts what
//! arrived: the passed rate must be within 10 % of the limit.
//!
//! A switch network instance is the uplink's dom0 bridge (docs/router.md; zedrouter publishes
//! the bridge as the instance's): two more app stand-ins on `lichenbr0`, `switch-a` at a static
//! address and `switch-b` with a lease from dom0's DHCP, reach each other directly.
//!
//! One Xen boot (one to three minutes under TCG). The transfer is 32 MiB: QEMU emulates Xen,
//! dom0 and the guest on two cores, and 100 MiB (the microvm test's size) took two minutes
//! at 0.8 MB/s each way; 32 MiB keeps the suite short and still crosses every ring many times.

use lichen_xen_tests::{boot, field};

/// MiB sent through the echo (and back).
const MIB: u64 = 32;

/// zedrouter's settings in the test: its uplink on dom0's bridge, dom0 as the resolver, one
/// instance from its command line, an ACE allowing dom0's port 7007, a port map 8007 -> 7, a
/// rate limit of `LIMIT` datagrams a second (burst `BURST`) on UDP to dom0's sink, and a port
/// map 8100 -> 7100 to net-client's flood trigger. The burst covers the gaps in which frames
/// reach zedrouter in clumps under TCG (seen up to 2 s with dom0 busy): a bucket that fills to
/// its cap during a gap loses the rest of that gap's tokens.
const ROUTER_CMDLINE: &str = "uplink=10.77.0.250/24 uplink_gw=10.77.0.1 dns=10.77.0.1 \
    subnet=10.1.0.1/24 flowlog_s=2 switch_bridge=lichenbr0 \
    acl=1#ip:10.77.0.1,protocol:tcp,fport:7007->accept;2#protocol:tcp,lport:8007->portmap:7;\
    3#ip:10.77.0.1,protocol:udp,fport:7010->limit:10/s/20;4#protocol:tcp,lport:8100->portmap:7100";

/// The rate limit's rate (datagrams a second) and burst, as in `ROUTER_CMDLINE`.
const LIMIT: f64 = 10.0;
const BURST: u64 = 20;

/// `switch-a`'s static address on dom0's bridge (outside udhcpd's pool, 10.77.0.10-200).
const SWITCH_A: &str = "10.77.0.210";

/// The name dom0's DNS server answers (the router-peer hook's default) and its address.
const NAME: &str = "peer.lichen.test";
const NAME_ADDR: &str = "10.77.0.42";

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
cmdline = "resolve={NAME} connect=10.77.0.1:7007,10.77.0.2:7007,10.77.0.1:7008 flood=10.77.0.1:7010 flood_pps=40 flood_s=20 flood_trigger=7100"

[services.switch-a]
image = "net-client"
memory = 16
network = "bridge"
restart = "never"
cmdline = "ip={SWITCH_A}/24"

[services.switch-b]
image = "net-client"
memory = 16
network = "bridge"
restart = "never"
cmdline = "connect={SWITCH_A}:7"
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
    switch_scenario(&log);
}

/// Two apps on the switch instance (dom0's bridge) reach each other.
fn switch_scenario(log: &str) {
    // The launcher prefixes each guest's console lines with the service's name.
    let said = |service: &str, text: &str| {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("{service} | ")) && l.contains(text)),
            "{service} did not log `{text}`:\n{log}"
        )
    };
    said(
        "switch-a",
        &format!("net-client: ipv4 address {SWITCH_A}/24"),
    );
    said("switch-b", "net: dhcp: leased 10.77.0.");
    said(
        "switch-b",
        &format!("net-client: reply from {SWITCH_A}:7: hello from net-client"),
    );
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
    dns_scenario(log);
    rate_limit_scenario(log);
    assert!(
        !log.contains("netfront: backend error") && !log.contains("broke the"),
        "a backend was reported misbehaving"
    );
}

/// A name resolved through zedrouter's forwarder, and recorded as a DNS request.
fn dns_scenario(log: &str) {
    let has = |text: &str| assert!(log.contains(text), "no `{text}` in the log:\n{log}");
    // dom0's server was asked by zedrouter (the query came from the uplink address, NATed).
    has(&format!(
        "udp-peer: dns {NAME} type 1 -> {NAME_ADDR} from 10.77.0.250:"
    ));
    // The app got the answer through the gateway's forwarder (its resolver from DHCP).
    has(&format!(
        "router-peer: app says: net-client: resolved {NAME} -> [{NAME_ADDR}]"
    ));
    // zedrouter recorded it for the flow log's dnsReqs.
    has(&format!("zedrouter: dns {NAME} -> [{NAME_ADDR}] app "));
}

/// The rate limit: the datagrams dom0's sink counted, over the span from the first to the
/// last, less the bucket's burst, are within 10 % of the limit; the rest were dropped by the
/// limit and counted as such.
fn rate_limit_scenario(log: &str) {
    let has = |text: &str| assert!(log.contains(text), "no `{text}` in the log:\n{log}");
    has("router-peer: flood trigger: flooding");
    has("router-peer: app says: net-client: flood 10.77.0.1:7010 sent 800 datagrams in ");
    let number = |key: &str| -> u64 {
        field(log, "udp-peer: sink port 7010", key)
            .unwrap_or_else(|| panic!("no sink line with {key} in the log:\n{log}"))
            .parse()
            .unwrap()
    };
    let (datagrams, span_ms) = (number("datagrams"), number("span_ms"));
    assert!(
        datagrams > BURST && span_ms >= 10_000,
        "the sink saw {datagrams} datagrams over {span_ms} ms"
    );
    let rate = (datagrams - BURST) as f64 * 1000.0 / span_ms as f64;
    println!("rate limit {LIMIT}/s: {datagrams} datagrams passed over {span_ms} ms: {rate:.2}/s");
    assert!(
        (rate - LIMIT).abs() <= LIMIT * 0.10,
        "the limit of {LIMIT}/s passed {rate:.2}/s ({datagrams} datagrams over {span_ms} ms)"
    );
    // The rest were dropped by the limit: a Drop record under ACE 3, and the instance's counter.
    has(":40000 -> 10.77.0.1:7010 out acl 3 Drop");
    has(":40000 -> 10.77.0.1:7010 out acl 3 Accept");
    has("(\"rate_limit\", ");
}
