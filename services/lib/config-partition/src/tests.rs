use super::*;
use kernel::block::MemoryDisk;
use std::process::Command;
use std::string::ToString;

extern crate std;

fn ready<T>(f: impl core::future::Future<Output = T>) -> T {
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    match core::pin::pin!(f).poll(&mut cx) {
        core::task::Poll::Ready(v) => v,
        core::task::Poll::Pending => panic!("a memory disk never waits"),
    }
}

/// A disk holding `bytes` at its start.
fn disk_with(bytes: &[u8], sectors: u64) -> MemoryDisk {
    let mut disk = MemoryDisk::new(512, sectors);
    disk.bytes_mut()[..bytes.len()].copy_from_slice(bytes);
    disk
}

/// An archive that Python's tarfile writes (a peer no one here wrote).
fn python_archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let script = "import io, sys, tarfile\n\
        out = io.BytesIO()\n\
        with tarfile.open(fileobj=out, mode='w', format=tarfile.USTAR_FORMAT) as t:\n\
        \x20   d = tarfile.TarInfo('certs'); d.type = tarfile.DIRTYPE; t.addfile(d)\n\
        \x20   args = sys.argv[1:]\n\
        \x20   for name, hexdata in zip(args[::2], args[1::2]):\n\
        \x20       data = bytes([1]) * int(hexdata[5:]) if hexdata.startswith('ones:') else bytes.fromhex(hexdata)\n\
        \x20       info = tarfile.TarInfo(name); info.size = len(data)\n\
        \x20       t.addfile(info, io.BytesIO(data))\n\
        sys.stdout.buffer.write(out.getvalue())\n";
    let mut command = Command::new("python3");
    command.arg("-c").arg(script);
    for (name, data) in files {
        command.arg(name);
        if data.len() > 4096 && data.iter().all(|&b| b == 1) {
            command.arg(std::format!("ones:{}", data.len()));
        } else {
            command.arg(
                data.iter()
                    .map(|b| std::format!("{b:02x}"))
                    .collect::<String>(),
            );
        }
    }
    let out = command.output().expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn reads_what_pythons_tarfile_writes() {
    let key = b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    let big = vec![1u8; 5000];
    let archive = python_archive(&[
        ("vault.key", key),
        ("certs/root-certificate.pem", &big),
        ("empty", b""),
    ]);
    let mut disk = disk_with(&archive, (archive.len() / 512 + 8) as u64);
    let config = ready(ConfigPartition::read(&mut disk)).unwrap();
    assert_eq!(config.file("vault.key"), Some(&key[..]));
    assert_eq!(config.file("certs/root-certificate.pem"), Some(&big[..]));
    assert_eq!(config.file("empty"), Some(&b""[..]));
    assert_eq!(config.file("certs"), None, "directories are not files");
    assert_eq!(config.names().count(), 3);
}

#[test]
fn damage_is_refused_with_the_block_named() {
    let archive = python_archive(&[("a", b"hello"), ("b", b"world")]);
    let sectors = (archive.len() / 512 + 4) as u64;
    // A flipped byte in b's header (blocks: directory certs, header a, data a, header b).
    let mut bad = archive.clone();
    bad[3 * 512 + 3] ^= 1;
    assert_eq!(
        ready(ConfigPartition::read(&mut disk_with(&bad, sectors))),
        Err(Error::BadHeader {
            block: 3,
            reason: "checksum does not match"
        })
    );
    // Something that is not an archive.
    assert_eq!(
        ready(ConfigPartition::read(&mut disk_with(&[0x55; 1024], 4))),
        Err(Error::NotAnArchive)
    );
    // A blank disk holds no files.
    let blank = ready(ConfigPartition::read(&mut MemoryDisk::new(512, 4))).unwrap();
    assert_eq!(blank.names().count(), 0);
    // An archive cut short by the disk's end.
    let short = 4;
    assert_eq!(
        ready(ConfigPartition::read(&mut disk_with(
            &archive[..short as usize * 512],
            short
        ))),
        Err(Error::Truncated)
    );
}

#[test]
fn hostile_names_sizes_and_kinds_are_refused() {
    let archive = python_archive(&[("../etc/passwd", b"x")]);
    let sectors = (archive.len() / 512 + 4) as u64;
    assert_eq!(
        ready(ConfigPartition::read(&mut disk_with(&archive, sectors))),
        Err(Error::BadHeader {
            block: 1,
            reason: "name is empty, absolute or climbs out with .."
        })
    );
    let big = python_archive(&[("big", &vec![1u8; MAX_FILE + 1])]);
    let sectors = (big.len() / 512 + 4) as u64;
    assert_eq!(
        ready(ConfigPartition::read(&mut disk_with(&big, sectors))),
        Err(Error::TooLarge("big".to_string()))
    );
    assert_eq!(octal(b"0000644\0"), Some(0o644));
    assert_eq!(octal(b"12 \0"), Some(0o12));
    assert_eq!(octal(b"0009\0"), None);
    assert_eq!(octal(b"1\x002"), None);
    assert_eq!(octal(b"\0\0"), None);
    assert_eq!(octal(b"77777777777777777777777"), None, "overflow");
}
