//! The TCP, UDP and DNS layer on the host: one stack on a [`Loopback`] card, driven by the
//! kernel's executor on the simulated clock (timeouts take no real time).

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::config::{Ipv4Mode, NetConfig, StaticIpv4};
use super::loopback::Loopback;
use super::*;
use crate::time::Duration;

const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const VECTOR: u8 = 0x40;

fn config(dns_servers: Vec<IpAddr>) -> NetConfig {
    NetConfig {
        ipv4: Ipv4Mode::Static(StaticIpv4 {
            address: ADDRESS,
            prefix_len: 24,
            gateway: None,
        }),
        dns_servers,
        ipv6_link_local: false,
    }
}

/// Runs `test` on a fresh stack over a loopback card configured with `config`.
fn run<T: 'static>(config: NetConfig, test: impl Future<Output = T> + 'static) -> T {
    // The executor and the stack are one per kernel: tests that use them take turns.
    let _turn = crate::executor::TEST_TURN
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    fresh();
    let mac = start_with_device(Box::new(Loopback::new(MAC, VECTOR, 256)), config)
        .expect("the stack starts");
    assert_eq!(mac, MAC);
    let result = crate::executor::run(test);
    fresh();
    result
}

fn fresh() {
    crate::executor::reset();
    super::stack::reset();
    crate::irq::reset();
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ADDRESS), port)
}

#[test]
fn connect_accept_echo_and_close() {
    let echoed = run(config(vec![]), async {
        let listener = TcpListener::bind(7, 4, TcpOptions::default()).unwrap();
        let server = crate::spawn(async move {
            let mut stream = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).await.unwrap();
            }
            stream.close().await.unwrap();
        });
        let mut client = TcpStream::connect(at(7), TcpOptions::default())
            .await
            .unwrap();
        assert_eq!(client.peer_addr(), Some(at(7)));
        // More than a window's worth, so that flow control is exercised.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut echoed = Vec::new();
        let mut buf = vec![0u8; 4096];
        for chunk in data.chunks(3000) {
            client.write_all(chunk).await.unwrap();
            let want = echoed.len() + chunk.len();
            while echoed.len() < want {
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0, "the echo server closed early");
                echoed.extend_from_slice(&buf[..n]);
            }
        }
        client.close().await.unwrap();
        server.await;
        let status = status().unwrap();
        assert_eq!(status.stack.tcp_accepted, 1);
        assert_eq!(status.stack.tcp_connected, 1);
        echoed == data
    });
    assert!(echoed, "the echo differs from what was sent");
}

#[test]
fn the_peer_closing_ends_reads() {
    run(config(vec![]), async {
        let listener = TcpListener::bind(8000, 4, TcpOptions::default()).unwrap();
        let server = crate::spawn(async move {
            let mut stream = listener.accept().await.unwrap();
            stream.write_all(b"bye").await.unwrap();
            stream.close().await.unwrap();
        });
        let mut client = TcpStream::connect(at(8000), TcpOptions::default())
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        loop {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"bye");
        server.await;
    });
}

#[test]
fn connecting_to_a_closed_port_is_reset() {
    run(config(vec![]), async {
        let result = TcpStream::connect(at(9), TcpOptions::default()).await;
        assert_eq!(result.err(), Some(TcpError::Reset));
    });
}

#[test]
fn reads_time_out_on_the_simulated_clock() {
    run(config(vec![]), async {
        let listener = TcpListener::bind(8001, 4, TcpOptions::default()).unwrap();
        // The server accepts and then says nothing.
        let server = crate::spawn(async move {
            let stream = listener.accept().await.unwrap();
            crate::sleep(Duration::from_secs(3600)).await;
            drop(stream);
        });
        let options = TcpOptions {
            timeout: Some(Duration::from_secs(5)),
            ..TcpOptions::default()
        };
        let mut client = TcpStream::connect(at(8001), options).await.unwrap();
        let start = crate::now();
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).await, Err(TcpError::TimedOut));
        let waited = crate::now().saturating_duration_since(start);
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
            "{waited:?}"
        );
        drop(client);
        drop(server);
    });
}

#[test]
fn a_listener_refuses_beyond_its_backlog_and_keeps_accepting() {
    run(config(vec![]), async {
        let listener = TcpListener::bind(8002, 2, TcpOptions::default()).unwrap();
        let options = TcpOptions {
            timeout: Some(Duration::from_secs(10)),
            ..TcpOptions::default()
        };
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(at(8002), options).await.unwrap());
        }
        // Both are queued, unaccepted: a third finds no listening socket.
        assert!(TcpStream::connect(at(8002), options).await.is_err());
        for mut client in clients {
            let mut accepted = listener.accept().await.unwrap();
            client.write_all(b"x").await.unwrap();
            let mut buf = [0u8; 1];
            assert_eq!(accepted.read(&mut buf).await, Ok(1));
        }
        // With the queue drained, connections are accepted again.
        let _again = TcpStream::connect(at(8002), options).await.unwrap();
        listener.accept().await.unwrap();
    });
}

#[test]
fn a_port_is_bound_once() {
    run(config(vec![]), async {
        let _listener = TcpListener::bind(8003, 1, TcpOptions::default()).unwrap();
        assert!(TcpListener::bind(8003, 1, TcpOptions::default()).is_err());
        assert!(TcpListener::bind(0, 1, TcpOptions::default()).is_err());
        let _udp = UdpSocket::bind(5000, UdpOptions::default()).unwrap();
        assert_eq!(
            UdpSocket::bind(5000, UdpOptions::default()).err(),
            Some(UdpError::BadPort(5000))
        );
    });
}

#[test]
fn udp_datagrams_go_both_ways() {
    run(config(vec![]), async {
        let a = UdpSocket::bind(5001, UdpOptions::default()).unwrap();
        let b = UdpSocket::bind(5002, UdpOptions::default()).unwrap();
        a.send_to(b"ping", at(5002)).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"ping"[..], at(5001)));
        b.send_to(b"pong!", from).await.unwrap();
        let (n, from) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"pong!"[..], at(5002)));
        let mut tiny = [0u8; 2];
        a.send_to(b"too long", at(5002)).await.unwrap();
        assert_eq!(b.recv_from(&mut tiny).await, Err(UdpError::Truncated));
        assert!(a.send_to(b"x", at(0)).await.is_err(), "port 0");
    });
}

/// A DNS server on port 53 of the stack itself: answers every A query for a name it knows
/// with `address` and a TTL, counts the queries it answered.
async fn dns_server(socket: UdpSocket, answers: Rc<RefCell<u32>>) {
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        let query = &buf[..n];
        // Header (12 bytes), then the question: labels, type, class.
        let mut end = 12;
        while query[end] != 0 {
            end += 1 + usize::from(query[end]);
        }
        let question = &query[12..end + 5];
        let known = question.starts_with(b"\x07example\x06lichen\x00");
        let mut reply = Vec::new();
        reply.extend_from_slice(&query[..2]); // id
        let rcode = if known { 0 } else { 3 }; // NXDOMAIN for the rest
        reply.extend_from_slice(&[0x81, 0x80 | rcode]);
        reply.extend_from_slice(&[0, 1, 0, u8::from(known), 0, 0, 0, 0]);
        reply.extend_from_slice(question);
        if known {
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // name pointer, A, IN
            reply.extend_from_slice(&300u32.to_be_bytes()); // TTL
            reply.extend_from_slice(&[0, 4, 192, 0, 2, 7]);
        }
        *answers.borrow_mut() += 1;
        socket.send_to(&reply, from).await.unwrap();
    }
}

#[test]
fn names_resolve_and_are_cached() {
    let resolver = IpAddr::V4(ADDRESS);
    run(config(vec![resolver]), async {
        let answers = Rc::new(RefCell::new(0));
        let socket = UdpSocket::bind(53, UdpOptions::default()).unwrap();
        let server = crate::spawn(dns_server(socket, answers.clone()));
        let expected = vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))];
        assert_eq!(resolve("example.lichen").await, Ok(expected.clone()));
        assert_eq!(*answers.borrow(), 1);
        // The second lookup is answered from the cache.
        assert_eq!(resolve("example.lichen").await, Ok(expected));
        assert_eq!(*answers.borrow(), 1);
        let counters = status().unwrap().stack;
        assert_eq!((counters.dns_queries, counters.dns_cache_hits), (1, 1));
        // Literals need no server; unknown names fail.
        assert_eq!(
            resolve("10.1.2.3").await,
            Ok(vec![IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))])
        );
        assert_eq!(resolve("nowhere.lichen").await, Err(DnsError::Failed));
        drop(server);
    });
}

#[test]
fn lookups_time_out_without_an_answer_and_need_a_server() {
    run(config(vec![IpAddr::V4(ADDRESS)]), async {
        // Nothing listens on port 53: the queries go unanswered.
        let start = crate::now();
        assert_eq!(resolve("silent.lichen").await, Err(DnsError::TimedOut));
        assert!(crate::now().saturating_duration_since(start) >= Duration::from_secs(1));
    });
    run(config(vec![]), async {
        assert_eq!(resolve("example.lichen").await, Err(DnsError::NoServers));
    });
}
