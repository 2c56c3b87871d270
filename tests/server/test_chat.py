"""Chat through the real server: gRPC (GenerateRequest.chat) and the OpenAI-compatible
/v1/chat/completions (JSON and SSE), on a tiny random model with a byte-level BPE tokenizer.json
and a ChatML template. The prompt the server builds is checked against an independent rendering:
Python jinja2 set up the way transformers renders chat templates, tokenized by the PyPI
`tokenizers`; then greedy tokens must equal the same ids sent as a token-id prompt."""

import http.client
import json

import pytest

import server_harness as h

pytestmark = h.requires_binaries

C = h.grpc.StatusCode
KEY = h.KEYS["acme"]


def reference_prompt_ids(model_dir: str, messages, add_generation_prompt=True):
    """transformers' apply_chat_template(tokenize=True), rebuilt from jinja2 and tokenizers."""
    import jinja2.sandbox
    from tokenizers import Tokenizer

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(open(f"{model_dir}/chat_template.jinja").read())
    text = template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                           bos_token="<|im_start|>", eos_token="<|im_end|>")
    return Tokenizer.from_file(f"{model_dir}/tokenizer.json").encode(text, add_special_tokens=False).ids


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    return h.make_chat_model(tmp_path_factory.mktemp("chat") / "chat-llama", 31)


@pytest.fixture(scope="module")
def chat_server(chat_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("chat-srv")
    para = h.make_para_adapter(d / "chat-para", chat_model, 41)
    config = h.write_config(d / "tenants.json", {
        "acme": {"api_keys": [KEY], "adapters": {"chat-para": para}},
        "umbrella": {"api_keys": [h.KEYS["umbrella"]]}})
    s = h.ServerProcess(chat_model, config, d / "server", "--kv-cache-blocks", "256", "--adapter-root", str(d))
    yield s
    s.stop()


CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How are you?"},
     {"role": "user", "content": "Fine, thanks. Numbers: 0123 and ünïcödé 你好 🙂"}],
]


@pytest.mark.parametrize("adapter", ["", "chat-para"])
@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
def test_grpc_chat_renders_like_transformers_and_generates_like_token_ids(chat_server, chat_model, conv, adapter):
    messages = CONVERSATIONS[conv]
    ids = reference_prompt_ids(chat_model, messages)
    with chat_server.client(KEY) as c:
        chat = c.chat(messages, adapter=adapter, max_tokens=8, ignore_eos=True)
        plain = c.generate(token_ids=ids, adapter=adapter, max_tokens=8, ignore_eos=True)
        streamed = list(c.chat_stream(messages, adapter=adapter, max_tokens=8, ignore_eos=True))
    assert chat.usage.prompt_tokens == len(ids)
    assert list(chat.token_ids) == list(plain.token_ids) and len(chat.token_ids) == 8
    assert chat.text == plain.text
    assert [t for m in streamed for t in m.token_ids] == list(chat.token_ids)
    assert "".join(m.text_delta for m in streamed) == chat.text


def test_add_generation_prompt_false_and_continue_final_message(chat_server, chat_model):
    messages = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "The capital"}]
    with chat_server.client(KEY) as c:
        r = c.chat(messages, add_generation_prompt=False, max_tokens=2, ignore_eos=True)
        assert r.usage.prompt_tokens == len(reference_prompt_ids(chat_model, messages, False))
        cont = c.chat(messages, add_generation_prompt=False, continue_final_message=True, max_tokens=2,
                      ignore_eos=True)
        full = reference_prompt_ids(chat_model, messages, False)
        # The open assistant turn stops right after its content: "<|im_end|>\n" is cut off.
        assert cont.usage.prompt_tokens == len(full) - 2
        with pytest.raises(h.GenerationError) as e:
            c.chat(messages, add_generation_prompt=True, continue_final_message=True)
        assert e.value.code == C.INVALID_ARGUMENT and "continue_final_message" in e.value.message


def test_template_errors_and_bad_conversations_are_invalid_argument(chat_server):
    with chat_server.client(KEY) as c:
        cases = [
            ([{"role": "robot", "content": "beep"}], "Unknown role: robot"),
            ([], "no messages"),
            ([{"role": "", "content": "x"}], "role must be 1 to 64 bytes"),
            ([{"role": "user", "content": "x" * (1 << 20)}], "the limit is"),
        ]
        for messages, text in cases:
            with pytest.raises(h.GenerationError) as e:
                c.chat(messages, max_tokens=2)
            assert e.value.code == C.INVALID_ARGUMENT, e.value.message
            assert text in e.value.message, e.value.message
        with pytest.raises(h.GenerationError) as e:
            c.chat([{"role": "user", "content": "x"}], template_kwargs={"messages": []})
        assert "may not set 'messages'" in e.value.message
        many = [{"role": "user", "content": "x"}] * 5000
        with pytest.raises(h.GenerationError) as e:
            c.chat(many)
        assert "5000 messages" in e.value.message
        # Still serving.
        assert len(c.chat([{"role": "user", "content": "Hello"}], max_tokens=2, ignore_eos=True).token_ids) == 2
    h.wait_idle(chat_server)


def test_template_kwargs_reach_the_template(tmp_path, start_server):
    model = h.make_chat_model(tmp_path / "kw-llama", 32, template=(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if shout is defined and shout %}LOUD{% endif %}{% if add_generation_prompt %}assistant:{% endif %}"))
    config = h.write_config(tmp_path / "tenants.json", {"acme": {"api_keys": [KEY]}})
    s = start_server(model, config)
    with s.client(KEY) as c:
        quiet = c.chat([{"role": "user", "content": "Hi"}], max_tokens=1, ignore_eos=True)
        loud = c.chat([{"role": "user", "content": "Hi"}], template_kwargs={"shout": True}, max_tokens=1,
                      ignore_eos=True)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(f"{model}/tokenizer.json")
    assert quiet.usage.prompt_tokens == len(tok.encode("user: Hi\nassistant:", add_special_tokens=False).ids)
    assert loud.usage.prompt_tokens == len(tok.encode("user: Hi\nLOUDassistant:", add_special_tokens=False).ids)


def test_a_model_without_chat_template_refuses_chat(tmp_path, start_server):
    model = h.make_chat_model(tmp_path / "plain-llama", 33, template=None)
    config = h.write_config(tmp_path / "tenants.json", {"acme": {"api_keys": [KEY]}})
    s = start_server(model, config)
    with s.client(KEY) as c:
        with pytest.raises(h.GenerationError) as e:
            c.chat([{"role": "user", "content": "Hi"}])
        assert e.value.code == C.INVALID_ARGUMENT and "has no chat template" in e.value.message
    status, body = post(s, "/v1/chat/completions", {"model": "plain-llama", "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 400 and "has no chat template" in body["error"]["message"]


# ---- /v1/chat/completions -------------------------------------------------------------------

def post(s, path, body, key=KEY):
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60)
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, json.loads(raw) if r.getheader("Content-Type", "").startswith("application/json") else raw.decode()


def sse(s, body, key=KEY):
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({**body, "stream": True}),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.read()
    events = [l.decode().rstrip("\n")[6:] for l in r if l.startswith(b"data: ")]
    conn.close()
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


@pytest.mark.parametrize("model,adapter", [("chat-llama", ""), ("chat-para", "chat-para")])
def test_http_chat_equals_grpc_chat(chat_server, model, adapter):
    messages = CONVERSATIONS[1]
    with chat_server.client(KEY) as c:
        ref = c.chat(messages, adapter=adapter, max_tokens=10, ignore_eos=True, temperature=0.8, seed=5,
                     logprobs=2)
    status, out = post(chat_server, "/v1/chat/completions",
                       {"model": model, "messages": messages, "max_tokens": 10, "ignore_eos": True,
                        "temperature": 0.8, "seed": 5, "logprobs": True, "top_logprobs": 2})
    assert status == 200, out
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    choice = out["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ref.text}
    assert choice["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": ref.usage.prompt_tokens, "completion_tokens": 10,
                            "total_tokens": ref.usage.prompt_tokens + 10}
    content = choice["logprobs"]["content"]
    assert [e["logprob"] for e in content] == pytest.approx([e.logprob for e in ref.logprobs], abs=1e-6)
    assert all(len(e["top_logprobs"]) == 2 and e["bytes"] == list(e["token"].encode()) for e in content)

    chunks = sse(chat_server, {"model": model, "messages": messages, "max_tokens": 10, "ignore_eos": True,
                               "temperature": 0.8, "seed": 5, "stream_options": {"include_usage": True}})
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == ref.text
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 10


def test_http_chat_with_the_openai_sdk(chat_server):
    import openai
    client = openai.OpenAI(base_url=f"{chat_server.http}/v1", api_key=KEY, max_retries=0)
    messages = CONVERSATIONS[0]
    with chat_server.client(KEY) as c:
        ref = c.chat(messages, max_tokens=6, ignore_eos=True)
    r = client.chat.completions.create(model="chat-llama", messages=messages, max_tokens=6,
                                       extra_body={"ignore_eos": True})
    assert r.choices[0].message.content == ref.text and r.usage.completion_tokens == 6
    stream = client.chat.completions.create(model="chat-llama", messages=messages, max_completion_tokens=6,
                                            stream=True, extra_body={"ignore_eos": True})
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == ref.text
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="chat-llama", messages=[{"role": "tool", "content": "x"}])
    assert "role" in str(e.value)


@pytest.mark.parametrize("body,substring", [
    ({"model": "chat-llama"}, "'messages' is required"),
    ({"model": "chat-llama", "messages": []}, "'messages' is required"),
    ({"model": "chat-llama", "messages": [{"role": "user"}]}, "'messages[0].content' is required"),
    ({"model": "chat-llama", "messages": [{"content": "x"}]}, "'messages[0].role' is required"),
    ({"model": "chat-llama", "messages": [{"role": "wizard", "content": "x"}]}, "'messages[0].role' is 'wizard'"),
    ({"model": "chat-llama", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "only text content is supported"),
    ({"model": "chat-llama", "messages": [{"role": "user", "content": "x", "tool_call_id": "1"}]},
     "'messages[0].tool_call_id' is not supported"),
    ({"model": "chat-llama", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
     "'tools' is not supported"),
    ({"model": "chat-llama", "messages": [{"role": "user", "content": "x"}], "n": 2}, "need sampling"),
    ({"model": "chat-llama", "messages": [{"role": "user", "content": "x"}], "n": 17}, "'n'"),
    ({"model": "chat-llama", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2},
     "'top_logprobs' needs 'logprobs': true"),
    ({"model": "chat-llama", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}},
     "'response_format' is not supported"),
    ({"model": "chat-llama", "messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": [1]},
     "'chat_template_kwargs' must be an object"),
    ({"model": "chat-llama", "messages": [{"role": "user", "content": "x"}], "bogus": 1},
     "Unrecognized request argument supplied: bogus"),
    ({"model": "nope", "messages": [{"role": "user", "content": "x"}]}, "nope"),
])
def test_http_chat_errors(chat_server, body, substring):
    status, out = post(chat_server, "/v1/chat/completions", body)
    assert status in (400, 404), out
    assert substring in out["error"]["message"], out


def test_http_chat_content_parts_are_joined(chat_server, chat_model):
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "world"}]
    status, out = post(chat_server, "/v1/chat/completions",
                       {"model": "chat-llama", "messages": [{"role": "user", "content": parts}],
                        "max_tokens": 1, "ignore_eos": True})
    assert status == 200, out
    ids = reference_prompt_ids(chat_model, [{"role": "user", "content": "Hello\nworld"}])
    assert out["usage"]["prompt_tokens"] == len(ids)
