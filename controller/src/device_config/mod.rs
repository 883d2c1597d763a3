//! Device configuration: the readable file operators write (YAML or JSON, in the proto3 JSON
//! mapping of `EdgeDevConfig`), its checks, and the exact bytes and hash served to the device.

use base64ct::{Base64Url, Encoding};
use lichen_api::config::{EdgeDevConfig, UuiDandVersion};

mod validate;

use prost::Message;
use sha2::{Digest, Sha256};
pub use validate::validate;

/// The served configuration of a device: encoded `EdgeDevConfig` and its `configHash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The encoded `EdgeDevConfig`.
    pub bytes: Vec<u8>,
    /// Base64url of its SHA-256, the `configHash` devices echo back.
    pub hash: String,
}

/// The configuration a device gets, with its identity and version filled in. A device that was
/// never configured gets only its UUID (version 0), as EVE expects after onboarding.
pub fn serve(uuid: &str, version: u64, mut config: EdgeDevConfig) -> Served {
    config.id = Some(UuiDandVersion {
        uuid: uuid.to_owned(),
        version: version.to_string(),
    });
    let bytes = config.encode_to_vec();
    let hash = config_hash(&bytes);
    Served { bytes, hash }
}

/// The `configHash` of encoded configuration bytes.
pub fn config_hash(bytes: &[u8]) -> String {
    Base64Url::encode_string(&Sha256::digest(bytes))
}

/// Reads a configuration file. YAML is a superset of JSON, so both are accepted; field names are
/// the proto3 JSON ones (`networkInstances`, or the proto names like `network_instances`) and
/// enums are given by name (`ZnetInstLocal`) or number. Unknown fields are errors.
pub fn parse(text: &str) -> Result<EdgeDevConfig, String> {
    serde_yaml::from_str(text).map_err(|error| format!("not a valid EdgeDevConfig: {error}"))
}

/// A configuration as YAML, for people.
pub fn to_yaml(config: &EdgeDevConfig) -> String {
    serde_yaml::to_string(config).expect("EdgeDevConfig serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: &str = "6f1d5b4e-9f7a-4a51-8d55-1f0c2f3b7a10";

    const EXAMPLE: &str = r#"
networkInstances:
  - uuidandversion: { uuid: 2a4f8c1e-0b1d-4d6e-9a53-6c0f3f0e1a01, version: "1" }
    displayname: local
    instType: ZnetInstLocal
    activate: true
    port: { name: uplink }
    ipType: IPV4
    ip: { subnet: 10.1.0.0/24, gateway: 10.1.0.1, dhcpRange: { start: 10.1.0.10, end: 10.1.0.99 } }
datastores:
  - id: 5b0e7d2a-3c4f-4e1a-8b6d-7f9a0c1e2d03
    dType: DsHttps
    fqdn: https://images.example.com
contentInfo:
  - uuid: 9c3e1a5b-7d2f-4b8a-a6c4-0e1f2a3b4c05
    displayName: nginx
    dsIdsList: [5b0e7d2a-3c4f-4e1a-8b6d-7f9a0c1e2d03]
    URL: nginx.img
    iformat: RAW
    sha256: 0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8
volumes:
  - uuid: 1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e506
    displayName: nginx-root
    origin: { type: VCOT_DOWNLOAD, downloadContentTreeID: 9c3e1a5b-7d2f-4b8a-a6c4-0e1f2a3b4c05 }
    maxsizebytes: "1073741824"
apps:
  - uuidandversion: { uuid: 7e8f9a0b-1c2d-4e3f-a4b5-c6d7e8f90a07, version: "1" }
    displayname: nginx
    activate: true
    fixedresources: { memory: 524288, vcpus: 1, virtualizationMode: HVM }
    volumeRefList: [{ uuid: 1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e506 }]
    interfaces:
      - name: eth0
        networkId: 2a4f8c1e-0b1d-4d6e-9a53-6c0f3f0e1a01
        acls: [{ matches: [{ type: ip, value: 0.0.0.0/0 }], actions: [{ portmap: true, appPort: 80 }] }]
configItems:
  - { key: timer.config.interval, value: "10" }
"#;

    #[test]
    fn the_documented_example_parses_and_validates() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(
            config.apps[0].fixedresources.as_ref().unwrap().memory,
            524288
        );
        assert_eq!(config.network_instances[0].inst_type, 2);
        assert_eq!(config.volumes[0].maxsizebytes, 1 << 30);
        validate(&config, DEVICE).unwrap();

        // What goes out as YAML comes back the same, and JSON is accepted too.
        assert_eq!(parse(&to_yaml(&config)).unwrap(), config);
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(parse(&json).unwrap(), config);
    }

    #[test]
    fn typos_and_dangling_references_are_reported() {
        assert!(parse("aps: []").unwrap_err().contains("aps"));
        assert!(parse("apps: [{ activate: maybe }]").is_err());

        let mut config = parse(EXAMPLE).unwrap();
        config.apps[0].interfaces[0].network_id = "2a4f8c1e-0b1d-4d6e-9a53-000000000000".into();
        config.volumes[0].uuid = "not-a-uuid".into();
        config.id = Some(UuiDandVersion {
            uuid: "someone-else".into(),
            version: String::new(),
        });
        let problems = validate(&config, DEVICE).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems
            .iter()
            .any(|p| p.contains("network instance") && p.contains("not configured")));
        assert!(problems.iter().any(|p| p.contains("not a UUID")));
        assert!(problems
            .iter()
            .any(|p| p.contains("volume") && p.contains("not configured")));
        assert!(problems.iter().any(|p| p.contains("someone-else")));
    }

    #[test]
    fn served_config_carries_the_device_id_and_a_stable_hash() {
        let first = serve(DEVICE, 0, EdgeDevConfig::default());
        let decoded = EdgeDevConfig::decode(&first.bytes[..]).unwrap();
        assert_eq!(decoded.id.unwrap().uuid, DEVICE);
        assert_eq!(decoded.apps.len(), 0);
        assert_eq!(first, serve(DEVICE, 0, EdgeDevConfig::default()));
        assert_ne!(first.hash, serve(DEVICE, 1, EdgeDevConfig::default()).hash);
        // Base64url of a SHA-256: 44 characters with padding.
        assert_eq!(first.hash.len(), 44);
    }
}
