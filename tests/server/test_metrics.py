"""/metrics on the real server after real traffic: `promtool check metrics` passes with no lint
warning; no series appears twice; histogram buckets are cumulative and end at _count; counters
equal what was sent (requests by tenant and adapter, tokens, errors by API and code); gauges
return to idle; the adapters-info gauges (the Gateway API Inference Extension's LoRA-affinity
input) name the adapters of running requests while they run."""

import collections
import json
import math
import re
import shutil
import subprocess
import urllib.request

import pytest

import server_harness as h
from test_http import call

pytestmark = h.requires_binaries

SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(s) -> str:
    with urllib.request.urlopen(f"{s.http}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def parse(text: str):
    """Returns ({(name, frozenset(labels)): value}, {family: type}); fails on duplicate series."""
    series, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert name not in types, f"family {name} declared twice"
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = SERIES.match(line)
        assert m, f"unparsable line: {line!r}"
        key = (m.group(1), frozenset(LABEL.findall(m.group(3) or "")))
        assert key not in series, f"duplicate series: {line}"
        series[key] = float(m.group(4))
    return series, types


def value(series, name, **labels) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


def total(series, name, **match) -> float:
    return sum(v for (n, ls), v in series.items() if n == name and set(match.items()) <= ls)


def check_histograms(series, types):
    for family, kind in types.items():
        if kind != "histogram":
            continue
        groups = collections.defaultdict(list)
        for (name, labels), v in series.items():
            if name == family + "_bucket":
                le = dict(labels)["le"]
                rest = frozenset((k, x) for k, x in labels if k != "le")
                groups[rest].append((math.inf if le == "+Inf" else float(le), v))
        assert groups, f"histogram {family} has no buckets"
        for rest, buckets in groups.items():
            buckets.sort()
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), f"{family} buckets are not cumulative: {buckets}"
            assert buckets[-1][0] == math.inf
            assert buckets[-1][1] == series[(family + "_count", rest)], f"{family}: +Inf bucket != _count"


def promtool(text: str):
    tool = shutil.which("promtool")
    assert tool, "promtool is missing (Debian package 'prometheus'; scripts/install-deps.sh installs it)"
    p = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), \
        f"promtool check metrics: rc={p.returncode}\n{p.stdout}{p.stderr}"


def test_metrics_after_traffic_are_lint_clean_and_add_up(tiny_model, tenants_config, start_server):
    s = start_server(tiny_model, tenants_config, "--kv-cache-blocks", "256")
    sent = collections.Counter()             # (tenant, adapter) -> requests that ran
    prompt_tokens = collections.Counter()    # tenant -> tokens
    completion_tokens = collections.Counter()
    for round_ in range(3):
        for tenant, key in h.KEYS.items():
            adapter = h.ADAPTERS[tenant]
            with s.client(key) as c:
                r = c.generate(f"round {round_}", adapter=adapter, max_tokens=5 + round_, ignore_eos=True, timeout=30)
                last = list(c.stream(f"stream {round_}", adapter=adapter, max_tokens=3, ignore_eos=True,
                                     timeout=30))[-1]
            sent[(tenant, adapter)] += 2
            prompt_tokens[tenant] += r.usage.prompt_tokens + last.usage.prompt_tokens
            completion_tokens[tenant] += r.usage.completion_tokens + 3
            status, _, body = call(s, "POST", "/v1/completions",
                                   {"model": adapter or "tiny-llama", "prompt": f"http {round_}", "max_tokens": 4,
                                    "ignore_eos": True}, key)
            assert status == 200, body
            sent[(tenant, adapter)] += 1
            prompt_tokens[tenant] += body["usage"]["prompt_tokens"]
            completion_tokens[tenant] += 4
    # Errors: 2 unknown adapters over HTTP, 3 over gRPC, 1 missing key over HTTP.
    for _ in range(2):
        assert call(s, "POST", "/v1/completions", {"model": "nope", "prompt": "x"}, h.KEYS["acme"])[0] == 404
    with s.client(h.KEYS["acme"]) as c:
        for _ in range(3):
            with pytest.raises(h.GenerationError):
                c.generate("x", adapter="nope", timeout=10)
    assert call(s, "POST", "/v1/completions", {"model": "tiny-llama", "prompt": "x"})[0] == 401
    h.wait_idle(s)

    text = scrape(s)
    promtool(text)
    series, types = parse(text)
    check_histograms(series, types)
    n = sum(sent.values())
    for (tenant, adapter), count in sent.items():
        assert total(series, "para_requests_total", tenant=tenant, adapter=adapter) == count, (tenant, adapter)
        assert value(series, "para_requests_total", tenant=tenant, adapter=adapter, finish_reason="length") == count
        assert total(series, "para_prompt_tokens_total", tenant=tenant) == prompt_tokens[tenant]
        assert total(series, "para_generation_tokens_total", tenant=tenant) == completion_tokens[tenant]
    for hist in ("para_time_to_first_token_seconds", "para_e2e_request_latency_seconds",
                 "para_request_queue_time_seconds", "para_time_per_output_token_seconds",
                 "para_request_prompt_tokens", "para_request_generation_tokens"):
        assert value(series, hist + "_count") == n, hist
    assert value(series, "para_request_generation_tokens_sum") == sum(completion_tokens.values())
    # One inter-token latency per token after each request's first.
    assert value(series, "para_inter_token_latency_seconds_count") == sum(completion_tokens.values()) - n
    assert value(series, "para_request_errors_total", api="http", code="NOT_FOUND") == 2
    assert value(series, "para_request_errors_total", api="grpc", code="NOT_FOUND") == 3
    assert value(series, "para_request_errors_total", api="http", code="UNAUTHENTICATED") == 1
    # Idle gauges.
    assert value(series, "para_num_requests_running") == 0 and value(series, "para_num_requests_waiting") == 0
    assert value(series, "para_kv_cache_usage_perc") == 0
    assert value(series, "para_kv_cache_free_blocks") == value(series, "para_kv_cache_blocks") == 256
    assert total(series, "para_adapters") == 3 and value(series, "para_adapter_loads_total") == 3
    assert value(series, "para_adapter_load_failures_total") == 0
    info = [ls for (name, ls) in series if name == "para_lora_requests_info"]
    assert len(info) == 1 and dict(info[0]) == {"running_lora_adapters": "", "waiting_lora_adapters": "",
                                                "max_lora": "256"}
    # Counters only grow between scrapes; gauges stay consistent.
    again, _ = parse(scrape(s))
    assert value(again, "para_adapter_loads_total") == 3
    assert total(again, "para_requests_total") == n


def test_adapter_info_gauges_name_running_adapters(slow_model, bare_config, start_server, tmp_path):
    root = tmp_path / "root"
    lora = h.make_lora_adapter(root / "lora", slow_model, 31)
    para = h.make_para_adapter(root / "para", slow_model, 32)
    s = start_server(slow_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", "1024",
                     "--max-loras", "4")
    with s.client(h.ADMIN_KEY) as admin:
        admin.load_adapter("team-lora", "initech", "lora")
        admin.load_adapter("team-para", "acme", "para")
    with s.client(h.KEYS["initech"]) as a, s.client(h.KEYS["acme"]) as b:
        sa = a.stream(token_ids=[1, 2, 3], adapter="team-lora", max_tokens=3000, ignore_eos=True, timeout=120)
        sb = b.stream(token_ids=[1, 2, 3], adapter="team-para", max_tokens=3000, ignore_eos=True, timeout=120)
        next(sa), next(sb)

        # The gauges come from the loop's snapshot, published after each step: they may lag the
        # first tokens by a step, so wait until both streams are in the batch.
        def both_running():
            series, _ = parse(scrape(s))
            return series if value(series, "para_num_requests_running") == 2 else None
        series = h.wait_until(both_running, 10, what="both streams in the batch")
        lora_info = [dict(ls) for (name, ls) in series if name == "para_lora_requests_info"]
        all_info = [dict(ls) for (name, ls) in series if name == "para_adapter_requests_info"]
        assert lora_info == [{"running_lora_adapters": "team-lora", "waiting_lora_adapters": "",
                              "max_lora": "4"}]
        assert all_info[0]["running_lora_adapters"] == "team-lora,team-para"
        assert value(series, "para_num_requests_running") == 2
        assert 0 < value(series, "para_kv_cache_usage_perc") < 1
        assert total(series, "para_adapters", tier="device") == 2
        sa.close(), sb.close()
    h.wait_idle(s)
    series, _ = parse(scrape(s))
    assert [dict(ls)["running_lora_adapters"] for (n, ls) in series if n == "para_lora_requests_info"] == [""]
    assert total(series, "para_requests_total", finish_reason="cancelled") == 2
