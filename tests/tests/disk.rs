//! Block tests: `disk-test` under QEMU microvm with virtio-blk disks that `scripts/run --disk`
//! backs with raw files this test creates, so the host can check what the guest wrote.

use lichen_tests::{Accel, Run};
use std::path::PathBuf;

/// A raw disk image for one test, removed when dropped.
struct DiskFile(PathBuf);

impl DiskFile {
    fn new(tag: &str, bytes: u64) -> DiskFile {
        let path =
            std::env::temp_dir().join(format!("lichen-disk-{}-{tag}.img", std::process::id()));
        let file = std::fs::File::create(&path).expect("create the disk image");
        file.set_len(bytes).expect("size the disk image");
        DiskFile(path)
    }

    fn option(&self, rest: &str) -> String {
        format!("{}{rest}", self.0.display())
    }
}

impl Drop for DiskFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(disks: &[String], args: &[&str]) -> lichen_tests::Boot {
    let mut run = Run::new("disk-test").accel(Accel::Tcg);
    for disk in disks {
        run = run.script_option("--disk", Some(disk));
    }
    for arg in args {
        run = run.arg(arg);
    }
    run.boot()
}

/// Byte `i` of the guest's pattern of `seed` (see tests/images/disk-test).
fn pattern_byte(seed: u64, i: u64) -> u8 {
    let word = (i / 8 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    word.to_le_bytes()[(i % 8) as usize]
}

#[test]
fn transfers_flushes_and_refusals() {
    let data = DiskFile::new("data", 16 << 20);
    let ro = DiskFile::new("ro", 1 << 20);
    std::fs::write(&ro.0, vec![0x5a; 1 << 20]).unwrap();
    let boot = run(&[data.option(",name=data"), ro.option(",ro,name=ro")], &[]);
    boot.expect("disk \"data\": 32768 sectors of 512 bytes");
    boot.expect("disk \"ro\": 2048 sectors of 512 bytes, read-only");
    boot.expect("read-only disk refuses writes");
    boot.expect("no disk named \"absent\"");
    boot.expect("check ok");
    boot.expect_status(0);
    assert!(
        std::fs::read(&ro.0).unwrap().iter().all(|&b| b == 0x5a),
        "the read-only disk changed"
    );
}

#[test]
fn what_was_flushed_is_on_the_host_file_and_survives_a_reboot() {
    let data = DiskFile::new("keep", 8 << 20);
    let disk = [data.option(",name=data")];
    run(&disk, &["mode=fill", "seed=77", "mib=4"]).expect_status(0);
    let bytes = std::fs::read(&data.0).unwrap();
    let wrong = (0..4u64 << 20).find(|&i| bytes[i as usize] != pattern_byte(77, i));
    assert_eq!(
        wrong, None,
        "first byte on the host file that differs from the pattern"
    );
    assert!(
        bytes[4 << 20..].iter().all(|&b| b == 0),
        "a write went past what was asked"
    );
    let boot = run(&disk, &["mode=verify", "seed=77", "mib=4"]);
    boot.expect("verify ok");
    boot.expect_status(0);
    let boot = run(&disk, &["mode=verify", "seed=78", "mib=1"]);
    boot.expect("the pattern read back differs");
    boot.expect_status(2);
}

#[test]
fn a_missing_disk_is_named() {
    let other = DiskFile::new("other", 1 << 20);
    let boot = run(&[other.option(",name=other")], &[]);
    boot.expect("no disk named \"data\" (there are: other)");
    boot.expect_status(1);
}
