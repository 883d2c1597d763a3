//! The bus wiring a node's images ask for: read what each image declares (its `lichen` ELF
//! note, services/lib/declare), check that the declarations fit together and fit the manifest,
//! and derive one channel per pair of services that exchange topics, carrying all of them.
//!
//! Refused, before anything boots, with every problem found:
//! - a declaration that does not parse;
//! - a memory below the image's floor; an image that needs an uplink, a disk or boot modules
//!   the manifest does not give it;
//! - a topic published by two services, or published under a name that is not the
//!   publisher's (`<service>/<Table>`);
//! - a subscription that no service publishes, or to another schema version than the
//!   publisher's;
//! - a derived channel whose name (the peer's) clashes with an explicit channel of the service.
//!
//! An image with no declaration (a Linux kernel, a test fixture) takes no part in the bus.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use declare::{DeclError, Parsed, Persistence};
use indexmap::IndexMap;

use crate::manifest::{Channel, Manifest, Network, ResolvedImages};

/// The topic a node's vault publishes (topics::vault::STORED): its publisher is the vault.
const VAULT_STORED: &str = "vault/Stored";

/// The ring order of derived channels: 64 KiB each way, the bus multiplexer's window per stream.
pub const BUS_RING_ORDER: u8 = 16;

/// Why the images' declarations do not make a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusError {
    /// The image's declaration cannot be read.
    Declaration {
        /// The service.
        service: String,
        /// The image file.
        image: String,
        /// What is wrong.
        error: String,
    },
    /// The manifest gives a service less memory than its image's floor.
    BelowFloor {
        /// The service.
        service: String,
        /// The memory it is given, MiB.
        memory: u32,
        /// The image's floor, MiB.
        floor: u32,
    },
    /// The image needs something the manifest does not give the service.
    Unmet {
        /// The service.
        service: String,
        /// What it needs: `uplink`, `disk`, `modules`.
        need: &'static str,
    },
    /// A service publishes a topic named after another service.
    ForeignTopic {
        /// The service.
        service: String,
        /// The topic.
        topic: String,
    },
    /// Two services publish one topic.
    TwoPublishers {
        /// The topic.
        topic: String,
        /// The services.
        services: [String; 2],
    },
    /// A service subscribes to a topic nobody publishes.
    NoPublisher {
        /// The subscriber.
        service: String,
        /// The topic.
        topic: String,
    },
    /// Subscriber and publisher disagree on the schema version.
    Schema {
        /// The topic.
        topic: String,
        /// The publisher and its schema version.
        publisher: (String, u32),
        /// The subscriber and its schema version.
        subscriber: (String, u32),
    },
    /// A service publishes a persistent topic that the node's vault does not follow (the vault
    /// follows every persistent topic it knows: topics::persistent).
    NotKept {
        /// The publisher.
        service: String,
        /// The topic.
        topic: String,
        /// The vault service.
        vault: String,
    },
    /// A derived channel's name (the peer's name) is also an explicit channel of the service.
    NameClash {
        /// The service.
        service: String,
        /// The name.
        name: String,
    },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::Declaration { service, image, error } => {
                write!(f, "service `{service}`: image {image}: {error}")
            }
            BusError::BelowFloor { service, memory, floor } => write!(
                f,
                "service `{service}`: memory = {memory} MiB is below its image's floor of {floor} MiB"
            ),
            BusError::Unmet { service, need } => {
                let hint = match *need {
                    "uplink" => "set network = \"uplink\" or \"bridge\"",
                    "modules" => "give it a ramdisk",
                    _ => "give it one: disks = [\"NAME\"] and a [disks.NAME] table",
                };
                write!(f, "service `{service}`: its image needs {need} ({hint})")
            }
            BusError::ForeignTopic { service, topic } => write!(
                f,
                "service `{service}` publishes {topic}: a topic is named `<its publisher>/<Table>`"
            ),
            BusError::TwoPublishers { topic, services } => write!(
                f,
                "topic {topic} is published by both `{}` and `{}`",
                services[0], services[1]
            ),
            BusError::NoPublisher { service, topic } => write!(
                f,
                "service `{service}` subscribes to {topic}, which no service publishes"
            ),
            BusError::Schema {
                topic,
                publisher,
                subscriber,
            } => write!(
                f,
                "topic {topic}: `{}` subscribes to schema {}, but `{}` publishes schema {}",
                subscriber.0, subscriber.1, publisher.0, publisher.1
            ),
            BusError::NotKept {
                service,
                topic,
                vault,
            } => write!(
                f,
                "service `{service}` publishes persistent {topic}, which `{vault}` does not keep \
                 (the vault follows the topics in topics::persistent)"
            ),
            BusError::NameClash { service, name } => write!(
                f,
                "service `{service}`: its channel `{name}` has the name of a peer it exchanges topics with"
            ),
        }
    }
}

/// What each service's image declares (`None`: the image declares nothing).
pub type Declarations = IndexMap<String, Option<Parsed>>;

/// Reads the declaration of every service's image.
pub fn read_declarations(
    manifest: &Manifest,
    images: &ResolvedImages,
) -> Result<Declarations, Vec<BusError>> {
    let mut declarations = Declarations::new();
    let mut errors = Vec::new();
    for name in manifest.services.keys() {
        let Some((kernel, _)) = images.services.get(name) else {
            continue;
        };
        match read_declaration(kernel) {
            Ok(declaration) => {
                declarations.insert(name.clone(), declaration);
            }
            Err(error) => errors.push(BusError::Declaration {
                service: name.clone(),
                image: kernel.display().to_string(),
                error,
            }),
        }
    }
    if errors.is_empty() {
        Ok(declarations)
    } else {
        Err(errors)
    }
}

/// Reads the declaration in the image at `path`; `None` when it has none.
pub fn read_declaration(path: &Path) -> Result<Option<Parsed>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    match declare::find_note(&bytes) {
        Ok(text) => declare::parse(text).map(Some).map_err(|e| e.to_string()),
        Err(DeclError::NoNote | DeclError::NotElf) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks the declarations against each other and the manifest, and returns the channels they
/// need: one per pair of services that exchange topics, its server the one listed first.
pub fn derive(
    manifest: &Manifest,
    declarations: &Declarations,
) -> Result<Vec<Channel>, Vec<BusError>> {
    let mut errors = Vec::new();
    let declared = || {
        declarations
            .iter()
            .filter_map(|(s, d)| Some((s, d.as_ref()?)))
    };

    for (service, decl) in declared() {
        let given = &manifest.services[service];
        if given.memory < decl.memory_floor_mib {
            errors.push(BusError::BelowFloor {
                service: service.clone(),
                memory: given.memory,
                floor: decl.memory_floor_mib,
            });
        }
        let unmet = [
            (
                decl.needs.uplink && given.network == Network::None,
                "uplink",
            ),
            (decl.needs.disk && given.disks.is_empty(), "disk"),
            (decl.needs.modules && given.ramdisk.is_none(), "modules"),
        ];
        for (_, need) in unmet.into_iter().filter(|(unmet, _)| *unmet) {
            errors.push(BusError::Unmet {
                service: service.clone(),
                need,
            });
        }
    }

    // Who publishes what.
    let mut publishers: BTreeMap<&str, (&String, u32)> = BTreeMap::new();
    for (service, decl) in declared() {
        for topic in &decl.publishes {
            if topic.name.split('/').next() != Some(service.as_str()) {
                errors.push(BusError::ForeignTopic {
                    service: service.clone(),
                    topic: topic.name.clone(),
                });
            }
            if let Some((other, _)) = publishers.insert(&topic.name, (service, topic.schema)) {
                errors.push(BusError::TwoPublishers {
                    topic: topic.name.clone(),
                    services: [other.clone(), service.clone()],
                });
            }
        }
    }

    // On a node with a vault (the publisher of `vault/Stored`), the vault follows every
    // persistent topic published there: one it does not know would never be kept, and its
    // publisher would wait forever for its commits. (A node without a vault keeps nothing; a
    // publisher that must have its table requires `vault/Stored`, checked above.)
    let vault = publishers.get(VAULT_STORED).map(|(vault, _)| *vault);
    if let Some(vault) = vault.and_then(|v| declared().find(|(s, _)| *s == v)) {
        let (vault_name, vault_decl) = vault;
        for (service, decl) in declared() {
            for topic in &decl.publishes {
                let kept = vault_decl
                    .subscribes
                    .iter()
                    .chain(&vault_decl.watches)
                    .any(|t| t.name == topic.name);
                if topic.persistence == Persistence::Persistent && !kept {
                    errors.push(BusError::NotKept {
                        service: service.clone(),
                        topic: topic.name.clone(),
                        vault: vault_name.clone(),
                    });
                }
            }
        }
    }

    // Pairs of services (in manifest order) and the topics between them: (topic, publisher).
    let position = |s: &str| manifest.services.get_index_of(s).unwrap_or(usize::MAX);
    let mut pairs: BTreeMap<(usize, usize), Vec<(String, String)>> = BTreeMap::new();
    for (service, decl) in declared() {
        let subscriptions = decl.subscribes.iter().map(|t| (t, true));
        for (topic, required) in subscriptions.chain(decl.watches.iter().map(|t| (t, false))) {
            let Some(&(publisher, schema)) = publishers.get(topic.name.as_str()) else {
                if required {
                    errors.push(BusError::NoPublisher {
                        service: service.clone(),
                        topic: topic.name.clone(),
                    });
                }
                continue;
            };
            if schema != topic.schema {
                errors.push(BusError::Schema {
                    topic: topic.name.clone(),
                    publisher: (publisher.clone(), schema),
                    subscriber: (service.clone(), topic.schema),
                });
                continue;
            }
            if publisher == service {
                continue;
            }
            let (a, b) = (position(service), position(publisher));
            let topics = pairs.entry((a.min(b), a.max(b))).or_default();
            topics.push((topic.name.clone(), publisher.clone()));
        }
    }

    let mut channels = Vec::new();
    for ((first, second), mut topics) in pairs {
        topics.sort();
        let name = |i| manifest.services.get_index(i).map(|(n, _)| n.clone());
        let (Some(server), Some(client)) = (name(first), name(second)) else {
            continue;
        };
        for (service, peer) in [(&server, &client), (&client, &server)] {
            if manifest.channels_of(service).any(|c| &c.name == peer) {
                errors.push(BusError::NameClash {
                    service: service.clone(),
                    name: peer.clone(),
                });
            }
        }
        channels.push(Channel {
            name: format!("{server}~{client}"),
            server,
            client,
            ring_order: BUS_RING_ORDER,
            topics,
            log: false,
        });
    }
    if errors.is_empty() {
        Ok(channels)
    } else {
        Err(errors)
    }
}

/// The derived wiring as a table, for `lichen-launcher check`.
pub fn table(manifest: &Manifest, declarations: &Declarations) -> String {
    let mut out = String::new();
    let width = manifest
        .services
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(7)
        .max(7);
    out.push_str(&format!(
        "{:width$}  {:>6}  {:>5}  publishes / subscribes\n",
        "service", "memory", "floor"
    ));
    for (service, given) in &manifest.services {
        let (floor, topics) = match declarations.get(service).and_then(Option::as_ref) {
            Some(d) => {
                let list = |topics: &[declare::ParsedTopic]| {
                    let names: Vec<String> = topics
                        .iter()
                        .map(|t| format!("{} v{}", t.name, t.schema))
                        .collect();
                    if names.is_empty() {
                        "-".to_string()
                    } else {
                        names.join(", ")
                    }
                };
                (
                    d.memory_floor_mib.to_string(),
                    if d.watches.is_empty() {
                        format!("{} / {}", list(&d.publishes), list(&d.subscribes))
                    } else {
                        format!(
                            "{} / {} / watches {}",
                            list(&d.publishes),
                            list(&d.subscribes),
                            list(&d.watches)
                        )
                    },
                )
            }
            None => ("-".into(), "(declares nothing)".into()),
        };
        out.push_str(&format!(
            "{service:width$}  {:>6}  {floor:>5}  {topics}\n",
            format!("{}M", given.memory)
        ));
    }
    let bus: Vec<&Channel> = manifest.channels.iter().filter(|c| c.is_bus()).collect();
    let explicit: Vec<&Channel> = manifest.channels.iter().filter(|c| !c.is_bus()).collect();
    out.push_str(&format!(
        "\nbus channels (one per pair of services that talk): {}\n",
        bus.len()
    ));
    for channel in bus {
        out.push_str(&format!(
            "  {} <-> {} (server {}, ring 2^{})\n",
            channel.server, channel.client, channel.server, channel.ring_order
        ));
        for (topic, publisher) in &channel.topics {
            let subscriber = if publisher == &channel.server {
                &channel.client
            } else {
                &channel.server
            };
            out.push_str(&format!("      {topic:40} {publisher} -> {subscriber}\n"));
        }
    }
    if !explicit.is_empty() {
        out.push_str(&format!(
            "\nraw channels (from [[channels]], and log channels from `logs =`): {}\n",
            explicit.len()
        ));
        for channel in explicit {
            out.push_str(&format!(
                "  {:16} {} -> {} (ring 2^{})\n",
                channel.name, channel.server, channel.client, channel.ring_order
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use declare::{Needs, ParsedTopic, Persistence};

    fn topic(name: &str, schema: u32) -> ParsedTopic {
        ParsedTopic {
            name: name.into(),
            schema,
            persistence: Persistence::Volatile,
        }
    }

    fn decl(floor: u32, publishes: &[(&str, u32)], subscribes: &[(&str, u32)]) -> Option<Parsed> {
        Some(Parsed {
            memory_floor_mib: floor,
            needs: Needs::NONE,
            publishes: publishes.iter().map(|(n, s)| topic(n, *s)).collect(),
            subscribes: subscribes.iter().map(|(n, s)| topic(n, *s)).collect(),
            watches: vec![],
        })
    }

    fn manifest(services: &[&str]) -> Manifest {
        let mut text = String::new();
        for s in services {
            text.push_str(&format!("[services.{s}]\nimage = \"{s}\"\nmemory = 16\n"));
        }
        Manifest::parse(&text).unwrap()
    }

    fn declarations(list: Vec<(&str, Option<Parsed>)>) -> Declarations {
        list.into_iter().map(|(s, d)| (s.to_string(), d)).collect()
    }

    #[test]
    fn one_channel_per_pair_that_talks_carrying_all_its_topics() {
        let manifest = manifest(&["nim", "zedagent", "diag", "linux"]);
        let decls = declarations(vec![
            ("nim", decl(4, &[("nim/Status", 1), ("nim/Ports", 2)], &[])),
            (
                "zedagent",
                decl(
                    8,
                    &[("zedagent/Config", 3)],
                    &[("nim/Status", 1), ("nim/Ports", 2)],
                ),
            ),
            (
                "diag",
                decl(4, &[], &[("nim/Status", 1), ("zedagent/Config", 3)]),
            ),
            ("linux", None),
        ]);
        let channels = derive(&manifest, &decls).unwrap();
        let summary: Vec<(&str, &str, Vec<&str>)> = channels
            .iter()
            .map(|c| {
                let topics = c.topics.iter().map(|(t, _)| t.as_str()).collect();
                (c.server.as_str(), c.client.as_str(), topics)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("nim", "zedagent", vec!["nim/Ports", "nim/Status"]),
                ("nim", "diag", vec!["nim/Status"]),
                ("zedagent", "diag", vec!["zedagent/Config"]),
            ]
        );
        assert!(channels
            .iter()
            .all(|c| c.is_bus() && c.ring_order == BUS_RING_ORDER));
        assert_eq!(channels[0].name_for("nim"), "zedagent");
        assert_eq!(channels[0].name_for("zedagent"), "nim");
    }

    #[test]
    fn every_misfit_is_reported_at_once() {
        let mut manifest = manifest(&["nim", "other", "diag", "tiny", "net"]);
        manifest.services["net"].network = Network::Bridge;
        manifest.channels.push(Channel {
            name: "nim".into(),
            server: "diag".into(),
            client: "other".into(),
            ring_order: 11,
            topics: vec![],
            log: false,
        });
        let mut uplink = decl(4, &[], &[]);
        uplink.as_mut().unwrap().needs.uplink = true;
        let mut needy = decl(64, &[], &[]);
        needy.as_mut().unwrap().needs = Needs {
            uplink: true,
            disk: true,
            modules: true,
        };
        let decls = declarations(vec![
            ("nim", decl(4, &[("nim/Status", 1)], &[])),
            ("other", decl(4, &[("nim/Status", 1), ("diag/Own", 1)], &[])),
            (
                "diag",
                decl(4, &[], &[("nim/Status", 2), ("zedagent/Config", 1)]),
            ),
            ("tiny", needy),
            ("net", uplink),
        ]);
        let errors: Vec<String> = derive(&manifest, &decls)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        for expected in [
            "service `tiny`: memory = 16 MiB is below its image's floor of 64 MiB",
            "service `tiny`: its image needs uplink (set network = \"uplink\" or \"bridge\")",
            "service `tiny`: its image needs disk (give it one: disks = [\"NAME\"] and a [disks.NAME] table)",
            "service `tiny`: its image needs modules (give it a ramdisk)",
            "service `other` publishes nim/Status: a topic is named `<its publisher>/<Table>`",
            "service `other` publishes diag/Own: a topic is named `<its publisher>/<Table>`",
            "topic nim/Status is published by both `nim` and `other`",
            "topic nim/Status: `diag` subscribes to schema 2, but `other` publishes schema 1",
            "service `diag` subscribes to zedagent/Config, which no service publishes",
        ] {
            assert!(
                errors.iter().any(|e| e == expected),
                "missing {expected:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), 9, "{errors:#?}");
    }

    #[test]
    fn a_persistent_topic_the_vault_does_not_keep_is_refused() {
        let manifest = manifest(&["zedmanager", "vault"]);
        let mut publisher = decl(4, &[("zedmanager/AppRecord", 1)], &[]);
        publisher.as_mut().unwrap().publishes[0].persistence = Persistence::Persistent;
        let vault = |keeps: bool| {
            let mut vault = decl(8, &[("vault/Stored", 1)], &[]);
            if keeps {
                vault.as_mut().unwrap().watches = vec![topic("zedmanager/AppRecord", 1)];
            }
            vault
        };
        let decls = declarations(vec![
            ("zedmanager", publisher.clone()),
            ("vault", vault(false)),
        ]);
        let errors: Vec<String> = derive(&manifest, &decls)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            ["service `zedmanager` publishes persistent zedmanager/AppRecord, which `vault` does \
              not keep (the vault follows the topics in topics::persistent)"]
        );
        // Kept once the vault follows it; and a node without a vault keeps nothing.
        let decls = declarations(vec![
            ("zedmanager", publisher.clone()),
            ("vault", vault(true)),
        ]);
        assert!(derive(&manifest, &decls).is_ok());
        let alone = declarations(vec![("zedmanager", publisher)]);
        assert!(derive(&self::manifest(&["zedmanager"]), &alone).is_ok());
    }

    #[test]
    fn a_derived_name_may_not_clash_with_a_raw_channel() {
        let mut manifest = manifest(&["nim", "diag"]);
        manifest.channels.push(Channel {
            name: "nim".into(),
            server: "nim".into(),
            client: "diag".into(),
            ring_order: 11,
            topics: vec![],
            log: false,
        });
        let decls = declarations(vec![
            ("nim", decl(4, &[("nim/Status", 1)], &[])),
            ("diag", decl(4, &[], &[("nim/Status", 1)])),
        ]);
        let errors = derive(&manifest, &decls).unwrap_err();
        assert_eq!(
            errors,
            [BusError::NameClash {
                service: "diag".into(),
                name: "nim".into()
            }]
        );
    }

    #[test]
    fn declarations_are_read_from_images_and_bad_ones_named() {
        let dir = std::env::temp_dir().join(format!("lichen-bus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("vmlinuz");
        std::fs::write(&plain, b"MZ a kernel").unwrap();
        assert_eq!(read_declaration(&plain), Ok(None));
        let broken = dir.join("broken.elf");
        std::fs::write(&broken, b"\x7fELF\x02\x01").unwrap();
        assert_eq!(
            read_declaration(&broken),
            Err("not a usable ELF image: shorter than an ELF header".into())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_watch_is_wired_when_published_and_skipped_otherwise() {
        let manifest = manifest(&["nim", "diag"]);
        let mut diag = decl(4, &[], &[]);
        diag.as_mut().unwrap().watches = vec![topic("nim/Status", 1), topic("nobody/Thing", 1)];
        let decls = declarations(vec![
            ("nim", decl(4, &[("nim/Status", 1)], &[])),
            ("diag", diag),
        ]);
        let channels = derive(&manifest, &decls).unwrap();
        assert_eq!(channels.len(), 1);
        assert_eq!(
            channels[0].topics,
            [("nim/Status".to_string(), "nim".to_string())]
        );

        let mut wrong = decl(4, &[], &[]);
        wrong.as_mut().unwrap().watches = vec![topic("nim/Status", 9)];
        let decls = declarations(vec![
            ("nim", decl(4, &[("nim/Status", 1)], &[])),
            ("diag", wrong),
        ]);
        assert!(matches!(
            &derive(&manifest, &decls).unwrap_err()[..],
            [BusError::Schema { .. }]
        ));
    }

    /// EVE's pillars as they will declare themselves (topics from EVE's pubsub tables): ten
    /// services, no `[[channels]]`, wired from their declarations alone.
    #[test]
    fn a_ten_service_node_needs_no_channels() {
        let services = [
            "zedagent",
            "nim",
            "zedmanager",
            "downloader",
            "verifier",
            "volumemgr",
            "domainmgr",
            "zedrouter",
            "baseosmgr",
            "diag",
        ];
        let manifest = manifest(&services);
        let decls = declarations(vec![
            (
                "zedagent",
                decl(
                    16,
                    &[
                        ("zedagent/EdgeDevConfig", 1),
                        ("zedagent/AppInstanceConfig", 1),
                    ],
                    &[
                        ("nim/DeviceNetworkStatus", 1),
                        ("zedmanager/AppInstanceStatus", 1),
                    ],
                ),
            ),
            (
                "nim",
                decl(
                    8,
                    &[("nim/DeviceNetworkStatus", 1)],
                    &[("zedagent/EdgeDevConfig", 1)],
                ),
            ),
            (
                "zedmanager",
                decl(
                    8,
                    &[
                        ("zedmanager/AppInstanceStatus", 1),
                        ("zedmanager/DomainConfig", 1),
                    ],
                    &[
                        ("zedagent/AppInstanceConfig", 1),
                        ("volumemgr/VolumeStatus", 1),
                    ],
                ),
            ),
            (
                "downloader",
                decl(
                    8,
                    &[("downloader/DownloaderStatus", 1)],
                    &[("volumemgr/DownloaderConfig", 1)],
                ),
            ),
            (
                "verifier",
                decl(
                    8,
                    &[("verifier/VerifyImageStatus", 1)],
                    &[("downloader/DownloaderStatus", 1)],
                ),
            ),
            (
                "volumemgr",
                decl(
                    8,
                    &[
                        ("volumemgr/VolumeStatus", 1),
                        ("volumemgr/DownloaderConfig", 1),
                    ],
                    &[
                        ("verifier/VerifyImageStatus", 1),
                        ("zedagent/AppInstanceConfig", 1),
                    ],
                ),
            ),
            (
                "domainmgr",
                decl(
                    8,
                    &[("domainmgr/DomainStatus", 1)],
                    &[("zedmanager/DomainConfig", 1)],
                ),
            ),
            (
                "zedrouter",
                decl(
                    8,
                    &[("zedrouter/NetworkInstanceStatus", 1)],
                    &[("zedagent/EdgeDevConfig", 1)],
                ),
            ),
            (
                "baseosmgr",
                decl(
                    8,
                    &[("baseosmgr/BaseOsStatus", 1)],
                    &[("zedagent/EdgeDevConfig", 1)],
                ),
            ),
            (
                "diag",
                decl(
                    4,
                    &[],
                    &[
                        ("nim/DeviceNetworkStatus", 1),
                        ("domainmgr/DomainStatus", 1),
                    ],
                ),
            ),
        ]);
        assert!(manifest.channels.is_empty());
        let channels = derive(&manifest, &decls).unwrap();
        // One channel per pair that talks, whatever the number of topics between them.
        let pairs: Vec<(&str, &str)> = channels
            .iter()
            .map(|c| (c.server.as_str(), c.client.as_str()))
            .collect();
        assert_eq!(pairs.len(), 12, "{pairs:?}");
        assert!(pairs.contains(&("zedagent", "zedmanager")));
        let zedagent_zedmanager = &channels[pairs
            .iter()
            .position(|p| *p == ("zedagent", "zedmanager"))
            .unwrap()];
        assert_eq!(
            zedagent_zedmanager.topics.len(),
            2,
            "both ways on one channel"
        );
        let mut with_channels = manifest.clone();
        with_channels.channels.extend(channels);
        assert!(crate::order::start_order(&with_channels).is_ok());
    }
}
