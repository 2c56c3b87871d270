#!/usr/bin/env python3
"""Sequence groups and prefix caching through the real para-server (issue 16's benchmarks).

1. Beam search: PARA vs LoRA (r=16, all projections) vs the base model at beam width 1 (greedy)
   and 3, the PARA paper's multi-tenant setting scaled to this machine. Closed loop, every
   request from a distinct tenant with its own adapter; the three kinds are interleaved per beam
   width so drift on a shared machine hits them alike. Throughput is returned tokens per second
   (each request returns its best sequence of --output-len tokens).
2. Time to first token with a shared system prompt of --prefix-len tokens (the same for every
   request, then a few tokens of its own), sent one at a time, with prefix caching off and on
   (two server runs, otherwise identical). Base and LoRA requests reuse the cached prefix; a PARA
   request's KV depends on vectors computed from its whole prompt, so PARA reuses only identical
   whole prompts (docs/scheduler.md, "Prefix caching") and gains nothing here: it is shown as the
   control.

  bench/groups_bench.py --out build/bench-groups                 # default model (SmolLM2-135M), ~10 min
  bench/groups_bench.py --quick --out build/bench-groups-quick   # tiny random model, < 1 minute

Writes OUT/report.md and OUT/results.json.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

BENCH = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import compare  # noqa: E402

ROOT = BENCH.parent
TYPES = compare.TYPES
DEFAULT_MODEL = ROOT / "build" / "models" / "smollm2-135m-instruct"


def settings(quick: bool) -> dict:
    if quick:
        return dict(tenants=4, concurrency=4, input_len=16, output_len=8, requests=8, beams=[1, 3],
                    prefix_len=200, suffix_len=8, prefix_requests=4, kv_blocks=512)
    return dict(tenants=8, concurrency=8, input_len=64, output_len=32, requests=16, beams=[1, 3],
                prefix_len=1000, suffix_len=16, prefix_requests=12, kv_blocks=2048)


def beam_cells(b, server, work, w) -> list:
    out = []
    for beam in w["beams"]:
        for t in TYPES:
            flags = dict(tenants=w["tenants"], popularity="distinct", concurrency=w["concurrency"],
                         num_requests=w["requests"], input_len=w["input_len"], output_len=w["output_len"])
            if beam > 1:
                flags["beam_width"] = beam
            r = compare.bench(b, server.target, t, work, f"beam{beam}-{t}", **flags)
            r["experiment"], r["x"] = "beam", beam
            out.append(r)
    return out


def prefix_cells(b, server, work, w, caching: str) -> list:
    out = []
    for t in TYPES:
        # One tenant: its adapter (or the base model) sees the prefix on every request.
        r = compare.bench(b, server.target, t, work, f"prefix-{caching}-{t}", tenants=1,
                          popularity="distinct", concurrency=1, num_requests=w["prefix_requests"], warmup=1,
                          input_len=w["suffix_len"], output_len=4, shared_prefix_len=w["prefix_len"])
        r["experiment"], r["x"] = f"prefix-{caching}", 0
        out.append(r)
    return out


def server_stats(target) -> dict:
    """Prefix-cache counters from the Admin API's GetServerStats."""
    sys.path.insert(0, str(ROOT / "clients" / "python"))
    import grpc
    from para.v1 import admin_pb2, admin_pb2_grpc
    with grpc.insecure_channel(target) as ch:
        s = admin_pb2_grpc.AdminStub(ch).GetServerStats(
            admin_pb2.GetServerStatsRequest(), metadata=[("authorization", "Bearer bench-admin-key")], timeout=10)
    return {k: getattr(s, k) for k in ("prefix_cache_query_tokens", "prefix_cache_hit_tokens",
                                        "prefix_cache_blocks")}


def report(results, meta) -> str:
    by = {(r["experiment"], r["x"], r["type"]): r for r in results}
    lines = [f"# Sequence groups and prefix caching: {meta['model_name']}", "",
             f"{meta['date']}, commit {meta['commit']}, {meta['machine']}.",
             f"Command: `{meta['command']}` ({meta['minutes']:.1f} minutes).", "",
             "## Beam search: PARA vs LoRA vs base", "",
             f"Closed loop, {meta['concurrency']} requests in flight from {meta['tenants']} distinct tenants "
             f"(each its own PARA adapter and its own LoRA adapter, r=16 on all projections), "
             f"{meta['input_len']}-token prompts, {meta['output_len']} returned tokens per request, "
             f"{meta['requests']} requests per cell. Beam 1 is greedy decoding.", "",
             "| beam width | base tok/s | PARA tok/s | LoRA tok/s | PARA/base | LoRA/base | PARA/LoRA "
             "| E2E p50 ms base / PARA / LoRA |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for beam in meta["beams"]:
        r = {t: by[("beam", beam, t)] for t in TYPES}
        tp = {t: r[t]["output_throughput"] for t in TYPES}
        lines.append(f"| {beam} | {tp['base']:.2f} | {tp['para']:.2f} | {tp['lora']:.2f} "
                     f"| {compare.ratio(tp['para'], tp['base'])} | {compare.ratio(tp['lora'], tp['base'])} "
                     f"| {compare.ratio(tp['para'], tp['lora'])} "
                     f"| {r['base']['e2e_ms']['p50']:.0f} / {r['para']['e2e_ms']['p50']:.0f} "
                     f"/ {r['lora']['e2e_ms']['p50']:.0f} |")
    lines += ["", f"## Time to first token with a shared {meta['prefix_len']}-token system prompt", "",
              f"One tenant, one request at a time ({meta['prefix_requests']} measured after one warm-up), each "
              f"the same {meta['prefix_len']}-token prefix followed by {meta['suffix_len']} tokens of its own; "
              "two server runs, prefix caching off and on.", "",
              "| kind | TTFT p50 ms, caching off | TTFT p50 ms, caching on | speed-up | TTFT p90 off / on |",
              "| --- | --- | --- | --- | --- |"]
    for t in TYPES:
        off, on = by[("prefix-off", 0, t)], by[("prefix-on", 0, t)]
        lines.append(f"| {t} | {off['ttft_ms']['p50']:.1f} | {on['ttft_ms']['p50']:.1f} "
                     f"| {compare.ratio(off['ttft_ms']['p50'], on['ttft_ms']['p50'])}x "
                     f"| {off['ttft_ms']['p90']:.1f} / {on['ttft_ms']['p90']:.1f} |")
    lines += ["", "Server stats after the caching-on run:", "", "```", ", ".join(f"{k} {v}" for k, v in meta["stats"].items()), "```", "",
              f"Requests: {sum(r['completed'] for r in results)} completed, "
              f"{sum(r['failed'] for r in results)} failed.", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("--model", type=pathlib.Path, help="model directory (default: the default model, "
                    "made by scripts/make-default-model.sh; with --quick a tiny random model)")
    ap.add_argument("--build", type=pathlib.Path, default=ROOT / "build")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny random model, few requests")
    args = ap.parse_args()
    t0 = time.monotonic()
    b = compare.bins(args.build.resolve())
    w = settings(args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    work = (args.out / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.model:
        model = args.model.resolve()
    elif args.quick:
        model = None  # compare.prepare writes the tiny shape
    else:
        model = DEFAULT_MODEL
        if not (model / "config.json").exists():
            subprocess.run(["bash", str(ROOT / "scripts" / "make-default-model.sh"), str(model)], check=True)
    model, adapters, tenants_file = compare.prepare(b, "tiny", work, w["tenants"], model)
    results, stats = [], {}
    for caching in ("off", "on"):
        flag = f"--enable_prefix_caching={'true' if caching == 'on' else 'false'}"
        server = compare.Server(b, model, adapters, tenants_file, work, w["kv_blocks"], w["concurrency"] * 3,
                                extra=[flag])
        try:
            print(f"para-server on {server.target}, prefix caching {caching}", flush=True)
            for t in TYPES:  # every adapter loaded and every path warm before measuring
                compare.bench(b, server.target, t, work, f"warmup-{caching}-{t}", tenants=w["tenants"],
                              popularity="distinct", concurrency=w["concurrency"], num_requests=w["tenants"],
                              input_len=8, output_len=2)
            if caching == "on":
                results += beam_cells(b, server, work, w)
            results += prefix_cells(b, server, work, w, caching)
            if caching == "on":
                stats = server_stats(server.target)
        finally:
            server.stop()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    meta = dict(model_name=model.name, commit=commit, date=datetime.date.today().isoformat(),
                machine=f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
                command=" ".join(["bench/groups_bench.py"] + sys.argv[1:]), minutes=(time.monotonic() - t0) / 60,
                stats=stats, **w)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    text = report(results, meta)
    (args.out / "report.md").write_text(text)
    print(text)
    failed = sum(r["failed"] for r in results)
    if failed:
        sys.exit(f"{failed} requests failed")


if __name__ == "__main__":
    main()
