#!/usr/bin/env bash
# Regenerates the eight trained tenant adapters committed in tools/para_train/adapters: one PARA
# (r 12, ~1.1 M parameters) and one LoRA (r 9 on q/v/up, ~1.1 M parameters) adapter per task (add,
# sort, reverse, isodate), trained on the default model (SmolLM2-135M-Instruct, converted by
# scripts/make-default-model.sh) by tools/para_train, exported in BF16, each with the result.json
# (settings, parameter count, time, the test accuracy of the exported files) and train_log.jsonl
# of its run. About 7 minutes per adapter on 2 cores (one torch thread each).
#   scripts/train-tenants.sh [PYTHON]   (a Python with tools/para_train/requirements.txt;
#                                        default: made by scripts/para-train-env.sh)
# Tasks already present in the output are skipped; delete a directory to retrain it.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${1:-}"
if [ -z "$py" ]; then
  scripts/para-train-env.sh build/para-train-env >/dev/null
  py=build/para-train-env/bin/python
fi
model=build/models/smollm2-135m-instruct
scripts/make-default-model.sh "$model"
export PYTHONPATH=tools/para_train OMP_WAIT_POLICY=PASSIVE
work=build/train-tenants
out=tools/para_train/adapters
for task in add sort reverse isodate; do
  "$py" -m para_train data --task "$task" --out "$work/data/$task" >/dev/null
  for method in para lora; do
    name="$task-$method"
    [ -f "$out/$name/result.json" ] && continue
    if [ "$method" = para ]; then rank=12 lr=5e-3; else rank=9 lr=2e-3; fi
    rm -rf "$work/runs/$name"
    "$py" -m para_train train --model "$model" --method "$method" --r "$rank" \
      --train "$work/data/$task/train.jsonl" --test "$work/data/$task/test.jsonl" \
      --out "$work/runs/$name" --steps 150 --batch-size 16 --lr "$lr" --seed 0 --save-every 50 \
      --threads 1 --quiet
    mkdir -p "$out/$name"
    cp "$work/runs/$name/adapter/adapter_config.json" "$work/runs/$name/adapter/adapter_model.safetensors" \
      "$work/runs/$name/result.json" "$work/runs/$name/train_log.jsonl" \
      "$out/$name/"
    echo "$name: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(f"test accuracy {r[\"test_accuracy\"]:.3f}, {r[\"train_seconds\"]:.0f} s")' "$out/$name/result.json")"
  done
done
