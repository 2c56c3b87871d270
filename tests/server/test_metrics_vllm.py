"""--metrics-compat vllm: the names the Gateway API Inference Extension's endpoint picker reads by
default (vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc with a
model_name label, vllm:lora_requests_info listing PARA adapters too, vllm:cache_config_info) agree
with the para_ series, which stay; without the flag no vllm: name appears and promtool is clean."""

import shutil
import subprocess

import server_harness as h
from test_metrics import parse, promtool, scrape, total, value

pytestmark = h.requires_binaries


def promtool_complaints(text: str) -> list:
    p = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    return [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]


def test_vllm_names_follow_the_para_series(slow_model, bare_config, start_server, tmp_path):
    root = tmp_path / "root"
    lora = h.make_lora_adapter(root / "lora", slow_model, 31)
    para = h.make_para_adapter(root / "para", slow_model, 32)
    s = start_server(slow_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", "1024",
                     "--block-size", "16", "--max-loras", "4", "--metrics-compat", "vllm",
                     "--served-model-name", "slow")
    series, _ = parse(scrape(s))
    assert value(series, "vllm:cache_config_info", block_size="16", num_gpu_blocks="1024") == 1
    assert value(series, "vllm:num_requests_running", model_name="slow") == 0
    with s.client(h.ADMIN_KEY) as admin:
        admin.load_adapter("team-lora", "initech", "lora")
        admin.load_adapter("team-para", "acme", "para")
    with s.client(h.KEYS["initech"]) as a, s.client(h.KEYS["acme"]) as b:
        sa = a.stream(token_ids=[1, 2, 3], adapter="team-lora", max_tokens=3000, ignore_eos=True, timeout=120)
        sb = b.stream(token_ids=[1, 2, 3], adapter="team-para", max_tokens=3000, ignore_eos=True, timeout=120)
        next(sa), next(sb)

        def both_running():
            got, _ = parse(scrape(s))
            return got if value(got, "vllm:num_requests_running", model_name="slow") == 2 else None
        series = h.wait_until(both_running, 10, what="both streams in the batch")
        info = [dict(ls) for (name, ls) in series if name == "vllm:lora_requests_info"]
        assert info == [{"running_lora_adapters": "team-lora,team-para", "waiting_lora_adapters": "",
                         "max_lora": "4"}]
        assert value(series, "para_num_requests_running") == 2
        assert value(series, "vllm:num_requests_waiting", model_name="slow") == \
            value(series, "para_num_requests_waiting")
        assert value(series, "vllm:kv_cache_usage_perc", model_name="slow") == \
            value(series, "para_kv_cache_usage_perc") > 0
        sa.close(), sb.close()
    h.wait_idle(s)
    series, _ = parse(scrape(s))
    assert [dict(ls)["running_lora_adapters"] for (n, ls) in series if n == "vllm:lora_requests_info"] == [""]
    assert value(series, "vllm:num_requests_running", model_name="slow") == 0
    assert total(series, "para_requests_total", finish_reason="cancelled") == 2
    # promtool's only complaint is the colon in vLLM's own names.
    complaints = promtool_complaints(scrape(s))
    assert complaints and all("vllm:" in l and "':'" in l for l in complaints), complaints


def test_no_vllm_names_by_default_and_bad_value_refused(tiny_model, tenants_config, start_server):
    s = start_server(tiny_model, tenants_config)
    text = scrape(s)
    assert not [l for l in text.splitlines() if l.startswith(("vllm:", "# TYPE vllm:"))]
    promtool(text)
    r = h.run(h.SERVER, "--model", tiny_model, "--config", tenants_config, "--metrics-compat", "sglang",
              "--port", "0", "--http-port", "-1", check=False)
    assert r.returncode == 2 and "--metrics-compat must be vllm" in r.stderr
