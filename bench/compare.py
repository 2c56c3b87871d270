#!/usr/bin/env python3
"""PARA vs batched LoRA vs the base model, served by the real para-server under the same load.

Builds (or reuses) a random model of the chosen shape and, for each of T tenants, one PARA
adapter and one LoRA adapter (r=16 on all projections); starts para-server once with every
tenant and adapter; then runs para-bench with the identical workload against each adapter type:

  1. decode throughput vs distinct tenants in the batch: closed loop with --concurrency
     sequences, spread over 1, 8, ... distinct tenants (each tenant its own adapter);
  2. TPOT vs load: open loop (Poisson) at several request rates, all tenants distinct.

Writes OUT/report.md (tables of ratios PARA/base, LoRA/base, PARA/LoRA), OUT/results.json (every
para-bench result), OUT/throughput_vs_tenants.png and OUT/tpot_vs_load.png.

  bench/compare.py --shape tiny --out build/bench-tiny          # < 2 minutes (CI smoke test)
  bench/compare.py --shape tinyllama --out build/bench-tinyllama  # TinyLlama-1.1B shape, < 15 min
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

ROOT = pathlib.Path(__file__).resolve().parents[1]
TYPES = ("base", "para", "lora")
ADAPTER_TEMPLATE = {"base": "", "para": "para-{i}", "lora": "lora-{i}"}

SHAPES = {
    # name: (make-tiny-model flags, workload)
    "tiny": (["--seed", "1", "--max-pos", "1024"],
             dict(tenants=8, distinct=[1, 4, 8], concurrency=8, input_len=32, output_len=64, requests=48,
                  rates=[2.0, 8.0], rate_seconds=3.0, kv_blocks=512)),
    "tinyllama": (["--layers", "22", "--hidden", "2048", "--heads", "32", "--kv-heads", "4", "--ffn", "5632",
                   "--vocab", "32000", "--seed", "1", "--max-pos", "2048", "--no-tokenizer"],
                  dict(tenants=32, distinct=[1, 8, 32], concurrency=32, input_len=32, output_len=32,
                       requests=32, rates=[0.25, 0.5], rate_seconds=40.0, kv_blocks=1024)),
}


def bins(build: pathlib.Path) -> dict:
    out = {n: build / "bin" / n for n in ("para-tool", "para-server", "para-bench")}
    missing = [str(p) for p in out.values() if not os.access(p, os.X_OK)]
    if missing:
        sys.exit(f"compare.py: build first (scripts/build.sh); missing {missing}")
    return out


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kw)


def prepare(b: dict, shape: str, work: pathlib.Path, tenants: int, model=None) -> tuple:
    """Model, adapters and tenants file (reused when already there)."""
    model_flags, _ = SHAPES[shape]
    model = model or work / f"model-{shape}"
    if not (model / "config.json").exists():
        print(f"writing the {shape} model to {model} ...", flush=True)
        run(b["para-tool"], "make-tiny-model", model, *model_flags)
    adapters = work / f"adapters-{shape}"
    for i in range(tenants):
        if not (adapters / f"para-{i}" / "adapter_config.json").exists():
            run(b["para-tool"], "make-tiny-adapter", adapters / f"para-{i}", "--model", model, "--seed", 100 + i)
        if not (adapters / f"lora-{i}" / "adapter_config.json").exists():
            run(b["para-tool"], "make-tiny-lora", adapters / f"lora-{i}", "--model", model, "--seed", 200 + i,
                "--r", "16", "--alpha", "32", "--targets", "all")
    config = {"admin_api_keys": ["bench-admin-key"],
              "tenants": {f"tenant-{i}": {"api_keys": [f"bench-key-{i}"],
                                          "adapters": {f"para-{i}": f"para-{i}", f"lora-{i}": f"lora-{i}"}}
                          for i in range(tenants)}}
    tenants_file = work / f"tenants-{shape}.json"
    tenants_file.write_text(json.dumps(config, indent=1))
    return model, adapters, tenants_file


class Server:
    def __init__(self, b, model, adapters, tenants_file, work, kv_blocks, max_num_seqs, extra=()):
        self.port_file = work / "server.port"
        self.port_file.unlink(missing_ok=True)
        self.log = open(work / "server.log", "w")
        self.proc = subprocess.Popen(
            [str(b["para-server"]), "--model", str(model), "--config", str(tenants_file), "--adapter-root",
             str(adapters), "--host", "127.0.0.1", "--port", "0", "--port-file", str(self.port_file),
             "--http-port", "-1", "--kv-cache-blocks", str(kv_blocks), "--max-num-seqs", str(max_num_seqs),
             "--max-waiting-per-tenant", "100000", *[str(e) for e in extra]],
            stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 300
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                sys.exit(f"para-server exited with {self.proc.returncode}; see {work / 'server.log'}")
            if self.port_file.exists() and self.port_file.read_text().endswith("\n"):
                self.target = f"127.0.0.1:{self.port_file.read_text().strip()}"
                return
            time.sleep(0.1)
        self.stop()
        sys.exit("para-server did not start within 300 s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.log.close()


def bench(b, target, kind, work, label, **flags) -> dict:
    out = work / f"{label}.json"
    args = [b["para-bench"], "--target", target, "--adapter-template", ADAPTER_TEMPLATE[kind],
            "--json", out, "--progress=false", "--seed", "7"]
    for k, v in flags.items():
        args += [f"--{k.replace('_', '-')}", v]
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if p.returncode not in (0, 3):
        sys.exit(f"para-bench failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    result = json.loads(out.read_text())
    result["type"], result["label"] = kind, label
    print(f"  {label:<28} {result['output_throughput']:8.2f} out tok/s  TPOT p50 {result['tpot_ms']['p50']:8.2f} ms"
          f"  completed {result['completed']} failed {result['failed']}", flush=True)
    return result


def decode_rate(r: dict, batch: int) -> float:
    """Decode tokens/s of a closed-loop cell: the batch over the median time per output token."""
    return batch * 1e3 / r["tpot_ms"]["p50"] if r["tpot_ms"]["p50"] else 0.0


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def report(results: list, meta: dict, out: pathlib.Path) -> str:
    lines = [f"# PARA vs LoRA vs base: {meta['shape']} model", "",
             f"{meta['date']}, commit {meta['commit']}, {meta['machine']}.",
             f"Command: `{meta['command']}` ({meta['minutes']:.1f} minutes).", "",
             "## Decode throughput vs distinct tenants in the batch", "",
             f"Closed loop, {meta['concurrency']} requests in flight, {meta['input_len']}-token prompts, "
             f"{meta['output_len']} output tokens, {meta['requests']} requests per cell; "
             "each tenant has its own PARA adapter and its own LoRA adapter (r=16, all projections).", "",
             "Decode tok/s is the batch over the median TPOT (every request of a cell is prefilled first, "
             "then all decode together); end-to-end tok/s counts the prefill too.", "",
             "| distinct tenants | base decode tok/s | PARA/base | LoRA/base | PARA/LoRA "
             "| base end-to-end tok/s | PARA/base | LoRA/base | TPOT p50 ms base / PARA / LoRA "
             "| TTFT p50 ms base / PARA / LoRA | E2E p99 ms base / PARA / LoRA |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    by = {(r["experiment"], r["x"], r["type"]): r for r in results}
    for d in meta["distinct"]:
        base, para, lora = (by[("tenants", d, t)] for t in TYPES)
        dec = {t: decode_rate(by[("tenants", d, t)], meta["concurrency"]) for t in TYPES}
        lines.append(
            f"| {d} | {dec['base']:.2f} | {ratio(dec['para'], dec['base'])} | {ratio(dec['lora'], dec['base'])} "
            f"| {ratio(dec['para'], dec['lora'])} "
            f"| {base['output_throughput']:.2f} | {ratio(para['output_throughput'], base['output_throughput'])} "
            f"| {ratio(lora['output_throughput'], base['output_throughput'])} "
            f"| {base['tpot_ms']['p50']:.1f} / {para['tpot_ms']['p50']:.1f} / {lora['tpot_ms']['p50']:.1f} "
            f"| {base['ttft_ms']['p50']:.0f} / {para['ttft_ms']['p50']:.0f} / {lora['ttft_ms']['p50']:.0f} "
            f"| {base['e2e_ms']['p99']:.0f} / {para['e2e_ms']['p99']:.0f} / {lora['e2e_ms']['p99']:.0f} |")
    lines += ["", "## Latency vs load (open loop, Poisson arrivals, every tenant distinct)", "",
              "| req/s | type | completed | out tok/s | TTFT p50 / p99 ms | TPOT p50 / p99 ms | ITL p99 ms "
              "| E2E p50 / p99 ms | TPOT p50 / base |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for rate in meta["rates"]:
        base = by[("load", rate, "base")]
        for t in TYPES:
            r = by[("load", rate, t)]
            lines.append(
                f"| {rate} | {t} | {r['completed']} | {r['output_throughput']:.2f} "
                f"| {r['ttft_ms']['p50']:.0f} / {r['ttft_ms']['p99']:.0f} "
                f"| {r['tpot_ms']['p50']:.1f} / {r['tpot_ms']['p99']:.1f} | {r['itl_ms']['p99']:.1f} "
                f"| {r['e2e_ms']['p50']:.0f} / {r['e2e_ms']['p99']:.0f} "
                f"| {ratio(r['tpot_ms']['p50'], base['tpot_ms']['p50'])} |")
    failed = sum(r["failed"] for r in results)
    lines += ["", f"Requests: {sum(r['completed'] for r in results)} completed, {failed} failed.",
              "", "![throughput](throughput_vs_tenants.png) ![tpot](tpot_vs_load.png)", ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text


def plots(results: list, meta: dict, out: pathlib.Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by = {(r["experiment"], r["x"], r["type"]): r for r in results}
    for name, experiment, xs, metric, xlabel, ylabel in (
            ("throughput_vs_tenants.png", "tenants", meta["distinct"],
             lambda r: decode_rate(r, meta["concurrency"]),
             "distinct tenants (adapters) in the batch", "decode tokens/s (batch / TPOT p50)"),
            ("tpot_vs_load.png", "load", meta["rates"], lambda r: r["tpot_ms"]["p50"],
             "request rate (req/s, Poisson)", "TPOT p50 (ms)")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for t, marker in zip(TYPES, "os^"):
            ax.plot(xs, [metric(by[(experiment, x, t)]) for x in xs], marker=marker,
                    label={"base": "base model", "para": "PARA", "lora": "LoRA r16 all"}[t])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{meta['shape']} model, {meta['machine']}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--out", type=pathlib.Path, required=True, help="report directory")
    ap.add_argument("--work", type=pathlib.Path, help="where models and adapters go (default: OUT/work)")
    ap.add_argument("--build", type=pathlib.Path, default=ROOT / "build")
    ap.add_argument("--model", type=pathlib.Path,
                    help="reuse a model directory of this shape (else one is written to the work dir)")
    args = ap.parse_args()
    t0 = time.monotonic()
    b = bins(args.build.resolve())
    _, w = SHAPES[args.shape]
    args.out.mkdir(parents=True, exist_ok=True)
    work = (args.work or args.out / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    model, adapters, tenants_file = prepare(b, args.shape, work, w["tenants"],
                                            args.model.resolve() if args.model else None)
    server = Server(b, model, adapters, tenants_file, work, w["kv_blocks"], w["concurrency"])
    results = []
    try:
        print(f"para-server on {server.target}; decode throughput vs distinct tenants", flush=True)
        common = dict(input_len=w["input_len"], output_len=w["output_len"])
        # One warm-up pass so every adapter is loaded and every code path is hot.
        for t in TYPES:
            bench(b, server.target, t, work, f"warmup-{t}", tenants=w["tenants"], popularity="distinct",
                  concurrency=w["concurrency"], num_requests=w["concurrency"], input_len=8, output_len=2)
        for d in w["distinct"]:
            for t in TYPES:  # interleaved, so drift on a shared machine hits every type alike
                r = bench(b, server.target, t, work, f"tenants-{d}-{t}", tenants=d, popularity="distinct",
                          concurrency=w["concurrency"], num_requests=w["requests"], **common)
                r["experiment"], r["x"] = "tenants", d
                results.append(r)
        print("TPOT vs load", flush=True)
        for rate in w["rates"]:
            for t in TYPES:
                r = bench(b, server.target, t, work, f"load-{rate}-{t}", tenants=w["tenants"],
                          popularity="distinct", request_rate=rate, duration=w["rate_seconds"], **common)
                r["experiment"], r["x"] = "load", rate
                results.append(r)
    finally:
        server.stop()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    if subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                      capture_output=True, text=True).stdout.strip():
        commit += " with uncommitted changes"
    meta = dict(shape=args.shape, commit=commit, date=datetime.date.today().isoformat(),
                machine=f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
                command=" ".join(["bench/compare.py"] + sys.argv[1:]), minutes=(time.monotonic() - t0) / 60,
                **{k: w[k] for k in ("distinct", "rates", "concurrency", "input_len", "output_len", "requests")})
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    text = report(results, meta, args.out)
    plots(results, meta, args.out)
    print(text)
    failed = sum(r["failed"] for r in results)
    if failed:
        sys.exit(f"{failed} requests failed")


if __name__ == "__main__":
    main()
