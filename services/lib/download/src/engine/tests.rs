//! The engine against a scripted datastore: each connection answers as the script says (whole,
//! ranged, chunked, cut short, 404, a wrong range, refused), into a memory disk.

use super::*;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::ToString;
use core::cell::RefCell;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use kernel::block::MemoryDisk;

/// Runs a future whose every step is ready (the fakes never wait).
fn block_on<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    /// The file; honouring ranges or not; chunked or with a length; or HTTP/1.0 close-delimited.
    File {
        ranges: bool,
        chunked: bool,
    },
    Http10,
    /// As `File { ranges: true }` but the connection ends after this many body bytes.
    Cut(usize),
    /// A status with an empty body.
    Status(u16),
    /// 206 from byte 0 whatever was asked.
    WrongRange,
    /// No connection.
    Refuse,
}

const GOOD: Answer = Answer::File {
    ranges: true,
    chunked: false,
};

/// What the scripted datastore knows and saw.
struct Shared {
    file: Vec<u8>,
    script: VecDeque<Answer>,
    then: Answer,
    requests: Vec<String>,
    sleeps: Vec<u64>,
    /// Cancel the download at this `cancelled()` check (counting down).
    cancel_in: Option<u32>,
}

struct FakeNet(Rc<RefCell<Shared>>);

impl FakeNet {
    fn new(file: &[u8], script: &[Answer], then: Answer) -> FakeNet {
        FakeNet(Rc::new(RefCell::new(Shared {
            file: file.to_vec(),
            script: script.iter().copied().collect(),
            then,
            requests: Vec::new(),
            sleeps: Vec::new(),
            cancel_in: None,
        })))
    }

    fn requests(&self) -> Vec<String> {
        self.0.borrow().requests.clone()
    }

    fn sleeps(&self) -> Vec<u64> {
        self.0.borrow().sleeps.clone()
    }
}

struct FakeStream {
    net: Rc<RefCell<Shared>>,
    answer: Answer,
    request: Vec<u8>,
    response: Option<Vec<u8>>,
    at: usize,
}

impl Net for FakeNet {
    type Stream = FakeStream;

    async fn connect(&mut self, _source: &Source) -> Result<Self::Stream, String> {
        let answer = {
            let mut shared = self.0.borrow_mut();
            let then = shared.then;
            shared.script.pop_front().unwrap_or(then)
        };
        if let Answer::Refuse = answer {
            return Err("connection refused".into());
        }
        Ok(FakeStream {
            net: self.0.clone(),
            answer,
            request: Vec::new(),
            response: None,
            at: 0,
        })
    }

    async fn sleep(&mut self, ms: u64) {
        self.0.borrow_mut().sleeps.push(ms);
    }

    fn cancelled(&mut self) -> bool {
        let mut shared = self.0.borrow_mut();
        match shared.cancel_in.as_mut() {
            Some(0) => true,
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }

    fn random(&mut self) -> u32 {
        0x9e37_79b9u32.wrapping_mul(self.0.borrow().sleeps.len() as u32 + 1)
    }
}

impl FakeStream {
    fn respond(&mut self) -> Vec<u8> {
        let request = String::from_utf8(self.request.clone()).unwrap();
        let mut net = self.net.borrow_mut();
        net.requests.push(request.clone());
        let file = &net.file.clone();
        let from: usize = request
            .lines()
            .find_map(|l| l.strip_prefix("Range: bytes="))
            .map(|r| r.trim_end_matches('-').parse().unwrap())
            .unwrap_or(0);
        let whole = |body: &[u8]| {
            let mut r =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(body);
            r
        };
        let ranged = |from: usize, cut: Option<usize>| {
            let mut r = if from == 0 {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", file.len())
            } else {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\n\r\n",
                    file.len() - from,
                    from,
                    file.len() - 1,
                    file.len()
                )
            }
            .into_bytes();
            let end = cut.map_or(file.len(), |c| (from + c).min(file.len()));
            r.extend_from_slice(&file[from..end]);
            r
        };
        match self.answer {
            Answer::File {
                ranges: true,
                chunked: false,
            } => ranged(from, None),
            Answer::File {
                ranges: false,
                chunked: false,
            } => whole(file),
            Answer::File { chunked: true, .. } => {
                let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for chunk in file.chunks(1000) {
                    r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    r.extend_from_slice(chunk);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
                r
            }
            Answer::Http10 => {
                let mut r = b"HTTP/1.0 200 OK\r\nServer: test\r\n\r\n".to_vec();
                r.extend_from_slice(file);
                r
            }
            Answer::Cut(n) => ranged(from, Some(n)),
            Answer::Status(code) => {
                format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").into_bytes()
            }
            Answer::WrongRange => format!(
                "HTTP/1.1 206 P\r\nContent-Length: 1\r\nContent-Range: bytes 0-0/{}\r\n\r\nx",
                file.len()
            )
            .into_bytes(),
            Answer::Refuse => unreachable!(),
        }
    }
}

impl Stream for FakeStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        if self.response.is_none() {
            let r = self.respond();
            self.response = Some(r);
        }
        let response = self.response.as_ref().unwrap();
        // Odd-sized pieces, to cut heads, chunks and sectors anywhere.
        let n = buf.len().min(response.len() - self.at).min(1499);
        buf[..n].copy_from_slice(&response[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }

    async fn write_all(&mut self, data: &[u8]) -> Result<(), String> {
        self.request.extend_from_slice(data);
        Ok(())
    }
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
}

fn job_for(file: &[u8]) -> Job {
    Job {
        content: "9c3e1a5b-7d2f-4b8a-a6c4-0e1f2a3b4c05".into(),
        name: "echo".into(),
        source: Source::new(true, "https://10.0.2.2:8443", "datastore", "f", "k", "p").unwrap(),
        sha256: Sha256::digest(file).into(),
        max_size: 0,
        generation: 0,
        volume: "app".into(),
    }
}

fn policy() -> Policy {
    Policy {
        first_backoff_ms: 100,
        max_backoff_ms: 1000,
        max_retries: None,
        commit_every: CHUNK as u64,
    }
}

/// A disk of `mib` MiB.
fn disk(mib: u64) -> MemoryDisk {
    MemoryDisk::new(512, mib * 2048)
}

fn run(
    job: &Job,
    disk: &mut MemoryDisk,
    net: &mut FakeNet,
    policy: &Policy,
) -> (DownloadStatus, Vec<DownloadStatus>) {
    let mut seen = Vec::new();
    let last = block_on(download(job, disk, net, policy, &mut |s| {
        seen.push(s.clone())
    }));
    (last, seen)
}

fn record_of(disk: &mut MemoryDisk) -> Option<Record> {
    block_on(record::read(disk)).unwrap()
}

#[test]
fn a_whole_file_arrives_verified_byte_exact() {
    let data = file(300_001);
    let job = job_for(&data);
    for answer in [
        GOOD,
        Answer::File {
            ranges: false,
            chunked: true,
        },
        Answer::Http10,
    ] {
        let mut d = disk(1);
        let mut net = FakeNet::new(&data, &[], answer);
        let (last, seen) = run(&job, &mut d, &mut net, &policy());
        assert_eq!(last.state, DownloadState::Verified, "{answer:?}: {last:?}");
        assert_eq!((last.bytes, last.total), (300_001, 300_001));
        assert_eq!(last.sha256, hex(&job.sha256));
        assert_eq!(last.retries, 0);
        assert!(d.bytes()[..data.len()] == data[..], "{answer:?}");
        assert_eq!(
            record_of(&mut d).unwrap().progress,
            Progress::Verified(300_001)
        );
        let states: Vec<_> = seen.iter().map(|s| s.state).collect();
        assert!(states.contains(&DownloadState::Downloading));
        assert!(states.contains(&DownloadState::Verifying));
        // Progress grows and is reported at each commit.
        let bytes: Vec<u64> = seen
            .iter()
            .filter(|s| s.state == DownloadState::Downloading)
            .map(|s| s.bytes)
            .collect();
        assert!(bytes.windows(2).all(|w| w[0] <= w[1]), "{bytes:?}");
        assert!(bytes.len() >= 4, "{bytes:?}");
        let request = &net.requests()[0];
        assert!(
            request.contains("Authorization: Basic azpw\r\n"),
            "{request}"
        );
        assert!(!request.contains("Range"));
    }
}

#[test]
fn a_truncated_body_resumes_from_the_last_commit() {
    let data = file(300_001);
    let job = job_for(&data);
    let mut d = disk(1);
    let mut net = FakeNet::new(&data, &[Answer::Cut(200_000), Answer::Cut(50_000)], GOOD);
    let (last, seen) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Verified, "{last:?}");
    assert_eq!(last.retries, 2);
    assert!(d.bytes()[..data.len()] == data[..]);
    // 200,000 bytes: three 64 KiB chunks committed; then 50,000 more: none.
    assert!(net.requests()[1].contains("Range: bytes=196608-\r\n"));
    assert!(net.requests()[2].contains("Range: bytes=196608-\r\n"));
    let retrying = seen
        .iter()
        .find(|s| s.state == DownloadState::Pending && s.retries == 1)
        .unwrap();
    assert!(retrying.error.contains("truncated"), "{retrying:?}");
    assert_eq!(net.sleeps().len(), 2);
}

#[test]
fn a_restarted_downloader_resumes_from_its_record() {
    let data = file(1_000_000);
    let job = job_for(&data);
    let mut d = disk(2);
    let once = Policy {
        max_retries: Some(0),
        ..policy()
    };
    let mut net = FakeNet::new(&data, &[Answer::Cut(700_000)], GOOD);
    let (last, _) = run(&job, &mut d, &mut net, &once);
    assert_eq!(last.state, DownloadState::Error);
    assert!(last.error.contains("gave up"), "{last:?}");
    let committed = 10 * CHUNK as u64; // 700,000 bytes: 10 whole chunks
    assert_eq!(
        record_of(&mut d).unwrap().progress,
        Progress::Partial(committed)
    );
    // A new run (nothing kept in memory) asks for the rest only.
    let mut net = FakeNet::new(&data, &[], GOOD);
    let (last, seen) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Verified, "{last:?}");
    assert_eq!(net.requests().len(), 1);
    assert!(net.requests()[0].contains(&format!("Range: bytes={committed}-\r\n")));
    assert_eq!(seen[0].bytes, committed, "progress starts where it was");
    assert!(d.bytes()[..data.len()] == data[..]);

    // Again: verified before, checked from the volume, nothing requested.
    let mut net = FakeNet::new(&data, &[], Answer::Refuse);
    let (last, _) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Verified);
    assert!(net.requests().is_empty());
    // A volume changed under the record is downloaded again.
    d.bytes_mut()[5] ^= 1;
    let mut net = FakeNet::new(&data, &[], GOOD);
    let (last, _) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Verified);
    assert_eq!(net.requests().len(), 1);
    assert!(d.bytes()[..data.len()] == data[..]);
}

#[test]
fn a_resume_against_a_server_without_ranges_starts_over() {
    let data = file(300_001);
    let job = job_for(&data);
    let mut d = disk(1);
    let no_ranges = Answer::File {
        ranges: false,
        chunked: false,
    };
    let mut net = FakeNet::new(&data, &[Answer::Cut(200_000)], no_ranges);
    let (last, _) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Verified, "{last:?}");
    assert!(net.requests()[1].contains("Range: bytes=196608-"));
    assert!(d.bytes()[..data.len()] == data[..]);

    // A server that sends another range than asked: start over, from 0.
    let mut d = disk(1);
    let mut net = FakeNet::new(&data, &[Answer::Cut(200_000), Answer::WrongRange], GOOD);
    let (last, _) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Verified, "{last:?}");
    assert!(!net.requests()[2].contains("Range"), "{:?}", net.requests());
}

#[test]
fn a_datastore_down_or_404_is_retried_with_backoff() {
    let data = file(10_000);
    let job = job_for(&data);
    let mut d = disk(1);
    let mut net = FakeNet::new(
        &data,
        &[
            Answer::Refuse,
            Answer::Status(404),
            Answer::Status(503),
            Answer::Refuse,
            Answer::Refuse,
        ],
        GOOD,
    );
    let (last, seen) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Verified);
    assert_eq!(last.retries, 5);
    assert!(last.error.is_empty());
    let errors: Vec<&str> = seen
        .iter()
        .filter(|s| s.state == DownloadState::Pending && !s.error.is_empty())
        .map(|s| s.error.as_str())
        .collect();
    assert!(errors[0].contains("cannot connect"), "{errors:?}");
    assert!(errors[1].contains("404"), "{errors:?}");
    assert!(errors[2].contains("503"), "{errors:?}");
    // Doubling from 100 ms, capped at 1 s, each within ±25 %.
    for (i, &ms) in net.sleeps().iter().enumerate() {
        let base = (100u64 << i).min(1000);
        assert!(ms >= base * 3 / 4 && ms <= base * 5 / 4, "{i}: {ms}");
    }
    // With a limit, it gives up and says why.
    let mut d = disk(1);
    let mut net = FakeNet::new(&data, &[], Answer::Status(404));
    let limited = Policy {
        max_retries: Some(3),
        ..policy()
    };
    let (last, _) = run(&job, &mut d, &mut net, &limited);
    assert_eq!(last.state, DownloadState::Error);
    assert!(last.error.contains("404"), "{last:?}");
    assert_eq!(net.requests().len(), 4);
}

#[test]
fn a_wrong_sha256_is_an_error_with_both_hashes_and_nothing_verified() {
    let data = file(300_001);
    let mut job = job_for(&data);
    job.sha256 = [0xab; 32];
    let mut d = disk(1);
    let mut net = FakeNet::new(&data, &[], GOOD);
    let (last, seen) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Error);
    let got = hex(&Sha256::digest(&data));
    assert!(last.error.contains(&"ab".repeat(32)), "{}", last.error);
    assert!(last.error.contains(&got), "{}", last.error);
    assert!(seen.iter().all(|s| s.state != DownloadState::Verified));
    assert_eq!(net.requests().len(), 1, "not retried");
    assert_eq!(record_of(&mut d).unwrap().progress, Progress::Partial(0));
}

#[test]
fn too_much_is_refused_before_it_is_written() {
    let data = file(300_001);
    let mut job = job_for(&data);
    job.max_size = 100_000;
    let mut d = disk(1);
    let mut net = FakeNet::new(&data, &[], GOOD);
    let (last, _) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Error);
    assert!(last.error.contains("maxSizeBytes"), "{}", last.error);
    assert!(
        d.bytes()[..CHUNK].iter().all(|&b| b == 0),
        "nothing written"
    );
    // Without a length, the body is cut off at the limit.
    let mut net = FakeNet::new(&data, &[], Answer::Http10);
    let (last, _) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Error);
    // A volume too small for the content tree: refused before connecting.
    let mut job = job_for(&data);
    job.max_size = 2 << 20;
    let mut net = FakeNet::new(&data, &[], GOOD);
    let (last, _) = run(&job, &mut disk(1), &mut net, &policy());
    assert_eq!(last.state, DownloadState::Error);
    assert!(last.error.contains("does not fit"), "{}", last.error);
    assert!(net.requests().is_empty());
}

#[test]
fn backoff_doubles_to_its_cap_with_bounded_jitter() {
    let p = policy();
    for retry in 1..30 {
        let base = (100u64 << (retry - 1).min(20)).min(1000);
        for random in [0, 1, u32::MAX / 2, u32::MAX] {
            let ms = backoff_ms(&p, retry, random);
            assert!(ms >= base * 3 / 4 && ms <= base * 5 / 4, "{retry} {ms}");
        }
    }
    assert_eq!(parse_sha256(&"AB".repeat(32)).unwrap(), [0xab; 32]);
    assert!(parse_sha256("").is_err());
    assert!(parse_sha256(&"xz".repeat(32)).is_err());
    assert_eq!(hex(&[0, 255]), "00ff".to_string());
}

#[test]
fn a_cancelled_download_stops_between_reads_and_keeps_its_commits() {
    let data = file(1_000_000);
    let job = job_for(&data);
    let mut d = disk(2);
    let mut net = FakeNet::new(&data, &[], GOOD);
    // The first check passes (before the attempt), then 200 reads of about 1.5 KB.
    net.0.borrow_mut().cancel_in = Some(200);
    let (last, seen) = run(&job, &mut d, &mut net, &policy());
    assert_eq!(last.state, DownloadState::Pending);
    assert_eq!(last.error, CANCELLED);
    assert!(seen.iter().all(|s| s.state != DownloadState::Verified));
    match record_of(&mut d).unwrap().progress {
        Progress::Partial(n) => assert!(n > 0 && n < 1_000_000, "{n}"),
        other => panic!("{other:?}"),
    }
    // Cancelled while waiting to retry: no further attempt.
    let mut net = FakeNet::new(&data, &[], Answer::Status(404));
    net.0.borrow_mut().cancel_in = Some(1);
    let (last, _) = run(&job, &mut disk(2), &mut net, &policy());
    assert_eq!(
        (last.state, last.error.as_str()),
        (DownloadState::Pending, CANCELLED)
    );
    assert_eq!(net.requests().len(), 1);
}
