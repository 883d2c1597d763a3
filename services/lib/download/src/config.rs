//! Which downloads the configuration asks for: from zedagent's tables (`zedagent/Datastore`,
//! `zedagent/ContentTree`, `zedagent/Volume`), one job per content tree that a volume is made
//! from, into that volume's disk.
//!
//! A volume's disk is the node disk named as the volume, in lowercase (the name the launcher
//! knows app volumes by; docs/apps.md). The downloader writes the content tree straight onto it
//! (no copy through a download area), so the volume must hold the content and the
//! downloader's record (docs/download.md).
//!
//! **What the configuration may hold, and what happens**: a content tree whose datastore is
//! missing or of a kind other than HTTP or HTTPS, without a valid SHA-256, with a location that
//! does not parse, or whose volumes have no disk on this node: that content tree's entry is an
//! error (reported in its status; nothing is downloaded), the others go ahead.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use topics::zedagent::{ContentTree, Datastore, DatastoreKind, Volume, VolumeOrigin};

use crate::engine::{parse_sha256, Job};
use crate::source::Source;

/// One content tree the configuration asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The content tree's UUID (the status key).
    pub content: String,
    /// Its name.
    pub name: String,
    /// The download, or why there can be none.
    pub job: Result<Job, String>,
}

/// The downloads the tables ask for, in content tree order; `has_disk` says whether the node
/// gave the downloader a disk of that name.
pub fn wanted(
    datastores: &[Datastore],
    trees: &[ContentTree],
    volumes: &[Volume],
    has_disk: impl Fn(&str) -> bool,
) -> Vec<Wanted> {
    let mut out = Vec::new();
    for tree in trees {
        let users: Vec<String> = volumes
            .iter()
            .filter(|v| matches!(&v.origin, VolumeOrigin::ContentTree(u) if *u == tree.uuid))
            .map(|v| v.name.to_lowercase())
            .collect();
        if users.is_empty() {
            continue; // Not for an app volume (a base OS image, say): not this downloader's.
        }
        out.push(Wanted {
            content: tree.uuid.clone(),
            name: tree.name.clone(),
            job: job(datastores, tree, &users, &has_disk),
        });
    }
    out
}

fn job(
    datastores: &[Datastore],
    tree: &ContentTree,
    users: &[String],
    has_disk: &impl Fn(&str) -> bool,
) -> Result<Job, String> {
    let volume = users.iter().find(|name| has_disk(name)).ok_or_else(|| {
        format!(
            "no disk for its volume on this node (expected one named {})",
            users.join(" or ")
        )
    })?;
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
        volume: volume.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

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

    fn volume(name: &str, tree: &str) -> Volume {
        Volume {
            uuid: format!("v-{name}"),
            name: name.into(),
            origin: VolumeOrigin::ContentTree(tree.into()),
            max_size_bytes: 0,
            generation: 0,
        }
    }

    #[test]
    fn each_content_tree_goes_to_its_volumes_disk() {
        let sha = "ab".repeat(32);
        let trees = [tree("ct1", &sha), tree("ct2", &sha), tree("base", &sha)];
        let volumes = [
            volume("App-Echo", "ct1"),
            volume("missing", "ct2"),
            Volume {
                origin: VolumeOrigin::Blank,
                ..volume("blank", "")
            },
        ];
        let found = wanted(&[store(DatastoreKind::Https)], &trees, &volumes, |d| {
            d == "app-echo" || d == "blank"
        });
        assert_eq!(
            found.len(),
            2,
            "the base OS content tree is not an app volume's"
        );
        let job = found[0].job.as_ref().unwrap();
        assert_eq!(job.volume, "app-echo");
        assert_eq!(job.sha256, [0xab; 32]);
        assert_eq!(job.max_size, 1000);
        assert_eq!(job.source.path, "/datastore/f");
        assert!(job.source.tls);
        assert_eq!(found[0].name, "CT1");
        let e = found[1].job.as_ref().unwrap_err();
        assert!(e.contains("named missing"), "{e}");
    }

    #[test]
    fn what_cannot_be_downloaded_says_why() {
        let sha = "ab".repeat(32);
        let volumes = [volume("v", "ct")];
        let any = |_: &str| true;
        let e = |stores: &[Datastore], t: ContentTree| {
            wanted(stores, &[t], &volumes, any)[0]
                .job
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
        assert_eq!(
            wanted(&[store(DatastoreKind::Http)], &[tree("ct", &sha)], &[], any),
            vec![]
        );
    }
}
