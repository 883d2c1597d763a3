//! TCP and UDP load against an echo server, for `scripts/bench router` (the `lichen-net-bench`
//! binary): one connection's echo throughput, sequential connections per second, one-byte
//! round trips, and a spray of UDP datagrams from distinct source ports (one NAT entry each).
//!
//! What the peer may corrupt: everything it sends back. The echoed stream is compared byte for
//! byte with what was sent ([`Pattern`]); a short, long or changed echo is an error naming the
//! offset, never a panic or a wrong figure. Nothing received is parsed beyond that comparison.
//! Every connection has a timeout, so a peer that stops answering ends a measurement with an
//! error instead of hanging it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// How long one read, write or connect may wait.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The bytes sent through an echo: byte `i` of the stream is `i mod 251` (a prime, so that a
/// lost or repeated block of any power-of-two size shows as a mismatch).
#[derive(Debug, Default, Clone, Copy)]
pub struct Pattern {
    /// Bytes of the stream produced or checked so far.
    pub offset: u64,
}

impl Pattern {
    /// Fills `buf` with the stream's next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            *b = (self.offset % 251) as u8;
            self.offset += 1;
        }
    }

    /// Checks that `buf` is the stream's next bytes; the error is the offset of the first
    /// byte that differs.
    pub fn check(&mut self, buf: &[u8]) -> Result<(), u64> {
        for &b in buf {
            if b != (self.offset % 251) as u8 {
                return Err(self.offset);
            }
            self.offset += 1;
        }
        Ok(())
    }
}

/// Connects with [`IO_TIMEOUT`] on every operation and Nagle off (the echo's small writes).
pub fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .and_then(|_| stream.set_nodelay(true))
        .map_err(|e| format!("{addr}: socket options: {e}"))?;
    Ok(stream)
}

/// Sends `bytes` of [`Pattern`] through the echo at `addr` on one connection (a writer thread
/// while this one reads), checks every byte that comes back, and returns the time from the
/// connection's start to the last byte echoed.
pub fn echo(addr: SocketAddr, bytes: u64) -> Result<Duration, String> {
    let start = Instant::now();
    let stream = connect(addr)?;
    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("{addr}: clone: {e}"))?;
    let sender = std::thread::spawn(move || -> Result<(), String> {
        let mut pattern = Pattern::default();
        let mut block = vec![0u8; 64 * 1024];
        while pattern.offset < bytes {
            let n = (bytes - pattern.offset).min(block.len() as u64) as usize;
            pattern.fill(&mut block[..n]);
            writer
                .write_all(&block[..n])
                .map_err(|e| format!("send at {}: {e}", pattern.offset))?;
        }
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))
    });
    let mut reader = stream;
    let mut expected = Pattern::default();
    let mut buf = vec![0u8; 64 * 1024];
    let received = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if expected.offset + n as u64 > bytes {
                    break Err(format!("{addr}: echoed more than the {bytes} bytes sent"));
                }
                if let Err(at) = expected.check(&buf[..n]) {
                    break Err(format!("{addr}: the echo differs at byte {at}"));
                }
                if expected.offset == bytes {
                    break Ok(());
                }
            }
            Err(e) => break Err(format!("{addr}: receive at {}: {e}", expected.offset)),
        }
    };
    let elapsed = start.elapsed();
    // On an error the writer may be blocked on a full window: end the connection under it.
    if received.is_err() {
        let _ = reader.shutdown(Shutdown::Both);
    }
    let sent = sender
        .join()
        .map_err(|_| format!("{addr}: the sender panicked"))?;
    received?;
    sent.map_err(|e| format!("{addr}: {e}"))?;
    if expected.offset != bytes {
        return Err(format!(
            "{addr}: the echo ended after {} of {bytes} bytes",
            expected.offset
        ));
    }
    Ok(elapsed)
}

/// One byte out and back on a fresh connection, then close.
fn one_exchange(addr: SocketAddr) -> Result<(), String> {
    let mut stream = connect(addr)?;
    stream
        .write_all(b"x")
        .map_err(|e| format!("{addr}: send: {e}"))?;
    let mut byte = [0u8; 1];
    stream
        .read_exact(&mut byte)
        .map_err(|e| format!("{addr}: receive: {e}"))?;
    if byte != *b"x" {
        return Err(format!("{addr}: echoed {:?} for b'x'", byte[0]));
    }
    Ok(())
}

/// Sequential connections for `span`: each connects, echoes one byte, closes. Returns how
/// many completed and the time they took (at least `span`).
pub fn connections(addr: SocketAddr, span: Duration) -> Result<(u64, Duration), String> {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < span {
        one_exchange(addr)?;
        done += 1;
    }
    Ok((done, start.elapsed()))
}

/// `count` one-byte round trips on one connection (after one unmeasured warm-up trip),
/// each timed, returned sorted, and the time all of them took (its mean does not depend on
/// the clock's resolution, which under emulation can be coarser than one trip).
pub fn round_trips(addr: SocketAddr, count: usize) -> Result<(Vec<Duration>, Duration), String> {
    let mut stream = connect(addr)?;
    let mut times = Vec::with_capacity(count);
    let mut all = Instant::now();
    let mut byte = [0u8; 1];
    for i in 0..=count {
        let sent = [(i % 251) as u8];
        let start = Instant::now();
        stream
            .write_all(&sent)
            .map_err(|e| format!("{addr}: send: {e}"))?;
        stream
            .read_exact(&mut byte)
            .map_err(|e| format!("{addr}: receive: {e}"))?;
        if byte != sent {
            return Err(format!("{addr}: round trip {i} echoed {}", byte[0]));
        }
        if i > 0 {
            times.push(start.elapsed());
        } else {
            all = Instant::now();
        }
    }
    let all = all.elapsed();
    times.sort();
    Ok((times, all))
}

/// The median of sorted `times` (zero for none).
pub fn median(times: &[Duration]) -> Duration {
    match times.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => times[n / 2],
        n => (times[n / 2 - 1] + times[n / 2]) / 2,
    }
}

/// Sends one small datagram to `addr` from each source port of `ports` (a router keeps one NAT
/// entry per source port; ports chosen here rather than by the kernel, whose ephemeral ports
/// repeat within a few thousand), on `threads` threads (under emulation the sockets' system
/// calls can be slower than the rate), paced to `per_second` in all (so that two routers get
/// the same rate). A port that cannot be bound (in use) is skipped. Returns how many were
/// sent.
pub fn udp_spray(
    addr: SocketAddr,
    ports: std::ops::Range<u16>,
    threads: u16,
    per_second: f64,
) -> Result<u64, String> {
    let threads = threads.max(1);
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let ports = ports.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let mut sent = 0u64;
                for (k, port) in ports.skip(t as usize).step_by(threads as usize).enumerate() {
                    // Datagram i of the whole spray is due at i / per_second.
                    let i = (k * threads as usize + t as usize) as f64;
                    let due = start + Duration::from_secs_f64(i / per_second.max(1.0));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let Ok(socket) = UdpSocket::bind(("0.0.0.0", port)) else {
                        continue;
                    };
                    socket
                        .send_to(&port.to_be_bytes(), addr)
                        .map_err(|e| format!("send to {addr} from port {port}: {e}"))?;
                    sent += 1;
                }
                Ok(sent)
            })
        })
        .collect();
    let mut sent = 0;
    for worker in workers {
        sent += worker
            .join()
            .map_err(|_| "a spraying thread panicked".to_string())??;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// An echo server on loopback; `mangle` changes what it sends back.
    fn server(mangle: fn(&mut Vec<u8>)) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        let mut out = buf[..n].to_vec();
                        mangle(&mut out);
                        if stream.write_all(&out).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn the_pattern_checks_what_it_filled_and_names_the_first_difference() {
        let (mut fill, mut check) = (Pattern::default(), Pattern::default());
        let mut buf = vec![0u8; 1000];
        fill.fill(&mut buf);
        assert_eq!(buf[250], 250);
        assert_eq!(buf[251], 0);
        assert_eq!(check.check(&buf[..600]), Ok(()));
        buf[700] ^= 1;
        assert_eq!(check.check(&buf[600..]), Err(700));
        // A repeated 256-byte block does not pass.
        let mut again = Pattern::default();
        let mut block = vec![0u8; 256];
        Pattern::default().fill(&mut block);
        assert_eq!(again.check(&block), Ok(()));
        assert!(again.check(&block).is_err());
    }

    #[test]
    fn an_echo_of_several_blocks_comes_back_whole_and_timed() {
        let addr = server(|_| {});
        let took = echo(addr, 3 * 65536 + 17).unwrap();
        assert!(took > Duration::ZERO);
        assert!(echo(addr, 1).is_ok());
    }

    #[test]
    fn a_changed_short_or_long_echo_is_an_error() {
        let flips = server(|b| b[0] ^= 0x80);
        assert!(echo(flips, 10_000)
            .unwrap_err()
            .contains("differs at byte 0"));
        let doubles = server(|b| {
            let copy = b.clone();
            b.extend_from_slice(&copy)
        });
        assert!(echo(doubles, 100).is_err());
        // A server that reads and closes: the echo ends short.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in listener.incoming().map_while(Result::ok) {
                let mut buf = [0u8; 10];
                let _ = s.read(&mut buf);
                let _ = s.write_all(&buf[..1]);
            }
        });
        let e = echo(addr, 50).unwrap_err();
        assert!(e.contains("ended after") || e.contains("receive"), "{e}");
    }

    #[test]
    fn connections_and_round_trips_count_real_exchanges() {
        let addr = server(|_| {});
        let (n, took) = connections(addr, Duration::from_millis(200)).unwrap();
        assert!(n >= 1);
        assert!(took >= Duration::from_millis(200));
        let (times, all) = round_trips(addr, 21).unwrap();
        assert_eq!(times.len(), 21);
        assert!(all >= times.iter().sum::<Duration>());
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(median(&times) >= times[0] && median(&times) <= times[20]);
        let wrong = server(|b| b[0] = b[0].wrapping_add(1));
        assert!(round_trips(wrong, 3).is_err());
        assert!(connections(wrong, Duration::from_millis(50)).is_err());
    }

    #[test]
    fn the_median_of_even_and_odd_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[]), Duration::ZERO);
        assert_eq!(median(&[ms(1), ms(5), ms(9)]), ms(5));
        assert_eq!(median(&[ms(1), ms(3), ms(5), ms(9)]), ms(4));
    }

    #[test]
    fn a_spray_comes_from_as_many_source_ports_as_datagrams() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let addr = sink.local_addr().unwrap();
        // A port in use is skipped.
        let taken = UdpSocket::bind("0.0.0.0:0").unwrap();
        let busy = taken.local_addr().unwrap().port();
        let first = if busy > 1100 { busy - 20 } else { busy };
        let started = Instant::now();
        let sent = udp_spray(addr, first..first + 50, 3, 500.0).unwrap();
        // Paced: the 50th is due at 49 / 500 s.
        assert!(started.elapsed() >= Duration::from_millis(90));
        let expected = if busy > 1100 { 49 } else { 50 };
        assert!(sent >= expected - 2 && sent <= expected, "{sent}");
        let mut ports = std::collections::HashSet::new();
        let mut buf = [0u8; 16];
        for _ in 0..sent {
            let (n, from) = sink.recv_from(&mut buf).unwrap();
            assert_eq!(n, 2);
            assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), from.port());
            ports.insert(from.port());
        }
        assert_eq!(ports.len() as u64, sent);
        assert!(!ports.contains(&busy));
    }
}
