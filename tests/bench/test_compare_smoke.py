"""The comparison driver end to end on the tiny model (CI smoke test): it builds the adapters,
starts the real server, runs para-bench for base, PARA and LoRA, and writes a report whose
structure is complete and in which every request completed. Timings are not checked."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("PARA_BUILD", ROOT / "build"))


def test_compare_on_the_tiny_model(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--shape", "tiny", "--out",
                        str(tmp_path), "--build", str(BUILD)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    meta, results = data["meta"], data["results"]
    cells = {(r["experiment"], r["x"], r["type"]) for r in results}
    expected = ({("tenants", d, t) for d in meta["distinct"] for t in ("base", "para", "lora")} |
                {("load", x, t) for x in meta["rates"] for t in ("base", "para", "lora")})
    assert cells == expected
    for r in results:
        assert r["failed"] == 0 and r["errors"] == [], r
        assert r["completed"] > 0
        assert r["output_tokens"] == r["completed"] * meta["output_len"], r["label"]
        for metric in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            assert set(r[metric]) == {"mean", "p50", "p90", "p99", "n"}
            assert r[metric]["p50"] <= r[metric]["p99"]
        if r["experiment"] == "tenants":
            assert r["completed"] == meta["requests"]
    report = (tmp_path / "report.md").read_text()
    assert "## Decode throughput vs distinct tenants in the batch" in report
    assert "## Latency vs load" in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) == 2 + len(meta["distinct"]) + 3 * len(meta["rates"])  # two header rows
    assert f"Requests: {sum(r['completed'] for r in results)} completed, 0 failed." in report
    for png in ("throughput_vs_tenants.png", "tpot_vs_load.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
