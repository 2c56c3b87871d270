#!/usr/bin/env python3
"""Our engine against llama.cpp (built from source) on the same model: decode at batch 1, 8 and
32 parallel sequences, prefill of 512 tokens, with this machine's bandwidth and FMA peaks.

The peer is llama.cpp as vendored by the PyPI package llama-cpp-python==0.3.16 (the project's
targets are stated against it): the script downloads its source distribution with pip, extracts
it under --work (default build/peer, never committed) and builds the vendored tree's
`llama-bench` and `llama-batched-bench` with CMake (Release, GGML_NATIVE=ON, OpenMP on or off, -j2),
once; later runs reuse the build. The model directory (safetensors F32, F16 or BF16) is converted
to GGUF F16 and F32 by bench/hf_to_gguf.py (cached next to the model).

In one run, for --rounds rounds, it measures in short cells, ours and the peer alternating (and
which goes first alternating between rounds: A B A B | B A B A):
  - para-bench-peaks: read bandwidth and FMA peaks (the best clean pass of the run counts);
  - llama.cpp, for each build and GGUF type: --reps times `llama-bench -p 0 -n TG -r 1 -t 2`
    (batch 1) and `llama-bench -p 512 -n 0 -r 1` (pp512), then `llama-batched-bench -pps -npp 64
    -ntg N -npl P` for P = 8 and 32 (aggregate decode tokens/s of P sequences at a 64-token context);
  - ours: `para-bench-engine --model DIR --batches 1` then `--batches 8,32` (--prompt-len 64
    --prefill-len 512 --threads 2; + --dtype / --kv-cache-dtype when --our-dtype / --our-kv-dtype
    are given); its 1 x 512 prefill is compared with pp512.
Each cell first waits for the machine to be idle and is measured again when other processes took
CPU time while it ran (see "other processes" below). It prints medians of the clean samples,
ours/peer ratios, the bounds the peaks imply, and the project's targets with PASS/FAIL; --json
writes everything, every sample included.

  bench/peer_llamacpp_bench.py --model build/bench/tinyllama-bf16 [--our-model DIR]
      [--our-dtype bf16 --our-kv-dtype f16] [--rounds 2] [--reps 3] [--json out.json]
  bench/peer_llamacpp_bench.py --quick          # small model, 1 round, 1 repetition (smoke test)
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import hf_to_gguf  # noqa: E402

PEER_PACKAGE, PEER_VERSION = "llama-cpp-python", "0.3.16"
PEER_TOOLS = ("llama-bench", "llama-batched-bench")
# CMake options of the peer build; GGML_OPENMP is added per build variant.
PEER_CMAKE = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
              "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF"]
BUILDS = {"omp": ["-DGGML_OPENMP=ON"], "noomp": ["-DGGML_OPENMP=OFF"]}
DEFAULT_BUILD = "omp"

# The project's targets, against llama.cpp F16 (first build variant) on this machine.
TARGETS = [
    # (key, description, metric of ours, kind, threshold)
    ("decode_1", "batch 1 >= 1.1 x llama.cpp F16", "decode_1", "ratio", 1.1),
    ("decode_8", "8 sequences >= 1.3 x llama.cpp F16", "decode_8", "ratio", 1.3),
    ("decode_32", "32 sequences >= 1.2 x llama.cpp F16", "decode_32", "ratio", 1.2),
    ("prefill", "prefill >= llama.cpp pp (1 x 512 tokens)", "prefill", "ratio", 1.0),
    ("bw_bound_1", "batch 1 >= 90% of the 2-byte bandwidth bound", "decode_1", "bw_bound", 0.9),
    ("fma_peak_32", "batch 32 >= 80% of the AVX-512 FMA peak", "decode_32", "fma_peak", 0.8),
]
METRICS = [("decode_1", "decode, batch 1"), ("decode_8", "decode, 8 sequences (aggregate)"),
           ("decode_32", "decode, 32 sequences (aggregate)"), ("prefill", "prefill, 1 x 512 tokens")]


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


# ---- other processes on this shared machine ------------------------------------------------------
#
# Both engines spin-wait between the parallel parts of a step, so a thread that someone else's
# compile takes off its core stalls the whole step, and not by the same amount for both (llama.cpp
# drops from 12.5 to 1-4 tok/s at batch 1 beside a 2-job compile; ours by about half): a run beside
# other work measures the neighbours. The work is therefore cut into short cells (one llama.cpp
# tool invocation, one para-bench-engine run); each cell waits (up to --wait-idle seconds) until
# the machine is idle, records the share of the CPUs other processes took while it ran, and is
# measured again (up to --retries times) when that share is over --idle-threshold. Medians use
# the clean samples only (all of them, flagged, where a cell never ran clean).

def cpu_times() -> tuple:
    """(all jiffies, busy jiffies) of the machine, and this process's children's CPU seconds."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(v), sum(v) - v[3] - v[4], ru.ru_utime + ru.ru_stime


def others_share(before: tuple, after: tuple) -> float:
    """The fraction of the machine's CPU time that other processes used between two cpu_times()."""
    total, busy = after[0] - before[0], after[1] - before[1]
    ours_jiffies = (after[2] - before[2]) * os.sysconf("SC_CLK_TCK")
    return max(0.0, (busy - ours_jiffies) / total) if total > 0 else 0.0


def wait_idle(timeout: float, threshold: float) -> float:
    """Waits until other processes use under `threshold` of the CPUs over 3 s; returns the wait."""
    t0 = time.time()
    while True:
        a = cpu_times()
        time.sleep(3)
        share = others_share(a, cpu_times())
        waited = time.time() - t0
        if share < threshold or waited >= timeout:
            if waited > 5:
                log(f"    waited {waited:.0f} s for an idle machine")
            return waited


def run_cell(name: str, fn, a) -> tuple:
    """(fn()'s result, others' CPU share, clean?) for the cleanest of up to 1 + a.retries runs."""
    best = None
    for attempt in range(a.retries + 1):
        wait_idle(a.wait_idle, a.idle_threshold)
        before = cpu_times()
        out = fn()
        share = others_share(before, cpu_times())
        if best is None or share < best[1]:
            best = (out, share)
        if share <= a.idle_threshold:
            return out, share, True
        log(f"    {name}: other processes took {100 * share:.0f}% of the CPUs meanwhile"
            + ("; measuring again" if attempt < a.retries else "; kept, flagged"))
    return best[0], best[1], False

# ---- the peer: source and build -----------------------------------------------------------------

def peer_source(work: pathlib.Path) -> pathlib.Path:
    """The vendored llama.cpp tree of the llama-cpp-python sdist, downloaded and extracted once."""
    src = work / "src" / f"llama_cpp_python-{PEER_VERSION}"
    tree = src / "vendor" / "llama.cpp"
    if (tree / "CMakeLists.txt").exists():
        return tree
    dl = work / "download"
    dl.mkdir(parents=True, exist_ok=True)
    sdist = dl / f"llama_cpp_python-{PEER_VERSION}.tar.gz"
    if not sdist.exists():
        log(f"downloading the {PEER_PACKAGE}=={PEER_VERSION} source distribution from PyPI ...")
        run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             "--disable-pip-version-check", "-q", "-d", dl, f"{PEER_PACKAGE}=={PEER_VERSION}"])
    with tarfile.open(sdist) as t:
        t.extractall(work / "src", filter="data")
    if not (tree / "CMakeLists.txt").exists():
        sys.exit(f"{sdist}: no vendor/llama.cpp in the source distribution")
    return tree


def peer_build(work: pathlib.Path, variant: str, jobs: int) -> dict:
    """Builds llama-bench and llama-batched-bench (CMake options PEER_CMAKE + BUILDS[variant]) once."""
    bdir = work / f"build-{variant}"
    options = PEER_CMAKE + BUILDS[variant]
    info_path = bdir / "para-build.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if info.get("options") == options and all((bdir / "bin" / t).exists() for t in PEER_TOOLS):
            return info
    tree = peer_source(work)
    log(f"building llama.cpp ({variant}: {' '.join(options)}) with -j{jobs}; minutes ...")
    t0 = time.time()
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    run(["cmake", "-S", tree, "-B", bdir, *gen, *options])
    run(["cmake", "--build", bdir, "-j", str(jobs), "--target", *PEER_TOOLS])
    info = {"variant": variant, "options": options, "build_seconds": round(time.time() - t0, 1),
            "jobs": jobs, "source": f"{PEER_PACKAGE}=={PEER_VERSION} (PyPI sdist), vendor/llama.cpp",
            "built": datetime.datetime.now().isoformat(timespec="seconds"), "bin": str(bdir / "bin")}
    info_path.write_text(json.dumps(info, indent=1))
    log(f"built in {info['build_seconds']:.0f} s")
    return info


# ---- measurements --------------------------------------------------------------------------------

def measure_peaks(build: pathlib.Path, threads: int) -> dict:
    p = run([build / "bin" / "para-bench-peaks", "--threads", threads, "--json"])
    return json.loads(p.stdout.strip().splitlines()[-1])


def llama_bench(bin_dir: pathlib.Path, gguf: pathlib.Path, a, pp: int, tg: int) -> list:
    """tokens/s of one llama-bench test (one repetition, after its warm-up): pp`pp` (tg = 0) or
    tg`tg` (pp = 0)."""
    p = run([bin_dir / "llama-bench", "-m", gguf, "-p", pp, "-n", tg, "-t", a.threads, "-r", 1, "-o", "json"])
    tests = json.loads(p.stdout)
    if len(tests) != 1:
        sys.exit(f"llama-bench: expected one test, got {len(tests)}")
    return tests[0]["samples_ts"]


def batched_bench(bin_dir: pathlib.Path, gguf: pathlib.Path, a, npl: int) -> dict:
    """Aggregate decode tokens/s (S_TG) of `npl` parallel sequences. The 64-token prompt is
    prefilled once and copied to every sequence (-pps; each sequence still has its own KV cells,
    so decode reads and computes as much as with distinct prompts, and the cell is 2-3 times
    shorter than with `npl` prompt prefills)."""
    ctx = npl * (a.batched_prompt + a.batched_gen)
    p = run([bin_dir / "llama-batched-bench", "-m", gguf, "-c", ctx, "-b", 2048, "-ub", 512, "-pps",
             "-npp", a.batched_prompt, "-ntg", a.batched_gen, "-npl", npl,
             "-t", a.threads, "-tb", a.threads, "--output-format", "jsonl"])
    for line in (p.stdout + "\n" + p.stderr).splitlines():
        if line.startswith('{"n_kv_max"'):
            r = json.loads(line)
            if r["pl"] == npl:
                return {"decode": r["speed_tg"], "prefill": r["speed_pp"]}
    sys.exit(f"llama-batched-bench gave no result for {npl} parallel sequences:\n{p.stderr[-2000:]}")


def ours(build: pathlib.Path, model: pathlib.Path, a, batches: list) -> dict:
    """para-bench-engine's decode (per batch) and prefill tokens/s, and its bandwidth figure."""
    cmd = [build / "bin" / "para-bench-engine", "--model", model, "--batches", ",".join(map(str, batches)),
           "--prompt-len", a.batched_prompt, "--decode-steps", a.decode_steps, "--prefill-len", a.prefill_len,
           "--threads", a.threads]
    if a.our_dtype:
        cmd += ["--dtype", a.our_dtype]
    if a.our_kv_dtype:
        cmd += ["--kv-cache-dtype", a.our_kv_dtype]
    cmd += a.our_args
    return parse_ours(run(cmd).stdout)


def parse_ours(text: str) -> dict:
    out = {"decode": {}}
    for line in text.splitlines():
        if m := re.match(r"decode batch\s+(\d+)\s+([\d.]+)", line):
            out["decode"][int(m.group(1))] = float(m.group(2))
        elif m := re.match(r"prefill 1 x\s+(\d+)\s+([\d.]+)", line):
            out["prefill"] = float(m.group(2))
        elif m := re.match(r"memory (?:read )?bandwidth:\s+([\d.]+)", line):
            out["bandwidth_gbs"] = float(m.group(1))
        elif m := re.match(r"device: .*weights ([a-z0-9]+)", line):
            out["dtype"] = m.group(1)
    if "prefill" not in out or not out["decode"]:
        sys.exit(f"para-bench-engine: unexpected output:\n{text}")
    return out


# ---- model facts ---------------------------------------------------------------------------------

def model_facts(model: pathlib.Path) -> dict:
    """Parameter counts from the checkpoint: all, and those a decode step multiplies (all but the
    embedding table, which is only indexed, unless it is tied to the output)."""
    cfg = json.loads((model / "config.json").read_text())
    tensors = hf_to_gguf.read_tensors(model)
    total = sum(arr.size for arr, _ in tensors.values())
    embed = tensors["model.embed_tokens.weight"][0].size
    tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in tensors
    norms = sum(arr.size for arr, _ in tensors.values() if arr.ndim == 1)
    matmul = total - norms - (0 if tied else embed)
    return {"params": total, "matmul_params": matmul, "norm_params": norms,
            "layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"],
            "heads": cfg["num_attention_heads"], "kv_heads": cfg.get("num_key_value_heads"),
            "ffn": cfg["intermediate_size"], "vocab": cfg["vocab_size"],
            "stored_dtype": sorted({d for _, d in tensors.values()})}


# ---- summary -------------------------------------------------------------------------------------

def median(xs):
    return statistics.median(xs) if xs else None


def pick(samples: list, side: str, metric: str) -> tuple:
    """(values, clean?) of one side's metric: its clean samples, or all of them when none is clean."""
    mine = [x for x in samples if x["side"] == side and x["metric"] == metric]
    clean = [x["value"] for x in mine if x["clean"]]
    return (clean, True) if clean else ([x["value"] for x in mine], not mine)


def summarize(raw: dict, facts: dict, a) -> dict:
    """Medians of the clean samples (the best for the peaks), bounds, ratios and targets."""
    samples = raw["samples"]
    peak_keys = sorted({x["metric"] for x in samples if x["side"] == "peaks"})
    peaks = {k: max(pick(samples, "peaks", k)[0]) for k in peak_keys}
    bw = peaks["read_bandwidth_gbs"]
    fma = peaks.get("fma_avx512_gflops") or peaks.get("fma_avx2_gflops")
    bytes16 = 2 * facts["matmul_params"] + 4 * facts["norm_params"]
    bytes32 = 4 * facts["matmul_params"] + 4 * facts["norm_params"]
    bounds = {"bytes_per_token_2byte": bytes16, "bytes_per_token_4byte": bytes32,
              "decode_1_bound_2byte": bw * 1e9 / bytes16, "decode_1_bound_4byte": bw * 1e9 / bytes32,
              "flops_per_token": 2 * facts["matmul_params"]}
    metrics = ["decode_1", *[f"decode_{n}" for n in a.parallel], "prefill"]
    sides = {}
    unclean = []
    for side in ["ours", *raw["peers"]]:
        sides[side] = {}
        for m in metrics:
            values, clean = pick(samples, side, m)
            sides[side][m] = median(values)
            if not clean:
                unclean.append(f"{side}:{m}")
    ours_m = sides.pop("ours")
    peers = sides

    def of_bounds(m):
        tps_1, tps_32 = m.get("decode_1"), m.get("decode_32")
        return {"decode_1_pct_bw_bound_2byte": tps_1 / bounds["decode_1_bound_2byte"] if tps_1 else None,
                "decode_1_pct_bw_bound_4byte": tps_1 / bounds["decode_1_bound_4byte"] if tps_1 else None,
                "decode_32_pct_fma_peak": (bounds["flops_per_token"] * tps_32 / (fma * 1e9)) if tps_32 and fma else None}

    primary = raw["primary_peer"]
    targets = []
    for key, desc, metric, kind, threshold in TARGETS:
        if ours_m.get(metric) is None:
            continue
        if kind == "ratio":
            value = ours_m[metric] / peers[primary][metric] if peers[primary].get(metric) else None
        elif kind == "bw_bound":
            value = ours_m[metric] / bounds["decode_1_bound_2byte"]
        else:
            value = bounds["flops_per_token"] * ours_m[metric] / (fma * 1e9) if fma else None
        targets.append({"key": key, "target": desc, "kind": kind, "threshold": threshold, "value": value,
                        "pass": value is not None and value >= threshold})
    cells = [x for x in raw.get("cells", [])]
    return {"peaks": peaks, "bounds": bounds, "ours": ours_m, "peers": peers,
            "ours_vs_bounds": of_bounds(ours_m),
            "peers_vs_bounds": {n: of_bounds(m) for n, m in peers.items()},
            "ratios": {n: {k: ours_m[k] / v for k, v in m.items() if v and ours_m.get(k)} for n, m in peers.items()},
            "targets": targets, "unclean": unclean,
            "cells": {"run": len(cells), "clean": sum(1 for c in cells if c["clean"]),
                      "remeasured": sum(c["attempts"] - 1 for c in cells),
                      "others_cpu_max_clean": max([c["others_cpu"] for c in cells if c["clean"]], default=None)}}


def peer_label(name: str, primary_build: str) -> str:
    build, typ = name.split("/")
    return f"llama.cpp {typ.upper()}" + ("" if build == primary_build else f" ({build})")


def table(result: dict) -> str:
    s, meta = result["summary"], result["meta"]
    a = meta["args"]
    primary_build = meta["builds"][0]
    peers = list(s["peers"])
    lines = []
    f = meta["model"]
    lines.append(f"model {meta['model_dir']}: {f['layers']} layers, hidden {f['hidden']}, heads {f['heads']}/"
                 f"{f['kv_heads']} kv, ffn {f['ffn']}, vocab {f['vocab']}, {f['params'] / 1e6:.0f} M params "
                 f"(stored {', '.join(f['stored_dtype'])}); {a['threads']} threads; {meta['rounds']} round(s), "
                 f"medians")
    lines.append(f"ours: para-bench-engine, weights {meta.get('our_dtype') or '?'}"
                 f"{', --dtype ' + a['our_dtype'] if a['our_dtype'] else ''}"
                 f"{', --kv-cache-dtype ' + a['our_kv_dtype'] if a['our_kv_dtype'] else ''}; peer: "
                 f"llama.cpp from {PEER_PACKAGE}=={PEER_VERSION} ("
                 + "; ".join(f"{b}: built in {meta['peer_builds'][b]['build_seconds']:.0f} s"
                             for b in meta["builds"]) + ")")
    lines.append("")
    head = f"{'tokens/s':<34}{'ours':>8} "
    for n in peers:
        lab = peer_label(n, primary_build)
        head += f"{lab:>{max(16, len(lab) + 2) - 1}} {'ours/peer':>10}"
    lines.append(head)
    for key, desc in METRICS:
        if key not in s["ours"]:
            continue
        desc = desc.replace("512", str(a["prefill_len"]))
        flag = lambda side: "*" if f"{side}:{key}" in s.get("unclean", []) else " "  # noqa: E731
        row = f"{desc:<34}{s['ours'][key]:>8.2f}{flag('ours')}"
        for n in peers:
            lab = peer_label(n, primary_build)
            v = s["peers"][n].get(key)
            row += f"{v:>{max(16, len(lab) + 2) - 1}.2f}{flag(n)}{s['ours'][key] / v:>10.3f}"
        lines.append(row)
    pk, b = s["peaks"], s["bounds"]
    lines.append("")
    pc = result["raw"].get("peaks_config", {})
    lines.append(f"peaks (best in this run): read bandwidth {pk['read_bandwidth_gbs']:.1f} GB/s "
                 f"({pc.get('bandwidth_bytes', 0) / 2**30:.0f} GiB, {pc.get('threads')} threads; "
                 f"{pk.get('read_bandwidth_1thread_gbs', 0):.1f} on 1); "
                 f"FMA AVX-512 {pk['fma_avx512_gflops']:.0f} GFLOP/s, AVX2 {pk['fma_avx2_gflops']:.0f}, "
                 f"AVX512-BF16 dot {pk.get('dot_bf16_gflops', 0):.0f}")
    lines.append(f"batch-1 decode bound: {b['decode_1_bound_2byte']:.2f} tok/s with 2-byte weights "
                 f"({b['bytes_per_token_2byte'] / 1e9:.2f} GB/token), {b['decode_1_bound_4byte']:.2f} with 4-byte "
                 f"({b['bytes_per_token_4byte'] / 1e9:.2f} GB/token); {b['flops_per_token'] / 1e9:.2f} GFLOP/token")
    ob = s["ours_vs_bounds"]
    lines.append(f"ours: batch 1 at {100 * ob['decode_1_pct_bw_bound_2byte']:.0f}% of the 2-byte bound "
                 f"({100 * ob['decode_1_pct_bw_bound_4byte']:.0f}% of the 4-byte bound); "
                 + (f"32 sequences at {100 * ob['decode_32_pct_fma_peak']:.1f}% of the FMA peak"
                    if ob.get("decode_32_pct_fma_peak") is not None else ""))
    for n, pb in s["peers_vs_bounds"].items():
        bound = "2-byte" if n.endswith("f16") else "4-byte"
        pct = pb[f"decode_1_pct_bw_bound_{bound.replace('-', '')}"]
        lines.append(f"{peer_label(n, primary_build)}: batch 1 at {100 * pct:.0f}% of the {bound} bound"
                     + (f"; 32 sequences at {100 * pb['decode_32_pct_fma_peak']:.1f}% of the FMA peak"
                        if pb.get("decode_32_pct_fma_peak") is not None else ""))
    c = s["cells"]
    lines.append(f"{c['run']} measurement cells, {c['clean']} clean (others under {100 * a['idle_threshold']:.0f}% of the "
                 f"CPUs; {c['remeasured']} re-measured because of them)"
                 + (f"; * = no clean sample: {', '.join(s['unclean'])}" if s.get("unclean") else ""))
    lines.append("")
    lines.append(f"{'target (vs ' + peer_label(result['raw']['primary_peer'], primary_build) + ')':<52}"
                 f"{'measured':>10}{'':>3}result")
    for t in s["targets"]:
        if t["key"] == "prefill":
            t = {**t, "target": t["target"].replace("512", str(a["prefill_len"]))}
        v = "n/a" if t["value"] is None else (f"{t['value']:.3f}x" if t["kind"] == "ratio" else f"{100 * t['value']:.1f}%")
        lines.append(f"{t['target']:<52}{v:>10}{'':>3}{'PASS' if t['pass'] else 'FAIL'}")
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=pathlib.Path, help="HF LLaMA directory (safetensors F32/F16/BF16): the peer's "
                    "GGUFs are converted from it, and ours runs it unless --our-model is given")
    ap.add_argument("--our-model", type=pathlib.Path, help="the directory our engine loads (default --model)")
    ap.add_argument("--our-dtype", help="passed to para-bench-engine as --dtype (auto|f32|bf16|f16)")
    ap.add_argument("--our-kv-dtype", help="passed to para-bench-engine as --kv-cache-dtype (f32|f16|bf16)")
    ap.add_argument("--our-args", nargs=argparse.REMAINDER, default=[],
                    help="further para-bench-engine flags (must come last)")
    ap.add_argument("--peer-types", default="f16,f32", help="GGUF types the peer runs (f16 first: the targets)")
    ap.add_argument("--builds", default=DEFAULT_BUILD,
                    help=f"peer builds to run: omp, noomp or both (omp,noomp); the first is the targets' "
                         f"(default {DEFAULT_BUILD}, the faster one here)")
    ap.add_argument("--peers", help="explicit BUILD/TYPE list instead of --builds x --peer-types, the first "
                    "the targets' (e.g. omp/f16,noomp/f16,omp/f32)")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of peer and ours (medians over them)")
    ap.add_argument("--reps", type=int, default=3,
                    help="llama-bench runs (one repetition each) of tg and pp per peer and round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill-len", type=int, default=512)
    ap.add_argument("--tg", type=int, default=64, help="llama-bench's generated tokens (batch 1)")
    ap.add_argument("--parallel", default="8,32", help="parallel sequences for batched decode")
    ap.add_argument("--batched-prompt", type=int, default=64, help="prompt tokens of each parallel sequence")
    ap.add_argument("--batched-gen", type=int, default=32, help="generated tokens per sequence (llama-batched-bench)")
    ap.add_argument("--decode-steps", type=int, default=16, help="our timed decode steps per batch")
    ap.add_argument("--wait-idle", type=float, default=600,
                    help="seconds to wait, before each measurement, for other processes to leave the CPUs")
    ap.add_argument("--idle-threshold", type=float, default=0.05,
                    help="the share of the CPUs others may use for the machine to count as idle")
    ap.add_argument("--retries", type=int, default=3,
                    help="measurements again of a cell during which others used more than --idle-threshold")
    ap.add_argument("--jobs", type=int, default=2, help="parallel jobs of the peer build")
    ap.add_argument("--work", type=pathlib.Path, default=ROOT / "build" / "peer",
                    help="sdist, source and builds of the peer (default build/peer)")
    ap.add_argument("--gguf-dir", type=pathlib.Path, help="where the GGUFs are cached (default: the model directory)")
    ap.add_argument("--build", type=pathlib.Path, default=ROOT / "build", help="our build directory")
    ap.add_argument("--json", type=pathlib.Path, help="write the results (raw samples included) here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: a small model made here (unless --model), 1 round, 1 repetition, short runs")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.reps, a.tg, a.batched_gen, a.decode_steps, a.prefill_len = 1, 1, 16, 8, 4, 128
    a.parallel = [int(x) for x in a.parallel.split(",") if x]
    a.peer_types = [t for t in a.peer_types.split(",") if t]
    a.builds = list(BUILDS) if a.builds == "both" else [b for b in a.builds.split(",") if b]
    for b in a.builds:
        if b not in BUILDS:
            ap.error(f"--builds: unknown build {b!r} (omp, noomp, both)")
    for t in a.peer_types:
        if t not in ("f16", "f32"):
            ap.error(f"--peer-types: {t!r} is not f16 or f32")
    if a.peers:
        a.peers = [x for x in a.peers.split(",") if x]
        for x in a.peers:
            b, _, t = x.partition("/")
            if b not in BUILDS or t not in ("f16", "f32"):
                ap.error(f"--peers: {x!r} is not BUILD/TYPE (omp|noomp / f16|f32)")
        a.builds = list(dict.fromkeys(x.split("/")[0] for x in a.peers))
        a.peer_types = list(dict.fromkeys(x.split("/")[1] for x in a.peers))
    else:
        a.peers = [f"{b}/{t}" for b in a.builds for t in a.peer_types]
    if not a.model and not a.quick:
        ap.error("--model is required (or --quick)")
    return a


def quick_model(a) -> pathlib.Path:
    d = a.work / "quick-model"
    if not (d / "config.json").exists():
        run([a.build / "bin" / "para-tool", "make-tiny-model", d, "--layers", 4, "--hidden", 512, "--heads", 8,
             "--kv-heads", 2, "--ffn", 1408, "--vocab", 32000, "--no-tokenizer", "--dtype", "bf16"])
    return d


def git_commit() -> str:
    p = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return p.stdout.strip() or "unknown"


def main(argv=None):
    a = parse_args(argv)
    a.work = a.work.resolve()
    a.build = a.build.resolve()
    model = (a.model or quick_model(a)).resolve()
    our_model = (a.our_model or model).resolve()
    for tool in ("para-bench-engine", "para-bench-peaks"):
        if not (a.build / "bin" / tool).exists():
            sys.exit(f"{a.build / 'bin' / tool} is missing: run scripts/build.sh")
    builds = {b: peer_build(a.work, b, a.jobs) for b in a.builds}
    ggufs = {t: hf_to_gguf.ensure(model, a.gguf_dir or model, t, log=log) for t in a.peer_types}
    peers = [(x, pathlib.Path(builds[x.split("/")[0]]["bin"]), ggufs[x.split("/")[1]]) for x in a.peers]
    facts = model_facts(model)
    raw = {"samples": [], "cells": [], "peers": [name for name, _, _ in peers], "primary_peer": peers[0][0]}
    t_start = time.time()

    def cell(r, side, name, fn, to_samples):
        log(f"{f'round {r + 1}/{a.rounds}' if r < a.rounds else 'end'}: {name} ...")
        t0 = time.time()
        attempts = [0]

        def counted():
            attempts[0] += 1
            return fn()
        out, share, clean = run_cell(name, counted, a)
        raw["cells"].append({"round": r, "side": side, "cell": name, "others_cpu": round(share, 3), "clean": clean,
                             "attempts": attempts[0], "seconds": round(time.time() - t0, 1)})
        for metric, value in to_samples(out):
            raw["samples"].append({"side": side, "metric": metric, "value": value, "round": r, "cell": name,
                                   "others_cpu": round(share, 3), "clean": clean})
        return out

    def peaks_cell(r):
        def samples(o):
            raw["peaks_config"] = {k: o[k] for k in ("threads", "bandwidth_bytes", "bandwidth_passes")}
            return [(k, v) for k, v in o.items() if k.endswith(("_gbs", "_gflops"))]
        cell(r, "peaks", "peaks (para-bench-peaks)", lambda: measure_peaks(a.build, a.threads), samples)

    def ours_cell(r, batches):
        def samples(o):
            out = [(f"decode_{b}", v) for b, v in o["decode"].items()] + [("prefill", o["prefill"])]
            raw.setdefault("our_dtype", o.get("dtype"))
            return out
        cell(r, "ours", f"ours --batches {','.join(map(str, batches))}", lambda: ours(a.build, our_model, a, batches),
             samples)

    def peer_cells(r, kind):
        if kind == "batch1":
            # One repetition per cell (short cells are likelier to run undisturbed), the peers in turn.
            for rep in range(a.reps):
                for name, bin_dir, gguf in peers:
                    cell(r, name, f"llama.cpp {name} tg{a.tg} ({rep + 1}/{a.reps})",
                         lambda: llama_bench(bin_dir, gguf, a, 0, a.tg), lambda o: [("decode_1", v) for v in o])
                    cell(r, name, f"llama.cpp {name} pp{a.prefill_len} ({rep + 1}/{a.reps})",
                         lambda: llama_bench(bin_dir, gguf, a, a.prefill_len, 0), lambda o: [("prefill", v) for v in o])
        else:
            for n in a.parallel:
                for name, bin_dir, gguf in peers:
                    cell(r, name, f"llama.cpp {name} {n} sequences", lambda: batched_bench(bin_dir, gguf, a, n),
                         lambda o, n=n: [(f"decode_{n}", o["decode"])])

    for r in range(a.rounds):
        peaks_cell(r)
        # Ours and the peer alternate, batch 1 + prefill then the batches, and the side that goes
        # first alternates between rounds: A B A B | B A B A.
        steps = [lambda: peer_cells(r, "batch1"), lambda: ours_cell(r, [1]),
                 lambda: peer_cells(r, "batched"), lambda: ours_cell(r, a.parallel)]
        if r % 2 == 1:
            steps = [steps[1], steps[0], steps[3], steps[2]]
        for step in steps:
            step()
    peaks_cell(a.rounds)
    args = {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(a).items()}
    result = {
        "meta": {"date": datetime.date.today().isoformat(), "commit": git_commit(),
                 "machine": f"{os.cpu_count()} cores, {platform.machine()}", "model_dir": str(model),
                 "our_model_dir": str(our_model), "model": facts, "rounds": a.rounds, "args": args,
                 "builds": a.builds, "peer_builds": builds, "ggufs": {t: str(p) for t, p in ggufs.items()},
                 "our_dtype": raw.get("our_dtype"), "seconds": round(time.time() - t_start, 1),
                 "command": " ".join([os.path.relpath(__file__, ROOT), *(argv if argv is not None else sys.argv[1:])])},
        "raw": raw,
    }
    result["summary"] = summarize(raw, facts, a)
    text = table(result)
    print(text)
    if a.json:
        result["table"] = text
        a.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
