"""Fixtures for the para-server integration tests (helpers live in server_harness.py).

Servers are shared where a test leaves them as it found them:
  server       the tiny model (max 512 positions) with four tenants: two PARA adapters, a LoRA
               adapter and one on the base model only.
  slow_server  a larger random model (8192 positions, ~20 s for a full-length generation on two
               cores), for cancellation and deadlines that must happen while a request runs.
Tests that stop a server, or need other flags, start their own."""

import pytest

import server_harness as h


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return h.make_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", 11, "--max-pos", "512")


@pytest.fixture(scope="session")
def adapters(tiny_model, tmp_path_factory) -> dict:
    """Adapter name -> directory."""
    d = tmp_path_factory.mktemp("adapters")
    return {
        "acme-para": h.make_para_adapter(d / "acme-para", tiny_model, 21),
        "globex-para": h.make_para_adapter(d / "globex-para", tiny_model, 22, "--pooler", "mean"),
        "initech-lora": h.make_lora_adapter(d / "initech-lora", tiny_model, 23, "--targets", "all"),
    }


@pytest.fixture(scope="session")
def tenants_config(adapters, tmp_path_factory) -> str:
    tenants = {}
    for tenant, key in h.KEYS.items():
        name = h.ADAPTERS[tenant]
        tenants[tenant] = {"api_keys": [key], "weight": 1,
                           "adapters": {name: adapters[name]} if name else {}}
    return h.write_config(tmp_path_factory.mktemp("config") / "tenants.json", tenants)


@pytest.fixture(scope="session")
def bare_config(tmp_path_factory) -> str:
    """The four tenants with their keys and no adapters (tests load theirs via the Admin API)."""
    tenants = {t: {"api_keys": [k]} for t, k in h.KEYS.items()}
    return h.write_config(tmp_path_factory.mktemp("bare-config") / "tenants.json", tenants)


@pytest.fixture(scope="session")
def server(tiny_model, tenants_config, tmp_path_factory):
    s = h.ServerProcess(tiny_model, tenants_config, tmp_path_factory.mktemp("main-server"),
                        "--kv-cache-blocks", "512", "--block-size", "16")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory) -> str:
    return h.make_model(tmp_path_factory.mktemp("slow") / "slow-llama", 5, "--hidden", "256", "--layers", "4",
                        "--ffn", "512", "--max-pos", "8192")


@pytest.fixture(scope="session")
def slow_config(tmp_path_factory) -> str:
    tenants = {t: {"api_keys": [k]} for t, k in h.KEYS.items()}
    return h.write_config(tmp_path_factory.mktemp("slow-config") / "tenants.json", tenants)


@pytest.fixture(scope="session")
def slow_server(slow_model, slow_config, tmp_path_factory):
    s = h.ServerProcess(slow_model, slow_config, tmp_path_factory.mktemp("slow-server"),
                        "--kv-cache-blocks", "2048")
    yield s
    s.stop()


@pytest.fixture
def start_server(tmp_path):
    """Starts extra servers for one test (own flags/config); all are killed at teardown."""
    started = []

    def start(model, config, *args, name="server", env=None):
        s = h.ServerProcess(model, config, tmp_path / f"{name}-{len(started)}", *args, env=env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
