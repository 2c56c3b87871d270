#!/usr/bin/env bash
# Builds the project with clang and sanitizers and runs the tests they are meant for:
#   scripts/sanitize.sh address   ASan + UBSan in build-asan: every unit test (ctest -L unit),
#                                 the para-cli tests, and the para-server tests over gRPC and HTTP
#                                 (all of tests/server but two, below) against an ASan para-server
#   scripts/sanitize.sh thread    TSan in build-tsan: the engine loop and scheduler, the adapter
#                                 store, the server's units, and the para-server tests of its
#                                 concurrent paths (concurrency, adapter store, lazy loading,
#                                 lifecycle, hardening, sequence groups, TGIS streams)
# Sanitizer reports of every process (test binaries, para-server, para-cli, para-tool) go to
# files; any report fails the run and is printed. Without clang++ it exits 77, or 1 under CI.
#
# The para-server runs differ from the plain test suite in three ways (docs/fuzzing.md):
# * PARA_TEST_TOKENIZER=json gives every tiny test model a tokenizer.json equivalent to its
#   sentencepiece model (tests/server/spm_json.py): para-server loads libsentencepiece with
#   RTLD_DEEPBIND, which the sanitizer runtimes refuse, and without it the library's bundled
#   protobuf clashes with the system one that gRPC loads.
# * Tests marked memory_bound (a bound on resident memory) are deselected: ASan's quarantine and
#   shadow memory make resident memory meaningless.
# * test_engine_liveness.py (a stalled engine simulated by a multi-second prefill, minutes under
#   a sanitizer) and test_help.py (needs para-bench, not built here) are left out.
# PARA_SANITIZE_SERVER=0 leaves the para-server runs out altogether.
set -euo pipefail
cd "$(dirname "$0")/.."
server="${PARA_SANITIZE_SERVER:-1}"
kind="${1:?usage: scripts/sanitize.sh address|thread}"
if ! command -v clang++ >/dev/null; then
  echo "sanitizer run skipped: clang++ is not installed (scripts/install-deps.sh installs it)"
  [ "${PARA_CI_NO_SKIPS:-}" = 1 ] && exit 1
  exit 77
fi
jobs="${PARA_JOBS:-$(nproc)}"
case "$kind" in
  address)
    dir=build-asan
    targets=(all)
    units=()                                    # every unit test, through ctest -L unit
    integration='^(cli_tests|meta_tests)$'
    server_files=(--ignore=test_engine_liveness.py --ignore=test_help.py .)
    ;;
  thread)
    dir=build-tsan
    targets=(scheduler_tests store_tests server_unit_tests para-server para-cli para-tool)
    units=(scheduler_tests store_tests server_unit_tests)
    integration=''
    # The server's concurrent paths (the whole server suite would take most of CI's time under
    # TSan's slowdown).
    server_files=(test_server_concurrency.py test_adapter_store.py test_lazy_adapters.py
                  test_server_lifecycle.py test_hardening.py test_groups.py test_tgis.py)
    ;;
  *) echo "unknown sanitizer '$kind': address or thread" >&2; exit 2 ;;
esac
[ "$server" = 0 ] && [ "$kind" = thread ] && targets=("${units[@]}")
start=$SECONDS
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DPARA_SANITIZE="$kind" -DPARA_BUILD_BENCH=OFF >/dev/null
cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
echo "== $kind build: $((SECONDS - start)) s"

reports="$(mktemp -d)"
server_supp="$(mktemp)"
trap 'rm -rf "$reports" "$server_supp"' EXIT
supp="$PWD/scripts/sanitizer-suppressions"
# allocator_may_return_null: an allocation too large for the machine throws std::bad_alloc (which
# the code handles) instead of ending the process, as without ASan.
export ASAN_OPTIONS="log_path=$reports/asan:allocator_may_return_null=1:detect_leaks=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.txt"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="log_path=$reports/tsan:second_deadlock_stack=1:suppressions=$supp/tsan.txt"
# para-server's own runs add the suppressions for the uninstrumented gRPC and abseil libraries.
cat "$supp/tsan.txt" "$supp/tsan-server.txt" >"$server_supp"
server_tsan="log_path=$reports/tsan:second_deadlock_stack=1:suppressions=$server_supp"
export PARA_TEST_TOKENIZER=json
status=0
start=$SECONDS
if ((${#units[@]})); then
  for t in "${units[@]}"; do "$dir/bin/$t" --gtest_brief=1 || status=1; done
else
  (cd "$dir" && ctest --output-on-failure -j "$jobs" -L unit) || status=1
fi
if [ -n "$integration" ]; then
  (cd "$dir" && ctest --output-on-failure -j "$jobs" -R "$integration") || status=1
fi
if [ "$server" = 0 ]; then
  echo "== para-server under $kind left out (PARA_SANITIZE_SERVER=0)"
else
  server_start=$SECONDS
  bin="$PWD/$dir/bin"
  (cd tests/server && PARA_SERVER="$bin/para-server" PARA_TOOL="$bin/para-tool" PARA_CLI="$bin/para-cli" \
    PYTHONPATH="$PWD/../../clients/python" PARA_DEFAULT_MODEL="$PWD/../../build/models/smollm2-135m-instruct" \
    TSAN_OPTIONS="$server_tsan" timeout 1500 python3 -m pytest -q -p no:cacheprovider \
    -m "not memory_bound" "${server_files[@]}") || status=1
  echo "== para-server tests under $kind: $((SECONDS - server_start)) s"
fi
if [ "$kind" = address ] && [ "$server" != 0 ]; then  # the fuzz target that needs the whole engine
  corpus="$(mktemp -d)"
  cp tests/fuzz/corpus/grpc_request/* "$corpus/"
  ASAN_OPTIONS="allocator_may_return_null=1" "$dir/bin/grpc_request_fuzz" -max_total_time=20 \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$corpus" 2>&1 | tail -n 15 || status=1
  rm -rf "$corpus"
fi
echo "== $kind tests: $((SECONDS - start)) s"
if compgen -G "$reports/*" >/dev/null; then
  for f in "$reports"/*; do echo "=== $f"; head -c 20000 "$f"; done
  echo "FAILED: $kind sanitizer reports above"
  status=1
fi
exit $status
