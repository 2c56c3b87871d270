#!/usr/bin/env bash
# The whole test suite from a fresh Debian machine: installs dependencies, builds, runs every
# test (C++ unit tests, the numpy reference tests, the command-line tests) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd build
ctest --output-on-failure -j "${PARA_JOBS:-$(nproc)}" "$@"
