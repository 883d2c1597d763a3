//! `lichen-launcher`: the only lichen program in dom0. It reads a node manifest, starts Xen's
//! daemons, boots each service as a PVH domain in dependency order, wires the services together in
//! xenstore, prints their consoles and supervises them (see xen/README.md).
//!
//! ```text
//! lichen-launcher check  [--images DIR]... <manifest>   validate; print the start order and wiring
//! lichen-launcher images [--images DIR]... <manifest>   validate; print the image files to stage
//! lichen-launcher image-names <manifest>                 print the image names it uses (unchecked)
//! lichen-launcher disks  [--images DIR]... <manifest>   validate; print each node disk: NAME SIZE_MIB CONTENTS [IMAGE]
//! lichen-launcher run    [--images DIR]... [--log-dir DIR] [--state-dir DIR] <manifest>
//! ```
//!
//! Exit status: 0 when no service failed, 1 when one did, 2 for a bad manifest or usage, 3 when
//! the platform (Xen's daemons, the toolstack) could not be brought up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use lichen_launcher::manifest::{self, Manifest};
use lichen_launcher::{bus, daemons, log, order, say, supervisor, toolstack};

const USAGE: &str = "usage: lichen-launcher check|images|image-names|disks|run [--images DIR]... [--hooks DIR] [--log-dir DIR] [--state-dir DIR] <manifest>";

/// The parsed command line.
struct Args {
    command: String,
    manifest: PathBuf,
    image_dirs: Vec<PathBuf>,
    log_dir: PathBuf,
    state_dir: PathBuf,
    hooks_dir: PathBuf,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let command = args.next().ok_or(USAGE)?;
    if !matches!(
        command.as_str(),
        "check" | "images" | "image-names" | "disks" | "run"
    ) {
        return Err(format!("unknown command `{command}`\n{USAGE}"));
    }
    let mut manifest = None;
    let mut image_dirs = Vec::new();
    let mut log_dir = PathBuf::from("/var/log/xen/console");
    let mut state_dir = PathBuf::from("/run/lichen");
    let mut hooks_dir = PathBuf::from("/etc/lichen/hooks");
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .map(PathBuf::from)
                .ok_or(format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--images" => image_dirs.push(value()?),
            "--log-dir" => log_dir = value()?,
            "--state-dir" => state_dir = value()?,
            "--hooks" => hooks_dir = value()?,
            _ if arg.starts_with('-') => return Err(format!("unknown option `{arg}`\n{USAGE}")),
            _ if manifest.is_none() => manifest = Some(PathBuf::from(&arg)),
            _ => return Err(format!("unexpected argument `{arg}`\n{USAGE}")),
        }
    }
    if image_dirs.is_empty() {
        image_dirs.push(PathBuf::from("target/images"));
    }
    let manifest = manifest.ok_or(USAGE)?;
    Ok(Args {
        command,
        manifest,
        image_dirs,
        log_dir,
        state_dir,
        hooks_dir,
    })
}

fn main() -> ExitCode {
    log::start_clock();
    let status = launch();
    log::flush();
    status
}

fn launch() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("lichen-launcher: {e}");
            return ExitCode::from(2);
        }
    };
    if args.command == "image-names" {
        return print_image_names(&args.manifest);
    }
    let (manifest, images) =
        match Manifest::load(&args.manifest, &args.image_dirs, Some(&args.hooks_dir)) {
            Ok(loaded) => loaded,
            Err(errors) => {
                eprintln!(
                    "lichen-launcher: refusing manifest {}:",
                    args.manifest.display()
                );
                for error in &errors.0 {
                    eprintln!("  {error}");
                }
                return ExitCode::from(2);
            }
        };
    match args.command.as_str() {
        "check" => {
            let order = order::start_order(&manifest).unwrap_or_default();
            println!(
                "manifest {} is valid; start order: {}\n",
                args.manifest.display(),
                order.join(", ")
            );
            print!("{}", bus::table(&manifest, &images.declarations));
            if let Some(apps) = &manifest.apps {
                println!(
                    "\napps (domain service): manager {}, {} MiB, {} vCPUs, {} domains at once, volumes on disk `{}`",
                    apps.manager,
                    apps.memory_mib,
                    apps.vcpus,
                    apps.count,
                    apps.data
                );
            }
            ExitCode::SUCCESS
        }
        "images" => {
            for file in images.files() {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        "disks" => {
            // A disk's image is looked for here only: dom0 gets the disk, not the image.
            for (name, disk) in &manifest.disks {
                let image = match &disk.image {
                    None => String::new(),
                    Some(image) => match manifest::resolve_image(name, image, &args.image_dirs) {
                        Ok(path) => format!(" {}", path.display()),
                        Err(e) => {
                            eprintln!("lichen-launcher: disk {e}");
                            return ExitCode::from(2);
                        }
                    },
                };
                println!("{name} {} {}{image}", disk.size_mib, disk.contents.name());
            }
            ExitCode::SUCCESS
        }
        _ => run(manifest, &images, &args),
    }
}

/// Prints the image and ramdisk names a manifest uses, one per line, without validating it (so that
/// a script can build the images before they are checked).
fn print_image_names(path: &std::path::Path) -> ExitCode {
    let manifest = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| Manifest::parse(&text).map_err(|e| e.to_string()));
    match manifest {
        Ok(manifest) => {
            let mut names: Vec<&str> = Vec::new();
            for service in manifest.services.values() {
                for name in std::iter::once(&service.image).chain(&service.ramdisk) {
                    if !names.contains(&name.as_str()) {
                        names.push(name);
                    }
                }
            }
            for name in manifest.disks.values().filter_map(|d| d.image.as_ref()) {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
            names.iter().for_each(|name| println!("{name}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "lichen-launcher: refusing manifest {}:\n  {e}",
                path.display()
            );
            ExitCode::from(2)
        }
    }
}

/// Brings up Xen's daemons and supervises the node until it finishes or is asked to stop.
fn run(manifest: Manifest, images: &manifest::ResolvedImages, args: &Args) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("lichen-launcher: cannot handle signal {signal}: {e}");
            return ExitCode::from(3);
        }
    }
    let toolstack = daemons::check_dom0()
        .and_then(|()| daemons::start(&args.log_dir))
        .and_then(|()| toolstack::Toolstack::new(&args.state_dir, &args.log_dir));
    let toolstack = match toolstack {
        Ok(toolstack) => toolstack,
        Err(e) => {
            say!("cannot bring up the platform: {e}");
            return ExitCode::from(3);
        }
    };
    for failure in lichen_launcher::network::setup_bridges(manifest.network_instances) {
        say!("network instances: {failure}");
    }
    let mut hooks = start_hooks(&manifest.test, &args.hooks_dir);
    let mut supervisor =
        supervisor::Supervisor::new(manifest, images, toolstack, supervisor::Options::default());
    let status = supervisor.run(&stop);
    for hook in &mut hooks {
        let _ = hook.kill();
        let _ = hook.wait();
    }
    ExitCode::from(status as u8)
}

/// Starts the manifest's test hooks (see [`manifest::Test`]); a hook that cannot start is
/// reported and skipped.
fn start_hooks(test: &manifest::Test, dir: &std::path::Path) -> Vec<std::process::Child> {
    let mut children = Vec::new();
    for hook in &test.hooks {
        let program = dir.join(hook);
        match std::process::Command::new(&program)
            .envs(test.environment())
            .spawn()
        {
            Ok(child) => {
                say!("started test hook {hook}");
                children.push(child);
            }
            Err(e) => say!("cannot start test hook {}: {e}", program.display()),
        }
    }
    children
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, String> {
        parse_args(line.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_commands_and_options() {
        let args = parse("run --images a --images b --log-dir /l node.toml").unwrap();
        assert_eq!(args.command, "run");
        assert_eq!(args.manifest, PathBuf::from("node.toml"));
        assert_eq!(args.image_dirs, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(args.log_dir, PathBuf::from("/l"));
        assert_eq!(
            parse("check m.toml").unwrap().image_dirs,
            [PathBuf::from("target/images")]
        );
    }

    #[test]
    fn refuses_bad_command_lines() {
        for line in [
            "",
            "boot m.toml",
            "run",
            "run --images",
            "run --frobnicate m.toml",
            "run a.toml b.toml",
        ] {
            assert!(parse(line).is_err(), "{line:?} was accepted");
        }
    }
}
