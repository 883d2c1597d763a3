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
    /usr/bin/python3 -c 'import venv' 2>/dev/null || need_python_module venv python3-venv
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv" || { need_python_module ensurepip python3-venv; /usr/bin/python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'grpcio-tools==1.84.0' 'protobuf>=6.33,<8' \
        || die "could not install grpcio-tools and protobuf from PyPI"
fi
export LICHEN_TEST_PROTOBUF_PYTHON="$venv/bin/python"
"$@"
