#!/usr/bin/env bash
# The main job on the embedded default model, from a fresh Debian machine: installs
# dependencies, builds, writes the tiny random model (with its own sentencepiece tokenizer) to
# build/models/tiny and two tenants' PARA adapters beside it, streams one generation per tenant,
# then runs a batch mixing both tenants and the base model in the same steps.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
model=build/models/tiny
[ -f "$model/config.json" ] || build/bin/para-tool make-tiny-model "$model" --seed 1 2>/dev/null
[ -f build/models/tenant-a/adapter_config.json ] ||
  build/bin/para-tool make-tiny-adapter build/models/tenant-a --model "$model" --seed 1 --pooler last
[ -f build/models/tenant-b/adapter_config.json ] ||
  build/bin/para-tool make-tiny-adapter build/models/tenant-b --model "$model" --seed 2 --pooler mean --activation silu
build/bin/para-tool info --model "$model" --kv-cache-blocks 256
for adapter in "" build/models/tenant-a build/models/tenant-b; do
  echo "== streaming one prompt (greedy), adapter: ${adapter:-none (base model)}"
  build/bin/para-cli generate --model "$model" --kv-cache-blocks 256 ${adapter:+--adapter "$adapter"} \
    --prompt "Hello café" --max-tokens 24
done
echo "== a batch of requests in the same steps (--requests examples/requests.jsonl --json)"
build/bin/para-cli generate --model "$model" --kv-cache-blocks 256 --requests examples/requests.jsonl --json
