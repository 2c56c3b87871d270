#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine, in one go (designed for < 8 minutes on one H200):
#   1. builds the GPU tests and the engine benchmark (Release, CUDA for sm_80 and sm_90);
#   2. runs the GPU tests (every kernel and whole-model logits against the CPU backend, mixed-
#      tenant batch invariance, the device sampler against the host's), the CPU-side tests of the
#      kernels' logic, and the engine suites' CUDA instances (engine_model_tests '*Cuda');
#   3. writes a LLaMA-2-7B-shaped random BF16 model (32 layers, hidden 4096, ffn 11008, vocab
#      32000; no tokenizer) and runs para-bench-engine on it: decode at batch 1 and 32 against
#      the HBM bound, and PARA (r 12) / LoRA (r 16, all projections) / base at 32 tenants.
# Results go to stdout and to $OUT (or ./gpu-check-out) as gpu-tests.txt and bench.txt.
#   scripts/gpu-check.sh [--skip-bench] [--hbm-gbps G (default 4800, H200 HBM3e)]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT_DIR"
SKIP_BENCH=0
HBM=4800
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-bench) SKIP_BENCH=1 ;;
    --hbm-gbps) HBM="$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
JOBS="$(nproc)"
start=$(date +%s)
stamp() { echo "[gpu-check $(( $(date +%s) - start ))s] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT_DIR/gpu.txt"

stamp "configure + build"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DPARA_BUILD_BENCH=ON \
  -DCMAKE_CUDA_ARCHITECTURES="80;90" >"$OUT_DIR/configure.txt" 2>&1 || {
  tail -30 "$OUT_DIR/configure.txt"; exit 1; }
grep "CUDA backend" "$OUT_DIR/configure.txt"
timeout 300 cmake --build build-gpu -j "$JOBS" --target cuda_backend_tests engine_unit_tests \
  engine_model_tests para-tool para-bench-engine >"$OUT_DIR/build.txt" 2>&1 || {
  tail -40 "$OUT_DIR/build.txt"; exit 1; }

stamp "GPU tests"
status=0
timeout 180 build-gpu/bin/cuda_backend_tests 2>&1 | tee "$OUT_DIR/gpu-tests.txt" | tail -40
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
timeout 60 build-gpu/bin/engine_unit_tests --gtest_filter='Cuda*' 2>&1 | tail -3 | tee -a "$OUT_DIR/gpu-tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
stamp "the engine suites on the CUDA backend"
timeout 240 build-gpu/bin/engine_model_tests --gtest_filter='*Cuda' 2>&1 | tee "$OUT_DIR/engine-suites.txt" \
  | grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran" | tee -a "$OUT_DIR/gpu-tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if grep -q "no GPU run:" "$OUT_DIR/gpu-tests.txt"; then
  echo "some GPU tests were skipped (no device visible?)"; status=1
fi

if [ "$SKIP_BENCH" -eq 0 ]; then
  MODEL=/tmp/para-llama7b-shape
  stamp "writing the 7B-shaped model to $MODEL"
  [ -f "$MODEL/config.json" ] || timeout 240 build-gpu/bin/para-tool make-tiny-model "$MODEL" \
    --layers 32 --hidden 4096 --heads 32 --kv-heads 32 --ffn 11008 --vocab 32000 \
    --max-pos 4096 --dtype bf16 --no-tokenizer || status=1
  stamp "benchmark"
  timeout 300 build-gpu/bin/para-bench-engine --model "$MODEL" --device cuda --batches 1,32 \
    --prompt-len 128 --decode-steps 16 --prefill-len 512 --kv-cache-bytes 21474836480 \
    --adapters 32 --compare para,lora-r16-all --adapter-dir /tmp/para-llama7b-adapters \
    --hbm-gbps "$HBM" 2>&1 | tee "$OUT_DIR/bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
stamp "done (status $status)"
exit $status
