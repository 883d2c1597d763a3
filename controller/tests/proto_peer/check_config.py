#!/usr/bin/env python3
"""Checks a configuration lichen-controller served against Google's protobuf (from PyPI).

Compiles lichen's .proto files with protoc (grpcio-tools), then:
- EdgeDevConfig's top-level fields have the official names and numbers (lf-edge/eve-api
  config/devconfig.proto), and the served configuration sets every one of them;
- the served bytes, decoded by Google's runtime, equal the controller's proto3 JSON of the
  same configuration parsed by Google's json_format (so the controller's JSON mapping, used by
  `admin config`, and its wire encoding agree with Google's).

Usage: check_config.py --proto-dir DIR --served FILE --json FILE
"""
import argparse
import importlib
import json
import sys
import tempfile

from google.protobuf import json_format
from grpc_tools import protoc

# Top-level fields of the official EdgeDevConfig: (name, number).
OFFICIAL_FIELDS = [
    ("id", 1), ("apps", 4), ("networks", 5), ("datastores", 6), ("base", 8), ("reboot", 9),
    ("backup", 10), ("configItems", 11), ("systemAdapterList", 12), ("deviceIoList", 13),
    ("manufacturer", 14), ("productName", 15), ("networkInstances", 16),
    ("cipherContexts", 19), ("contentInfo", 20), ("volumes", 21),
    ("controllercert_confighash", 22), ("maintenance_mode", 24), ("controller_epoch", 25),
    ("baseos", 26), ("global_profile", 27), ("local_profile_server", 28),
    ("profile_server_token", 29), ("vlans", 30), ("bonds", 31), ("edgeview", 32),
    ("disks", 33), ("shutdown", 34), ("device_name", 35), ("project_name", 36),
    ("project_id", 37), ("enterprise_name", 38), ("enterprise_id", 39),
    ("config_timestamp", 40), ("loc_config", 41), ("patchEnvelopes", 42), ("cluster", 43),
    ("pnacs", 50), ("scep_profiles", 51),
]


def compile_protos(proto_dir, out_dir):
    import glob
    import os
    files = sorted(os.path.relpath(p, proto_dir)
                   for p in glob.glob(os.path.join(proto_dir, "**", "*.proto"), recursive=True))
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    status = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out_dir}"]
                         + files)
    if status != 0:
        sys.exit(f"protoc failed ({status}) on {proto_dir}")
    sys.path.insert(0, out_dir)


def is_set(message, field):
    """Whether a field of a message holds a value (repeated: at least one)."""
    # protobuf 7 has `is_repeated`; older ones only `label`.
    repeated = getattr(field, "is_repeated", None)
    if repeated is None:
        repeated = field.label == field.LABEL_REPEATED
    value = getattr(message, field.name)
    if repeated:
        return len(value) > 0
    if field.message_type:
        return message.HasField(field.name)
    return bool(value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--served", required=True)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    out = tempfile.mkdtemp(prefix="lichen-pb-")
    compile_protos(args.proto_dir, out)
    devconfig = importlib.import_module("config.devconfig_pb2")
    EdgeDevConfig = devconfig.EdgeDevConfig

    fields = [(f.name, f.number) for f in EdgeDevConfig.DESCRIPTOR.fields]
    if sorted(fields, key=lambda f: f[1]) != OFFICIAL_FIELDS:
        sys.exit(f"EdgeDevConfig fields differ from the official ones: {fields}")

    served = EdgeDevConfig()
    served.ParseFromString(open(args.served, "rb").read())
    unset = [f.name for f in EdgeDevConfig.DESCRIPTOR.fields if not is_set(served, f)]
    if unset:
        sys.exit(f"the served configuration leaves fields unset: {unset}")

    from_json = EdgeDevConfig()
    json_format.Parse(open(args.json).read(), from_json)
    if served != from_json:
        sys.exit("served bytes and the controller's JSON differ:\n"
                 f"served: {served}\njson: {from_json}")

    # Spot checks of nested values, by Google's decoding.
    assert served.vlans[0].vlan_id == 100, served.vlans
    assert served.bonds[0].WhichOneof("monitoring") == "mii", served.bonds
    storage = importlib.import_module("config.storage_pb2")
    assert storage.Format.Name(served.contentInfo[1].iformat) == "PVC"
    assert served.disks.children[0].disks[0].disk.name == "/dev/nvme0n1"
    assert served.shutdown.counter == 1
    assert served.edgeview.dev_policy.allow_dev
    assert served.patchEnvelopes[0].artifacts[1].WhichOneof("binaryBlob") == "volumeRef"
    count = len(json.loads(json_format.MessageToJson(served)))
    print(f"EdgeDevConfig: {len(fields)} official fields, {count} set, served bytes == JSON: ok")


if __name__ == "__main__":
    main()
