//! Starting Xen's dom0 daemons: xenstored, then xen-init-dom0 (dom0's own xenstore entries),
//! then xenconsoled logging each guest's console to its own file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::say;

/// Checks that this is a Xen control domain.
pub fn check_dom0() -> Result<(), String> {
    let caps = std::fs::read_to_string("/proc/xen/capabilities")
        .map_err(|e| format!("not a Xen domain, or xenfs is not mounted on /proc/xen ({e})"))?;
    if caps.contains("control_d") {
        Ok(())
    } else {
        Err("not Xen's control domain (no control_d in /proc/xen/capabilities)".into())
    }
}

/// Starts xenstored, xen-init-dom0 and xenconsoled (with guest console logs in `log_dir`).
pub fn start(log_dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(log_dir)
        .map_err(|e| format!("cannot create {}: {e}", log_dir.display()))?;
    let log_dir_arg = format!("--log-dir={}", log_dir.display());
    let steps: [(&str, &[&str]); 3] = [
        ("xenstored", &["--pid-file", "/run/xenstored.pid"]),
        ("xen-init-dom0", &[]),
        (
            "xenconsoled",
            &[
                "--log=guest",
                &log_dir_arg,
                "--pid-file=/run/xenconsoled.pid",
            ],
        ),
    ];
    for (program, args) in steps {
        let started = Instant::now();
        // xenstored and xenconsoled daemonize once ready; xen-init-dom0 runs to completion.
        let status = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if !status.success() {
            return Err(format!("{program} failed ({status})"));
        }
        say!(
            "{program} ready in {:.3} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
