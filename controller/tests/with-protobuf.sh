#!/usr/bin/env bash
# Runs a command with Google's protobuf runtime and protoc (grpcio-tools) from PyPI in a private
# virtual environment (target/py-protobuf, made once). The command gets LICHEN_TEST_PROTOBUF_PYTHON
# (that environment's python); the protobuf peer tests are #[ignore]d otherwise, so run them with
# --include-ignored:
#   controller/tests/with-protobuf.sh cargo test -p lichen-controller --test proto_peer -- --include-ignored
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"

venv="$LICHEN_ROOT/target/py-protobuf"
if ! "$venv/bin/python" -c 'import google.protobuf, grpc_tools' 2>/dev/null; then
    rm -rf "$venv"
    if ! /usr/bin/python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian's python3 makes virtual environments only with python3-venv (pip's bootstrap).
        rm -rf "$venv"
        echo "installing python3-venv..." >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null 2>&1 \
            || { as_root apt-get update -qq >/dev/null 2>&1 \
                 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; } \
            || die "could not install python3-venv"
        /usr/bin/python3 -m venv "$venv" || die "could not make a virtual environment in $venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'grpcio-tools==1.84.0' 'protobuf==7.36.2' \
        || die "could not install grpcio-tools and protobuf from PyPI"
fi
export LICHEN_TEST_PROTOBUF_PYTHON="$venv/bin/python"
"$@"
