use super::*;
use alloc::string::ToString;

fn app(name: &str, state: SwState, error: &str) -> AppInstanceStatus {
    AppInstanceStatus {
        name: name.into(),
        version: "1".into(),
        state,
        activated: true,
        error: error.into(),
        ..Default::default()
    }
}

fn ainfo(report: &ZInfoMsg) -> &ZInfoApp {
    assert_eq!(report.ztype, ZInfoTypes::ZiApp as i32);
    match &report.info_content {
        Some(InfoContent::Ainfo(app)) => app,
        other => panic!("not an app report: {other:?}"),
    }
}

fn cinfo(report: &ZInfoMsg) -> &ZInfoContentTree {
    assert_eq!(report.ztype, ZInfoTypes::ZiContentTree as i32);
    match &report.info_content {
        Some(InfoContent::Cinfo(tree)) => tree,
        other => panic!("not a content tree report: {other:?}"),
    }
}

#[test]
fn an_app_is_reported_when_it_changes_with_its_error_time_and_boot_time_kept() {
    let mut reporter = Reporter::new();
    let booting = app("web", SwState::Booting, "");
    let reports = reporter.apps([("a1", &booting)], 100);
    assert_eq!(reports.len(), 1);
    let first = ainfo(&reports[0]);
    assert_eq!(
        (first.app_id.as_str(), first.app_name.as_str(), first.state),
        ("a1", "web", ZSwState::Booting as i32)
    );
    assert!(first.boot_time.is_none() && first.app_err.is_empty());
    assert_eq!(reports[0].at_time_stamp, Some(crate::timestamp(100)));

    // Nothing changed: nothing to report, whatever the time.
    assert!(reporter.apps([("a1", &booting)], 105).is_empty());

    let running = app("web", SwState::Running, "");
    let reports = reporter.apps([("a1", &running)], 110);
    let now_running = ainfo(&reports[0]);
    assert_eq!(now_running.state, ZSwState::Running as i32);
    assert_eq!(now_running.boot_time, Some(crate::timestamp(110)));
    assert!(reporter.apps([("a1", &running)], 120).is_empty());

    // An error: stamped when first seen; the same text later keeps its time.
    let failed = app("web", SwState::Error, "domain crashed");
    let reports = reporter.apps([("a1", &failed)], 130);
    let report = ainfo(&reports[0]);
    assert_eq!(report.state, ZSwState::Error as i32);
    assert_eq!(report.boot_time, None);
    assert_eq!(report.app_err.len(), 1);
    assert_eq!(report.app_err[0].description, "domain crashed");
    assert_eq!(report.app_err[0].timestamp, Some(crate::timestamp(130)));
    assert_eq!(report.app_err[0].severity, Severity::Error as i32);
    let restarting = app("web", SwState::Restarting, "domain crashed");
    let reports = reporter.apps([("a1", &restarting)], 140);
    assert_eq!(
        ainfo(&reports[0]).app_err[0].timestamp,
        Some(crate::timestamp(130))
    );
    let other = app("web", SwState::Restarting, "no kernel");
    let reports = reporter.apps([("a1", &other)], 150);
    assert_eq!(
        ainfo(&reports[0]).app_err[0].timestamp,
        Some(crate::timestamp(150))
    );
}

#[test]
fn a_vanished_object_is_reported_by_its_uuid_alone_once() {
    let mut reporter = Reporter::new();
    let (a, b) = (
        app("a", SwState::Running, ""),
        app("b", SwState::Halted, ""),
    );
    assert_eq!(reporter.apps([("a1", &a), ("b1", &b)], 1).len(), 2);
    let reports = reporter.apps([("b1", &b)], 2);
    assert_eq!(reports.len(), 1);
    assert_eq!(
        *ainfo(&reports[0]),
        ZInfoApp {
            app_id: "a1".into(),
            ..Default::default()
        }
    );
    assert!(reporter.apps([("b1", &b)], 3).is_empty());
    // Apps and content trees are apart: content trees vanishing says nothing of apps.
    assert!(reporter.content_trees([], 4).is_empty());
    // Back again: reported whole.
    let reports = reporter.apps([("a1", &a), ("b1", &b)], 5);
    assert_eq!(reports.len(), 1);
    assert_eq!(ainfo(&reports[0]).app_name, "a");
}

#[test]
fn a_download_reports_its_progress_state_and_errors() {
    let mut reporter = Reporter::new();
    let mut status = DownloadStatus {
        name: "alpine".into(),
        state: DownloadState::Downloading,
        bytes: 250,
        total: 1000,
        ..Default::default()
    };
    let reports = reporter.content_trees([("c1", &status)], 10);
    let tree = cinfo(&reports[0]);
    assert_eq!(
        (
            tree.uuid.as_str(),
            tree.display_name.as_str(),
            tree.state,
            tree.progress_percentage
        ),
        ("c1", "alpine", ZSwState::DownloadStarted as i32, 25)
    );
    // A retried failure is a warning, kept while retrying.
    status.error = "datastore: connection refused".into();
    let reports = reporter.content_trees([("c1", &status)], 11);
    let err = cinfo(&reports[0]).err.clone().unwrap();
    assert_eq!(err.severity, Severity::Warning as i32);
    status.state = DownloadState::Error;
    status.error = "sha256 mismatch".into();
    let reports = reporter.content_trees([("c1", &status)], 12);
    let tree = cinfo(&reports[0]);
    assert_eq!(tree.state, ZSwState::Error as i32);
    assert_eq!(tree.err.as_ref().unwrap().severity, Severity::Error as i32);

    status = DownloadStatus {
        name: "alpine".into(),
        state: DownloadState::Verified,
        bytes: 1000,
        total: 1000,
        sha256: "ab".repeat(32),
        ..Default::default()
    };
    let reports = reporter.content_trees([("c1", &status)], 13);
    let tree = cinfo(&reports[0]);
    assert_eq!(
        (tree.state, tree.progress_percentage, tree.err.is_none()),
        (ZSwState::Loaded as i32, 100, true)
    );
    assert_eq!(tree.sha256, "ab".repeat(32));
    // Loaded, its download status goes (volumemgr took the volume): no deletion.
    assert!(reporter.content_trees([], 14).is_empty());
    // One that goes while downloading is reported gone.
    status.state = DownloadState::Downloading;
    assert_eq!(reporter.content_trees([("c1", &status)], 15).len(), 1);
    let reports = reporter.content_trees([], 16);
    assert_eq!(
        *cinfo(&reports[0]),
        ZInfoContentTree {
            uuid: "c1".into(),
            ..Default::default()
        }
    );
}

#[test]
fn hostile_values_are_bounded() {
    assert_eq!(percent(5, 0), 0);
    assert_eq!(percent(u64::MAX, 1), 100);
    assert_eq!(percent(u64::MAX / 2, u64::MAX), 49);
    let mut reporter = Reporter::new();
    let long = "é".repeat(MAX_TEXT);
    let status = app(&long, SwState::Error, &long);
    let reports = reporter.apps([("a1", &status)], 1);
    let report = ainfo(&reports[0]);
    assert!(report.app_name.len() <= MAX_TEXT && report.app_name.starts_with('é'));
    assert!(report.app_err[0].description.len() <= MAX_TEXT);
    assert_eq!(report.app_name.to_string(), report.app_err[0].description);
}

#[test]
fn reports_supersede_only_the_same_object() {
    let mut reporter = Reporter::new();
    let running = app("web", SwState::Running, "");
    let app_report = &reporter.apps([("a1", &running)], 1)[0];
    assert_eq!(superseded_key(app_report).as_deref(), Some("app:a1"));
    let download = DownloadStatus::default();
    let tree_report = &reporter.content_trees([("a1", &download)], 1)[0];
    assert_eq!(
        superseded_key(tree_report).as_deref(),
        Some("contenttree:a1")
    );
    let device = ZInfoMsg {
        info_content: Some(InfoContent::Dinfo(Default::default())),
        ..Default::default()
    };
    assert_eq!(superseded_key(&device), None);
    assert_eq!(superseded_key(&ZInfoMsg::default()), None);
}

#[test]
fn a_volume_reports_its_filling_and_generation_then_its_deletion() {
    use lichen_api::info::ZInfoVolume;
    let vinfo = |report: &ZInfoMsg| -> ZInfoVolume {
        assert_eq!(report.ztype, ZInfoTypes::ZiVolume as i32);
        match &report.info_content {
            Some(InfoContent::Vinfo(volume)) => volume.clone(),
            other => panic!("not a volume report: {other:?}"),
        }
    };
    let mut reporter = Reporter::new();
    let mut status = VolumeStatus {
        name: "app-data".into(),
        generation: 3,
        state: VolumeState::Filling,
        bytes: 1 << 20,
        total: 4 << 20,
        ..Default::default()
    };
    let volume = vinfo(&reporter.volumes([("v1", &status)], 1)[0]);
    assert_eq!(
        (
            volume.uuid.as_str(),
            volume.display_name.as_str(),
            volume.state,
            volume.progress_percentage,
            volume.generation_count
        ),
        ("v1", "app-data", ZSwState::CreatingVolume as i32, 25, 3)
    );
    status.state = VolumeState::Created;
    status.bytes = 0; // a blank volume says nothing of bytes: made is 100 %
    let volume = vinfo(&reporter.volumes([("v1", &status)], 2)[0]);
    assert_eq!(
        (volume.state, volume.progress_percentage),
        (ZSwState::CreatedVolume as i32, 100)
    );
    status.state = VolumeState::Error;
    status.error = "the data disk is full".into();
    let volume = vinfo(&reporter.volumes([("v1", &status)], 3)[0]);
    let err = volume.volume_err.unwrap();
    assert_eq!(
        (err.description.as_str(), err.severity),
        ("the data disk is full", Severity::Error as i32)
    );
    let reports = reporter.volumes([], 4);
    assert_eq!(
        vinfo(&reports[0]),
        ZInfoVolume {
            uuid: "v1".into(),
            ..Default::default()
        }
    );
    assert_eq!(superseded_key(&reports[0]).as_deref(), Some("volume:v1"));
}

#[test]
fn a_network_instance_is_reported_when_its_info_changes_not_its_counters() {
    use lichen_api::info::ZNetworkInstanceState;
    use topics::zedrouter::Lease;
    let niinfo = |report: &ZInfoMsg| -> ZInfoNetworkInstance {
        assert_eq!(report.ztype, ZInfoTypes::ZiNetworkInstance as i32);
        match &report.info_content {
            Some(InfoContent::Niinfo(ni)) => ni.clone(),
            other => panic!("not a network instance report: {other:?}"),
        }
    };
    let mut reporter = Reporter::new();
    let mut status = NetworkInstanceStatus {
        name: "default".into(),
        kind: 2,
        state: NetworkInstanceState::Pending,
        ..Default::default()
    };
    let first = niinfo(&reporter.network_instances([("ni-1", &status)], 10)[0]);
    assert_eq!(
        (first.network_id.as_str(), first.state),
        ("ni-1", ZNetworkInstanceState::ZnetinstStateInit as i32)
    );
    status.state = NetworkInstanceState::Online;
    status.bridge = "lichenni1".into();
    status.subnet = "10.1.0.1/24".into();
    let online = niinfo(&reporter.network_instances([("ni-1", &status)], 20)[0]);
    assert_eq!(online.up_time_stamp, Some(crate::timestamp(20)));
    // Traffic alone: no report.
    status.to_app = 100;
    status.acl_drops = 3;
    assert!(reporter
        .network_instances([("ni-1", &status)], 30)
        .is_empty());
    // An app's address: reported, the up time kept.
    status.leases.push(Lease {
        mac: "02:00:00:00:00:01".into(),
        ip: "10.1.0.2".into(),
    });
    let leased = niinfo(&reporter.network_instances([("ni-1", &status)], 40)[0]);
    assert_eq!(leased.ip_assignments[0].ip_address, vec!["10.1.0.2"]);
    assert_eq!(leased.up_time_stamp, Some(crate::timestamp(20)));
    // An ACL refused: the error, stamped when first seen.
    status.error = "app a1: ACE 2: bad port \"x\"".into();
    let refused = niinfo(&reporter.network_instances([("ni-1", &status)], 50)[0]);
    assert_eq!(refused.network_err[0].timestamp, Some(crate::timestamp(50)));
    assert!(reporter
        .network_instances([("ni-1", &status)], 60)
        .is_empty());
    // Gone: its UUID alone, which supersedes what still waits of it.
    let reports = reporter.network_instances([], 70);
    assert_eq!(
        niinfo(&reports[0]),
        ZInfoNetworkInstance {
            network_id: "ni-1".into(),
            ..Default::default()
        }
    );
    assert_eq!(superseded_key(&reports[0]).as_deref(), Some("netinst:ni-1"));
}
