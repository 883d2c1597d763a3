//! Which fills volumemgr asks for: every volume it reports `Filling` (`volumemgr/VolumeStatus`)
//! gets its extent of the app data disk filled, with its content tree's image (from
//! `zedagent/Datastore` and `zedagent/ContentTree`) or with zeros for a blank volume.
//!
//! The downloader writes the content straight onto the extent (no copy through a download area),
//! so volumemgr sizes a content volume to hold the content and the downloader's record
//! (docs/download.md).
//!
//! **What the configuration may hold, and what happens**: a content tree that is missing, whose
//! datastore is missing or of a kind other than HTTP or HTTPS, without a valid SHA-256, or with
//! a location that does not parse: that volume's fill is an error (reported in its status;
//! nothing is written), the others go ahead.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use topics::volumemgr::{Extent, Fill, VolumeState, VolumeStatus};
use topics::zedagent::{ContentTree, Datastore, DatastoreKind};

use crate::engine::{parse_sha256, Job};
use crate::source::Source;

/// What goes into a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// A content tree's image, downloaded.
    Download(Job),
    /// Zeros over the whole extent.
    Zeros,
}

/// One volume volumemgr asks to have filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The status key: the content tree's UUID, or the volume's for zeros.
    pub key: String,
    /// The volume's UUID.
    pub volume: String,
    /// The generation of the volume.
    pub generation: i64,
    /// The name reported (the content tree's, or the volume's).
    pub name: String,
    /// Where on the app data disk.
    pub extent: Extent,
    /// The fill, or why there can be none.
    pub work: Result<Work, String>,
}

/// The fills volumemgr's statuses ask for, in volume order.
pub fn wanted(
    datastores: &[Datastore],
    trees: &[ContentTree],
    volumes: &[(String, VolumeStatus)],
) -> Vec<Wanted> {
    let mut out = Vec::new();
    for (uuid, status) in volumes {
        let (VolumeState::Filling, Some(extent)) = (status.state, status.extent) else {
            continue;
        };
        let (key, name, work) = match &status.fill {
            Fill::Zeros => (uuid.clone(), status.name.clone(), Ok(Work::Zeros)),
            Fill::ContentTree(tree) => match trees.iter().find(|t| t.uuid == *tree) {
                Some(t) => (
                    t.uuid.clone(),
                    t.name.clone(),
                    job(datastores, t, uuid, status.generation).map(Work::Download),
                ),
                None => (
                    tree.clone(),
                    status.name.clone(),
                    Err(format!("content tree {tree} is not in the configuration")),
                ),
            },
        };
        out.push(Wanted {
            key,
            volume: uuid.clone(),
            generation: status.generation,
            name,
            extent,
            work,
        });
    }
    out
}

fn job(
    datastores: &[Datastore],
    tree: &ContentTree,
    volume: &str,
    generation: i64,
) -> Result<Job, String> {
    let store = datastores
        .iter()
        .find(|d| d.id == tree.datastore_id)
        .ok_or_else(|| {
            format!(
                "datastore {} is not in the configuration",
                tree.datastore_id
            )
        })?;
    let https = match store.kind {
        DatastoreKind::Https => true,
        DatastoreKind::Http => false,
        DatastoreKind::Other(kind) => {
            return Err(format!(
                "datastore {}: kind {kind} is not supported (HTTP and HTTPS are)",
                store.id
            ))
        }
    };
    let source = Source::new(
        https,
        &store.fqdn,
        &store.dpath,
        &tree.url,
        &store.api_key,
        &store.password,
    )?;
    Ok(Job {
        content: tree.uuid.clone(),
        name: tree.name.clone(),
        source,
        sha256: parse_sha256(&tree.sha256)?,
        max_size: tree.max_size_bytes,
        volume: volume.into(),
        generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn store(kind: DatastoreKind) -> Datastore {
        Datastore {
            id: "ds".into(),
            kind,
            fqdn: "https://10.0.2.2:8443".into(),
            dpath: "datastore".into(),
            api_key: "lichen".into(),
            password: "pw".into(),
        }
    }

    fn tree(uuid: &str, sha256: &str) -> ContentTree {
        ContentTree {
            uuid: uuid.into(),
            datastore_id: "ds".into(),
            url: "f".into(),
            format: 1,
            sha256: sha256.into(),
            max_size_bytes: 1000,
            name: uuid.to_uppercase(),
        }
    }

    fn filling(name: &str, fill: Fill) -> (String, VolumeStatus) {
        (
            format!("v-{name}"),
            VolumeStatus {
                name: name.into(),
                generation: 2,
                state: VolumeState::Filling,
                extent: Some(Extent {
                    offset_mib: 4,
                    size_mib: 2,
                }),
                fill,
                ..Default::default()
            },
        )
    }

    #[test]
    fn each_filling_volume_gets_its_content_tree_or_zeros() {
        let sha = "ab".repeat(32);
        let trees = [tree("ct1", &sha), tree("base", &sha)];
        let mut created = filling("done", Fill::ContentTree("ct1".into()));
        created.1.state = VolumeState::Created;
        let volumes = [
            filling("app", Fill::ContentTree("ct1".into())),
            filling("gone", Fill::ContentTree("ct2".into())),
            filling("blank", Fill::Zeros),
            created,
        ];
        let found = wanted(&[store(DatastoreKind::Https)], &trees, &volumes);
        assert_eq!(found.len(), 3, "only volumes being filled");
        let Ok(Work::Download(job)) = &found[0].work else {
            panic!("{:?}", found[0].work)
        };
        assert_eq!(
            (found[0].key.as_str(), found[0].name.as_str()),
            ("ct1", "CT1")
        );
        assert_eq!(job.volume, "v-app");
        assert_eq!(job.generation, 2);
        assert_eq!(job.sha256, [0xab; 32]);
        assert_eq!(job.max_size, 1000);
        assert_eq!(job.source.path, "/datastore/f");
        assert!(job.source.tls);
        assert_eq!(found[0].extent.offset_mib, 4);
        let e = found[1].work.as_ref().unwrap_err();
        assert!(e.contains("ct2 is not in the configuration"), "{e}");
        assert_eq!(found[2].work, Ok(Work::Zeros));
        assert_eq!(found[2].key, "v-blank");
    }

    #[test]
    fn what_cannot_be_downloaded_says_why() {
        let sha = "ab".repeat(32);
        let volumes = [filling("v", Fill::ContentTree("ct".into()))];
        let e = |stores: &[Datastore], t: ContentTree| {
            wanted(stores, &[t], &volumes)[0]
                .work
                .clone()
                .unwrap_err()
                .to_string()
        };
        assert!(e(&[], tree("ct", &sha)).contains("not in the configuration"));
        assert!(e(&[store(DatastoreKind::Other(3))], tree("ct", &sha)).contains("kind 3"));
        assert!(e(&[store(DatastoreKind::Https)], tree("ct", "")).contains("sha256"));
        let mut plain_https = store(DatastoreKind::Http);
        plain_https.fqdn = "https://x".into();
        assert!(e(&[plain_https], tree("ct", &sha)).contains("scheme"));
        let mut no_url = tree("ct", &sha);
        no_url.url = String::new();
        assert!(e(&[store(DatastoreKind::Https)], no_url).contains("no URL"));
    }
}
