#!/usr/bin/env bash
# The main job on the embedded default model, from a fresh Debian machine: installs
# dependencies, builds, writes the tiny random model (with its own sentencepiece tokenizer) to
# build/models/tiny, streams one generation, then runs a batch of mixed requests together.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
model=build/models/tiny
[ -f "$model/config.json" ] || build/bin/para-tool make-tiny-model "$model" --seed 1 2>/dev/null
build/bin/para-tool info --model "$model" --kv-cache-blocks 256
echo "== streaming one prompt (greedy)"
build/bin/para-cli generate --model "$model" --kv-cache-blocks 256 --prompt "Hello café" --max-tokens 24
echo "== a batch of requests in the same steps (--requests examples/requests.jsonl --json)"
build/bin/para-cli generate --model "$model" --kv-cache-blocks 256 --requests examples/requests.jsonl --json
