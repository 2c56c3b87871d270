"""bench/peer_llamacpp_bench.py without llama.cpp (never built here): the HF -> GGUF conversion it
shares with bench/peer_llamacpp.py, read back with `gguf`'s reader and compared with the
checkpoint; the parsing of para-bench-engine's and para-bench-peaks' real output; and the
summary (medians, bounds, ratios, targets) and table from synthetic peer results."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("PARA_BUILD", ROOT / "build"))
sys.path.insert(0, str(ROOT / "bench"))
import hf_to_gguf  # noqa: E402
import peer_llamacpp_bench as peer  # noqa: E402

gguf = pytest.importorskip("gguf")

SHAPE = dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=96, vocab=300)


def make_model(path, dtype, shards=1, tie=False):
    cmd = [str(BUILD / "bin" / "para-tool"), "make-tiny-model", str(path), "--no-tokenizer",
           "--dtype", dtype, "--shards", str(shards), "--seed", "3"]
    for k, v in SHAPE.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    if tie:
        cmd.append("--tie-embeddings")
    subprocess.run(cmd, check=True, capture_output=True)
    return path


@pytest.mark.parametrize("dtype,shards,tie,out_type", [("bf16", 2, False, "f16"), ("f32", 1, False, "f32"),
                                                       ("f16", 1, True, "f16")])
def test_conversion_round_trips(tmp_path, dtype, shards, tie, out_type):
    model = make_model(tmp_path / "m", dtype, shards, tie)
    out = hf_to_gguf.ensure(model, tmp_path / "gguf", out_type, log=None)
    assert out.name == f"peer-{out_type}.gguf"
    r = gguf.GGUFReader(str(out))
    fields = {f.name: f for f in r.fields.values()}

    def scalar(name):
        f = fields[name]
        return f.parts[f.data[0]][0]

    assert scalar("llama.block_count") == SHAPE["layers"]
    assert scalar("llama.attention.head_count") == SHAPE["heads"]
    assert scalar("llama.attention.head_count_kv") == SHAPE["kv_heads"]
    assert scalar("llama.embedding_length") == SHAPE["hidden"]
    assert scalar("llama.feed_forward_length") == SHAPE["ffn"]
    assert len(fields["tokenizer.ggml.tokens"].data) == SHAPE["vocab"]
    tensors = {t.name: t for t in r.tensors}
    expected = 2 + (0 if tie else 1) + 9 * SHAPE["layers"]
    assert len(tensors) == expected and ("output.weight" in tensors) == (not tie)
    src = hf_to_gguf.read_tensors(model)
    two_d = gguf.GGMLQuantizationType.F16 if out_type == "f16" else gguf.GGMLQuantizationType.F32
    for gname, hname, _ in hf_to_gguf.plan(model)[1]:
        t = tensors[gname]
        want = hf_to_gguf.to_f32(*src[hname])
        got = np.asarray(t.data).astype(np.float32).reshape(want.shape)
        assert t.tensor_type == (two_d if want.ndim == 2 else gguf.GGMLQuantizationType.F32), gname
        if gname.endswith("attn_q.weight"):
            got = hf_to_gguf.unrope_rows(got, SHAPE["heads"])
        elif gname.endswith("attn_k.weight"):
            got = hf_to_gguf.unrope_rows(got, SHAPE["kv_heads"])
        tol = 1e-3 * np.abs(want).max() if out_type == "f16" and want.ndim == 2 else 0
        np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=gname)
    # q is really permuted (not left as it was), and the cache is reused until the model changes.
    q = np.asarray(tensors["blk.0.attn_q.weight"].data).astype(np.float32)
    assert not np.allclose(q.reshape(-1), hf_to_gguf.to_f32(*src["model.layers.0.self_attn.q_proj.weight"]).reshape(-1))
    mtime = out.stat().st_mtime_ns
    assert hf_to_gguf.ensure(model, tmp_path / "gguf", out_type, log=None).stat().st_mtime_ns == mtime


def test_rope_permutation_pairs_the_halves():
    # Head of 8 rows: HF rotates (0,4) (1,5) (2,6) (3,7); GGML rotates adjacent pairs.
    w = np.arange(16, dtype=np.float32).reshape(16, 1)
    p = hf_to_gguf.rope_rows(w, 2).reshape(-1)
    assert p[:8].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert np.array_equal(hf_to_gguf.unrope_rows(hf_to_gguf.rope_rows(w, 2), 2), w)


def test_conversion_refuses_what_it_does_not_carry(tmp_path):
    model = make_model(tmp_path / "m", "f32")
    cfg = json.loads((model / "config.json").read_text())
    cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0}
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hf_to_gguf.ConvertError, match="llama3"):
        hf_to_gguf.convert(model, tmp_path / "x.gguf")
    cfg["rope_scaling"] = None
    cfg["attention_bias"] = True
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hf_to_gguf.ConvertError, match="attention_bias"):
        hf_to_gguf.convert(model, tmp_path / "x.gguf")


def test_our_tools_output_is_parsed(tmp_path):
    model = make_model(tmp_path / "m", "bf16")
    a = peer.parse_args(["--model", str(model), "--parallel", "8,32", "--decode-steps", "2", "--prefill-len", "64"])
    r = peer.ours(BUILD, model, a, [1, *a.parallel])
    assert set(r["decode"]) == {1, 8, 32} and all(v > 0 for v in r["decode"].values())
    assert r["prefill"] > 0 and r["bandwidth_gbs"] > 0
    p = subprocess.run([str(BUILD / "bin" / "para-bench-peaks"), "--threads", "2", "--bandwidth-bytes",
                        str(64 << 20), "--passes", "2", "--json"], check=True, capture_output=True, text=True)
    peaks = json.loads(p.stdout)
    for k in ("read_bandwidth_gbs", "fma_avx512_gflops", "fma_avx2_gflops", "dot_bf16_gflops"):
        assert k in peaks and peaks[k] >= 0
    assert peaks["read_bandwidth_gbs"] > 0 and peaks["fma_avx2_gflops"] > 0


def synthetic():
    facts = {"params": 1_100_048_384, "matmul_params": 1_034_465_280, "norm_params": 92_160, "layers": 22,
             "hidden": 2048, "heads": 32, "kv_heads": 4, "ffn": 5632, "vocab": 32000, "stored_dtype": ["BF16"]}
    samples, cells = [], []

    def add(side, metric, values, clean=True, r=0):
        for v in values:
            samples.append({"side": side, "metric": metric, "value": v, "round": r, "cell": "c",
                            "others_cpu": 0.0 if clean else 0.5, "clean": clean})
        cells.append({"round": r, "side": side, "cell": "c", "others_cpu": 0.0 if clean else 0.5, "clean": clean,
                      "attempts": 1 if clean else 4, "seconds": 1.0})

    add("peaks", "read_bandwidth_gbs", [24.0])
    add("peaks", "read_bandwidth_gbs", [26.0])
    add("peaks", "read_bandwidth_gbs", [40.0], clean=False)  # a disturbed cell does not count
    add("peaks", "fma_avx512_gflops", [300.0])
    add("peaks", "fma_avx2_gflops", [150.0])
    add("ours", "decode_1", [14.0, 15.0])
    add("ours", "decode_1", [2.0], clean=False)
    add("ours", "decode_8", [70.0, 60.0])
    add("ours", "decode_32", [80.0, 76.0])
    add("ours", "prefill", [100.0, 110.0])
    add("omp/f16", "decode_1", [12.0, 12.5, 13.0, 12.5, 12.5, 12.0])
    add("omp/f16", "prefill", [90.0, 95.0, 100.0, 95.0, 95.0, 95.0])
    add("omp/f16", "decode_8", [50.0, 50.0])
    add("omp/f16", "decode_32", [64.0, 64.0])
    add("omp/f32", "decode_1", [6.0])
    add("omp/f32", "prefill", [60.0])
    add("omp/f32", "decode_8", [25.0])
    add("omp/f32", "decode_32", [30.0], clean=False)  # only disturbed samples: used, and flagged
    raw = {"samples": samples, "cells": cells, "peers": ["omp/f16", "omp/f32"], "primary_peer": "omp/f16",
           "peaks_config": {"threads": 2, "bandwidth_bytes": 2 << 30, "bandwidth_passes": 10}}
    return raw, facts


def test_summary_and_table():
    a = peer.parse_args(["--model", "m"])
    raw, facts = synthetic()
    s = peer.summarize(raw, facts, a)
    assert s["peaks"]["read_bandwidth_gbs"] == 26.0  # the best clean one
    assert s["ours"] == {"decode_1": 14.5, "decode_8": 65.0, "decode_32": 78.0, "prefill": 105.0}
    assert s["peers"]["omp/f16"] == {"decode_1": 12.5, "prefill": 95.0, "decode_8": 50.0, "decode_32": 64.0}
    assert s["peers"]["omp/f32"]["decode_32"] == 30.0 and s["unclean"] == ["omp/f32:decode_32"]
    bytes16 = 2 * facts["matmul_params"] + 4 * facts["norm_params"]
    assert s["bounds"]["decode_1_bound_2byte"] == pytest.approx(26e9 / bytes16)
    t = {x["key"]: x for x in s["targets"]}
    assert t["decode_1"]["value"] == pytest.approx(14.5 / 12.5) and t["decode_1"]["pass"]
    assert t["decode_8"]["value"] == pytest.approx(1.3) and t["decode_8"]["pass"]
    assert t["decode_32"]["value"] == pytest.approx(78 / 64) and t["decode_32"]["pass"]
    assert t["prefill"]["pass"]
    assert t["bw_bound_1"]["value"] == pytest.approx(14.5 / (26e9 / bytes16)) and t["bw_bound_1"]["pass"]
    assert t["fma_peak_32"]["value"] == pytest.approx(2 * facts["matmul_params"] * 78 / 300e9)
    assert not t["fma_peak_32"]["pass"]
    assert s["cells"]["run"] == len(raw["cells"]) and s["cells"]["remeasured"] == 3 * 3
    result = {"summary": s, "raw": raw,
              "meta": {"args": vars(a), "builds": ["omp"], "model_dir": "m", "model": facts, "rounds": 2,
                       "our_dtype": "F32", "peer_builds": {"omp": {"build_seconds": 600.0}}}}
    text = peer.table(result)
    assert "llama.cpp F16" in text and "llama.cpp F32" in text
    row = next(line for line in text.splitlines() if line.startswith("decode, 8 sequences"))
    assert row.split()[-5:] == ["65.00", "50.00", "1.300", "25.00", "2.600"]
    row = next(line for line in text.splitlines() if line.startswith("decode, 32 sequences"))
    assert "30.00*" in row
    assert text.count("PASS") == 5 and text.count("FAIL") == 1


def test_quick_and_builds_flags():
    a = peer.parse_args(["--quick", "--builds", "both", "--our-dtype", "bf16", "--our-kv-dtype", "f16"])
    assert (a.rounds, a.reps) == (1, 1) and a.builds == ["omp", "noomp"]
    assert a.our_dtype == "bf16" and a.our_kv_dtype == "f16"
    with pytest.raises(SystemExit):
        peer.parse_args(["--model", "m", "--peer-types", "q4_0"])
