#!/usr/bin/env bash
# Optional: a Python environment with torch, transformers and peft (pinned), for the test that
# loads adapters written by peft itself and compares with transformers+peft logits
# (tests/reference/test_lora_peft.py). It is large (~6 GB with torch's CUDA libraries from
# PyPI), so CI does not build it and that test skips there, saying why.
#   scripts/peft-env.sh [DIR]    (default build/peft-env), then:
#   PARA_PEFT_PYTHON=build/peft-env/bin/python ctest --test-dir build -R reference
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build/peft-env}"
python3 -m venv "$dir"
"$dir/bin/pip" install -q --disable-pip-version-check torch==2.15.0 transformers==5.24.0 peft==0.21.2 \
  safetensors==0.8.0 numpy==2.1.3
echo "PARA_PEFT_PYTHON=$dir/bin/python"
