#!/usr/bin/env bash
# Regenerates the Python messages and gRPC stubs (para/v1/*_pb2*.py) from proto/para/v1 with the
# pinned grpcio-tools (tests/requirements.txt). tests/server/test_stubs_current.py fails when the
# committed stubs differ from what this produces.
#   clients/python/generate_stubs.sh [OUT_DIR]    (default: clients/python)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
mkdir -p "$out"
python3 -m grpc_tools.protoc --proto_path="$here/../../proto" --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" "$here/../../proto/para/v1/generation.proto" "$here/../../proto/para/v1/admin.proto"
touch "$out/para/__init__.py" "$out/para/v1/__init__.py"
