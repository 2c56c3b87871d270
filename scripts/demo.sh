#!/usr/bin/env bash
# The main job on the embedded default model, from a fresh Debian machine: installs
# dependencies, builds, writes the tiny random model (with its own sentencepiece tokenizer) and
# three tenants' adapters (two PARA, one LoRA) to build/models, starts para-server with a demo
# tenants file, streams one generation per tenant and adapter through the Python client, runs
# the same kind of mixed batch offline with para-cli, and shuts the server down with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
models=build/models
model=$models/tiny
[ -f "$model/config.json" ] || build/bin/para-tool make-tiny-model "$model" --seed 1 2>/dev/null
[ -f $models/tenant-a/adapter_config.json ] ||
  build/bin/para-tool make-tiny-adapter $models/tenant-a --model "$model" --seed 1 --pooler last
[ -f $models/tenant-b/adapter_config.json ] ||
  build/bin/para-tool make-tiny-adapter $models/tenant-b --model "$model" --seed 2 --pooler mean --activation silu
[ -f $models/tenant-c-lora/adapter_config.json ] ||
  build/bin/para-tool make-tiny-lora $models/tenant-c-lora --model "$model" --seed 3 --r 8 --targets all

mkdir -p build/demo
cat > build/demo/tenants.json <<JSON
{
  "admin_api_keys": ["demo-admin-key"],
  "tenants": {
    "acme":    {"api_keys": ["demo-acme-key"], "weight": 2, "adapters": {"acme-para": "tenant-a"}},
    "globex":  {"api_keys": ["demo-globex-key"], "adapters": {"globex-para": "tenant-b",
                                                            "globex-lora": "tenant-c-lora"}},
    "initech": {"api_keys": ["demo-initech-key"]}
  }
}
JSON
rm -f build/demo/port build/demo/http-port
build/bin/para-server --model "$model" --config build/demo/tenants.json --adapter-root "$models" \
  --adapter-manifest build/demo/adapters.json --port 0 --port-file build/demo/port \
  --http-port 0 --http-port-file build/demo/http-port --kv-cache-blocks 256 2> build/demo/server.log &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s build/demo/port ] && break; sleep 0.1; done
[ -s build/demo/port ] || { cat build/demo/server.log; exit 1; }
port=$(cat build/demo/port)
echo "== para-server on port $port; one stream per tenant and adapter (Python client, clients/python)"
PYTHONPATH=clients/python python3 clients/python/demo.py --target "localhost:$port" --config build/demo/tenants.json

http=$(cat build/demo/http-port)
echo "== the OpenAI-compatible HTTP API on port $http: a completion with globex's LoRA adapter"
curl -sS "localhost:$http/v1/completions" -H "Authorization: Bearer demo-globex-key" \
  -d '{"model": "globex-lora", "prompt": "Hello", "max_tokens": 12, "seed": 1, "temperature": 0.7}'
echo
echo "== Prometheus metrics (excerpt of /metrics)"
curl -sS "localhost:$http/metrics" | grep -E '^para_(requests_total|num_requests_running|kv_cache_usage_perc|lora_requests_info|adapters\{)'

echo "== the same model offline: a batch mixing adapters, run together (para-cli --requests)"
build/bin/para-cli generate --model "$model" --kv-cache-blocks 256 --requests examples/requests.jsonl --json

kill -TERM $server
wait $server
trap - EXIT
echo "== server log"
cat build/demo/server.log
