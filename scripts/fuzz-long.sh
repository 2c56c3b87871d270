#!/usr/bin/env bash
# Longer fuzzing runs for docs/fuzzing.md: runs each named libFuzzer target (default: all that
# fuzz-smoke.sh builds in build-fuzz, plus grpc_request from build-asan when built) for SECONDS
# (default 300) over a copy of its seed corpus, one after another, and prints one table row each:
# target, executions, seconds, executions/s, corpus size, outcome. Crash inputs are kept in
# fuzz-findings/ (gitignored) for a regression copy into tests/fuzz/corpus/<target>/.
#   scripts/fuzz-long.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(safetensors config manifest tenants openai_request http_request tokenizer_json chat_template)
  [ -x build-asan/bin/grpc_request_fuzz ] && targets+=(grpc_request)
fi
mkdir -p fuzz-findings
echo "| target | executions | seconds | exec/s | corpus | outcome |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
for target in "${targets[@]}"; do
  bin="build-fuzz/bin/${target}_fuzz"
  [ "$target" = grpc_request ] && bin="build-asan/bin/grpc_request_fuzz"
  work="$(mktemp -d)"
  cp tests/fuzz/corpus/$target/* "$work/"
  start=$SECONDS
  outcome="no crash"
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz-findings/${target}-" "$work" >"fuzz-findings/${target}.log" 2>&1 ||
    outcome="FAILED (fuzz-findings/${target}.log)"
  elapsed=$((SECONDS - start))
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz-findings/${target}.log" |
    grep -o '[0-9]*$' || echo 0)"
  echo "| ${target} | ${execs} | ${elapsed} | $((execs / (elapsed > 0 ? elapsed : 1))) |" \
    "$(ls "$work" | wc -l) | ${outcome} |"
  rm -rf "$work"
done
