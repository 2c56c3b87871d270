"""pytest setup for tests/reference.

Puts this directory on sys.path, so the test modules import harness and the references
(llama_ref, para_ref, lora_ref) whatever the working directory or --import-mode, and provides the
hand-written tiny models that the reference self-checks share.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402

import harness as H  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"gqa": 3 layers, 4 query heads on 2 KV heads; "mha": 2 layers, 4 heads}: random reference
    models written by hand (harness.write_tiny_llama), no engine needed."""
    base = tmp_path_factory.mktemp("models")
    return {"gqa": H.write_tiny_llama(str(base / "gqa"), layers=3, heads=4, kv_heads=2, seed=1),
            "mha": H.write_tiny_llama(str(base / "mha"), layers=2, heads=4, kv_heads=4, seed=2)}
