#!/usr/bin/env bash
# Builds the project with clang and sanitizers and runs the tests they are meant for:
#   scripts/sanitize.sh address   ASan + UBSan in build-asan: every unit test (ctest -L unit) and
#                                 the integration tests (para-cli, para-server over gRPC and HTTP)
#   scripts/sanitize.sh thread    TSan in build-tsan: the engine loop and scheduler, the adapter
#                                 store, the server's units, and the para-server tests of its
#                                 concurrent paths (concurrency, adapter store, lazy loading,
#                                 lifecycle, liveness, hardening)
# Sanitizer reports of every process (test binaries, para-server, para-cli, para-tool) go to
# files; any report fails the run and is printed. Without clang++ it exits 77, or 1 under CI.
#
# PARA_SANITIZE_SERVER=0 leaves out what runs para-server (the server tests, grpc_request_fuzz):
# without RTLD_DEEPBIND, which the sanitizer runtimes refuse, libsentencepiece's bundled protobuf
# clashes with the system protobuf that gRPC loads (docs/fuzzing.md). CI runs it that way.
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
    integration='^(cli_tests|server_tests|meta_tests)$'
    [ "$server" = 0 ] && integration='^(cli_tests|meta_tests)$'
    ;;
  thread)
    dir=build-tsan
    targets=(scheduler_tests store_tests server_unit_tests para-server para-cli para-tool)
    units=(scheduler_tests store_tests server_unit_tests)
    [ "$server" = 0 ] && targets=("${units[@]}")
    integration=''
    # The server's concurrent paths, against a TSan para-server (the whole server suite would take
    # most of CI's time under TSan's slowdown).
    server_files=(test_server_concurrency.py test_adapter_store.py test_lazy_adapters.py
                  test_server_lifecycle.py test_engine_liveness.py test_hardening.py)
    ;;
  *) echo "unknown sanitizer '$kind': address or thread" >&2; exit 2 ;;
esac
start=$SECONDS
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DPARA_SANITIZE="$kind" -DPARA_BUILD_BENCH=OFF >/dev/null
cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
echo "== $kind build: $((SECONDS - start)) s"

reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT
supp="$PWD/scripts/sanitizer-suppressions"
# allocator_may_return_null: an allocation too large for the machine throws std::bad_alloc (which
# the code handles) instead of ending the process, as without ASan.
export ASAN_OPTIONS="log_path=$reports/asan:allocator_may_return_null=1:detect_leaks=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.txt"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="log_path=$reports/tsan:second_deadlock_stack=1:suppressions=$supp/tsan.txt"
status=0
start=$SECONDS
if ((${#units[@]})); then
  for t in "${units[@]}"; do "$dir/bin/$t" --gtest_brief=1 || status=1; done
else
  (cd "$dir" && ctest --output-on-failure -j "$jobs" -L unit) || status=1
fi
if [ -n "$integration" ]; then
  (cd "$dir" && ctest --output-on-failure -j "$jobs" -R "$integration") || status=1
elif [ "$server" = 0 ]; then
  echo "== para-server under TSan left out (PARA_SANITIZE_SERVER=0)"
else
  (cd tests/server && PARA_SERVER="$PWD/../../$dir/bin/para-server" PARA_TOOL="$PWD/../../$dir/bin/para-tool" \
    PARA_CLI="$PWD/../../$dir/bin/para-cli" PYTHONPATH="$PWD/../../clients/python" \
    timeout 1500 python3 -m pytest -q -p no:cacheprovider "${server_files[@]}") || status=1
fi
if [ "$kind" = address ] && [ "$server" = 0 ]; then
  echo "== grpc_request_fuzz left out (PARA_SANITIZE_SERVER=0)"
elif [ "$kind" = address ]; then  # the fuzz target that needs the whole engine
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
