#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz and runs each briefly over
# its seed corpus (tests/fuzz/corpus; new inputs go to a temporary copy). Without clang++ it exits
# 77 (ctest reports the test as skipped), or 1 under CI (PARA_CI_NO_SKIPS=1), which installs clang.
# A crash, leak or sanitizer report fails it.
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang++ >/dev/null; then
  echo "fuzz smoke skipped: clang++ is not installed (scripts/install-deps.sh installs it)"
  [ "${PARA_CI_NO_SKIPS:-}" = 1 ] && exit 1
  exit 77
fi
seconds="${1:-20}"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DPARA_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "${PARA_JOBS:-$(nproc)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in safetensors config; do
  mkdir -p "$work/$target"
  cp tests/fuzz/corpus/$target/* "$work/$target/"
  echo "== ${target}_fuzz for ${seconds}s"
  build-fuzz/bin/${target}_fuzz -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    "$work/$target" 2>&1 | tail -n 12
done
