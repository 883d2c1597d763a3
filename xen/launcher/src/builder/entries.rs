//! The xenstore entries a domain built by the launcher gets: the ones libxl writes for a PVH
//! domain without devices, so that `xl list` names it, `xl console` finds its console and
//! `xl destroy` tears it down like one of its own, and xenconsoled connects its console.

use super::{uuid_text, Built};

/// One node: path, value and permissions (`n<owner>` first, then `r<domid>` grants; `None`:
/// the parent's, which a node dom0 creates inherits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path.
    pub path: String,
    /// Value.
    pub value: String,
    /// Permissions, where they differ from the parent's.
    pub perms: Option<Vec<String>>,
}

/// The entries for `name`'s domain `built` (handle `uuid`).
pub fn entries(name: &str, built: &Built, uuid: &[u8; 16]) -> Vec<Entry> {
    let d = built.domid;
    let dom = format!("/local/domain/{d}");
    let vm = format!("/vm/{}", uuid_text(uuid));
    // Read-only for the guest (dom0 owns them), and the guest's own (writable) directories.
    let ro = vec!["n0".to_string(), format!("r{d}")];
    let rw = vec![format!("n{d}")];
    let mut out = Vec::new();
    // Only the roots of each permission set get theirs; their children inherit them.
    let roots = [dom.clone(), vm.clone(), format!("/libxl/{d}")];
    let mut add = |path: String, value: String, perms: &Vec<String>| {
        let inherits = !roots.contains(&path) && perms != &rw;
        out.push(Entry {
            path,
            value,
            perms: (!inherits).then(|| perms.clone()),
        })
    };
    add(dom.clone(), String::new(), &ro);
    add(format!("{dom}/name"), name.into(), &ro);
    add(format!("{dom}/domid"), d.to_string(), &ro);
    add(format!("{dom}/vm"), vm.clone(), &ro);
    add(vm.clone(), String::new(), &ro);
    add(format!("{vm}/name"), name.into(), &ro);
    add(format!("{vm}/uuid"), uuid_text(uuid), &ro);
    // The guest's own directories: `data` (its exit status, the launcher's wiring), `device`
    // (frontends), `control/shutdown` (`xl shutdown`). libxl also writes `drivers`, `feature`,
    // `attr`, `error`, `cpu` and `memory`, which neither lichen guests nor xl's list, console
    // and destroy read; each entry costs xenstored milliseconds under TCG, so they are left out.
    for dir in ["device", "control", "data"] {
        add(format!("{dom}/{dir}"), String::new(), &rw);
    }
    add(format!("{dom}/control/shutdown"), String::new(), &rw);
    add(
        format!("{dom}/store/port"),
        built.store_port.to_string(),
        &ro,
    );
    add(
        format!("{dom}/store/ring-ref"),
        built.store_gfn.to_string(),
        &ro,
    );
    add(format!("{dom}/console"), String::new(), &ro);
    add(
        format!("{dom}/console/port"),
        built.console_port.to_string(),
        &ro,
    );
    add(
        format!("{dom}/console/ring-ref"),
        built.console_gfn.to_string(),
        &ro,
    );
    add(format!("{dom}/console/type"), "xenconsoled".into(), &ro);
    // libxl's own record: a PVH domain (else `xl destroy` looks for a device model).
    let dom0_only = vec!["n0".to_string()];
    add(format!("/libxl/{d}"), String::new(), &dom0_only);
    add(format!("/libxl/{d}/type"), "pvh".into(), &dom0_only);
    out
}

/// The backend directory of `domid`'s vif `devid` (dom0 serves it with netback).
pub fn vif_backend(domid: u32, devid: u32) -> String {
    format!("/local/domain/0/backend/vif/{domid}/{devid}")
}

/// The entries of vif `devid` of `domid` on `bridge`, as libxl writes them: the backend
/// (dom0's, readable by the guest), the frontend (the guest's, readable by dom0) and libxl's own
/// record of the device (which `xl destroy` reads to tear it down). netback probes the backend
/// once it appears and creates `vif<domid>.<devid>`; the hotplug script then bridges it.
pub fn vif_entries(domid: u32, devid: u32, mac: &str, bridge: &str, script: &str) -> Vec<Entry> {
    let backend = vif_backend(domid, devid);
    let frontend = format!("/local/domain/{domid}/device/vif/{devid}");
    let libxl = format!("/libxl/{domid}/device/vif/{devid}");
    let backend_keys = [
        ("frontend", frontend.clone()),
        ("frontend-id", domid.to_string()),
        ("online", "1".into()),
        ("state", "1".into()),
        ("script", script.into()),
        ("mac", mac.into()),
        ("bridge", bridge.into()),
        ("handle", devid.to_string()),
        ("type", "vif".into()),
    ];
    let frontend_keys = [
        ("backend", backend.clone()),
        ("backend-id", "0".into()),
        ("state", "1".into()),
        ("handle", devid.to_string()),
        ("mac", mac.into()),
    ];
    let mut out = Vec::new();
    let mut dir = |path: &str, keys: &[(&str, String)], perms: Vec<String>| {
        out.push(Entry {
            path: path.to_string(),
            value: String::new(),
            perms: Some(perms),
        });
        for (key, value) in keys {
            out.push(Entry {
                path: format!("{path}/{key}"),
                value: value.clone(),
                perms: None,
            });
        }
    };
    dir(
        &backend,
        &backend_keys,
        vec!["n0".into(), format!("r{domid}")],
    );
    dir(
        &frontend,
        &frontend_keys,
        vec![format!("n{domid}"), "r0".into()],
    );
    let mut record = backend_keys.to_vec();
    record.push(("backend", backend.clone()));
    dir(&libxl, &record, vec!["n0".into()]);
    out
}

/// The backend directory of `domid`'s vbd `devid` (dom0 serves it with blkback).
pub fn vbd_backend(domid: u32, devid: u32) -> String {
    format!("/local/domain/0/backend/vbd/{domid}/{devid}")
}

/// The entries of vbd `devid` (guest device `vdev`, `xvda` ...) of `domid`, backed by dom0's
/// block device `params`, as libxl writes them for a `phy` disk: the backend (dom0's, readable
/// by the guest), the frontend (the guest's, readable by dom0) and libxl's record. blkback
/// probes the backend and waits for the hotplug script (`script`) to write `physical-device`;
/// the guest's blkfront then connects.
pub fn vbd_entries(
    domid: u32,
    devid: u32,
    vdev: &str,
    params: &str,
    read_only: bool,
    script: &str,
) -> Vec<Entry> {
    let backend = vbd_backend(domid, devid);
    let frontend = format!("/local/domain/{domid}/device/vbd/{devid}");
    let libxl = format!("/libxl/{domid}/device/vbd/{devid}");
    let backend_keys = [
        ("frontend", frontend.clone()),
        ("frontend-id", domid.to_string()),
        ("online", "1".into()),
        ("removable", "0".into()),
        ("bootable", "1".into()),
        ("state", "1".into()),
        ("dev", vdev.into()),
        ("type", "phy".into()),
        ("mode", if read_only { "r" } else { "w" }.into()),
        ("device-type", "disk".into()),
        ("params", params.into()),
        ("script", script.into()),
    ];
    let frontend_keys = [
        ("backend", backend.clone()),
        ("backend-id", "0".into()),
        ("state", "1".into()),
        ("virtual-device", devid.to_string()),
        ("device-type", "disk".into()),
    ];
    let mut out = Vec::new();
    let mut dir = |path: &str, keys: &[(&str, String)], perms: Vec<String>| {
        out.push(Entry {
            path: path.to_string(),
            value: String::new(),
            perms: Some(perms),
        });
        for (key, value) in keys {
            out.push(Entry {
                path: format!("{path}/{key}"),
                value: value.clone(),
                perms: None,
            });
        }
    };
    dir(
        &backend,
        &backend_keys,
        vec!["n0".into(), format!("r{domid}")],
    );
    dir(
        &frontend,
        &frontend_keys,
        vec![format!("n{domid}"), "r0".into()],
    );
    let mut record = backend_keys.to_vec();
    record.push(("backend", backend.clone()));
    dir(&libxl, &record, vec!["n0".into()]);
    out
}

/// The paths to remove once `domid` (with handle `uuid`) is destroyed.
pub fn cleanup_paths(domid: u32, uuid: &[u8; 16]) -> [String; 5] {
    [
        format!("/local/domain/{domid}"),
        format!("/vm/{}", uuid_text(uuid)),
        format!("/libxl/{domid}"),
        format!("/local/domain/0/backend/vif/{domid}"),
        format!("/local/domain/0/backend/vbd/{domid}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_gets_the_entries_xenconsoled_and_xl_read() {
        let built = Built {
            domid: 7,
            store_port: 1,
            console_port: 2,
            store_gfn: 0xfeffc,
            console_gfn: 0xfefff,
            steps: Vec::new(),
        };
        let uuid = [0x11; 16];
        let list = entries("hello", &built, &uuid);
        let get = |path: &str| list.iter().find(|e| e.path == path).cloned();
        assert_eq!(get("/local/domain/7/name").unwrap().value, "hello");
        assert_eq!(get("/local/domain/7/console/port").unwrap().value, "2");
        assert_eq!(
            get("/local/domain/7/console/ring-ref").unwrap().value,
            "1044479"
        );
        assert_eq!(get("/local/domain/7/store/port").unwrap().value, "1");
        assert_eq!(get("/libxl/7/type").unwrap().value, "pvh");
        assert_eq!(get("/local/domain/7/data").unwrap().perms.unwrap(), ["n7"]);
        assert_eq!(get("/local/domain/7").unwrap().perms.unwrap(), ["n0", "r7"]);
        assert_eq!(
            get("/local/domain/7/name").unwrap().perms,
            None,
            "inherited"
        );
        assert_eq!(
            get("/libxl/7/type").unwrap().perms,
            None,
            "inherited from /libxl/7"
        );
        let parents: Vec<&str> = list.iter().map(|e| e.path.as_str()).collect();
        let dom = parents.iter().position(|p| *p == "/local/domain/7");
        let data = parents.iter().position(|p| *p == "/local/domain/7/data");
        assert!(dom < data, "parents before children (their permissions)");
        assert_eq!(cleanup_paths(7, &uuid)[2], "/libxl/7");
    }

    #[test]
    fn a_vbd_gets_a_phy_backend_a_frontend_and_libxls_record() {
        let list = vbd_entries(
            7,
            51712,
            "xvda",
            "/dev/vdb",
            true,
            "/etc/lichen/block-lichen",
        );
        let get = |path: &str| list.iter().find(|e| e.path == path).cloned().unwrap();
        let backend = "/local/domain/0/backend/vbd/7/51712";
        assert_eq!(get(backend).perms.unwrap(), ["n0", "r7"]);
        assert_eq!(get(&format!("{backend}/params")).value, "/dev/vdb");
        assert_eq!(get(&format!("{backend}/mode")).value, "r");
        assert_eq!(get(&format!("{backend}/type")).value, "phy");
        assert_eq!(
            get(&format!("{backend}/frontend")).value,
            "/local/domain/7/device/vbd/51712"
        );
        let frontend = "/local/domain/7/device/vbd/51712";
        assert_eq!(get(frontend).perms.unwrap(), ["n7", "r0"]);
        assert_eq!(get(&format!("{frontend}/virtual-device")).value, "51712");
        assert_eq!(get("/libxl/7/device/vbd/51712/backend").value, backend);
        assert_eq!(
            cleanup_paths(7, &[0; 16])[4],
            "/local/domain/0/backend/vbd/7"
        );
    }

    #[test]
    fn a_vif_gets_a_backend_a_frontend_and_libxls_record() {
        let mac = "02:12:34:56:78:9a";
        let list = vif_entries(7, 0, mac, "lichenbr0", "/etc/lichen/vif-lichen");
        let get = |path: &str| list.iter().find(|e| e.path == path).cloned().unwrap();
        let backend = "/local/domain/0/backend/vif/7/0";
        assert_eq!(get(backend).perms.unwrap(), ["n0", "r7"]);
        assert_eq!(
            get(&format!("{backend}/frontend")).value,
            "/local/domain/7/device/vif/0"
        );
        assert_eq!(get(&format!("{backend}/bridge")).value, "lichenbr0");
        assert_eq!(get(&format!("{backend}/state")).value, "1");
        let frontend = "/local/domain/7/device/vif/0";
        assert_eq!(get(frontend).perms.unwrap(), ["n7", "r0"]);
        assert_eq!(get(&format!("{frontend}/backend")).value, backend);
        assert_eq!(get(&format!("{frontend}/mac")).value, mac);
        assert_eq!(get("/libxl/7/device/vif/0/backend").value, backend);
        assert_eq!(
            cleanup_paths(7, &[0; 16])[3],
            "/local/domain/0/backend/vif/7"
        );
    }
}
