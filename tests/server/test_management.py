"""vLLM's management and utility endpoints on the real server, driven with httpx and the openai
client: /health, /ping, /version, /tokenize, /detokenize, /v1/models/{id}, --served-model-name,
and adapter management (/v1/load_lora_adapter, /v1/unload_lora_adapter) for LoRA and PARA
adapters behind the admin key, with the Admin API's confinement and errors."""

import json
import pathlib
import re
import shutil

import httpx
import openai
import pytest

import server_harness as h

pytestmark = h.requires_binaries

REPO = pathlib.Path(__file__).resolve().parents[2]


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def post(s, path, body, key=None):
    return httpx.post(s.http + path, json=body, headers=auth(key) if key else {}, timeout=60)


def error_message(r) -> str:
    return r.json()["error"]["message"]


def oai(s, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.http + "/v1", api_key=key, max_retries=0, timeout=60)


# ---- health, ping, version ---------------------------------------------------------------------

def test_health_ping_and_version(server):
    r = httpx.get(server.http + "/health")
    assert (r.status_code, r.text) == (200, "")
    assert httpx.get(server.http + "/ping").status_code == 200
    assert httpx.post(server.http + "/ping").status_code == 200  # SageMaker's form
    r = httpx.post(server.http + "/health")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    version = re.search(r"project\(para_serve VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text())[1]
    assert httpx.get(server.http + "/version").json() == {"version": version}


# ---- tokenizer ---------------------------------------------------------------------------------

def test_tokenize_matches_grpc_and_detokenize_inverts_it(server):
    key = h.KEYS["acme"]
    r = post(server, "/tokenize", {"prompt": "hello world", "return_token_strs": True}, key)
    assert r.status_code == 200, r.text
    out = r.json()
    with server.client(key) as c:
        grpc_ids = list(c.tokenize("hello world").ids)
    assert out["tokens"] == grpc_ids
    assert out["count"] == len(grpc_ids) and out["max_model_len"] == 512
    assert len(out["token_strs"]) == len(grpc_ids)
    plain = post(server, "/tokenize", {"prompt": "hello world", "add_special_tokens": False}, key).json()
    assert plain["token_strs"] is None
    assert plain["tokens"] == grpc_ids[len(grpc_ids) - len(plain["tokens"]):]  # special tokens only in front
    back = post(server, "/detokenize", {"tokens": plain["tokens"], "model": "acme-para"}, key)
    assert back.status_code == 200 and back.json() == {"prompt": "hello world"}


def test_tokenizer_endpoint_errors(server):
    key = h.KEYS["acme"]
    assert post(server, "/tokenize", {"prompt": "x"}).status_code == 401
    r = post(server, "/tokenize", {"prompt": "x", "model": "globex-para"}, key)  # another tenant's
    assert r.status_code == 404 and "globex-para" in error_message(r)
    r = post(server, "/tokenize", {"prompt": "x", "messages": []}, key)
    assert r.status_code == 400 and "exactly one of 'prompt' and 'messages'" in error_message(r)
    r = post(server, "/tokenize", {"prompt": "x", "bogus": 1}, key)
    assert r.status_code == 400 and "bogus" in error_message(r)
    r = post(server, "/tokenize", {"messages": [{"role": "user", "content": "hi"}]}, key)
    assert r.status_code == 400 and "template" in error_message(r)  # the tiny model has none
    r = post(server, "/detokenize", {"tokens": [1, 10 ** 9]}, key)
    assert r.status_code == 400 and "token ids in [0," in error_message(r)
    r = post(server, "/detokenize", {"prompt": "x"}, key)
    assert r.status_code == 400 and error_message(r).endswith("argument supplied: prompt")
    r = post(server, "/detokenize", {}, key)
    assert r.status_code == 400 and "'tokens' is required" in error_message(r)
    assert httpx.get(server.http + "/tokenize").status_code == 405


def test_tokenize_messages_counts_the_chat_prompt(tmp_path, start_server):
    model = h.make_chat_model(tmp_path / "chat-model", 3)
    config = h.write_config(tmp_path / "tenants.json", {"acme": {"api_keys": [h.KEYS["acme"]]}})
    s = start_server(model, config)
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Hello world"}]
    r = post(s, "/tokenize", {"messages": messages}, h.KEYS["acme"])
    assert r.status_code == 200, r.text
    chat = oai(s, h.KEYS["acme"]).chat.completions.create(
        model="chat-model", messages=messages, max_tokens=2, temperature=0)
    assert r.json()["count"] == chat.usage.prompt_tokens


# ---- models ------------------------------------------------------------------------------------

def test_models_by_id(server, tiny_model):
    base = pathlib.Path(tiny_model).name
    acme = oai(server, h.KEYS["acme"])
    m = acme.models.retrieve("acme-para")
    assert (m.id, m.owned_by) == ("acme-para", "acme")
    assert m.model_extra["adapter_type"] == "para" and m.model_extra["parent"] == base
    assert acme.models.retrieve(base).id == base
    with pytest.raises(openai.NotFoundError):
        acme.models.retrieve("globex-para")  # another tenant's adapter is not revealed
    with pytest.raises(openai.NotFoundError):
        acme.models.retrieve("no-such-model")
    admin = oai(server, h.ADMIN_KEY)
    assert admin.models.retrieve("globex-para").owned_by == "globex"
    with pytest.raises(openai.AuthenticationError):
        oai(server, "wrong-key-0000").models.retrieve(base)


def test_served_model_names_are_aliases_of_the_base_model(tiny_model, tenants_config, start_server):
    s = start_server(tiny_model, tenants_config, "--served-model-name", "llama-a,llama-b")
    key = h.KEYS["umbrella"]
    client = oai(s, key)
    assert [m.id for m in client.models.list().data] == ["llama-a", "llama-b"]
    texts = {name: client.completions.create(model=name, prompt="hello", max_tokens=6,
                                             temperature=0).choices[0].text for name in ("llama-a", "llama-b")}
    assert texts["llama-a"] == texts["llama-b"]
    with pytest.raises(openai.NotFoundError):  # the directory's name is no longer one of them
        client.completions.create(model=pathlib.Path(tiny_model).name, prompt="hello", max_tokens=2)
    with s.client(key) as c:
        assert c.model_info().model == "llama-a"


def test_model_directory_with_trailing_slash_keeps_its_name(tiny_model, tenants_config, start_server):
    s = start_server(tiny_model + "/", tenants_config)
    ids = [m.id for m in oai(s, h.KEYS["umbrella"]).models.list().data]
    assert ids == [pathlib.Path(tiny_model).name]


# ---- adapter management ------------------------------------------------------------------------

@pytest.fixture
def managed(tiny_model, bare_config, start_server):
    return start_server(tiny_model, bare_config)


def load(s, body, key=h.ADMIN_KEY):
    return post(s, "/v1/load_lora_adapter", body, key)


def unload(s, name, key=h.ADMIN_KEY):
    return post(s, "/v1/unload_lora_adapter", {"lora_name": name}, key)


def test_load_and_unload_lora_and_para_adapters(managed, tiny_model, tmp_path):
    lora = h.make_lora_adapter(tmp_path / "lora-a", tiny_model, 41, "--targets", "all")
    para = h.make_para_adapter(tmp_path / "para-a", tiny_model, 42)
    r = load(managed, {"lora_name": "lora-a", "lora_path": lora, "tenant": "initech"})
    assert (r.status_code, r.text) == (200, "Success: LoRA adapter 'lora-a' added successfully.")
    r = load(managed, {"lora_name": "para-a", "lora_path": para, "tenant": "acme"})
    assert r.status_code == 200, r.text
    models = {m.id: m for m in oai(managed, h.ADMIN_KEY).models.list().data}
    assert models["lora-a"].model_extra["adapter_type"] == "lora"
    assert models["para-a"].model_extra["adapter_type"] == "para"
    for tenant, name, path in (("initech", "lora-a", lora), ("acme", "para-a", para)):
        got = oai(managed, h.KEYS[tenant]).completions.create(
            model=name, prompt=[5, 6, 7, 8], max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
        want = h.cli_generate(tiny_model, prompt_ids=[5, 6, 7, 8], adapter=path, max_tokens=8)
        assert got.choices[0].text == want["text"], (name, got, want)
    r = unload(managed, "lora-a")
    assert (r.status_code, r.text) == (200, "Success: LoRA adapter 'lora-a' removed successfully.")
    with pytest.raises(openai.NotFoundError):
        oai(managed, h.KEYS["initech"]).completions.create(model="lora-a", prompt="x", max_tokens=2)
    r = unload(managed, "lora-a")
    assert r.status_code == 404 and error_message(r) == "The lora adapter 'lora-a' cannot be found."


def test_adapter_management_refusals(managed, tiny_model, tmp_path):
    lora = h.make_lora_adapter(tmp_path / "lora-b", tiny_model, 43)
    body = {"lora_name": "lora-b", "lora_path": lora, "tenant": "initech"}
    assert load(managed, body, key=None).status_code == 401
    r = load(managed, body, key=h.KEYS["initech"])
    assert r.status_code == 403 and "admin key" in error_message(r)
    assert unload(managed, "lora-b", key=h.KEYS["initech"]).status_code == 403
    r = load(managed, {"lora_name": "lora-b"})
    assert r.status_code == 400 and error_message(r) == "Both 'lora_name' and 'lora_path' must be provided."
    r = load(managed, {"lora_name": "lora-b", "lora_path": lora})
    assert r.status_code == 400 and "'tenant' is required" in error_message(r)
    r = load(managed, {**body, "tenant": "nobody"})
    assert r.status_code == 404 and "unknown tenant 'nobody'" in error_message(r)
    r = load(managed, {**body, "lora_path": "../../../../etc"})
    assert r.status_code == 403 and "outside the adapter root" in error_message(r)
    outside = pathlib.Path("/tmp") / f"para-outside-{tmp_path.name}"
    shutil.rmtree(outside, ignore_errors=True)
    shutil.copytree(lora, outside)
    try:
        r = load(managed, {**body, "lora_path": str(outside)})
        assert r.status_code == 403 and "outside the adapter root" in error_message(r)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    r = load(managed, {**body, "lora_path": str(tmp_path / "missing")})
    assert r.status_code == 404 and "does not exist" in error_message(r)
    r = load(managed, {**body, "load_inplace": "yes"})
    assert r.status_code == 400 and "load_inplace" in error_message(r)
    r = load(managed, {**body, "adapter_type": "qlora"})
    assert r.status_code == 400 and "adapter_type" in error_message(r)
    assert load(managed, body).status_code == 200
    r = load(managed, body)
    assert r.status_code == 400 and "has already been loaded" in error_message(r)
    r = load(managed, {**body, "tenant": "acme", "load_inplace": True})  # another tenant's name
    assert r.status_code >= 400 and r.status_code != 500
    assert oai(managed, h.ADMIN_KEY).models.retrieve("lora-b").owned_by == "initech"


def test_load_inplace_while_a_stream_runs(managed, tiny_model, tmp_path):
    v1 = h.make_lora_adapter(tmp_path / "v1", tiny_model, 51, "--targets", "all")
    v2 = h.make_lora_adapter(tmp_path / "v2", tiny_model, 52, "--targets", "all")
    assert load(managed, {"lora_name": "hot", "lora_path": v1, "tenant": "initech"}).status_code == 200
    prompt = [9, 10, 11]
    want_v1 = h.cli_generate(tiny_model, prompt_ids=prompt, adapter=v1, max_tokens=200)["text"]
    want_v2 = h.cli_generate(tiny_model, prompt_ids=prompt, adapter=v2, max_tokens=200)["text"]
    assert want_v1 != want_v2
    client = oai(managed, h.KEYS["initech"])
    stream = client.completions.create(model="hot", prompt=prompt, max_tokens=200, temperature=0,
                                       stream=True, extra_body={"ignore_eos": True})
    chunks = iter(stream)
    text = next(chunks).choices[0].text  # the stream has started on v1
    r = load(managed, {"lora_name": "hot", "lora_path": v2, "tenant": "initech", "load_inplace": True})
    assert r.status_code == 200, r.text
    text += "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == want_v1  # the running stream finished on the version it started with
    after = client.completions.create(model="hot", prompt=prompt, max_tokens=200, temperature=0,
                                      extra_body={"ignore_eos": True})
    assert after.choices[0].text == want_v2
