"""Sequence groups and prefix caching through the real server: n, best_of and beam search over
gRPC and HTTP (completions and chat, JSON and SSE) give the same results as each other and as
para-cli; refusals name the option; prefix-cache hits show in GetServerStats and /metrics."""

import http.client
import json

import pytest

import server_harness as h

pytestmark = h.requires_binaries

KEY = h.KEYS["umbrella"]
C = h.grpc.StatusCode
PROMPT = [1, 17, 203, 44, 9, 88]


def post(s, path, body, key=KEY, stream=False):
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60)
    conn.request("POST", path, body=json.dumps({**body, "stream": stream} if stream else body),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = conn.getresponse()
    if stream and r.status == 200:
        events = [l.decode()[6:].strip() for l in r if l.startswith(b"data: ")]
        conn.close()
        assert events[-1] == "[DONE]"
        return r.status, [json.loads(e) for e in events[:-1]]
    out = json.loads(r.read())
    conn.close()
    return r.status, out


def test_n_samples_over_grpc_and_http_agree(server):
    with server.client(KEY) as c:
        ref = c.generate(token_ids=PROMPT, max_tokens=6, ignore_eos=True, n=3, temperature=0.9, seed=4)
    assert [ch.index for ch in ref.choices] == [0, 1, 2]
    assert len({tuple(ch.token_ids) for ch in ref.choices}) > 1
    assert ref.usage.completion_tokens == 18
    status, out = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": PROMPT, "max_tokens": 6,
                                                   "ignore_eos": True, "n": 3, "temperature": 0.9, "seed": 4})
    assert status == 200, out
    assert [c["text"] for c in out["choices"]] == [ch.text for ch in ref.choices]
    assert out["usage"]["completion_tokens"] == 18 and out["usage"]["prompt_tokens"] == len(PROMPT)
    # Streamed: chunks carry each choice's index; each index's text is its choice's.
    status, chunks = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": PROMPT, "max_tokens": 6,
                                                      "ignore_eos": True, "n": 3, "temperature": 0.9, "seed": 4},
                          stream=True)
    assert status == 200
    texts = {}
    for ch in chunks:
        for choice in ch["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert [texts[i] for i in range(3)] == [ch.text for ch in ref.choices]
    # gRPC streaming: per-index messages.
    with server.client(KEY) as c:
        got = {}
        for m in c.stream(token_ids=PROMPT, max_tokens=6, ignore_eos=True, n=3, temperature=0.9, seed=4):
            got.setdefault(m.index, []).extend(m.token_ids)
    assert [got[i] for i in range(3)] == [list(ch.token_ids) for ch in ref.choices]


def test_best_of_returns_the_most_likely(server):
    with server.client(KEY) as c:
        r = c.generate(token_ids=PROMPT, max_tokens=5, ignore_eos=True, n=2, best_of=5, temperature=1.0, seed=9)
        every = c.generate(token_ids=PROMPT, max_tokens=5, ignore_eos=True, n=5, best_of=5, temperature=1.0, seed=9)
    scores = sorted((ch.cumulative_logprob for ch in every.choices), reverse=True)
    assert [ch.cumulative_logprob for ch in r.choices] == pytest.approx(scores[:2], abs=1e-6)
    status, out = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": PROMPT, "max_tokens": 5,
                                                   "ignore_eos": True, "n": 2, "best_of": 5, "temperature": 1.0,
                                                   "seed": 9})
    assert status == 200 and [c["text"] for c in out["choices"]] == [ch.text for ch in r.choices]


def test_beam_search_over_grpc_http_and_para_cli(server, tiny_model):
    with server.client(KEY) as c:
        ref = c.generate(token_ids=PROMPT, max_tokens=6, ignore_eos=True, n=3, beam_width=3)
        streamed = list(c.stream(token_ids=PROMPT, max_tokens=6, ignore_eos=True, n=3, beam_width=3))
    assert len(ref.choices) == 3
    cli = h.cli_generate(tiny_model, prompt_ids=PROMPT, max_tokens=6,
                         extra=["--beam-width", "3", "--n", "3", "--kv-cache-dtype", "f32"])
    assert [c["token_ids"] for c in cli["choices"]] == [list(ch.token_ids) for ch in ref.choices]
    assert [(m.index, list(m.token_ids)) for m in streamed] == [(i, list(ch.token_ids))
                                                                for i, ch in enumerate(ref.choices)]
    for body in ({"beam_width": 3, "n": 3}, {"use_beam_search": True, "best_of": 3, "n": 3}):
        status, out = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": PROMPT, "max_tokens": 6,
                                                       "ignore_eos": True, **body})
        assert status == 200, out
        assert [c["text"] for c in out["choices"]] == [ch.text for ch in ref.choices]
    status, chunks = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": PROMPT, "max_tokens": 6,
                                                      "ignore_eos": True, "beam_width": 3, "n": 3}, stream=True)
    texts = {}
    for ch in chunks:
        for choice in ch["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert [texts[i] for i in range(3)] == [ch.text for ch in ref.choices]


def test_chat_with_n_choices(tmp_path, start_server):
    model = h.make_chat_model(tmp_path / "grp-chat", 35)
    config = h.write_config(tmp_path / "t.json", {"u": {"api_keys": [KEY]}})
    s = start_server(model, config)
    msgs = [{"role": "user", "content": "Hello"}]
    with s.client(KEY) as c:
        ref = c.chat(msgs, max_tokens=4, ignore_eos=True, n=2, temperature=1.0, seed=3)
    status, out = post(s, "/v1/chat/completions", {"model": "grp-chat", "messages": msgs, "max_tokens": 4,
                                                   "ignore_eos": True, "n": 2, "temperature": 1.0, "seed": 3})
    assert status == 200, out
    assert [c["message"]["content"] for c in out["choices"]] == [ch.text for ch in ref.choices]
    assert [c["index"] for c in out["choices"]] == [0, 1]


@pytest.mark.parametrize("body,substring", [
    ({"n": 0}, "'n' must be in [1, 16]"),
    ({"n": 17}, "'n' must be in [1, 16]"),
    ({"n": 3}, "need sampling"),  # greedy draws would be identical
    ({"n": 3, "best_of": 2, "temperature": 1}, "'best_of' must be >= 'n'"),
    ({"beam_width": 3, "temperature": 0.7}, "beam search is deterministic"),
    ({"beam_width": 3, "stop": "x"}, "stop strings"),
    ({"beam_width": 2, "n": 3}, "cannot exceed beam_width"),
    ({"length_penalty": 0.5}, "need beam search"),
    ({"n": 2, "best_of": 4, "temperature": 1, "stream": True}, "cannot stream"),
])
def test_group_refusals(server, body, substring):
    status, out = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": PROMPT, "max_tokens": 4, **body})
    assert status == 400, out
    assert substring in out["error"]["message"], out


def test_prefix_cache_hits_show_in_stats_and_metrics(server):
    shared = list(range(3, 3 + 64))  # 4 full blocks of 16
    before = h.stats(server)
    with server.client(KEY) as c:
        for tail in ([500, 501], [502, 503, 504]):
            c.generate(token_ids=shared + tail, max_tokens=2, ignore_eos=True)
    after = h.stats(server)
    assert after.prefix_cache_hit_tokens - before.prefix_cache_hit_tokens >= 64
    assert after.prefix_cache_query_tokens > before.prefix_cache_query_tokens
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    hits = [l for l in text.splitlines() if l.startswith("para_prefix_cache_hits_total")]
    assert hits and float(hits[0].split()[-1]) >= 64
    h.wait_idle(server)  # idle cached blocks count as free
