//! `admin app restart|purge|stop|start|delete`: an app's lifecycle, as EVE's controller drives
//! it, written into a device's `EdgeDevConfig`:
//! - restart bumps the app's `restart` counter: the node reboots the app on the same volumes;
//! - purge bumps its `purge` counter and the generation of each of its volumes (on the volume
//!   and on the app's reference to it): the node remakes the volumes from their content trees
//!   (or blank) and boots the app on them;
//! - stop and start clear and set `activate`: the app halts, its volumes kept;
//! - delete removes the app, and the volumes and content trees no other app uses.
//!
//! An app is named by its display name or its UUID.

use lichen_api::config::{AppInstanceConfig, EdgeDevConfig, InstanceOpsCmd};

/// What to do to an app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppOp {
    /// Reboot it on the same volumes.
    Restart,
    /// Reboot it on volumes made afresh.
    Purge,
    /// Halt it, keeping its volumes.
    Stop,
    /// Run it again after a stop.
    Start,
    /// Remove it and what only it used.
    Delete,
}

/// What [`apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The app's UUID.
    pub app: String,
    /// The counter the operation bumped (restart or purge), if it bumps one.
    pub counter: Option<u32>,
    /// Volumes removed with a deleted app.
    pub volumes_removed: usize,
}

/// Applies `op` to the app named `name` (display name or UUID) in `config`; `now_unix_s` is
/// the operation's time, recorded in the counter's `opsTime`.
pub fn apply(
    config: &mut EdgeDevConfig,
    name: &str,
    op: AppOp,
    now_unix_s: u64,
) -> Result<Applied, String> {
    let index = find(config, name)?;
    let app = &mut config.apps[index];
    let uuid = app
        .uuidandversion
        .as_ref()
        .map(|id| id.uuid.clone())
        .unwrap_or_default();
    let mut applied = Applied {
        app: uuid,
        counter: None,
        volumes_removed: 0,
    };
    let bump = |command: &mut Option<InstanceOpsCmd>| {
        let command = command.get_or_insert_with(InstanceOpsCmd::default);
        command.counter = command.counter.wrapping_add(1);
        command.ops_time = rfc3339(now_unix_s);
        command.counter
    };
    match op {
        AppOp::Restart => applied.counter = Some(bump(&mut app.restart)),
        AppOp::Purge => {
            applied.counter = Some(bump(&mut app.purge));
            let volumes: Vec<String> = app.volume_ref_list.iter().map(|v| v.uuid.clone()).collect();
            for reference in &mut app.volume_ref_list {
                reference.generation_count += 1;
            }
            for volume in config
                .volumes
                .iter_mut()
                .filter(|v| volumes.contains(&v.uuid))
            {
                volume.generation_count += 1;
            }
        }
        AppOp::Stop => app.activate = false,
        AppOp::Start => app.activate = true,
        AppOp::Delete => {
            let app = config.apps.remove(index);
            let volumes = app.volume_ref_list.into_iter().map(|v| v.uuid).collect();
            applied.volumes_removed = crate::deploy::remove_unused(config, volumes);
        }
    }
    Ok(applied)
}

/// The index of the app named `name` (display name or UUID); an error lists the apps there
/// are when none or several match.
fn find(config: &EdgeDevConfig, name: &str) -> Result<usize, String> {
    let uuid = |app: &AppInstanceConfig| {
        app.uuidandversion
            .as_ref()
            .map(|id| id.uuid.clone())
            .unwrap_or_default()
    };
    let matching: Vec<usize> = (0..config.apps.len())
        .filter(|&i| config.apps[i].displayname == name || uuid(&config.apps[i]) == name)
        .collect();
    match matching.as_slice() {
        [one] => Ok(*one),
        [] => {
            let names: Vec<String> = config
                .apps
                .iter()
                .map(|a| format!("{} ({})", a.displayname, uuid(a)))
                .collect();
            Err(if names.is_empty() {
                format!("no app {name}: the device has no apps")
            } else {
                format!("no app {name}; the device has {}", names.join(", "))
            })
        }
        _ => Err(format!(
            "{} apps are named {name}: name one by its UUID",
            matching.len()
        )),
    }
}

/// `unix_s` as an RFC 3339 UTC time (`2026-12-07T18:30:00Z`).
pub fn rfc3339(unix_s: u64) -> String {
    let days = unix_s / 86_400;
    let seconds = unix_s % 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm, in eras of 400 years).
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_api::{DatastoreLocation, DatastoreUpload};
    use crate::datastore::Stored;
    use crate::deploy::{deploy, AppSpec};
    use lichen_api::config::VmMode;

    fn deployed(names: &[&str]) -> EdgeDevConfig {
        let mut config = EdgeDevConfig::default();
        for (i, name) in names.iter().enumerate() {
            let spec = AppSpec {
                name: (*name).to_owned(),
                memory_kib: 32 * 1024,
                vcpus: 1,
                mode: VmMode::Pv,
                plain_http: false,
                network: Some("default".into()),
                user_data: Vec::new(),
                acls: Vec::new(),
            };
            let upload = DatastoreUpload {
                stored: Stored {
                    sha256: format!("{i:02}").repeat(32),
                    size: 10,
                },
                location: DatastoreLocation {
                    id: "5b0e7d2a-3c4f-4e1a-8b6d-7f9a0c1e2d03".to_owned(),
                    https_url: "https://10.0.2.2:8443".to_owned(),
                    http_url: None,
                    dpath: "datastore".to_owned(),
                    api_key: "lichen".to_owned(),
                    password: "secret".to_owned(),
                },
            };
            deploy(&mut config, &spec, &upload, &[]).unwrap();
        }
        config
    }

    const NOW: u64 = 1_796_668_200; // 2026-12-07T18:30:00Z

    #[test]
    fn restart_and_purge_bump_their_counters_with_the_time() {
        let mut config = deployed(&["echo", "other"]);
        let first = apply(&mut config, "echo", AppOp::Restart, NOW).unwrap();
        assert_eq!(first.counter, Some(1));
        let second = apply(&mut config, &first.app, AppOp::Restart, NOW).unwrap();
        assert_eq!(second.counter, Some(2), "by UUID too");
        let restart = config.apps[0].restart.as_ref().unwrap();
        assert_eq!(restart.ops_time, "2026-12-07T18:30:00Z");
        assert_eq!(config.apps[1].restart, None, "the other app untouched");

        let purged = apply(&mut config, "echo", AppOp::Purge, NOW).unwrap();
        assert_eq!(purged.counter, Some(1));
        let volume = &config.apps[0].volume_ref_list[0];
        assert_eq!(volume.generation_count, 1);
        let made = config
            .volumes
            .iter()
            .find(|v| v.uuid == volume.uuid)
            .unwrap();
        assert_eq!(
            made.generation_count, 1,
            "the volume itself is a new generation"
        );
        assert!(config
            .volumes
            .iter()
            .filter(|v| v.uuid != volume.uuid)
            .all(|v| v.generation_count == 0));
        crate::device_config::validate(&config, "0b7e0f43-52b5-4b36-9f0c-8f3c5b4f1b0a").unwrap();
    }

    #[test]
    fn stop_and_start_flip_activate() {
        let mut config = deployed(&["echo"]);
        apply(&mut config, "echo", AppOp::Stop, NOW).unwrap();
        assert!(!config.apps[0].activate);
        apply(&mut config, "echo", AppOp::Start, NOW).unwrap();
        assert!(config.apps[0].activate);
    }

    #[test]
    fn delete_removes_the_app_and_what_only_it_used() {
        let mut config = deployed(&["echo", "other"]);
        let done = apply(&mut config, "echo", AppOp::Delete, NOW).unwrap();
        assert_eq!(done.volumes_removed, 1);
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].displayname, "other");
        assert_eq!(config.volumes.len(), 1);
        assert_eq!(config.content_info.len(), 1);
        assert_eq!(
            config.network_instances.len(),
            1,
            "the shared instance stays"
        );
        crate::device_config::validate(&config, "0b7e0f43-52b5-4b36-9f0c-8f3c5b4f1b0a").unwrap();
    }

    #[test]
    fn an_unknown_or_ambiguous_name_is_refused_and_changes_nothing() {
        let mut config = deployed(&["echo", "other"]);
        let before = config.clone();
        let error = apply(&mut config, "nope", AppOp::Delete, NOW).unwrap_err();
        assert!(error.contains("echo") && error.contains("other"), "{error}");
        assert_eq!(config, before);
        config.apps[1].displayname = "echo".into();
        let before = config.clone();
        let error = apply(&mut config, "echo", AppOp::Restart, NOW).unwrap_err();
        assert!(error.contains("2 apps"), "{error}");
        assert_eq!(config, before);
        let empty = &mut EdgeDevConfig::default();
        assert!(apply(empty, "echo", AppOp::Start, NOW)
            .unwrap_err()
            .contains("no apps"));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(NOW), "2026-12-07T18:30:00Z");
    }
}
