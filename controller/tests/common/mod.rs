//! What the integration tests share: a controller with an admitted onboarding certificate, and
//! simulated devices for it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use lichen_controller::admin_cli::AdminClient;
use lichen_controller::devsim::fleet::Target;
use lichen_controller::pki::Identity;

/// The serial pattern the tests' onboarding certificate admits.
pub const SERIALS: &str = "sim-*";

/// A configuration file with a network instance, a datastore, a content tree, a volume and an app.
pub const NODE_YAML: &str = include_str!("node.yaml");

/// A client and a device target for a controller at `url` whose state is in `state_dir`,
/// with a new onboarding certificate admitted for [`SERIALS`].
pub async fn connect(url: &str, state_dir: &Path) -> (AdminClient, Target) {
    let ca_pem = std::fs::read_to_string(state_dir.join("ca.pem")).unwrap();
    let token = std::fs::read_to_string(state_dir.join("admin.token")).unwrap();
    let admin = AdminClient::new(url, &ca_pem, &token).unwrap();
    let onboarding = Identity::self_signed("test onboarding").unwrap();
    admin
        .add_onboarding(&onboarding.cert_pem, &[SERIALS.to_owned()])
        .await
        .unwrap();
    let target = Target::new(url, &ca_pem, onboarding, None).unwrap();
    (admin, target)
}

/// Spawns `command` (a `lichen-controller serve` the caller set up, with its stdout free) and
/// waits for the line saying where it listens; returns the process and its URL.
pub fn serve(mut command: Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}
