#!/usr/bin/env bash
# Regenerates every benchmark figure in bench/README.md on this machine, in one command:
#   bench/run-all.sh            # ~40 minutes on 2 cores (the peers' first builds add ~10)
# 1. the serving comparison (bench/compare.py) on a TinyLlama-1.1B-shaped model: PARA vs LoRA vs
#    base through the real server, with its report and plots in bench/results/tinyllama/;
# 2. the kernel microbenchmarks (para-bench-kernels) against this machine's measured peaks;
# 3. the peer comparison with llama.cpp (bench/peer_llamacpp.py; installs its peer itself);
# 4. the engine against llama.cpp's own benchmark tools at batch 1, 8 and 32 and prefill, with the
#    machine's peaks (bench/peer_llamacpp_bench.py; builds llama.cpp itself, in build/peer);
# then rewrites the "Latest results" section of bench/README.md from those outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
model=build/bench/tinyllama
if [ ! -f $model/config.json ]; then
  mkdir -p build/bench
  build/bin/para-tool make-tiny-model $model --layers 22 --hidden 2048 --heads 32 --kv-heads 4 \
    --ffn 5632 --vocab 32000 --seed 1 --max-pos 2048 --no-tokenizer
fi
out=bench/results
mkdir -p $out
python3 bench/compare.py --shape tinyllama --model $model --out $out/tinyllama --work build/bench/work
build/bin/para-bench-kernels --benchmark_min_time=0.3 --benchmark_color=false \
  > $out/kernels.txt 2>&1
python3 bench/peer_llamacpp.py --model $model > $out/peer.txt
python3 bench/peer_llamacpp_bench.py --model $model --json $out/peer_llamacpp_bench.json > $out/peer-bench.txt
python3 bench/render_readme.py
