//! The rules every request must follow, whatever the node's limits: both sides apply them (the
//! launcher to refuse, the manager to report a bad configuration before asking).

use alloc::format;
use alloc::string::String;

use crate::{AppSpec, Refusal, RefusalKind};

/// The longest app name (a UUID's 36 characters fit).
pub const MAX_NAME: usize = 40;

/// The longest command line, bytes.
pub const MAX_CMDLINE: usize = 1024;

/// The most disks an app may get (`xvda` to `xvdp`).
pub const MAX_DISKS: usize = 16;

/// The longest grace a stop may ask for (a minute).
pub const MAX_GRACE_MS: u32 = 60_000;

/// An app (or volume) name: 1 to [`MAX_NAME`] of `a-z`, `0-9` and `-`, starting with a letter
/// or digit (it becomes part of the Xen domain's name, `app-<name>`, and of file names).
pub fn name(name: &str) -> Result<(), Refusal> {
    let good = (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if good {
        Ok(())
    } else {
        Err(invalid(format!(
            "bad name {:?}: 1 to {MAX_NAME} of a-z, 0-9 and '-', not starting with '-'",
            shorten(name)
        )))
    }
}

/// A spec's own rules: a command line without control characters, at least 1 MiB and 1 vCPU,
/// volumes of at least 1 MiB, at most [`MAX_DISKS`] disks, no two of its volumes overlapping.
pub fn spec(spec: &AppSpec) -> Result<(), Refusal> {
    if spec.kernel.size_mib == 0 || spec.disks.iter().any(|d| d.extent.size_mib == 0) {
        return Err(invalid("every volume must be at least 1 MiB"));
    }
    if spec.memory_mib == 0 || spec.vcpus == 0 {
        return Err(invalid("memory_mib and vcpus must be at least 1"));
    }
    if spec.cmdline.len() > MAX_CMDLINE || spec.cmdline.chars().any(|c| c.is_control() && c != '\t')
    {
        return Err(invalid(format!(
            "the command line must be at most {MAX_CMDLINE} bytes without control characters"
        )));
    }
    if spec.disks.len() > MAX_DISKS {
        return Err(invalid(format!(
            "{} disks, at most {MAX_DISKS}",
            spec.disks.len()
        )));
    }
    for (i, disk) in spec.disks.iter().enumerate() {
        let e = disk.extent;
        if e.overlaps(&spec.kernel) || spec.disks[..i].iter().any(|d| d.extent.overlaps(&e)) {
            return Err(Refusal::new(
                RefusalKind::Volume,
                format!("volume {e} overlaps another of the app's volumes"),
            ));
        }
    }
    Ok(())
}

/// A grace period within [`MAX_GRACE_MS`].
pub fn grace(grace_ms: u32) -> Result<(), Refusal> {
    if grace_ms <= MAX_GRACE_MS {
        Ok(())
    } else {
        Err(invalid(format!("grace_ms {grace_ms} above {MAX_GRACE_MS}")))
    }
}

/// The command line an app's user data becomes (EVE's `AppInstanceConfig.userData`, after
/// base64): its lines, trimmed, joined by single spaces, leaving out blank lines and lines
/// starting with `#`. So a file of `key=value` words, one or more a line, with comments, is
/// the command line a lichen app reads as `kernel::Args` (a Linux app: its kernel's command
/// line). The user data comes from the controller: text that is not UTF-8, that holds control
/// characters other than tab, CR and LF, or whose command line exceeds [`MAX_CMDLINE`] bytes
/// is refused with the reason.
pub fn cmdline_from_user_data(user_data: &[u8]) -> Result<String, String> {
    let text = core::str::from_utf8(user_data)
        .map_err(|e| format!("the user data is not UTF-8 text (byte {})", e.valid_up_to()))?;
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Err(format!("the user data holds the control character {c:?}"));
    }
    let mut cmdline = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str(line);
        if cmdline.len() > MAX_CMDLINE {
            return Err(format!(
                "the user data makes a command line of more than {MAX_CMDLINE} bytes"
            ));
        }
    }
    Ok(cmdline)
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(RefusalKind::Invalid, message)
}

/// At most 64 characters of a peer's text, for messages.
fn shorten(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}
