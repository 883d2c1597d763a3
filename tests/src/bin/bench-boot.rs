//! `scripts/bench boot`: how fast hello boots, against a Linux guest on the same QEMU machine.
//!
//! For each accelerator (KVM when usable, and TCG) it boots lichen's hello and a Linux guest
//! (Debian's kernel with a one-line busybox init) N times each, interleaved, and measures
//! QEMU launch -> first line of the guest (lichen's banner, Linux init's line). For lichen it
//! also collects the in-guest PVH entry -> main time from the banner. Prints a table and writes
//! `target/bench/boot.json`.
//!
//! Usage: bench-boot [--runs N] [--linux-kernel PATH --linux-initrd PATH]

use lichen_tests::{kvm_available, median_p90, root, run_console, Accel, Run};
use serde_json::{json, Value};
use std::time::Duration;

const LINUX_MARKER: &str = "linux-reference: up";

struct Args {
    runs: usize,
    linux: Option<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 20,
        linux: None,
    };
    let mut kernel = None;
    let mut initrd = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--linux-kernel" => kernel = Some(value()?),
            "--linux-initrd" => initrd = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    args.linux = kernel.zip(initrd);
    Ok(args)
}

fn linux_command(accel: Accel, kernel: &str, initrd: &str) -> Vec<String> {
    let accel_args: &[&str] = match accel {
        Accel::Kvm => &["-accel", "kvm", "-cpu", "host,-arch-capabilities"],
        _ => &["-accel", "tcg", "-cpu", "qemu64"],
    };
    let mut cmd: Vec<String> = [
        "qemu-system-x86_64",
        "-M",
        "microvm,x-option-roms=off,rtc=on",
    ]
    .map(String::from)
    .into();
    cmd.extend(accel_args.iter().map(|s| s.to_string()));
    cmd.extend(
        [
            "-m",
            "256",
            "-no-reboot",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-kernel",
            kernel,
            "-initrd",
            initrd,
            "-append",
            "console=ttyS0 quiet panic=-1",
        ]
        .map(String::from),
    );
    cmd
}

fn summary(samples: &mut [f64]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    let (median, p90) = median_p90(samples);
    json!({ "median": median, "p90": p90, "runs": samples.len() })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("bench-boot: {e}");
        std::process::exit(2)
    });
    lichen_tests::build_images();
    let image = root().join("target/images/hello.elf");
    let image_bytes = std::fs::metadata(&image).expect("hello.elf").len();
    let mut accels = vec![];
    if kvm_available() {
        accels.push(Accel::Kvm);
    }
    accels.push(Accel::Tcg);

    let mut report = serde_json::Map::new();
    println!(
        "{:<5} {:<7} {:>22} {:>22} {:>20}",
        "accel", "guest", "launch->first line ms", "", "entry->main us"
    );
    println!(
        "{:<5} {:<7} {:>11} {:>10} {:>11} {:>10}",
        "", "", "median", "p90", "median", "p90"
    );
    for accel in accels {
        let name = if accel == Accel::Kvm { "kvm" } else { "tcg" };
        let (mut banner, mut entry_main, mut linux) = (vec![], vec![], vec![]);
        for _ in 0..args.runs {
            let boot = Run::new("hello")
                .accel(accel)
                .arg("ticks=0")
                .timeout(Duration::from_secs(60))
                .boot();
            let line = boot
                .line("entry->main")
                .unwrap_or_else(|| panic!("no banner:\n{}", boot.output()));
            banner.push(ms(line.at));
            let us = line
                .text
                .split("entry->main ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .and_then(|s| s.parse().ok());
            entry_main.push(us.expect("entry->main figure in the banner"));
            if let Some((kernel, initrd)) = &args.linux {
                let boot = run_console(
                    &linux_command(accel, kernel, initrd),
                    Duration::from_secs(120),
                    Some(LINUX_MARKER),
                );
                match boot.line(LINUX_MARKER) {
                    Some(line) => linux.push(ms(line.at)),
                    None => eprintln!(
                        "linux reference did not print its marker:\n{}",
                        boot.output()
                    ),
                }
            }
        }
        let lichen = json!({
            "launch_to_banner_ms": summary(&mut banner),
            "entry_to_main_us": summary(&mut entry_main),
        });
        let linux_summary = summary(&mut linux);
        let speedup = linux_summary
            .get("median")
            .and_then(Value::as_f64)
            .zip(lichen["launch_to_banner_ms"]["median"].as_f64())
            .map(|(l, h)| l / h);
        for (guest, s, e) in [
            (
                "lichen",
                &lichen["launch_to_banner_ms"],
                &lichen["entry_to_main_us"],
            ),
            ("linux", &linux_summary, &Value::Null),
        ] {
            let f = |v: &Value, k: &str| {
                v.get(k)
                    .and_then(Value::as_f64)
                    .map_or("-".to_string(), |x| format!("{x:.1}"))
            };
            println!(
                "{:<5} {:<7} {:>11} {:>10} {:>11} {:>10}",
                name,
                guest,
                f(s, "median"),
                f(s, "p90"),
                f(e, "median"),
                f(e, "p90")
            );
        }
        if let Some(x) = speedup {
            println!("{name}: lichen reaches its first line {x:.1}x sooner than Linux");
        }
        report.insert(
            name.into(),
            json!({ "lichen": lichen, "linux": linux_summary, "speedup_vs_linux": speedup }),
        );
    }
    println!("hello.elf: {image_bytes} bytes");
    report.insert("image_bytes".into(), json!(image_bytes));
    report.insert(
        "targets".into(),
        json!({ "image_bytes_max": 65536, "entry_to_main_us_max": 1000, "kvm_launch_to_banner_ms_median_max": 300 }),
    );
    let out = root().join("target/bench/boot.json");
    std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir target/bench");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&Value::Object(report)).expect("json"),
    )
    .expect("write boot.json");
    println!("wrote {}", out.display());
}
