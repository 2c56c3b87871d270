"""bench/groups_bench.py end to end on a tiny random model (CI smoke test): the real server runs
beam search at widths 1 and 3 for base, PARA and LoRA requests, and the shared-prefix TTFT cells
with prefix caching off and on. Every request completes with its full length, the report has
every row, and the caching-on run shows prefix-cache hits in GetServerStats. Timings are not
checked."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("PARA_BUILD", ROOT / "build"))


def test_groups_bench_quick(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "groups_bench.py"), "--quick", "--out",
                        str(tmp_path), "--build", str(BUILD)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    meta, results = data["meta"], data["results"]
    cells = {(r["experiment"], r["x"], r["type"]) for r in results}
    kinds = ("base", "para", "lora")
    assert cells == ({("beam", w, t) for w in meta["beams"] for t in kinds} |
                     {(f"prefix-{c}", 0, t) for c in ("off", "on") for t in kinds})
    for r in results:
        assert r["failed"] == 0 and r["errors"] == [], r
        if r["experiment"] == "beam":
            assert r["completed"] == meta["requests"]
            assert r["output_tokens"] == r["completed"] * meta["output_len"], r["label"]
        else:
            assert r["completed"] == meta["prefix_requests"]
            assert r["prompt_tokens"] == r["completed"] * (meta["prefix_len"] + meta["suffix_len"]), r["label"]
    # Base and LoRA requests after the warm-up find the whole shared prefix's full blocks cached.
    stats = meta["stats"]
    assert stats["prefix_cache_hit_tokens"] > 0
    assert stats["prefix_cache_hit_tokens"] <= stats["prefix_cache_query_tokens"]
    report = (tmp_path / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) == 2 + len(meta["beams"]) + len(kinds)  # two header rows
