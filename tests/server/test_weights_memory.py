"""Weights as stored: a BF16 checkpoint is served from its memory-mapped file, never widened, so the
server's resident memory after loading and serving stays within 1.1 x the file size plus the KV
pool; converting it at load (--dtype f32) is what doubles it."""

import os
import pathlib

import pytest

import server_harness as h

pytestmark = h.requires_binaries

KV_BYTES = 64 << 20


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("bf16-model") / "mid-llama"
    h.make_model(d, 9, "--layers", "8", "--hidden", "1024", "--heads", "16", "--kv-heads", "4", "--ffn", "4096",
                 "--vocab", "32000", "--dtype", "bf16", "--no-tokenizer")
    return str(d)


def file_bytes(model):
    return sum(p.stat().st_size for p in pathlib.Path(model).glob("*.safetensors"))


def serve_and_measure(model, tmp_path, start_server, *flags):
    config = h.write_config(tmp_path / f"tenants{len(flags)}.json", {"acme": {"api_keys": [h.KEYS["acme"]]}})
    s = start_server(model, config, "--kv-cache-bytes", str(KV_BYTES), *flags)
    with s.client(h.KEYS["acme"]) as c:  # touches every weight: prefill and decode
        r = c.generate(token_ids=list(range(3, 40)), max_tokens=4, ignore_eos=True)
        assert len(r.token_ids) == 4
        info = c.model_info()
    return s.rss_kb() * 1024, info.device


def test_a_bf16_checkpoint_is_served_from_its_file(bf16_model, tmp_path, start_server):
    size = file_bytes(bf16_model)
    assert size > 300 << 20  # large enough that the process's own baseline is small beside it
    rss, device = serve_and_measure(bf16_model, tmp_path, start_server)
    assert "weights bf16" in device and "KV cache f16" in device, device
    print(f"\nfile {size / 2**20:.0f} MiB, RSS {rss / 2**20:.0f} MiB ({device})")
    assert rss <= 1.1 * size + KV_BYTES, f"RSS {rss / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"


def test_widening_to_f32_is_what_doubles_memory(bf16_model, tmp_path, start_server):
    size = file_bytes(bf16_model)
    rss, device = serve_and_measure(bf16_model, tmp_path, start_server, "--dtype", "f32")
    assert "weights f32" in device, device
    assert rss > 1.8 * size, f"RSS {rss / 2**20:.0f} MiB: the F32 copy should be twice the file"
