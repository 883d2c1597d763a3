//! A small xenstore client speaking xenstored's wire protocol over its Unix socket, so that the
//! launcher need not start a xenstore-* process for each key (each costs tenths of a second
//! under TCG).
//!
//! A message is a header of four little-endian u32 (`type`, `req_id`, `tx_id`, `len`) and `len`
//! bytes of payload; paths and arguments are NUL-terminated, a written value is not. Errors come
//! back as `XS_ERROR` with the errno's name (`ENOENT`, `EAGAIN`, ...). See Xen's `xs_wire.h`.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

/// Message types (xs_wire.h `enum xsd_sockmsg_type`).
mod kind {
    pub const DIRECTORY: u32 = 1;
    pub const READ: u32 = 2;
    pub const WATCH: u32 = 4;
    pub const INTRODUCE: u32 = 8;
    pub const RELEASE: u32 = 9;
    pub const TRANSACTION_START: u32 = 6;
    pub const TRANSACTION_END: u32 = 7;
    pub const WRITE: u32 = 11;
    pub const RM: u32 = 13;
    pub const SET_PERMS: u32 = 14;
    pub const WATCH_EVENT: u32 = 15;
    pub const ERROR: u32 = 16;
}

/// The sockets xenstored listens on, in the order they are tried.
const SOCKETS: [&str; 2] = ["/run/xenstored/socket", "/var/run/xenstored/socket"];

/// Encodes one request.
pub fn encode(kind: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(16 + payload.len());
    for word in [kind, req_id, tx_id, payload.len() as u32] {
        message.extend_from_slice(&word.to_le_bytes());
    }
    message.extend_from_slice(payload);
    message
}

/// Joins arguments into a payload, each NUL-terminated.
pub fn args(parts: &[&str]) -> Vec<u8> {
    parts
        .iter()
        .flat_map(|p| p.bytes().chain(std::iter::once(0)))
        .collect()
}

/// A reply or event: its type and payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// The message type.
    pub kind: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Message {
    /// The payload as text, without a trailing NUL.
    pub fn text(&self) -> String {
        let bytes = self.payload.strip_suffix(&[0]).unwrap_or(&self.payload);
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Reads one message.
pub fn read_message(stream: &mut impl Read) -> io::Result<Message> {
    let mut header = [0u8; 16];
    stream.read_exact(&mut header)?;
    let word = |i: usize| u32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().unwrap());
    let len = word(3) as usize;
    if len > 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("xenstore message of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok(Message {
        kind: word(0),
        payload,
    })
}

/// A connection to xenstored.
pub struct XenStore {
    stream: UnixStream,
    next_req_id: u32,
}

/// One request of [`XenStore::batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write a node (creating missing parents, which inherit their parent's permissions).
    Write(String, String),
    /// Set a node's permissions (`n<owner>` first, then `r<domid>`, ...).
    SetPerms(String, Vec<String>),
    /// Remove a node and everything below it.
    Rm(String),
    /// Introduce a domain (see [`XenStore::introduce`]): domid, ring frame, event channel.
    Introduce(u32, u64, u32),
}

/// A transaction id (0: none).
pub type Transaction = u32;

impl XenStore {
    /// Connects to the local xenstored.
    pub fn connect() -> io::Result<XenStore> {
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no xenstored socket");
        for path in SOCKETS {
            match UnixStream::connect(path) {
                Ok(stream) => {
                    return Ok(XenStore {
                        stream,
                        next_req_id: 1,
                    })
                }
                Err(e) => last_error = io::Error::new(e.kind(), format!("{path}: {e}")),
            }
        }
        Err(last_error)
    }

    /// Sends a request and returns the reply's payload (skipping watch events).
    fn request(&mut self, kind: u32, tx: Transaction, payload: &[u8]) -> io::Result<Message> {
        let req_id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1);
        self.stream.write_all(&encode(kind, req_id, tx, payload))?;
        loop {
            let reply = read_message(&mut self.stream)?;
            match reply.kind {
                kind::WATCH_EVENT => continue,
                kind::ERROR => return Err(xs_error(&reply.text())),
                _ => return Ok(reply),
            }
        }
    }

    /// Runs `ops` in one go: every request is sent before the first reply is read (xenstored
    /// answers them in order), so the batch costs one round trip instead of one per request
    /// (tens of milliseconds each in a busy dom0 under TCG). Removing a missing node is not an
    /// error; the first other error is returned, once every reply is read.
    pub fn batch(&mut self, tx: Transaction, ops: &[Op]) -> io::Result<()> {
        let mut message = Vec::new();
        for op in ops {
            let (kind, payload) = match op {
                Op::Write(path, value) => {
                    let mut payload = args(&[path]);
                    payload.extend_from_slice(value.as_bytes());
                    (kind::WRITE, payload)
                }
                Op::SetPerms(path, perms) => {
                    let mut parts = vec![path.as_str()];
                    parts.extend(perms.iter().map(String::as_str));
                    (kind::SET_PERMS, args(&parts))
                }
                Op::Rm(path) => (kind::RM, args(&[path])),
                Op::Introduce(domid, gfn, port) => {
                    let (domid, gfn, port) = (domid.to_string(), gfn.to_string(), port.to_string());
                    (kind::INTRODUCE, args(&[&domid, &gfn, &port]))
                }
            };
            message.extend(encode(kind, self.next_req_id, tx, &payload));
            self.next_req_id = self.next_req_id.wrapping_add(1);
        }
        self.stream.write_all(&message)?;
        let mut first_error = None;
        for op in ops {
            let reply = loop {
                let reply = read_message(&mut self.stream)?;
                if reply.kind != kind::WATCH_EVENT {
                    break reply;
                }
            };
            if reply.kind == kind::ERROR {
                let error = xs_error(&reply.text());
                let missing = error.kind() == io::ErrorKind::NotFound;
                if !(missing && matches!(op, Op::Rm(_))) {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Every node of the trees under `roots` (each root first), for each root. The listing is
    /// pipelined a level at a time across all roots: as many round trips as the trees are deep,
    /// not one per node. A root that does not exist has no nodes.
    pub fn subtrees(&mut self, tx: Transaction, roots: &[String]) -> io::Result<Vec<Vec<String>>> {
        let mut trees: Vec<Vec<String>> = vec![Vec::new(); roots.len()];
        // (tree, path) of the nodes whose children are still to be listed.
        let mut level: Vec<(usize, String)> = roots.iter().cloned().enumerate().collect();
        while !level.is_empty() {
            let mut message = Vec::new();
            for (_, path) in &level {
                message.extend(encode(
                    kind::DIRECTORY,
                    self.next_req_id,
                    tx,
                    &args(&[path]),
                ));
                self.next_req_id = self.next_req_id.wrapping_add(1);
            }
            self.stream.write_all(&message)?;
            let mut next = Vec::new();
            let mut first_error = None;
            for (tree, path) in level {
                let reply = loop {
                    let reply = read_message(&mut self.stream)?;
                    if reply.kind != kind::WATCH_EVENT {
                        break reply;
                    }
                };
                if reply.kind == kind::ERROR {
                    let error = xs_error(&reply.text());
                    if error.kind() != io::ErrorKind::NotFound {
                        first_error.get_or_insert(error);
                    }
                    continue;
                }
                for child in reply.payload.split(|&b| b == 0).filter(|n| !n.is_empty()) {
                    next.push((tree, format!("{path}/{}", String::from_utf8_lossy(child))));
                }
                trees[tree].push(path);
            }
            if let Some(error) = first_error {
                return Err(error);
            }
            level = next;
        }
        Ok(trees)
    }

    /// Reads a node; `None` when it does not exist.
    pub fn read(&mut self, tx: Transaction, path: &str) -> io::Result<Option<String>> {
        match self.request(kind::READ, tx, &args(&[path])) {
            Ok(reply) => Ok(Some(String::from_utf8_lossy(&reply.payload).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a node (creating its missing parents).
    pub fn write(&mut self, tx: Transaction, path: &str, value: &str) -> io::Result<()> {
        let mut payload = args(&[path]);
        payload.extend_from_slice(value.as_bytes());
        self.request(kind::WRITE, tx, &payload).map(drop)
    }

    /// Removes a node and everything below it; a node that does not exist is not an error.
    pub fn rm(&mut self, tx: Transaction, path: &str) -> io::Result<()> {
        match self.request(kind::RM, tx, &args(&[path])) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The names of a node's children.
    pub fn directory(&mut self, tx: Transaction, path: &str) -> io::Result<Vec<String>> {
        let reply = self.request(kind::DIRECTORY, tx, &args(&[path]))?;
        Ok(reply
            .payload
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect())
    }

    /// Sets a node's permissions (`n<owner>` first, then `r<domid>`, `w<domid>`, `b<domid>`).
    pub fn set_perms(&mut self, tx: Transaction, path: &str, perms: &[String]) -> io::Result<()> {
        let mut parts = vec![path];
        parts.extend(perms.iter().map(String::as_str));
        self.request(kind::SET_PERMS, tx, &args(&parts)).map(drop)
    }

    /// Sets the permissions of a node and of every node below it.
    pub fn set_perms_recursive(
        &mut self,
        tx: Transaction,
        path: &str,
        perms: &[String],
    ) -> io::Result<()> {
        self.set_perms(tx, path, perms)?;
        for child in self.directory(tx, path)? {
            self.set_perms_recursive(tx, &format!("{path}/{child}"), perms)?;
        }
        Ok(())
    }

    /// Runs `body` in a transaction, retrying it (a few times) when xenstored says another
    /// transaction got in the way.
    pub fn transaction<T>(
        &mut self,
        mut body: impl FnMut(&mut XenStore, Transaction) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut attempt = 0;
        loop {
            let tx: Transaction = self
                .request(kind::TRANSACTION_START, 0, &args(&[""]))?
                .text()
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad transaction id"))?;
            let result = body(self, tx);
            let commit = if result.is_ok() { "T" } else { "F" };
            match (
                self.request(kind::TRANSACTION_END, tx, &args(&[commit])),
                result,
            ) {
                (Ok(_), Ok(value)) => return Ok(value),
                (_, Err(e)) => return Err(e),
                (Err(e), Ok(_)) if e.kind() == io::ErrorKind::WouldBlock && attempt < 5 => {
                    attempt += 1
                }
                (Err(e), Ok(_)) => return Err(e),
            }
        }
    }

    /// Tells xenstored about a new domain: its xenstore ring is guest frame `gfn` (which
    /// xenstored maps through the domain's reserved grant entry) and its event channel `port`.
    /// xenstored then fires `@introduceDomain`, on which xenconsoled connects the console.
    pub fn introduce(&mut self, domid: u32, gfn: u64, port: u32) -> io::Result<()> {
        let (domid, gfn, port) = (domid.to_string(), gfn.to_string(), port.to_string());
        self.request(kind::INTRODUCE, 0, &args(&[&domid, &gfn, &port]))
            .map(drop)
    }

    /// Tells xenstored a domain is gone (it drops its connection and fires `@releaseDomain`).
    pub fn release(&mut self, domid: u32) -> io::Result<()> {
        self.request(kind::RELEASE, 0, &args(&[&domid.to_string()]))
            .map(drop)
    }

    /// Registers a watch; events then arrive through [`XenStore::next_event`].
    pub fn watch(&mut self, path: &str, token: &str) -> io::Result<()> {
        self.request(kind::WATCH, 0, &args(&[path, token]))
            .map(drop)
    }

    /// Blocks until the next watch event and returns its path.
    pub fn next_event(&mut self) -> io::Result<String> {
        loop {
            let message = read_message(&mut self.stream)?;
            if message.kind == kind::WATCH_EVENT {
                let path = message
                    .payload
                    .split(|&b| b == 0)
                    .next()
                    .unwrap_or_default();
                return Ok(String::from_utf8_lossy(path).into_owned());
            }
        }
    }
}

/// The io::Error for an `XS_ERROR` reply.
fn xs_error(name: &str) -> io::Error {
    let kind = match name {
        "ENOENT" => io::ErrorKind::NotFound,
        "EACCES" | "EPERM" => io::ErrorKind::PermissionDenied,
        "EAGAIN" => io::ErrorKind::WouldBlock,
        "EEXIST" => io::ErrorKind::AlreadyExists,
        "EINVAL" => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("xenstore: {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_write_request() {
        let mut payload = args(&["/a/b"]);
        payload.extend_from_slice(b"42");
        let message = encode(kind::WRITE, 7, 3, &payload);
        assert_eq!(
            &message[..16],
            &[11, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 7, 0, 0, 0]
        );
        assert_eq!(&message[16..], b"/a/b\x0042");
        assert_eq!(args(&["/p", "n1", "r2"]), b"/p\0n1\0r2\0");
    }

    #[test]
    fn reads_replies_and_errors() {
        let mut bytes = encode(kind::READ, 1, 0, b"value");
        bytes.extend(encode(kind::ERROR, 2, 0, b"ENOENT\0"));
        let mut stream = &bytes[..];
        let reply = read_message(&mut stream).unwrap();
        assert_eq!(
            reply,
            Message {
                kind: kind::READ,
                payload: b"value".to_vec()
            }
        );
        let error = read_message(&mut stream).unwrap();
        assert_eq!(error.text(), "ENOENT");
        assert_eq!(xs_error(&error.text()).kind(), io::ErrorKind::NotFound);
        assert!(read_message(&mut stream).is_err(), "nothing left");
    }

    /// A client whose xenstored is `replies`, answered in order; returns the client and what it
    /// sent.
    fn scripted(replies: Vec<u8>) -> (XenStore, std::thread::JoinHandle<Vec<u8>>) {
        let (client, mut server) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            server.write_all(&replies).unwrap();
            server.shutdown(std::net::Shutdown::Write).unwrap();
            let mut sent = Vec::new();
            server.read_to_end(&mut sent).unwrap();
            sent
        });
        let store = XenStore {
            stream: client,
            next_req_id: 1,
        };
        (store, server)
    }

    #[test]
    fn removing_a_missing_node_is_not_an_error() {
        let mut replies = encode(kind::RM, 1, 0, b"OK\0");
        replies.extend(encode(kind::ERROR, 2, 0, b"ENOENT\0"));
        replies.extend(encode(kind::ERROR, 3, 0, b"EACCES\0"));
        let (mut store, server) = scripted(replies);
        store.rm(0, "/a/present").unwrap();
        store.rm(0, "/a/absent").unwrap();
        assert_eq!(
            store.rm(0, "/a/forbidden").unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        drop(store);
        let sent = server.join().unwrap();
        assert_eq!(&sent[..16], &encode(kind::RM, 1, 0, b"/a/present\0")[..16]);
        assert!(sent.windows(10).any(|w| w == b"/a/absent\0"));
    }

    #[test]
    fn a_batch_sends_everything_then_reads_every_reply() {
        let mut replies = encode(kind::WRITE, 1, 5, b"OK\0");
        replies.extend(encode(kind::SET_PERMS, 2, 5, b"OK\0"));
        replies.extend(encode(kind::ERROR, 3, 5, b"ENOENT\0"));
        replies.extend(encode(kind::ERROR, 4, 5, b"EACCES\0"));
        replies.extend(encode(kind::WRITE, 5, 5, b"OK\0"));
        let (mut store, server) = scripted(replies);
        let perms = vec!["n0".to_string(), "r3".to_string()];
        let ops = [
            Op::Write("/a".into(), String::new()),
            Op::SetPerms("/a".into(), perms),
            Op::Rm("/gone".into()),
            Op::Write("/a/b".into(), "1".into()),
            Op::Write("/a/c".into(), "2".into()),
        ];
        let error = store.batch(5, &ops).unwrap_err();
        assert_eq!(
            error.kind(),
            io::ErrorKind::PermissionDenied,
            "the rm is fine"
        );
        drop(store);
        let sent = server.join().unwrap();
        let mut expected = encode(kind::WRITE, 1, 5, b"/a\0");
        expected.extend(encode(kind::SET_PERMS, 2, 5, b"/a\0n0\0r3\0"));
        expected.extend(encode(kind::RM, 3, 5, b"/gone\0"));
        expected.extend(encode(kind::WRITE, 4, 5, b"/a/b\x001"));
        expected.extend(encode(kind::WRITE, 5, 5, b"/a/c\x002"));
        assert_eq!(sent, expected);
    }

    #[test]
    fn subtrees_are_listed_a_level_at_a_time() {
        // Level 1: /a has b and c, /gone does not exist; level 2: /a/b has d, /a/c nothing;
        // level 3: /a/b/d nothing.
        let mut replies = encode(kind::DIRECTORY, 1, 0, b"b\0c\0");
        replies.extend(encode(kind::ERROR, 2, 0, b"ENOENT\0"));
        replies.extend(encode(kind::DIRECTORY, 3, 0, b"d\0"));
        replies.extend(encode(kind::DIRECTORY, 4, 0, b""));
        replies.extend(encode(kind::DIRECTORY, 5, 0, b""));
        let (mut store, server) = scripted(replies);
        let trees = store
            .subtrees(0, &["/a".to_string(), "/gone".to_string()])
            .unwrap();
        assert_eq!(trees, [vec!["/a", "/a/b", "/a/c", "/a/b/d"], vec![]]);
        drop(store);
        let sent = server.join().unwrap();
        let mut expected = encode(kind::DIRECTORY, 1, 0, b"/a\0");
        expected.extend(encode(kind::DIRECTORY, 2, 0, b"/gone\0"));
        expected.extend(encode(kind::DIRECTORY, 3, 0, b"/a/b\0"));
        expected.extend(encode(kind::DIRECTORY, 4, 0, b"/a/c\0"));
        expected.extend(encode(kind::DIRECTORY, 5, 0, b"/a/b/d\0"));
        assert_eq!(sent, expected);
    }

    #[test]
    fn refuses_oversized_messages() {
        let mut header = encode(kind::READ, 1, 0, b"");
        header[12..16].copy_from_slice(&100_000u32.to_le_bytes());
        assert_eq!(
            read_message(&mut &header[..]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
