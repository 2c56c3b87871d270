"""Findings of hostile testing (issue "Hardening"), each reproduced against the real server: the
fix must hold, and the server must keep serving afterwards."""

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
