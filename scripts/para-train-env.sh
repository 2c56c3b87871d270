#!/usr/bin/env bash
# Optional: the PARA training toolkit's Python environment (tools/para_train/requirements.txt,
# pinned; the same versions as scripts/peft-env.sh, so either environment serves both). Large
# (~6 GB: PyPI's torch brings its CUDA libraries), so CI does not build it; the tests that need
# it (ctest para_train_tests, tests/reference/test_lora_peft.py) skip there, saying why.
#   scripts/para-train-env.sh [DIR]    (default build/para-train-env), then:
#   PARA_PEFT_PYTHON=DIR/bin/python ctest --test-dir build -R para_train
#   PYTHONPATH=tools/para_train DIR/bin/python -m para_train --help
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build/para-train-env}"
python3 -m venv "$dir"
"$dir/bin/pip" install -q --disable-pip-version-check -r tools/para_train/requirements.txt
echo "PARA_PEFT_PYTHON=$dir/bin/python"
