"""The HTTP front door against the real server: the OpenAI-compatible /v1/completions (JSON and
SSE) and /v1/models, whose results must equal the gRPC API's for the same seed; errors with the
right status and an OpenAI-style body; /healthz and /readyz; and hostile clients (slowloris,
oversize headers and bodies, malformed requests, too many connections, disconnects)."""

import http.client
import json
import socket
import time

import pytest

import server_harness as h

pytestmark = h.requires_binaries

C = h.grpc.StatusCode


# ---- a small HTTP client (standard library only) ---------------------------------------------

def call(s, method, path, body=None, key=None, headers=None, timeout=30):
    """Returns (status, headers, parsed JSON or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=timeout)
    hdrs = dict(headers or {})
    if key:
        hdrs["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=hdrs)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    ctype = r.getheader("Content-Type", "")
    return r.status, dict(r.getheaders()), json.loads(raw) if "json" in ctype else raw.decode()


def complete(s, key, **body):
    status, _, out = call(s, "POST", "/v1/completions", body, key)
    assert status == 200, out
    return out


def stream(s, key, **body):
    """Runs a streaming completion; returns the decoded SSE events (the last is '[DONE]')."""
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.read()
    assert r.getheader("Content-Type") == "text/event-stream"
    events = []
    for line in r:
        line = line.decode().rstrip("\n")
        if not line:
            continue
        assert line.startswith("data: "), line
        payload = line[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    conn.close()
    assert events and events[-1] == "[DONE]"
    return events


def error_of(status_body):
    status, _, body = status_body
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"]), body
    return status, body["error"]["message"]


# ---- results equal the gRPC API's ------------------------------------------------------------

TENANT_MODELS = [(t, h.ADAPTERS[t] or "tiny-llama") for t in h.KEYS]


@pytest.mark.parametrize("tenant,model", TENANT_MODELS, ids=[t for t, _ in TENANT_MODELS])
def test_completion_equals_grpc_for_the_same_seed(server, tenant, model):
    key = h.KEYS[tenant]
    adapter = h.ADAPTERS[tenant]
    opts = dict(max_tokens=12, temperature=0.8, top_p=0.9, seed=1234)
    with server.client(key) as c:
        ref = c.generate("The quick brown fox", adapter=adapter, logprobs=3, ignore_eos=True, timeout=30, **opts)
    out = complete(server, key, model=model, prompt="The quick brown fox", logprobs=3, ignore_eos=True, **opts)
    choice = out["choices"][0]
    assert out["object"] == "text_completion" and out["model"] == model
    assert choice["text"] == ref.text
    assert choice["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": ref.usage.prompt_tokens, "completion_tokens": 12,
                            "total_tokens": ref.usage.prompt_tokens + 12}
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == 12
    assert lp["token_logprobs"] == pytest.approx([e.logprob for e in ref.logprobs], abs=1e-6)
    for top, e in zip(lp["top_logprobs"], ref.logprobs):
        assert len(top) <= 3 and max(top.values()) == pytest.approx(e.top[0].logprob, abs=1e-6)

    events = stream(server, key, model=model, prompt="The quick brown fox", ignore_eos=True, **opts)
    chunks = events[:-1]
    assert "".join(ch["choices"][0]["text"] for ch in chunks) == ref.text
    assert [ch["choices"][0]["finish_reason"] for ch in chunks][-1] == "length"
    assert all(ch["choices"][0]["finish_reason"] is None for ch in chunks[:-1])
    assert len({ch["id"] for ch in chunks}) == 1


def test_token_id_prompts_stop_strings_and_multiple_prompts(server):
    key = h.KEYS["acme"]
    with server.client(key) as c:
        refs = [c.generate(token_ids=ids, adapter="acme-para", max_tokens=8, ignore_eos=True, timeout=30)
                for ids in ([1, 5, 9, 13], [1, 40, 41])]
        by_text = c.generate("Hello there", adapter="acme-para", max_tokens=8, ignore_eos=True, timeout=30)
    out = complete(server, key, model="acme-para", prompt=[[1, 5, 9, 13], [1, 40, 41]], max_tokens=8,
                   ignore_eos=True)
    assert [ch["index"] for ch in out["choices"]] == [0, 1]
    assert [ch["text"] for ch in out["choices"]] == [r.text for r in refs]
    out = complete(server, key, model="acme-para", prompt=[1, 5, 9, 13], max_tokens=8, ignore_eos=True)
    assert out["choices"][0]["text"] == refs[0].text
    out = complete(server, key, model="acme-para", prompt=["Hello there", "Hello there"], max_tokens=8,
                   ignore_eos=True)
    assert [ch["text"] for ch in out["choices"]] == [by_text.text] * 2
    assert out["usage"]["completion_tokens"] == 16

    # A stop string cuts the text as the gRPC API does.
    text = by_text.text
    stop = text[3:6] if len(text) >= 6 else text
    with server.client(key) as c:
        ref = c.generate("Hello there", adapter="acme-para", max_tokens=8, ignore_eos=True, stop=[stop], timeout=30)
    out = complete(server, key, model="acme-para", prompt="Hello there", max_tokens=8, ignore_eos=True, stop=stop)
    assert out["choices"][0]["text"] == ref.text and out["choices"][0]["finish_reason"] == "stop"


def test_echo_with_logprobs_includes_the_prompt(server):
    key = h.KEYS["globex"]
    with server.client(key) as c:
        ref = c.generate("Echo me", adapter="globex-para", max_tokens=4, ignore_eos=True, logprobs=2,
                         prompt_logprobs=2, timeout=30)
    out = complete(server, key, model="globex-para", prompt="Echo me", max_tokens=4, ignore_eos=True,
                   logprobs=2, echo=True)
    choice = out["choices"][0]
    assert choice["text"] == "Echo me" + ref.text
    lp = choice["logprobs"]
    n_prompt = ref.usage.prompt_tokens
    assert len(lp["tokens"]) == n_prompt + 4
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["token_logprobs"][1:n_prompt] == pytest.approx([e.logprob for e in ref.prompt_logprobs], abs=1e-6)
    assert lp["token_logprobs"][n_prompt:] == pytest.approx([e.logprob for e in ref.logprobs], abs=1e-6)
    assert lp["text_offset"] == sorted(lp["text_offset"])


def test_streaming_usage_and_logprobs(server):
    key = h.KEYS["initech"]
    events = stream(server, key, model="initech-lora", prompt="Stream", max_tokens=6, ignore_eos=True,
                    logprobs=1, stream_options={"include_usage": True})
    *chunks, usage, done = events
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 6
    assert all(ch["usage"] is None for ch in chunks)
    tokens = [t for ch in chunks if ch["choices"][0]["logprobs"] for t in ch["choices"][0]["logprobs"]["tokens"]]
    assert len(tokens) == 6


def test_models_lists_the_base_model_and_the_callers_adapters(server):
    status, _, out = call(server, "GET", "/v1/models", key=h.KEYS["initech"])
    assert status == 200 and out["object"] == "list"
    assert [m["id"] for m in out["data"]] == ["tiny-llama", "initech-lora"]
    assert out["data"][1]["parent"] == "tiny-llama" and out["data"][1]["adapter_type"] == "lora"
    status, _, out = call(server, "GET", "/v1/models", key=h.KEYS["umbrella"])
    assert [m["id"] for m in out["data"]] == ["tiny-llama"]
    status, _, out = call(server, "GET", "/v1/models", key=h.ADMIN_KEY)
    assert {m["id"] for m in out["data"]} == {"tiny-llama", "acme-para", "globex-para", "initech-lora"}


def test_the_openai_python_sdk_works_against_it(server):
    import openai  # pinned in tests/requirements.txt
    client = openai.OpenAI(base_url=f"{server.http}/v1", api_key=h.KEYS["acme"], max_retries=0)
    with server.client(h.KEYS["acme"]) as c:
        ref = c.generate("SDK", adapter="acme-para", max_tokens=5, ignore_eos=True, seed=7, temperature=0.7, timeout=30)
    out = client.completions.create(model="acme-para", prompt="SDK", max_tokens=5, seed=7, temperature=0.7,
                                    extra_body={"ignore_eos": True})
    assert out.choices[0].text == ref.text
    text = "".join(ch.choices[0].text for ch in client.completions.create(
        model="acme-para", prompt="SDK", max_tokens=5, seed=7, temperature=0.7, stream=True,
        extra_body={"ignore_eos": True}) if ch.choices)
    assert text == ref.text
    assert {m.id for m in client.models.list()} == {"tiny-llama", "acme-para"}
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x", max_tokens=2)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.http}/v1", api_key="wrong-key-123", max_retries=0).completions.create(
            model="tiny-llama", prompt="x", max_tokens=2)


# ---- errors ------------------------------------------------------------------------------------

ACME = h.KEYS["acme"]
ERRORS = [
    # (id, key, body, status, substring of the message)
    ("no-key", None, {"model": "tiny-llama", "prompt": "x"}, 401, "API key"),
    ("bad-key", "not-a-key-000", {"model": "tiny-llama", "prompt": "x"}, 401, "API key"),
    ("admin-key", h.ADMIN_KEY, {"model": "tiny-llama", "prompt": "x"}, 403, "Admin API"),
    ("other-tenants-adapter", ACME, {"model": "initech-lora", "prompt": "x"}, 404, "unknown adapter 'initech-lora'"),
    ("unknown-model", ACME, {"model": "no-such-adapter", "prompt": "x"}, 404, "no-such-adapter"),
    ("not-json", ACME, "{not json", 400, "not valid JSON"),
    ("not-an-object", ACME, "[1, 2]", 400, "JSON object"),
    ("unknown-field", ACME, {"model": "tiny-llama", "prompt": "x", "bogus": 1}, 400, "bogus"),
    ("no-model", ACME, {"prompt": "x"}, 400, "'model'"),
    ("no-prompt", ACME, {"model": "tiny-llama"}, 400, "'prompt'"),
    ("empty-prompt", ACME, {"model": "tiny-llama", "prompt": ""}, 400, "empty"),
    ("prompt-wrong-type", ACME, {"model": "tiny-llama", "prompt": {"a": 1}}, 400, "'prompt'"),
    ("mixed-prompt-list", ACME, {"model": "tiny-llama", "prompt": ["a", 1]}, 400, "'prompt'"),
    ("token-out-of-vocab", ACME, {"model": "tiny-llama", "prompt": [1, 99999999]}, 400, "99999999"),
    ("negative-token", ACME, {"model": "tiny-llama", "prompt": [1, -5]}, 400, "token ids"),
    ("max-tokens-zero", ACME, {"model": "tiny-llama", "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ("max-tokens-string", ACME, {"model": "tiny-llama", "prompt": "x", "max_tokens": "5"}, 400, "max_tokens"),
    ("max-tokens-past-context", ACME, {"model": "tiny-llama", "prompt": "x", "max_tokens": 100000}, 400,
     "max_tokens"),
    ("negative-temperature", ACME, {"model": "tiny-llama", "prompt": "x", "temperature": -1}, 400,
     "temperature"),
    ("n-2-greedy", ACME, {"model": "tiny-llama", "prompt": "x", "n": 2}, 400, "need sampling"),
    ("presence-penalty", ACME, {"model": "tiny-llama", "prompt": "x", "presence_penalty": 3.5}, 400,
     "presence_penalty must be in [-2, 2]"),
    ("logprobs-too-many", ACME, {"model": "tiny-llama", "prompt": "x", "logprobs": 50}, 400, "logprobs"),
    ("stream-options-without-stream", ACME, {"model": "tiny-llama", "prompt": "x", "stream_options": {}}, 400,
     "stream_options"),
    ("stop-wrong-type", ACME, {"model": "tiny-llama", "prompt": "x", "stop": 5}, 400, "'stop'"),
    ("prompt-past-context", ACME, {"model": "tiny-llama", "prompt": [1] * 600}, 400, "context"),
    ("too-many-prompts", ACME, {"model": "tiny-llama", "prompt": ["x"] * 65}, 400, "at most"),
]


@pytest.mark.parametrize("case_id,key,body,status,substring", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_have_their_status_and_an_openai_body(server, case_id, key, body, status, substring):
    got, message = error_of(call(server, "POST", "/v1/completions", body, key))
    assert got == status, message
    assert substring in message, message
    # The same request streamed fails the same way, before any event.
    if isinstance(body, dict) and "stream_options" not in body:
        got, message = error_of(call(server, "POST", "/v1/completions", {**body, "stream": True}, key))
        assert got == status and substring in message, message


def test_routes_methods_and_health(server):
    assert call(server, "GET", "/healthz")[0] == 200
    status, _, text = call(server, "GET", "/readyz")
    assert (status, text) == (200, "ready\n")
    status, headers, _ = call(server, "GET", "/v1/completions", key=ACME)
    assert status == 405 and headers["Allow"] == "POST"
    assert error_of(call(server, "GET", "/v2/nothing"))[0] == 404
    status, _, _ = call(server, "GET", "/v1/models")
    assert status == 401
    status, headers, text = call(server, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    # HEAD: the length GET would send, and no body.
    head = raw(server, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 3\r\n" in head and head.endswith(b"\r\n\r\n")


def test_expect_100_continue_is_answered_before_the_body(server):
    body = json.dumps({"model": "tiny-llama", "prompt": "hi", "max_tokens": 2}).encode()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ACME.encode() +
                     b"\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: " +
                     str(len(body)).encode() + b"\r\n\r\n")
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 200"), out[:200]
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["usage"]["completion_tokens"] == 2


def test_queue_full_is_429_and_draining_is_503(slow_model, slow_config, start_server):
    s = start_server(slow_model, slow_config, "--max-num-seqs", "1", "--max-waiting-per-tenant", "1",
                     "--kv-cache-blocks", "1024")
    with s.client(ACME) as c:
        running = c.stream(token_ids=[1, 2, 3], max_tokens=3000, ignore_eos=True, timeout=120)
        next(running)
        queued = c._gen.GenerateStream(c.request(token_ids=[1, 2, 4], max_tokens=5), metadata=c._metadata)
        h.wait_until(lambda: h.stats(s).requests_waiting == 1, 10, what="a queued request")
        status, message = error_of(call(s, "POST", "/v1/completions",
                                        {"model": "slow-llama", "prompt": [1, 2], "max_tokens": 2}, ACME))
        assert status == 429, message
        s.sigterm()
        h.wait_until(lambda: call(s, "GET", "/readyz")[0] == 503, 10, what="/readyz to turn 503")
        assert call(s, "GET", "/readyz")[2] == "draining\n"
        assert call(s, "GET", "/healthz")[0] == 200
        status, message = error_of(call(s, "POST", "/v1/completions",
                                        {"model": "slow-llama", "prompt": [1, 2], "max_tokens": 2}, ACME))
        assert status == 503 and "shutting down" in message
    s.kill()


# ---- hostile clients -----------------------------------------------------------------------------

def raw(s, data: bytes, timeout=10, shutdown=False) -> bytes:
    """Sends raw bytes; returns everything the server sends back before closing (or timeout)."""
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=timeout) as sock:
        sock.sendall(data)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out


@pytest.fixture(scope="module")
def hostile_server(tiny_model, tenants_config, tmp_path_factory):
    s = h.ServerProcess(tiny_model, tenants_config, tmp_path_factory.mktemp("http-hostile"),
                        "--http-read-timeout-ms", "1000", "--http-max-connections", "64",
                        "--http-max-body-bytes", "65536", "--http-max-header-bytes", "4096")
    yield s
    s.stop()


def test_malformed_and_oversize_requests(hostile_server):
    s = hostile_server
    assert raw(s, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(s, b"GET / HTTP/9.9\r\n\r\n").startswith(b"HTTP/1.1 400")
    big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n"
    assert raw(s, big_header).startswith(b"HTTP/1.1 431")
    claims = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n"
    assert raw(s, claims).startswith(b"HTTP/1.1 413")
    chunked = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
               b"".join(b"8000\r\n" + b"a" * 0x8000 + b"\r\n" for _ in range(4)))
    assert raw(s, chunked).startswith(b"HTTP/1.1 413")
    status, message = error_of(call(s, "POST", "/v1/completions", b'{"model": "tiny-llama", "prompt": "' +
                                    b"\xff\xfe" + b'"}', ACME))
    assert status == 400, message
    assert call(s, "GET", "/healthz")[0] == 200


def test_slowloris_clients_are_cut_off_and_do_not_block_others(hostile_server):
    s = hostile_server
    socks = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", s.http_port), timeout=5)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        socks.append(sock)
    t0 = time.monotonic()
    assert call(s, "GET", "/healthz")[0] == 200  # others are served meanwhile
    for sock in socks:
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except socket.timeout:
            pytest.fail("the server did not close a slowloris connection within 5 s")
        assert data.startswith(b"HTTP/1.1 408"), data[:100]
        sock.close()
    assert time.monotonic() - t0 < 5
    # A client that trickles one byte at a time is cut at the same deadline.
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=5) as sock:
        t0 = time.monotonic()
        closed = False
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - t0 > 3:
                break
        data = sock.recv(4096) if not closed else b""
        assert closed or data.startswith(b"HTTP/1.1 408") or data == b""
        assert time.monotonic() - t0 < 3.5


@pytest.mark.memory_bound
def test_connections_past_the_limit_get_503_and_memory_stays_bounded(hostile_server):
    s = hostile_server
    rss0 = s.rss_kb()
    held = [socket.create_connection(("127.0.0.1", s.http_port), timeout=5) for _ in range(64)]
    time.sleep(0.2)
    extra = raw(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert extra.startswith(b"HTTP/1.1 503"), extra[:80]
    for sock in held:
        sock.close()
    h.wait_until(lambda: call(s, "GET", "/healthz")[0] == 200, 5, what="the server to accept again")
    # 300 hostile requests of every kind: memory must not grow with them.
    for i in range(100):
        raw(s, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 60000\r\n\r\n" +
            b"{" * 60000)
        raw(s, b"GET / HTTP/1.1\r\nX: " + b"b" * 5000 + b"\r\n\r\n")
        raw(s, b"\x00\x01\x02 nonsense\r\n\r\n")
    growth = s.rss_kb() - rss0
    print(f"\nRSS growth over 64 held connections and 300 hostile requests: {growth} KiB")
    assert growth < 20 * 1024, f"RSS grew by {growth} KiB"
    assert complete(s, ACME, model="acme-para", prompt="still fine", max_tokens=3)["choices"][0]["text"] is not None


def test_a_client_that_disconnects_frees_its_request(slow_server):
    s = slow_server
    for streamed in (True, False):
        body = json.dumps({"model": "slow-llama", "prompt": [1, 2, 3], "max_tokens": 3000, "ignore_eos": True,
                           "stream": streamed}).encode()
        sock = socket.create_connection(("127.0.0.1", s.http_port), timeout=10)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ACME.encode() +
                     b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                     b"\r\n\r\n" + body)
        h.wait_until(lambda: h.stats(s).requests_running == 1, 10, what="the request to run")
        if streamed:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
        stats = h.wait_idle(s, timeout=10)  # cancelled at once: blocks back in the pool
        assert stats.kv_blocks_free == stats.kv_blocks_total
