#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (coverage + ASan + UBSan, asserts on) in build-fuzz and
# runs each briefly over its seed corpus (tests/fuzz/corpus/<target>; new inputs go to a temporary
# copy). Without clang++ it exits 77 (ctest reports the test as skipped), or 1 under CI
# (PARA_CI_NO_SKIPS=1), which installs clang. A crash, leak, timeout or sanitizer report fails it.
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang++ >/dev/null; then
  echo "fuzz smoke skipped: clang++ is not installed (scripts/install-deps.sh installs it)"
  [ "${PARA_CI_NO_SKIPS:-}" = 1 ] && exit 1
  exit 77
fi
seconds="${1:-20}"
targets=(safetensors config manifest tenants openai_request http_request tokenizer_json chat_template)
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DPARA_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "${PARA_JOBS:-$(nproc)}" --target "${targets[@]/%/_fuzz}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$work/$target"
  cp tests/fuzz/corpus/$target/* "$work/$target/"
  echo "== ${target}_fuzz for ${seconds}s"
  # -timeout: an input that takes over 10 s is a hang and fails the run.
  build-fuzz/bin/${target}_fuzz -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "$work/$target" >"$work/$target.log" 2>&1 || {
    tail -n 60 "$work/$target.log"
    echo "FAILED: ${target}_fuzz (reproduce: build-fuzz/bin/${target}_fuzz <crash file above>)"
    exit 1
  }
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+ +DONE" "$work/$target.log" || true
done
