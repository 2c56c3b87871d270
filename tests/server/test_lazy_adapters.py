"""--adapter-dir: a request naming an adapter that is not loaded but exists as DIR/<tenant>/<name>
is served after loading it on first use; concurrent first uses load it once; the loads are
counted in /metrics; a name with nothing there stays 404, and names cannot reach outside the
tenant's directory."""

import concurrent.futures

import openai
import pytest

import server_harness as h
from test_metrics import parse, scrape, value

pytestmark = h.requires_binaries


@pytest.fixture
def lazy(tiny_model, bare_config, start_server, tmp_path):
    d = tmp_path / "adapter-dir"
    paths = {
        "lazy-lora": h.make_lora_adapter(d / "initech" / "lazy-lora", tiny_model, 61, "--targets", "all"),
        "lazy-para": h.make_para_adapter(d / "acme" / "lazy-para", tiny_model, 62),
        "broken": str(d / "acme" / "broken"),
    }
    (d / "acme" / "broken").mkdir()
    (d / "acme" / "broken" / "adapter_config.json").write_text("{not json")
    (d / "acme" / "broken" / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    s = start_server(tiny_model, bare_config, "--adapter-dir", d, "--adapter-root", d)
    return s, paths


def oai(s, tenant):
    return openai.OpenAI(base_url=s.http + "/v1", api_key=h.KEYS[tenant], max_retries=0, timeout=120)


def test_concurrent_first_uses_load_once_and_match_the_reference(lazy, tiny_model):
    s, paths = lazy
    assert [m.id for m in oai(s, "initech").models.list().data if m.id == "lazy-lora"] == []
    prompt = [4, 5, 6, 7]
    want = h.cli_generate(tiny_model, prompt_ids=prompt, adapter=paths["lazy-lora"], max_tokens=8)["text"]
    client = oai(s, "initech")

    def one(_):
        return client.completions.create(model="lazy-lora", prompt=prompt, max_tokens=8, temperature=0,
                                         extra_body={"ignore_eos": True}).choices[0].text
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(one, range(8)))
    assert texts == [want] * 8
    series, _ = parse(scrape(s))
    assert value(series, "para_adapter_lazy_loads_total") == 1
    assert value(series, "para_adapter_loads_total") == 1
    assert "lazy-lora" in [m.id for m in client.models.list().data]
    # PARA adapters too, over gRPC.
    with s.client(h.KEYS["acme"]) as c:
        got = c.generate(token_ids=prompt, adapter="lazy-para", max_tokens=8, ignore_eos=True)
    assert list(got.token_ids) == h.cli_generate(tiny_model, prompt_ids=prompt, adapter=paths["lazy-para"],
                                                 max_tokens=8)["token_ids"]
    series, _ = parse(scrape(s))
    assert value(series, "para_adapter_lazy_loads_total") == 2


def test_missing_foreign_and_broken_adapters(lazy):
    s, _ = lazy
    acme = oai(s, "acme")
    with pytest.raises(openai.NotFoundError) as e:
        acme.completions.create(model="nothing-here", prompt="x", max_tokens=2)
    assert "unknown adapter 'nothing-here'" in str(e.value)
    with pytest.raises(openai.NotFoundError):  # initech's directory, not acme's
        acme.completions.create(model="lazy-lora", prompt="x", max_tokens=2)
    with pytest.raises(openai.NotFoundError):  # a name is one path component
        acme.completions.create(model="../initech/lazy-lora", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as e:
        acme.completions.create(model="broken", prompt="x", max_tokens=2)
    assert "did not load on first use" in str(e.value)
    series, _ = parse(scrape(s))
    assert value(series, "para_adapter_lazy_loads_total") == 0


def test_adapter_dir_must_lie_inside_the_adapter_root(tiny_model, bare_config, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r = h.run(h.SERVER, "--model", tiny_model, "--config", bare_config, "--adapter-dir", tmp_path / "a",
              "--adapter-root", tmp_path / "b", "--port", "0", "--http-port", "-1", check=False, timeout=60)
    assert r.returncode == 2 and "outside the adapter root" in r.stderr
