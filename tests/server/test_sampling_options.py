"""The sampling and stopping options users send (presence and frequency penalties, logit_bias,
min_p, min_tokens, include_stop_str_in_output, skip_special_tokens, prompt_logprobs), the same
over gRPC, HTTP and para-cli; echo offsets; generation_config.json's max_new_tokens."""

import http.client
import json

import pytest

import server_harness as h

pytestmark = h.requires_binaries

KEY = h.KEYS["umbrella"]  # the base model


def post(s, path, body, key=KEY):
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60)
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = conn.getresponse()
    out = json.loads(r.read())
    conn.close()
    return r.status, out


def completion(s, **body):
    status, out = post(s, "/v1/completions", {"model": "tiny-llama", **body})
    assert status == 200, out
    return out["choices"][0]


def test_logit_bias_forces_a_token_everywhere(server, tiny_model):
    forced = 77
    with server.client(KEY) as c:
        r = c.generate(token_ids=[1, 5, 6], max_tokens=5, ignore_eos=True, logit_bias={forced: 100.0})
    assert list(r.token_ids) == [forced] * 5
    choice = completion(server, prompt=[1, 5, 6], max_tokens=5, ignore_eos=True, logit_bias={str(forced): 100})
    assert choice["text"] == r.text
    cli = h.cli_generate(tiny_model, prompt_ids=[1, 5, 6], max_tokens=5, extra=["--logit-bias", f"{forced}=100"])
    assert cli["token_ids"] == [forced] * 5
    # A bias of -100 on the greedy choice changes it.
    with server.client(KEY) as c:
        plain = c.generate(token_ids=[1, 5, 6], max_tokens=1, ignore_eos=True)
        banned = c.generate(token_ids=[1, 5, 6], max_tokens=1, ignore_eos=True,
                            logit_bias={plain.token_ids[0]: -100.0})
    assert banned.token_ids[0] != plain.token_ids[0]


def test_presence_and_frequency_penalties_discourage_repeats(server, tiny_model):
    prompt = [1, 5, 6, 7]
    with server.client(KEY) as c:
        plain = c.generate(token_ids=prompt, max_tokens=24, ignore_eos=True)
        penalized = c.generate(token_ids=prompt, max_tokens=24, ignore_eos=True, frequency_penalty=2.0,
                               presence_penalty=2.0)
    assert len(set(penalized.token_ids)) > len(set(plain.token_ids))  # greedy on a random model repeats
    http_out = completion(server, prompt=prompt, max_tokens=24, ignore_eos=True, frequency_penalty=2.0,
                          presence_penalty=2.0)
    assert http_out["text"] == penalized.text
    cli = h.cli_generate(tiny_model, prompt_ids=prompt, max_tokens=24,
                         extra=["--frequency-penalty", "2", "--presence-penalty", "2"])
    assert cli["token_ids"] == list(penalized.token_ids)


def test_min_tokens_holds_back_stop_tokens(server):
    with server.client(KEY) as c:
        first = c.generate(token_ids=[1, 9, 10], max_tokens=1, ignore_eos=True).token_ids[0]
        stopped = c.generate(token_ids=[1, 9, 10], max_tokens=8, stop_token_ids=[first])
        assert list(stopped.token_ids) == [first]
        held = c.generate(token_ids=[1, 9, 10], max_tokens=8, stop_token_ids=[first], min_tokens=3)
    assert len(held.token_ids) >= 3 and first not in list(held.token_ids)[:3]
    with pytest.raises(h.GenerationError) as e:
        with server.client(KEY) as c:
            c.generate(token_ids=[1, 9, 10], max_tokens=2, min_tokens=5)
    assert e.value.code == h.grpc.StatusCode.INVALID_ARGUMENT and "min_tokens" in e.value.message


def test_include_stop_str_in_output(server):
    with server.client(KEY) as c:
        full = c.generate("Hello there", max_tokens=12, ignore_eos=True)
    stop = full.text[3:5]
    assert stop
    cut = completion(server, prompt="Hello there", max_tokens=12, ignore_eos=True, stop=stop)
    kept = completion(server, prompt="Hello there", max_tokens=12, ignore_eos=True, stop=stop,
                      include_stop_str_in_output=True)
    assert cut["text"] == full.text[:full.text.index(stop)]
    assert kept["text"] == cut["text"] + stop and kept["finish_reason"] == "stop"


def test_min_p_and_validation(server):
    with server.client(KEY) as c:
        # min_p = 1 keeps only the most likely token: sampling becomes greedy.
        greedy = c.generate(token_ids=[1, 5, 6], max_tokens=8, ignore_eos=True)
        r = c.generate(token_ids=[1, 5, 6], max_tokens=8, ignore_eos=True, temperature=1.5, seed=3, min_p=1.0)
        assert list(r.token_ids) == list(greedy.token_ids)
        for bad in ({"min_p": 1.5}, {"presence_penalty": 3.0}, {"logit_bias": {5: 500.0}},
                    {"logit_bias": {10 ** 6: 1.0}}):
            with pytest.raises(h.GenerationError) as e:
                c.generate(token_ids=[1, 5], max_tokens=2, **bad)
            assert e.value.code == h.grpc.StatusCode.INVALID_ARGUMENT, bad
    status, out = post(server, "/v1/completions", {"model": "tiny-llama", "prompt": "x", "logit_bias": {"abc": 1}})
    assert status == 400 and "logit_bias" in out["error"]["message"]


def test_prompt_logprobs_over_http_equal_grpc(server):
    with server.client(KEY) as c:
        ref = c.generate(token_ids=[1, 5, 6, 7, 8], max_tokens=2, ignore_eos=True, prompt_logprobs=3)
    choice = completion(server, prompt=[1, 5, 6, 7, 8], max_tokens=2, ignore_eos=True, prompt_logprobs=3)
    plp = choice["prompt_logprobs"]
    assert plp[0] is None and len(plp) == 5
    for entry, want, token in zip(plp[1:], ref.prompt_logprobs, [5, 6, 7, 8]):
        assert entry[str(token)]["logprob"] == pytest.approx(want.logprob, abs=1e-6)
        top_ids = [t.id for t in want.top]
        assert set(entry) == {str(token), *map(str, top_ids)}  # the prompt token and the top 3
        for rank, t in enumerate(want.top, 1):
            assert entry[str(t.id)]["rank"] == rank
            assert entry[str(t.id)]["logprob"] == pytest.approx(t.logprob, abs=1e-6)
        if token not in top_ids:  # ranked below the top 3 by how many are more likely
            assert entry[str(token)]["rank"] > 3 and entry[str(token)]["logprob"] <= want.top[-1].logprob


def check_echo_offsets(s, prompt):
    choice = completion(s, prompt=prompt, max_tokens=4, ignore_eos=True, echo=True, logprobs=0)
    text, lp = choice["text"], choice["logprobs"]
    offsets, tokens = lp["text_offset"], lp["tokens"]
    assert text.startswith("Hello world, how are you"), text
    assert offsets == sorted(offsets)
    # After the first word every token's text stands at its offset in the returned text.
    for tok, off in list(zip(tokens, offsets))[2:]:
        if not tok.startswith("<"):
            assert text[off:off + len(tok)] == tok, (tok, off, text)
    # Consecutive offsets differ by the token's length.
    for i in range(2, len(tokens) - 1):
        assert offsets[i + 1] - offsets[i] == len(tokens[i].encode())


def test_echo_text_offsets_point_at_each_token(server):
    check_echo_offsets(server, "Hello world, how are you")


def test_echo_offsets_with_a_llama_style_tokenizer_json(tenants_config, start_server, tmp_path):
    """The same with LLaMA's tokenizer.json shape (a "▁" prepended by the normalizer, stripped by
    the decoder, BOS as a special token): offsets once ignored that BOS adds no text and were one
    byte late. Token-id prompts with BOS echo the text without "<s>"."""
    model = h.make_model(tmp_path / "json" / "tiny-llama", 11, "--max-pos", "512")
    h.spm_json.add_tokenizer_json(tmp_path / "json" / "tiny-llama")
    s = start_server(model, tenants_config)
    check_echo_offsets(s, "Hello world, how are you")
    with s.client(KEY) as c:
        ids = list(c.tokenize("Hello world, how are you").ids)
    assert ids[0] == 1  # BOS
    check_echo_offsets(s, ids)


def test_generation_config_max_new_tokens_is_the_default(tmp_path, start_server):
    model = h.make_model(tmp_path / "gen-llama", 8, "--max-pos", "256")
    (tmp_path / "gen-llama" / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "eos_token_id": 2, "max_new_tokens": 5}))
    config = h.write_config(tmp_path / "t.json", {"u": {"api_keys": [KEY]}})
    s = start_server(model, config)
    with s.client(KEY) as c:
        assert len(c.generate(token_ids=[1, 5, 6], ignore_eos=True).token_ids) == 5
        assert len(c.generate(token_ids=[1, 5, 6], ignore_eos=True, max_tokens=7).token_ids) == 7
    assert len(h.cli_generate(model, prompt_ids=[1, 5, 6], max_tokens=None)["token_ids"]) == 5


def test_skip_special_tokens(tmp_path, start_server):
    model = h.make_chat_model(tmp_path / "special-llama", 34)
    config = h.write_config(tmp_path / "t.json", {"u": {"api_keys": [KEY]}})
    s = start_server(model, config)
    # <|im_end|> (id 2) forced three times: no text by default, its content when asked.
    body = {"model": "special-llama", "prompt": "Hi", "max_tokens": 3, "ignore_eos": True, "logit_bias": {"2": 100}}
    status, hidden = post(s, "/v1/completions", body)
    assert status == 200 and hidden["choices"][0]["text"] == ""
    status, shown = post(s, "/v1/completions", {**body, "skip_special_tokens": False})
    assert status == 200 and shown["choices"][0]["text"] == "<|im_end|>" * 3
