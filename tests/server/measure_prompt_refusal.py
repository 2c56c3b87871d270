"""Measures what 16 concurrent 1 MiB text prompts (which cannot fit in a 512-token context) cost the
server, and how long a 4-token request sent meanwhile takes. Not a test (no assertions); the figures
in docs/hardening.md come from it. Run from the repository root:

    PYTHONPATH=clients/python:tests/server PARA_SERVER=build/bin/para-server \\
        PARA_TOOL=build/bin/para-tool PARA_CLI=build/bin/para-cli python3 tests/server/measure_prompt_refusal.py
"""
import pathlib
import sys
import tempfile
import threading
import time

sys.path.insert(0, "tests/server")
import server_harness as h
import test_hardening as t
d = pathlib.Path(tempfile.mkdtemp())
model = h.make_model(d / "tiny-llama", 11, "--max-pos", "512")
cfg = h.write_config(d / "tenants.json", {"umbrella": {"api_keys": [h.KEYS["umbrella"]]}})
s = h.ServerProcess(model, cfg, d / "server", "--kv-cache-blocks", "512")
text = t.word_text((1 << 20) - 64)
time.sleep(1)
rss0, cpu0, t0 = s.rss_kb(), t.cpu_seconds(s.proc.pid), time.monotonic()
def big():
    t.post(s, "/v1/completions", {"model": "tiny-llama", "prompt": text, "max_tokens": 1}, h.KEYS["umbrella"])
ths = [threading.Thread(target=big) for _ in range(16)]
for th in ths: th.start()
time.sleep(0.2)
ts = time.monotonic(); st, raw = t.post(s, "/v1/completions", {"model": "tiny-llama", "prompt": [1, 2, 3], "max_tokens": 4, "ignore_eos": True}, h.KEYS["umbrella"]); small_s = time.monotonic() - ts
for th in ths: th.join()
print(f"{s.args[0]}: 16 x 1 MiB prompts: server CPU {t.cpu_seconds(s.proc.pid) - cpu0:.2f} s, wall {time.monotonic() - t0:.2f} s, "
      f"RSS {rss0/1024:.0f} -> {s.rss_kb()/1024:.0f} MB; a 4-token request sent meanwhile took {small_s:.2f} s (status {st})")
s.stop()
