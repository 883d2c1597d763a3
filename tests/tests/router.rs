//! zedrouter under QEMU microvm: two guests on one Ethernet segment (a UDP-socket netdev,
//! `scripts/run --udp-nic`), zedrouter's uplink on QEMU's user network.
//!
//! ```text
//!  host 127.0.0.1 ── slirp (10.0.2.2) ── [uplink 10.0.2.15] zedrouter [10.1.0.1] ── net-client (DHCP)
//! ```
//!
//! zedrouter leases its uplink address from slirp's DHCP server (`uplink=dhcp`, QEMU's own
//! server as the peer: the first address it gives, 10.0.2.15, is the one `--hostfwd` targets);
//! the Xen tests cover the static uplink (tests/xen/tests/net.rs).
//!
//! net-client (a lichen guest standing in for an app) leases its address from zedrouter,
//! reaches a TCP server on the host through NAT (allowed by an ACL), is refused on another
//! port (default deny, seen as a dropped flow), and its echo port is reached from the host
//! through a port map. Under TCG.

use lichen_tests::{free_port, Accel, LiveGuest, Run};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// A TCP server on the host answering each connection's first line with `host got: LINE`.
fn line_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_ok() {
                let _ = stream.write_all(format!("host got: {line}").as_bytes());
            }
        }
    });
    port
}

#[test]
fn app_behind_zedrouter_gets_a_lease_reaches_the_host_and_is_reached_through_a_port_map() {
    let server = line_server();
    let refused = free_port();
    let mapped = free_port();
    let (router_side, app_side) = (free_port(), free_port());
    let acl =
        format!("acl=1#protocol:tcp,lport:9000->portmap:7;2#protocol:tcp,fport:{server}->accept");
    let router = LiveGuest::start(
        &Run::new("zedrouter")
            .accel(Accel::Tcg)
            .script_option("--hostfwd", Some(&format!("{mapped}:9000")))
            .script_option("--udp-nic", Some(&format!("{router_side}:{app_side}")))
            .arg(&acl)
            .arg("uplink=dhcp")
            .arg("flowlog_s=1"),
    );
    router.wait_for("zedrouter: uplink", Duration::from_secs(40));
    let uplink = router.wait_for("zedrouter: uplink lease", Duration::from_secs(40));
    assert!(
        uplink.contains("uplink lease 10.0.2.15/24 via 10.0.2.2 (dns 10.0.2.3) for "),
        "{uplink}"
    );
    let app = LiveGuest::start(
        &Run::new("net-client")
            .accel(Accel::Tcg)
            .script_option("--udp-nic", Some(&format!("{app_side}:{router_side}")))
            .arg(&format!("connect=10.0.2.2:{server},10.0.2.2:{refused}")),
    );
    let lease = app.wait_for("net-client: ipv4 address", Duration::from_secs(40));
    assert!(lease.contains("10.1.0.2/24"), "{lease}");
    router.wait_for("zedrouter: dhcp lease 10.1.0.2", Duration::from_secs(10));

    // Out through NAT to the host's server.
    let reply = app.wait_for("net-client: reply from", Duration::from_secs(40));
    assert!(
        reply.contains(&format!(
            "10.0.2.2:{server}: host got: hello from net-client"
        )),
        "{reply}"
    );
    let flow = router.wait_for(
        &format!("-> 10.0.2.2:{server} out acl 2 Accept"),
        Duration::from_secs(10),
    );
    assert!(flow.contains("flow tcp 10.1.0.2:"), "{flow}");

    // In through the port map to the app's echo.
    let deadline = Instant::now() + Duration::from_secs(30);
    let echoed = loop {
        let attempt = (|| -> std::io::Result<Vec<u8>> {
            let mut s = TcpStream::connect(("127.0.0.1", mapped))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"through the port map\n")?;
            let mut got = vec![0u8; 21];
            s.read_exact(&mut got)?;
            Ok(got)
        })();
        match attempt {
            Ok(got) => break got,
            Err(e) if Instant::now() > deadline => panic!("port map: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(500)),
        }
    };
    assert_eq!(echoed, b"through the port map\n");
    router.wait_for("-> 10.1.0.2:7 in acl 1 Accept", Duration::from_secs(10));

    // Another port on the host: no rule allows it, so default deny drops it, and says so.
    let denied = router.wait_for(
        &format!("-> 10.0.2.2:{refused} out acl 0 Drop"),
        Duration::from_secs(20),
    );
    assert!(denied.contains("flow tcp 10.1.0.2:"), "{denied}");
    let counters = router.wait_for("acl_drop", Duration::from_secs(10));
    assert!(counters.contains("zedrouter: counters"), "{counters}");
}
