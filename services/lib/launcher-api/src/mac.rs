//! The MAC address of an app's vif: derived from the app's name (its UUID, as domainmgr names
//! it), so that zedrouter, which sees only frames, can tell which app a frame comes from and
//! apply that app's ACL (docs/router.md), and so that a restarted app keeps its MAC and with it
//! its DHCP lease.
//!
//! A service's (a pillar's) vif MAC is derived from the node and the service's name
//! ([`service_mac`]): a restarted pillar keeps its MAC, so the uplink's DHCP server gives it its
//! address again (instead of a new lease per restart, until the server's pool runs out) and the
//! network's ARP caches stay right; and two nodes on one network do not share their pillars'
//! MACs.
//!
//! The address is locally administered and unicast (`02:` first byte), the other 40 bits a
//! 64-bit FNV-1a hash of the name folded, with the vif's index in the last byte's low bits
//! added. Two apps collide with a chance of about n²/2⁴¹; a collision only merges their flow
//! records and ACLs at zedrouter, it cannot reach another node.

/// The MAC of vif `devid` of the app named `app` (launcher-api's `Create { name }`, the app's
/// UUID string; case-insensitive, as the controller's UUIDs may come in either case).
pub fn app_mac(app: &str, devid: u32) -> [u8; 6] {
    hashed(app.bytes().map(|b| b.to_ascii_lowercase()), devid)
}

/// The MAC of vif `devid` of service `service` on the node identified by `node` (anything
/// stable and unique to the node: the launcher uses its uplink NIC's MAC).
pub fn service_mac(node: &str, service: &str, devid: u32) -> [u8; 6] {
    let bytes = b"service\0"
        .iter()
        .chain(node.as_bytes())
        .chain(b"\0")
        .chain(service.as_bytes())
        .copied();
    hashed(bytes, devid)
}

/// A locally administered unicast MAC from a 64-bit FNV-1a hash of `bytes`, folded to 40 bits,
/// with `devid` added to the last byte.
fn hashed(bytes: impl Iterator<Item = u8>, devid: u32) -> [u8; 6] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let folded = hash ^ (hash >> 40);
    let b = folded.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7].wrapping_add(devid as u8)]
}

/// `xx:xx:xx:xx:xx:xx`, as xenstore's vif `mac` entry wants it.
pub fn mac_text(mac: [u8; 6]) -> alloc::string::String {
    let [a, b, c, d, e, f] = mac;
    alloc::format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_mac_is_stable_local_unicast_and_differs_per_app_and_vif() {
        let a = app_mac("6ba7b810-9dad-11d1-80b4-00c04fd430c8", 0);
        assert_eq!(a, app_mac("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", 0));
        assert_eq!(a[0] & 0x03, 0x02, "locally administered, unicast");
        assert_ne!(a, app_mac("6ba7b810-9dad-11d1-80b4-00c04fd430c9", 0));
        let b = app_mac("6ba7b810-9dad-11d1-80b4-00c04fd430c8", 1);
        assert_eq!(a[..5], b[..5]);
        assert_ne!(a[5], b[5]);
        assert_eq!(mac_text([2, 0xab, 0, 1, 2, 0xff]), "02:ab:00:01:02:ff");
    }

    #[test]
    fn a_service_mac_is_stable_per_node_and_service_and_differs_between_nodes() {
        let node = "52:54:00:12:34:56";
        let a = service_mac(node, "zedrouter", 0);
        assert_eq!(
            a,
            service_mac(node, "zedrouter", 0),
            "the same after a restart"
        );
        assert_eq!(a[0] & 0x03, 0x02, "locally administered, unicast");
        assert_ne!(a, service_mac("52:54:00:12:34:57", "zedrouter", 0));
        assert_ne!(a, service_mac(node, "zedagent", 0));
        assert_ne!(a, service_mac(node, "zedrouter", 1));
        assert_ne!(a, app_mac("zedrouter", 0), "not an app's");
    }
}
