"""Findings of hostile testing (issue "Hardening"), each reproduced against the real server: the
fix must hold, and the server must keep serving afterwards."""

import concurrent.futures
import http.client
import json
import subprocess

import pytest

import server_harness as h

pytestmark = h.requires_binaries


def post(s, path, body, key):
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=30)
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = conn.getresponse()
    raw = r.read().decode()
    conn.close()
    return r.status, raw


@pytest.fixture(scope="module")
def no_tokenizer_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("no-tokenizer")
    model = h.make_model(d / "bare-llama", 7, "--no-tokenizer", "--max-pos", "256")
    config = h.write_config(d / "tenants.json", {"acme": {"api_keys": [h.KEYS["acme"]]}})
    s = h.ServerProcess(model, config, d / "server", "--kv-cache-blocks", "64")
    yield s
    s.stop()


def test_token_id_prompt_with_logprobs_on_a_model_without_tokenizer(no_tokenizer_server):
    s = no_tokenizer_server
    status, raw = post(s, "/v1/completions", {"model": "bare-llama", "prompt": [1, 5, 6], "max_tokens": 4,
                                              "logprobs": 2, "ignore_eos": True}, h.KEYS["acme"])
    assert status == 200, raw
    choice = json.loads(raw)["choices"][0]
    assert choice["text"] == ""
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == 4 and all(t.startswith("token_id:") for t in lp["tokens"]), lp
    ids = [int(t.split(":")[1]) for t in lp["tokens"]]
    # The ids shown are the ones generated: the same request over gRPC gives them too.
    with s.client(h.KEYS["acme"]) as c:
        r = c.generate(token_ids=[1, 5, 6], max_tokens=4, ignore_eos=True)
    assert ids == list(r.token_ids)
    assert all(len(top) == 2 for top in lp["top_logprobs"])
    assert lp["text_offset"] == [0, 0, 0, 0]


def test_echo_on_a_model_without_tokenizer_is_refused_not_a_crash(no_tokenizer_server):
    s = no_tokenizer_server
    for stream, extra in ((False, {"echo": True}), (False, {"echo": True, "logprobs": 1}), (True, {"echo": True})):
        if True:
            status, raw = post(s, "/v1/completions", {"model": "bare-llama", "prompt": [1, 5, 6], "max_tokens": 4,
                                                      "stream": stream, **extra}, h.KEYS["acme"])
            assert status == 400, raw
            assert "'echo' needs the model's tokenizer" in json.loads(raw)["error"]["message"]
    # Streamed logprobs work too, and the server is still up.
    status, raw = post(s, "/v1/completions", {"model": "bare-llama", "prompt": [1, 5, 6], "max_tokens": 3,
                                              "logprobs": 1, "stream": True, "ignore_eos": True}, h.KEYS["acme"])
    assert status == 200, raw
    events = [json.loads(l[6:]) for l in raw.splitlines() if l.startswith("data: {")]
    shown = [e["choices"][0]["logprobs"]["tokens"][0] for e in events if e["choices"][0]["logprobs"]]
    assert len(shown) == 3 and all(t.startswith("token_id:") for t in shown)
    assert s.alive()
    h.wait_idle(s)


def second_server(server, tiny_model, tenants_config, *ports):
    return subprocess.run([h.SERVER, "--model", tiny_model, "--config", tenants_config, "--host", "127.0.0.1",
                           "--adapter-root", server.args[server.args.index("--adapter-root") + 1], *ports],
                          capture_output=True, text=True, timeout=60)


def test_a_grpc_port_in_use_is_a_startup_error(server, tiny_model, tenants_config):
    """A second server on the first one's gRPC port must refuse to start (no SO_REUSEPORT sharing)."""
    p = second_server(server, tiny_model, tenants_config, "--port", str(server.port), "--http-port", "0")
    assert p.returncode != 0
    assert f"cannot listen on 127.0.0.1:{server.port} for gRPC" in p.stderr, p.stderr
    assert "in use" in p.stderr
    # The first server still answers its own clients.
    with server.client(h.KEYS["umbrella"]) as c:
        assert len(c.generate(token_ids=[1, 2, 3], max_tokens=2, ignore_eos=True).token_ids) == 2


def test_an_http_port_in_use_is_a_startup_error(server, tiny_model, tenants_config):
    p = second_server(server, tiny_model, tenants_config, "--port", "0", "--http-port", str(server.http_port))
    assert p.returncode != 0
    assert str(server.http_port) in p.stderr, p.stderr


# ---- helpers for the findings below ------------------------------------------------------------

import math  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

C = h.grpc.StatusCode


def get(port, path, key=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
    r = conn.getresponse()
    raw = r.read().decode()
    conn.close()
    return r.status, raw


def error_message(raw):
    body = json.loads(raw)
    assert set(body) == {"error"}, body
    return body["error"]["message"]


def start_failure(model, config, *extra, tmp):
    """Runs para-server expecting it to refuse to start; returns (exit code, stderr)."""
    p = subprocess.run([h.SERVER, "--model", model, "--config", config, "--host", "127.0.0.1", "--port", "0",
                        "--http-port", "0", "--adapter-root", str(tmp), *map(str, extra)],
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stderr


def word_text(n_bytes, seed=0):
    """Text of `n_bytes` ASCII bytes: random short lowercase words (many tokens per byte)."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_bytes:
        w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 7))) + " "
        parts.append(w)
        size += len(w)
    return "".join(parts)[:n_bytes]


def cpu_seconds(pid):
    """User + system CPU time the process has used so far (for the figures the tests print)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- 3. an interrupted generation is never a normal stop --------------------------------------

def read_sse(resp):
    events = []
    for line in resp:
        line = line.decode().rstrip("\n")
        if line.startswith("data: "):
            payload = line[6:]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_http_completions_cut_short_by_shutdown_report_the_interruption(slow_model, slow_config, start_server):
    """SIGTERM with a 1 s grace period while two long completions run (one JSON, one streamed): both
    end with an error that says the server shut down, never with finish_reason "stop"."""
    s = start_server(slow_model, slow_config, "--kv-cache-blocks", 2048, "--drain-grace-seconds", 1)
    body = {"model": "slow-llama", "prompt": [1, 2, 3], "max_tokens": 6000, "ignore_eos": True}
    results = {}

    def unary():
        results["unary"] = post(s, "/v1/completions", body, h.KEYS["acme"])

    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
                 headers={"Authorization": f"Bearer {h.KEYS['globex']}", "Content-Type": "application/json"})
    streamed = conn.getresponse()
    assert streamed.status == 200
    first = streamed.readline()  # a first token came: the stream runs
    assert first.startswith(b"data: {"), first
    t = threading.Thread(target=unary)
    t.start()
    h.wait_until(lambda: h.stats(s).requests_running == 2, 10, what="both completions to run")
    s.sigterm()
    events = read_sse(streamed)
    t.join(30)
    assert s.wait(timeout=30) == 0, s.log()

    status, raw = results["unary"]
    assert status == 503, raw
    message = error_message(raw)
    assert "shut down before the generation finished" in message and "incomplete" in message, message
    assert events and events[-1] == "[DONE]", events
    error = events[-2]
    assert set(error) == {"error"} and "shut down before the generation finished" in error["error"]["message"], error
    reasons = [c.get("finish_reason") for e in events[:-2] if isinstance(e, dict) for c in e.get("choices", [])]
    assert not any(reasons), reasons  # no choice claims to have ended ("stop" or "length")


# ---- 5. cheap requests that cost a lot -------------------------------------------------------

@pytest.mark.memory_bound
def test_a_prompt_that_cannot_fit_is_refused_by_its_bytes_without_tokenizing(server):
    """1 MiB of text can never fit in 512 tokens: it is refused by its length, over HTTP, gRPC and
    chat, with a message that says why; 16 of them at once leave the server's memory in bounds."""
    text = word_text((1 << 20) - 64)
    status, raw = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": text, "max_tokens": 1},
                       h.KEYS["umbrella"])
    assert status == 400, raw
    message = error_message(raw)
    assert f"prompt text is {len(text)} bytes, more than can fit in the context of 512 tokens" in message
    assert "refused without tokenizing" in message
    with server.client(h.KEYS["umbrella"]) as c:
        with pytest.raises(h.GenerationError) as e:
            c.generate(text, max_tokens=1)
        assert e.value.code == C.INVALID_ARGUMENT and "refused without tokenizing" in e.value.message
    rss_before = server.rss_kb()
    cpu_before = cpu_seconds(server.proc.pid)
    threads = [threading.Thread(target=post, args=(server, "/v1/completions",
                                                   {"model": "tiny-llama", "prompt": text, "echo": True},
                                                   h.KEYS["umbrella"])) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    grown_mb = (server.rss_kb() - rss_before) / 1024
    print(f"\n16 refused 1 MiB prompts: RSS growth {grown_mb:.1f} MB, server CPU "
          f"{cpu_seconds(server.proc.pid) - cpu_before:.2f} s")
    assert grown_mb < 100, grown_mb
    with server.client(h.KEYS["umbrella"]) as c:  # and it still serves
        assert len(c.generate(token_ids=[1, 2, 3], max_tokens=2, ignore_eos=True).token_ids) == 2


def test_responses_with_logprobs_are_bounded_before_they_run(tiny_model, tenants_config, start_server):
    """echo + logprobs on a long prompt would make a response of tokens × 21 entries: over
    --max-response-logprobs it is refused up front, naming the figures; under it, it runs."""
    s = start_server(tiny_model, tenants_config, "--kv-cache-blocks", 128, "--max-response-logprobs", 2000)
    prompt = list(range(10, 110))  # 100 prompt tokens
    big = {"model": "tiny-llama", "prompt": prompt, "max_tokens": 4, "echo": True, "logprobs": 20,
           "ignore_eos": True}
    status, raw = post(s, "/v1/completions", big, h.KEYS["umbrella"])
    assert status == 400, raw
    message = error_message(raw)
    assert "the response would carry 2184 log-probabilities" in message, message
    assert "at most 2000" in message and "max_tokens" in message
    with s.client(h.KEYS["umbrella"]) as c:
        with pytest.raises(h.GenerationError) as e:
            c.generate(token_ids=prompt, max_tokens=4, logprobs=20, prompt_logprobs=20)
        assert e.value.code == C.INVALID_ARGUMENT and "2184 log-probabilities" in e.value.message
        assert len(c.generate(token_ids=prompt, max_tokens=4, logprobs=5, prompt_logprobs=5,
                              ignore_eos=True).logprobs) == 4
    status, raw = post(s, "/v1/completions", {**big, "logprobs": 5}, h.KEYS["umbrella"])
    assert status == 200, raw


def test_long_prompts_of_one_tenant_do_not_hold_the_threads_another_needs(slow_model, slow_config,
                                                                         start_server):
    """16 prompts of one tenant, each as long as the context allows in bytes (each costs the
    tokenizer real time), then one small request of another tenant: it is answered before the long
    ones still waiting (they wait on the prepare pool; the request threads stay free)."""
    s = start_server(slow_model, slow_config, "--kv-cache-blocks", 2048)
    status, raw = post(s, "/v1/completions", {"model": "slow-llama", "prompt": word_text(4 << 20)[:(1 << 20) - 8]},
                       h.KEYS["acme"])
    assert status == 400, raw
    assert "(at most " in error_message(raw), raw  # refused by its bytes
    bound = int(error_message(raw).split("(at most ")[1].split(" ")[0])
    long_text = word_text(min(bound - 16, (1 << 20) - 64), seed=1)
    order, lock = [], threading.Lock()

    def send(name, key, body):
        status, raw = post(s, "/v1/completions", body, key)
        with lock:
            order.append((name, status))

    conns = [threading.Thread(target=send, args=(f"long-{i}", h.KEYS["acme"],
                                                  {"model": "slow-llama", "prompt": long_text, "max_tokens": 1}))
             for i in range(16)]
    for t in conns:
        t.start()
    time.sleep(0.3)  # (the long ones are in; each takes the tokenizer a while)
    with lock:  # how many were answered before the small request was sent (more on a fast machine)
        before = len(order)
    small = threading.Thread(target=send, args=("small", h.KEYS["globex"],
                                                {"model": "slow-llama", "prompt": "hi", "max_tokens": 1}))
    small.start()
    for t in conns + [small]:
        t.join(120)
    names = [n for n, _ in order]
    print(f"\nanswer order: {names}")
    assert ("small", 200) in order, order
    # Answered at once, not after the long prompts still waiting for the tokenizer.
    assert names.index("small") <= before + 2, (before, names)


# ---- 6. values that should be refused -------------------------------------------------------------

NAN_BITS = {"F32": (struct.pack("<I", 0x7FC00000), 4), "BF16": (struct.pack("<H", 0x7FC0), 2),
            "F16": (struct.pack("<H", 0x7E00), 2)}
INF_BITS = {"F32": (struct.pack("<I", 0x7F800000), 4), "BF16": (struct.pack("<H", 0x7F80), 2),
            "F16": (struct.pack("<H", 0x7C00), 2)}


def poison(path, tensor, index, bits):
    """Overwrites element `index` of `tensor` in a safetensors file with NaN/Inf bits."""
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    t = header[tensor]
    value, size = bits[t["dtype"]]
    at = 8 + n + t["data_offsets"][0] + index * size
    data[at:at + size] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("bits,tensor", [(NAN_BITS, "model.layers.0.mlp.down_proj.weight"),
                                         (INF_BITS, "model.embed_tokens.weight")], ids=["nan", "inf"])
def test_a_model_with_a_non_finite_weight_does_not_start(tmp_path, tenants_config, bits, tensor):
    model = pathlib.Path(h.make_model(tmp_path / "poisoned", 3, "--max-pos", "128"))
    poison(model / "model.safetensors", tensor, 37, bits)
    code, err = start_failure(str(model), tenants_config, tmp=tmp_path)
    assert code != 0
    assert f"tensor '{tensor}'" in err and "non-finite value" in err and "flat index 37" in err, err


def test_adapter_values_that_make_no_sense_are_refused(server, tiny_model):
    root = pathlib.Path(server.args[server.args.index("--adapter-root") + 1])
    d = pathlib.Path(tempfile_dir(root, "hostile-adapters"))
    good = h.make_lora_adapter(d / "good", tiny_model, 5)
    cases = []
    for name, alpha in (("alpha-huge", 1e308), ("alpha-negative", -16), ("alpha-zero", 0)):
        shutil.copytree(good, d / name)
        cfg = json.loads((d / name / "adapter_config.json").read_text())
        cfg["lora_alpha"] = alpha
        (d / name / "adapter_config.json").write_text(json.dumps(cfg))
        cases.append((name, "'lora_alpha' must be a number in (0, 65536]"))
    shutil.copytree(good, d / "weights-nan")
    st = d / "weights-nan" / "adapter_model.safetensors"
    header = json.loads(st.read_bytes()[8:8 + struct.unpack("<Q", st.read_bytes()[:8])[0]])
    lora_b = sorted(k for k in header if k.endswith("lora_B.weight"))[0]
    poison(st, lora_b, 3, NAN_BITS)
    cases.append(("weights-nan", f"tensor '{lora_b}'"))
    with server.client(h.ADMIN_KEY) as admin:
        for name, expected in cases:
            with pytest.raises(h.GenerationError) as e:
                admin.load_adapter(name, "initech", str(d / name))
            assert e.value.code == C.INVALID_ARGUMENT and expected in e.value.message, (name, e.value.message)
        # A NUL byte would load the directory before it and record the whole path.
        with pytest.raises(h.GenerationError) as e:
            admin.load_adapter("nul-path", "initech", str(d / "good") + "\x00/../elsewhere")
        assert e.value.code == C.INVALID_ARGUMENT and "NUL byte" in e.value.message, e.value.message
        assert not any(a.name in ("nul-path", "alpha-huge") for a in admin.list_adapters())


def tempfile_dir(root, name):
    d = root / name
    d.mkdir(exist_ok=True)
    return d


@pytest.mark.parametrize("shape", ["two-tenants", "admin-and-tenant"])
def test_an_api_key_of_two_principals_is_a_startup_error(tiny_model, tmp_path, shape):
    shared = "shared-key-0001"
    if shape == "two-tenants":
        config = h.write_config(tmp_path / "t.json", {"acme": {"api_keys": ["acme-own-key", shared]},
                                                      "globex": {"api_keys": [shared]}})
        expected = "tenant 'globex' api_keys[0] is also a key of tenant 'acme' api_keys"
    else:
        config = h.write_config(tmp_path / "t.json", {"acme": {"api_keys": [shared]}}, admin_keys=[shared])
        expected = "tenant 'acme' api_keys[0] is also a key of admin_api_keys"
    code, err = start_failure(tiny_model, config, tmp=tmp_path)
    assert code != 0
    assert expected in err, err
    assert shared not in err  # the key itself is never printed


# ---- 7. information leaks --------------------------------------------------------------------------

def test_metrics_can_have_a_listener_of_their_own(tiny_model, tenants_config, start_server, tmp_path):
    port_file = tmp_path / "metrics-port"
    s = start_server(tiny_model, tenants_config, "--kv-cache-blocks", 64, "--metrics-port", 0,
                     "--metrics-port-file", port_file)
    mport = int(h.wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 10, what="metrics port"))
    status, raw = get(s.http_port, "/metrics")
    assert status == 404 and "listener of its own" in error_message(raw), raw
    status, raw = get(mport, "/metrics")
    assert status == 200 and "para_" in raw, raw[:200]
    assert get(mport, "/healthz")[0] == 200
    status, raw = get(mport, "/v1/models", h.KEYS["acme"])
    assert status == 404, raw
    status, raw = post(s, "/v1/completions", {"model": "tiny-llama", "prompt": [1, 2], "max_tokens": 1},
                       h.KEYS["umbrella"])
    assert status == 200, raw  # the public API is where it was


def test_another_tenants_adapter_gets_the_answer_an_unknown_name_gets(server):
    with server.client(h.KEYS["acme"]) as c:
        answers = {}
        for name in ("initech-lora", "no-such-adapter"):
            with pytest.raises(h.GenerationError) as e:
                c.generate(token_ids=[1, 2], adapter=name, max_tokens=1)
            answers[name] = (e.value.code, e.value.message.replace(name, "NAME"))
    assert answers["initech-lora"] == answers["no-such-adapter"] == (C.NOT_FOUND, "unknown adapter 'NAME'")
    statuses = {}
    for name in ("initech-lora", "no-such-adapter"):
        status, raw = post(server, "/v1/completions", {"model": name, "prompt": [1, 2], "max_tokens": 1},
                           h.KEYS["acme"])
        statuses[name] = (status, error_message(raw).replace(name, "NAME"))
    assert statuses["initech-lora"] == statuses["no-such-adapter"], statuses


def test_a_20000_byte_adapter_name_is_not_echoed_whole(server):
    name = "n" * 20000
    with server.client(h.KEYS["acme"]) as c:
        with pytest.raises(h.GenerationError) as e:
            c.generate(token_ids=[1, 2], adapter=name, max_tokens=1)
    assert e.value.code == C.NOT_FOUND and len(e.value.message) < 300, len(e.value.message)
    assert "20000 bytes" in e.value.message, e.value.message
    status, raw = post(server, "/v1/completions", {"model": name, "prompt": [1, 2], "max_tokens": 1}, h.KEYS["acme"])
    assert status == 404 and len(raw) < 400, (status, len(raw))


# ---- 8. limits not enforced ------------------------------------------------------------------------

def test_many_small_header_lines_count_against_the_header_limit(server):
    """160 KB of 12-byte header lines (each far under the limit), sent 1 KB at a time so that no
    single read holds more than the limit, exceed the 16 KiB header limit all together."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        lines = b"".join(b"X-%05d: a\r\n" % i for i in range(13500)) + b"\r\n"
        try:
            for at in range(0, len(lines), 1020):
                sock.sendall(lines[at:at + 1020])
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all
        reply = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert b"request headers exceed 16384 bytes" in reply
    assert get(server.http_port, "/healthz")[0] == 200


def test_tokenize_over_the_message_limit_gets_a_precise_error(tiny_model, tenants_config, start_server):
    s = start_server(tiny_model, tenants_config, "--kv-cache-blocks", 64, "--max-message-bytes", 2 << 20)
    text = word_text((1 << 20) - 64)
    with s.client(h.KEYS["umbrella"]) as c:
        with pytest.raises(h.GenerationError) as e:
            c.tokenize(text)
        assert e.value.code == C.RESOURCE_EXHAUSTED, e.value
        assert "TokenizeResponse would be" in e.value.message and "over the server's message limit of 2097152" \
            in e.value.message and "smaller parts" in e.value.message, e.value.message
        assert len(c.tokenize(text[:4096]).ids) > 0


def test_the_largest_seed_gives_the_same_tokens_over_grpc_and_http(server):
    seed = 2 ** 64 - 1
    with server.client(h.KEYS["umbrella"]) as c:
        g = c.generate(token_ids=[5, 6, 7], max_tokens=8, temperature=1.0, seed=seed, ignore_eos=True)
    status, raw = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": [5, 6, 7], "max_tokens": 8,
                                                   "temperature": 1.0, "seed": seed, "ignore_eos": True},
                       h.KEYS["umbrella"])
    assert status == 200, raw
    assert json.loads(raw)["choices"][0]["text"] == g.text
    status, raw = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": [5], "seed": 2 ** 64},
                       h.KEYS["umbrella"])
    assert status == 400 and "'seed'" in error_message(raw), raw  # 2^64 is past the range


def test_a_negative_stop_token_id_names_stop_token_ids(server):
    status, raw = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": [5, 6], "stop_token_ids": [-1]},
                       h.KEYS["umbrella"])
    assert status == 400, raw
    message = error_message(raw)
    assert "'stop_token_ids'" in message and "prompt" not in message, message


def test_model_info_and_v1_models_agree_on_a_failed_adapter(tiny_model, bare_config, start_server, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    h.make_lora_adapter(root / "keeps", tiny_model, 31)
    h.make_lora_adapter(root / "goes", tiny_model, 32)
    manifest = tmp_path / "manifest.json"
    first = start_server(tiny_model, bare_config, "--adapter-root", root, "--adapter-manifest", manifest,
                         "--kv-cache-blocks", 64, name="first")
    with first.client(h.ADMIN_KEY) as admin:
        admin.load_adapter("keeps", "initech", "keeps")
        admin.load_adapter("goes", "initech", "goes")
    first.sigterm()
    assert first.wait(timeout=30) == 0
    shutil.rmtree(root / "goes")
    second = start_server(tiny_model, bare_config, "--adapter-root", root, "--adapter-manifest", manifest,
                          "--kv-cache-blocks", 64, name="second")
    with second.client(h.ADMIN_KEY) as admin:
        assert admin.get_adapter("goes").state == h.admin_pb2.ADAPTER_STATE_FAILED
    with second.client(h.KEYS["initech"]) as c:
        info = [a.name for a in c.model_info().adapters]
    status, raw = get(second.http_port, "/v1/models", h.KEYS["initech"])
    assert status == 200, raw
    models = [m["id"] for m in json.loads(raw)["data"] if m["id"] != "tiny-llama"]
    assert info == models == ["keeps"], (info, models)


def test_the_host_tier_returns_within_budget_once_idle(slow_model, bare_config, start_server, tmp_path):
    """An adapter in use cannot be dropped, so loading another may overrun the host budget; once the
    request ends (and nothing else runs) the store drops the least recently used to fit again."""
    root = tmp_path / "root"
    root.mkdir()
    for i, name in enumerate(("busy", "later")):
        h.make_lora_adapter(root / name, slow_model, 40 + i, "--targets", "all", "--dtype", "f32")
    size = (root / "busy" / "adapter_model.safetensors").stat().st_size
    s = start_server(slow_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", 2048,
                     "--adapter-host-bytes", int(size * 1.5), "--adapter-device-bytes", int(size * 1.5))
    with s.client(h.ADMIN_KEY) as admin, s.client(h.KEYS["initech"]) as c:
        busy = admin.load_adapter("busy", "initech", "busy")
        budget = int(size * 1.5)
        assert busy.bytes <= budget < 2 * busy.bytes, (busy.bytes, budget)
        stream = c.stream(token_ids=[1, 2, 3], adapter="busy", max_tokens=6000, ignore_eos=True)
        next(stream)  # it runs
        admin.load_adapter("later", "initech", "later")
        in_memory = lambda: sum(a.bytes for a in admin.list_adapters() if a.tier != h.admin_pb2.ADAPTER_TIER_DISK)
        assert in_memory() > budget  # both in memory while "busy" runs
        stream.close()  # cancels it
        h.wait_idle(s)
        h.wait_until(lambda: in_memory() <= budget, 10, what="the host tier back within its budget")
        tiers = {a.name: a.tier for a in admin.list_adapters()}
        assert tiers["busy"] == h.admin_pb2.ADAPTER_TIER_DISK, tiers  # the least recently used went
        # and it comes back when asked for
        assert len(c.generate(token_ids=[1, 2, 3], adapter="busy", max_tokens=2, ignore_eos=True).token_ids) == 2


# ---- faults ------------------------------------------------------------------------------------------

import resource  # noqa: E402
import signal  # noqa: E402


def test_a_manifest_that_cannot_be_written_keeps_its_previous_content(tiny_model, bare_config, start_server,
                                                                      tmp_path):
    """A file size limit (as a full disk would) makes manifest writes fail: the server keeps running
    (no SIGXFSZ death), logs the failure, leaves the last good manifest whole and no temporary file,
    and writes the full registry at the next change once it can."""
    root = tmp_path / "root"
    root.mkdir()
    h.make_lora_adapter(root / "lora", tiny_model, 51)
    manifest = tmp_path / "manifest.json"
    s = start_server(tiny_model, bare_config, "--adapter-root", root, "--adapter-manifest", manifest,
                     "--kv-cache-blocks", 64)
    long_path = "./" * 100 + "lora"
    names = [f"{i:03d}-" + "x" * 120 for i in range(40)]  # ~40 × 350 bytes of manifest
    with s.client(h.ADMIN_KEY) as admin:
        admin.load_adapter("first", "initech", "lora")
        limit = max(s.log_path.stat().st_size, 4096) + 8192
        resource.prlimit(s.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        for name in names:
            admin.load_adapter(name, "initech", long_path)  # in memory: every load succeeds
        saved = json.loads(manifest.read_text())  # still a whole manifest (an older one)
        assert 1 <= len(saved["adapters"]) < 41, len(saved["adapters"])
        assert not (tmp_path / "manifest.json.tmp").exists()
        assert "cannot save the adapter manifest" in s.log(), s.log()[-2000:]
        resource.prlimit(s.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        admin.unload_adapter(names[0])  # the next change writes everything
    with s.client(h.KEYS["initech"]) as c:
        assert len(c.generate(token_ids=[1, 2], adapter=names[1], max_tokens=2, ignore_eos=True).token_ids) == 2
    assert sorted(a["name"] for a in json.loads(manifest.read_text())["adapters"]) == sorted(["first", *names[1:]])
    assert s.alive()


def test_an_adapter_file_replaced_after_loading_is_not_served_in_its_place(tiny_model, bare_config, start_server,
                                                                           tmp_path):
    """The weights of a loaded adapter are in memory; if they go to disk (host budget) and its file
    was replaced meanwhile by another of the same size, the reload refuses it with a precise error
    instead of serving different weights under the same version."""
    root = tmp_path / "root"
    root.mkdir()
    for name, seed in (("a", 61), ("b", 62), ("impostor", 63)):
        h.make_lora_adapter(root / name, tiny_model, seed, "--dtype", "f32")
    size = (root / "a" / "adapter_model.safetensors").stat().st_size
    assert (root / "impostor" / "adapter_model.safetensors").stat().st_size == size
    s = start_server(tiny_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", 64,
                     "--adapter-host-bytes", int(size * 1.5), "--adapter-device-bytes", int(size * 1.5))
    with s.client(h.ADMIN_KEY) as admin, s.client(h.KEYS["initech"]) as c:
        admin.load_adapter("a", "initech", "a")
        before = list(c.generate(token_ids=[1, 2, 3], adapter="a", max_tokens=6, ignore_eos=True).token_ids)
        admin.load_adapter("b", "initech", "b")  # "a" drops to disk (once its last request let go)
        h.wait_until(lambda: admin.get_adapter("a").tier == h.admin_pb2.ADAPTER_TIER_DISK, 10,
                     what="adapter 'a' on the disk tier")
        shutil.copyfile(root / "impostor" / "adapter_model.safetensors", root / "a" / "adapter_model.safetensors")
        with pytest.raises(h.GenerationError) as e:
            c.generate(token_ids=[1, 2, 3], adapter="a", max_tokens=6, ignore_eos=True)
        assert "adapter 'a' could not be reloaded from disk" in e.value.message, e.value.message
        assert "files changed since it was loaded" in e.value.message
        # Loading it again (a new version) is how to serve the new file.
        admin.load_adapter("a", "initech", "a")
        after = list(c.generate(token_ids=[1, 2, 3], adapter="a", max_tokens=6, ignore_eos=True).token_ids)
    assert len(before) == len(after) == 6


def test_sigkill_under_load_then_restart_from_the_manifest(tiny_model, bare_config, start_server, tmp_path):
    """SIGKILL while requests run and adapters load: the manifest is whole (written by rename), and
    a restart serves every adapter it lists with the same greedy tokens as before."""
    root = tmp_path / "root"
    root.mkdir()
    for i in range(6):
        h.make_lora_adapter(root / f"l{i}", tiny_model, 70 + i)
    manifest = tmp_path / "manifest.json"
    first = start_server(tiny_model, bare_config, "--adapter-root", root, "--adapter-manifest", manifest,
                         "--kv-cache-blocks", 256, name="first")
    want = {}
    with first.client(h.ADMIN_KEY) as admin, first.client(h.KEYS["initech"]) as c:
        for i in range(3):
            admin.load_adapter(f"l{i}", "initech", f"l{i}")
            want[f"l{i}"] = list(c.generate(token_ids=[4, 5, 6], adapter=f"l{i}", max_tokens=8,
                                            ignore_eos=True).token_ids)
        streams = [c.stream(token_ids=[4, 5, 6], adapter=f"l{i % 3}", max_tokens=400, ignore_eos=True)
                   for i in range(6)]
        for st in streams:
            next(st)
        def load_more():
            try:
                for i in range(3, 6):
                    admin.load_adapter(f"l{i}", "initech", f"l{i}")
            except h.GenerationError:
                pass  # the server was killed meanwhile

        loader = threading.Thread(target=load_more)
        loader.start()
        time.sleep(0.05)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=30)
        loader.join(30)
    listed = json.loads(manifest.read_text())["adapters"]
    names = {a["name"] for a in listed}
    assert {"l0", "l1", "l2"} <= names <= {f"l{i}" for i in range(6)}, names
    second = start_server(tiny_model, bare_config, "--adapter-root", root, "--adapter-manifest", manifest,
                          "--kv-cache-blocks", 256, name="second")
    with second.client(h.KEYS["initech"]) as c:
        for name, tokens in want.items():
            assert list(c.generate(token_ids=[4, 5, 6], adapter=name, max_tokens=8,
                                   ignore_eos=True).token_ids) == tokens, name
        for name in names - set(want):
            assert len(c.generate(token_ids=[4, 5, 6], adapter=name, max_tokens=2, ignore_eos=True).token_ids) == 2
    h.wait_idle(second)


def test_a_request_whose_step_fails_ends_alone(tiny_model, bare_config, start_server, tmp_path):
    """Fault "one request's step failing": a tenant's adapter that blows the activations up to
    NaN/infinity (finite weights, so it loads) ends that tenant's requests with INTERNAL naming the
    non-finite logits, while the requests sharing their batches give exactly their solo tokens, no
    KV block leaks, and the server goes on serving."""
    root = tmp_path / "root"
    root.mkdir()
    h.make_para_adapter(root / "good", tiny_model, 71, "--dtype", "f32")
    h.make_para_adapter(root / "blowup", tiny_model, 72, "--dtype", "f32", "--strength", "1e36")
    s = start_server(tiny_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", 96)
    with s.client(h.ADMIN_KEY) as admin:
        admin.load_adapter("good", "initech", "good")
        admin.load_adapter("blowup", "initech", "blowup")
    plain = dict(max_tokens=24, ignore_eos=True)
    cases = [(None, [5, 6, 7]), ("good", [8, 9, 10, 11]), (None, [12, 13])]
    with s.client(h.KEYS["initech"]) as c:
        solo = [list(c.generate(token_ids=ids, adapter=a, **plain).token_ids) if a else
                list(c.generate(token_ids=ids, **plain).token_ids) for a, ids in cases]
        with pytest.raises(h.GenerationError) as alone:
            c.generate(token_ids=[3, 4], adapter="blowup", max_tokens=4)
        assert alone.value.code == h.grpc.StatusCode.INTERNAL
        assert "non-finite logits" in alone.value.message, alone.value.message
        # The failing requests and the others in flight together (one batch), several times over.
        def run(case):
            a, ids = case
            try:
                r = c.generate(token_ids=ids, adapter=a, **plain) if a else c.generate(token_ids=ids, **plain)
                return list(r.token_ids)
            except h.GenerationError as e:
                return e
        bad = [("blowup", [3, 4, i]) for i in range(3)]
        with concurrent.futures.ThreadPoolExecutor(len(cases) + len(bad)) as pool:
            for _ in range(3):
                got = list(pool.map(run, [*cases, *bad]))
                assert got[:len(cases)] == solo
                for e in got[len(cases):]:
                    assert isinstance(e, h.GenerationError), e
                    assert e.code == h.grpc.StatusCode.INTERNAL and "non-finite logits" in e.message, e
    h.wait_idle(s)
    assert s.alive()
