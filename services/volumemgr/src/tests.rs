use alloc::string::ToString;
use alloc::vec;

use super::*;

fn tree(uuid: &str, max: u64) -> (String, ContentTree) {
    (
        uuid.into(),
        ContentTree {
            uuid: uuid.into(),
            datastore_id: "ds".into(),
            url: "x".into(),
            format: 1,
            sha256: String::new(),
            max_size_bytes: max,
            name: "image".into(),
        },
    )
}

fn volume(uuid: &str, origin: VolumeOrigin, max: u64, generation: i64) -> (String, Volume) {
    (
        uuid.into(),
        Volume {
            uuid: uuid.into(),
            name: uuid.to_uppercase(),
            origin,
            max_size_bytes: max,
            generation,
        },
    )
}

fn fill(volume: &str, state: DownloadState, generation: i64) -> DownloadStatus {
    DownloadStatus {
        state,
        volume: volume.into(),
        generation,
        bytes: 100,
        total: 200,
        ..Default::default()
    }
}

struct Case {
    disk_mib: Option<u64>,
    volumes: BTreeMap<String, Volume>,
    trees: BTreeMap<String, ContentTree>,
    fills: BTreeMap<String, DownloadStatus>,
    in_use: InUse,
    table: BTreeMap<String, Allocation>,
}

impl Case {
    fn new(disk_mib: u64) -> Case {
        Case {
            disk_mib: Some(disk_mib),
            volumes: BTreeMap::new(),
            trees: BTreeMap::new(),
            fills: BTreeMap::new(),
            in_use: InUse::default(),
            table: BTreeMap::new(),
        }
    }

    /// One round; the table is stored for the next.
    fn round(&mut self) -> BTreeMap<String, VolumeStatus> {
        let plan = plan(
            &World {
                disk_mib: self.disk_mib,
                volumes: &self.volumes,
                trees: &self.trees,
                fills: &self.fills,
                in_use: &self.in_use,
            },
            &self.table,
        );
        self.table = plan.allocations;
        plan.statuses
    }
}

fn extent(offset_mib: u64, size_mib: u64) -> Extent {
    Extent {
        offset_mib,
        size_mib,
    }
}

#[test]
fn a_content_volume_is_placed_filled_and_created_only_when_its_fill_is_verified() {
    let mut c = Case::new(64);
    c.trees.extend([tree("t1", 3 * MIB)]);
    c.volumes
        .extend([volume("v1", VolumeOrigin::ContentTree("t1".into()), 0, 1)]);
    let s = c.round();
    // 3 MiB of content and the downloader's record: 4 MiB.
    assert_eq!(s["v1"].extent, Some(extent(0, 4)));
    assert_eq!(s["v1"].state, VolumeState::Filling);
    assert!(!c.table["v1"].made);

    // A fill for another volume, or another generation, is not this volume's.
    c.fills
        .insert("t1".into(), fill("v2", DownloadState::Verified, 1));
    assert_eq!(c.round()["v1"].state, VolumeState::Filling);
    c.fills
        .insert("t1".into(), fill("v1", DownloadState::Verified, 0));
    assert_eq!(c.round()["v1"].state, VolumeState::Filling);

    c.fills
        .insert("t1".into(), fill("v1", DownloadState::Downloading, 1));
    let s = c.round();
    assert_eq!((s["v1"].bytes, s["v1"].total), (100, 200));

    c.fills
        .insert("t1".into(), fill("v1", DownloadState::Verified, 1));
    let s = c.round();
    assert_eq!(s["v1"].state, VolumeState::Created);
    assert!(c.table["v1"].made);
    // Made is for good: the downloader's later reports change nothing.
    c.fills.clear();
    assert_eq!(c.round()["v1"].state, VolumeState::Created);
}

#[test]
fn volumes_get_disjoint_extents_and_one_that_does_not_fit_is_an_error_alone() {
    let mut c = Case::new(16);
    c.volumes.extend([
        volume("a", VolumeOrigin::Blank, 6 * MIB, 0),
        volume("b", VolumeOrigin::Blank, 20 * MIB, 0),
        volume("c", VolumeOrigin::Blank, 10 * MIB, 0),
    ]);
    let s = c.round();
    assert_eq!(s["a"].extent, Some(extent(0, 6)));
    assert_eq!(s["b"].state, VolumeState::Error);
    assert!(s["b"].error.contains("needs 20 MiB"), "{}", s["b"].error);
    assert!(s["b"].error.contains("is 10 MiB"), "{}", s["b"].error);
    assert_eq!(s["c"].extent, Some(extent(6, 10)));
    assert!(!c.table.contains_key("b"));
}

#[test]
fn a_blank_volume_needs_a_size_and_a_content_volume_its_content_tree() {
    let mut c = Case::new(16);
    c.volumes.extend([
        volume("a", VolumeOrigin::Blank, 0, 0),
        volume("b", VolumeOrigin::ContentTree("missing".into()), 0, 0),
    ]);
    let s = c.round();
    assert_eq!(s["a"].state, VolumeState::Error);
    assert_eq!(s["b"].state, VolumeState::Error);
    assert!(c.table.is_empty());
}

#[test]
fn nothing_is_placed_before_the_disk_is_known() {
    let mut c = Case::new(16);
    c.disk_mib = None;
    c.volumes.extend([volume("a", VolumeOrigin::Blank, MIB, 0)]);
    let s = c.round();
    assert_eq!(s["a"].state, VolumeState::Pending);
    assert!(c.table.is_empty());
}

#[test]
fn a_zero_fill_is_reported_under_the_volume_and_an_error_fails_the_volume() {
    let mut c = Case::new(16);
    c.trees.extend([tree("t", MIB)]);
    c.volumes.extend([
        volume("z", VolumeOrigin::Blank, 2 * MIB, 0),
        volume("d", VolumeOrigin::ContentTree("t".into()), 0, 0),
    ]);
    c.round();
    c.fills
        .insert("z".into(), fill("z", DownloadState::Verified, 0));
    let mut bad = fill("d", DownloadState::Error, 0);
    bad.error = "sha256 mismatch".to_string();
    c.fills.insert("t".into(), bad);
    let s = c.round();
    assert_eq!(s["z"].state, VolumeState::Created);
    assert_eq!(s["d"].state, VolumeState::Error);
    assert_eq!(s["d"].error, "sha256 mismatch");
}

#[test]
fn a_deleted_volume_keeps_its_extent_while_an_app_or_the_downloader_may_use_it() {
    let mut c = Case::new(16);
    c.volumes
        .extend([volume("a", VolumeOrigin::Blank, 4 * MIB, 0)]);
    c.round();
    c.volumes.clear();
    c.in_use.extents = vec![extent(2, 1)];
    assert_eq!(c.round()["a"].state, VolumeState::Deleting);
    // A new volume cannot take the extent meanwhile.
    c.volumes
        .extend([volume("b", VolumeOrigin::Blank, 16 * MIB, 0)]);
    assert_eq!(c.round()["b"].state, VolumeState::Error);
    c.volumes.clear();

    c.in_use = InUse {
        extents: vec![],
        unknown: true,
    };
    assert_eq!(c.round()["a"].state, VolumeState::Deleting);
    c.in_use = InUse::default();
    c.fills
        .insert("a".into(), fill("a", DownloadState::Downloading, 0));
    assert_eq!(c.round()["a"].state, VolumeState::Deleting);
    c.fills.clear();
    assert!(c.round().is_empty());
    assert!(c.table.is_empty());
}

#[test]
fn a_new_generation_refills_in_place_once_no_app_uses_the_volume() {
    let mut c = Case::new(16);
    c.volumes
        .extend([volume("a", VolumeOrigin::Blank, 4 * MIB, 0)]);
    c.round();
    c.fills
        .insert("a".into(), fill("a", DownloadState::Verified, 0));
    assert_eq!(c.round()["a"].state, VolumeState::Created);

    c.volumes
        .extend([volume("a", VolumeOrigin::Blank, 4 * MIB, 1)]);
    c.in_use.extents = vec![extent(0, 4)];
    let s = c.round();
    assert_eq!(s["a"].state, VolumeState::Pending);
    assert!(c.table["a"].made, "not refilled under a running app");
    c.in_use = InUse::default();
    let s = c.round();
    assert_eq!(s["a"].state, VolumeState::Filling);
    assert_eq!(s["a"].extent, Some(extent(0, 4)));
    assert_eq!(c.table["a"].generation, 1);
    // The old generation's verified fill does not count.
    assert_eq!(c.round()["a"].state, VolumeState::Filling);
}

#[test]
fn a_grown_volume_moves_to_a_new_extent() {
    let mut c = Case::new(16);
    c.volumes.extend([
        volume("a", VolumeOrigin::Blank, 2 * MIB, 0),
        volume("b", VolumeOrigin::Blank, 2 * MIB, 0),
    ]);
    c.round();
    c.volumes
        .extend([volume("a", VolumeOrigin::Blank, 3 * MIB, 0)]);
    let s = c.round();
    assert_eq!(s["a"].extent, Some(extent(4, 3)));
    assert_eq!(s["b"].extent, Some(extent(2, 2)));
}
