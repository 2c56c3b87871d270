#!/usr/bin/env python3
"""Our server vs llama.cpp (through llama-cpp-python from PyPI) on the same model and workload.

The script installs its peer itself, into a virtual environment (nothing of it is committed):
llama-cpp-python, built from its source distribution with pip. It converts the model directory
to GGUF F32 with bench/hf_to_gguf.py (shared with bench/peer_llamacpp_bench.py: q/k rows reordered
for GGML's rotary layout, a vocabulary of placeholder tokens, since both sides are fed token ids;
it runs here, with the project's pinned `gguf`). The workload is sequential requests of
--input-len random prompt tokens and exactly --output-len greedy output tokens, on 2 threads. It
prints TTFT, TPOT, decode tokens/s and our/peer ratios. Our side is the real para-server driven by
para-bench at concurrency 1. (bench/peer_llamacpp_bench.py compares the engines themselves, with
llama.cpp's own benchmark tools, at batch 1, 8 and 32.)

  bench/peer_llamacpp.py --model /tmp/tinyllama [--requests 4] [--input-len 32] [--output-len 32]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import hf_to_gguf  # noqa: E402
PEER_PACKAGES = ["llama-cpp-python==0.3.16", "numpy==2.1.3"]


def venv(path: pathlib.Path) -> pathlib.Path:
    py = path / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    have = subprocess.run([str(py), "-c", "import llama_cpp"], capture_output=True).returncode == 0
    if not have:
        print("installing the peer (llama-cpp-python builds llama.cpp from source: minutes) ...", flush=True)
        env = {**os.environ, "CMAKE_ARGS": "-DGGML_NATIVE=ON -DGGML_OPENMP=ON", "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--no-binary", "llama-cpp-python", *PEER_PACKAGES], check=True, env=env)
    return py


PEER_RUN = r'''
import json, sys, time, random, llama_cpp
path, n_req, n_in, n_out, vocab = sys.argv[1], *map(int, sys.argv[2:6])
llm = llama_cpp.Llama(model_path=path, n_ctx=n_in + n_out + 8, n_threads=2, n_threads_batch=2,
                      n_batch=512, verbose=False)
random.seed(7)
ttft, tpot = [], []
for r in range(n_req + 1):  # the first is a warm-up
    prompt = [1] + [random.randrange(3, vocab) for _ in range(n_in - 1)]
    llm.reset()
    t0 = time.perf_counter()
    times = []
    for k, tok in enumerate(llm.generate(prompt, temp=0.0, top_k=1, reset=True)):
        times.append(time.perf_counter())
        if len(times) == n_out:
            break
    if r == 0:
        continue
    ttft.append(times[0] - t0)
    tpot.append((times[-1] - times[0]) / (n_out - 1))
print(json.dumps({"ttft_s": sorted(ttft)[len(ttft) // 2], "tpot_s": sorted(tpot)[len(tpot) // 2]}))
'''


def ours(build: pathlib.Path, model: pathlib.Path, n_req: int, n_in: int, n_out: int, work: pathlib.Path) -> dict:
    cfg = {"tenants": {"peer": {"api_keys": ["bench-key-0"]}}}
    (work / "tenants.json").write_text(json.dumps(cfg))
    port_file = work / "port"
    server = subprocess.Popen([str(build / "bin" / "para-server"), "--model", str(model), "--config",
                               str(work / "tenants.json"), "--host", "127.0.0.1", "--port", "0", "--port-file",
                               str(port_file), "--http-port", "-1", "--kv-cache-blocks", "256", "--threads", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(3000):
            if port_file.exists() and port_file.read_text().endswith("\n"):
                break
            if server.poll() is not None:
                sys.exit("para-server did not start")
            time.sleep(0.1)
        target = f"127.0.0.1:{port_file.read_text().strip()}"
        out = work / "ours.json"
        subprocess.run([str(build / "bin" / "para-bench"), "--target", target, "--concurrency", "1",
                        "--num-requests", str(n_req), "--warmup", "1", "--input-len", str(n_in),
                        "--output-len", str(n_out), "--json", str(out), "--progress=false"],
                       check=True, capture_output=True)
        r = json.loads(out.read_text())
        return {"ttft_s": r["ttft_ms"]["p50"] / 1e3, "tpot_s": r["tpot_ms"]["p50"] / 1e3}
    finally:
        server.terminate()
        server.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=pathlib.Path, required=True, help="HF LLaMA directory (F32, F16 or BF16 safetensors)")
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--input-len", type=int, default=32)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--build", type=pathlib.Path, default=ROOT / "build")
    ap.add_argument("--venv", type=pathlib.Path, default=ROOT / "build" / "peer-venv")
    args = ap.parse_args()
    py = venv(args.venv)
    gguf_path = hf_to_gguf.ensure(args.model, args.model, "f32", log=lambda m: print(m, flush=True))
    vocab = json.loads((args.model / "config.json").read_text())["vocab_size"]
    print("running llama.cpp (llama-cpp-python) ...", flush=True)
    p = subprocess.run([str(py), "-c", PEER_RUN, str(gguf_path), str(args.requests), str(args.input_len),
                        str(args.output_len), str(vocab)], check=True, capture_output=True, text=True)
    peer = json.loads(p.stdout.strip().splitlines()[-1])
    print("running para-server (para-bench, concurrency 1) ...", flush=True)
    with tempfile.TemporaryDirectory() as work:
        us = ours(args.build.resolve(), args.model.resolve(), args.requests, args.input_len, args.output_len,
                  pathlib.Path(work))
    print(f"\nmodel {args.model}, {args.requests} sequential requests, {args.input_len} prompt tokens, "
          f"{args.output_len} output tokens, batch 1, 2 threads")
    print(f"{'':<22}{'ours':>10}{'llama.cpp':>12}{'ours/peer':>11}")
    rows = [("TTFT (ms)", us["ttft_s"] * 1e3, peer["ttft_s"] * 1e3, False),
            ("TPOT (ms)", us["tpot_s"] * 1e3, peer["tpot_s"] * 1e3, False),
            ("decode tok/s", 1 / us["tpot_s"], 1 / peer["tpot_s"], True)]
    for name, a, b, higher in rows:
        print(f"{name:<22}{a:>10.2f}{b:>12.2f}{a / b:>11.3f}{'  (higher is better)' if higher else ''}")


if __name__ == "__main__":
    main()
