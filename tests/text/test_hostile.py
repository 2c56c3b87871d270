"""Hostile templates and inputs through the real driver, in a process capped at 1 GiB of address
space and 60 s: each must end with a clear error (or the right output), never a crash, a hang or
runaway memory."""
import json
import resource
import subprocess
import tempfile
import time

import pytest

MB = "m" * (1 << 20)
SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
           "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
           "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
           "{{ '<|im_start|>assistant\n' }}{% endif %}")

CASES = [
    ("recursive macro", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", {},
     "macro calls nested deeper"),
    ("huge range", "{% for i in range(10**9) %}{% endfor %}", {}, "Range too big"),
    ("nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}"
                     "{% endfor %}", {}, "limit exceeded"),
    ("string blow-up", "{{ 'x' * 10**9 }}", {}, "a string longer than"),
    ("doubling", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                 "{% endfor %}", {}, "a string longer than"),
    ("repeated concatenation", "{% set ns = namespace(s='') %}{% for i in range(100000) %}"
                               "{% set ns.s = ns.s ~ big %}{% endfor %}", {"big": MB}, "limit exceeded"),
    ("list repeat of a big string", "{{ [big] * 1000 }}", {"big": MB}, "longer than the output limit"),
    ("deep parentheses", "{{ " + "(" * 100000 + "1" + ")" * 100000 + " }}", {}, "nested too deeply"),
    ("deep brackets", "{{ " + "[" * 100000 + "]" * 100000 + " }}", {}, "nested too deeply"),
    ("deep blocks", "{% if true %}" * 5000 + "{% endif %}" * 5000, {}, "nested too deeply"),
    ("long operator chain", "{{ 1" + " + 1" * 200000 + " }}", {}, "nested too deeply"),
    ("deep value", "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}"
                   "{% endfor %}", {}, "nested deeper than"),
    ("self-containing namespace", "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", {},
     "nested too deeply"),
    ("invalid role raises", "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}"
                            "{{ raise_exception('Invalid role: ' ~ m.role) }}{% endif %}{% endfor %}",
     {"messages": [{"role": "user", "content": "x"}, {"role": "hacker", "content": "y"}]},
     "Invalid role: hacker"),
    ("megabyte messages over the output limit", SMOLLM2,
     {"messages": [{"role": "user", "content": MB}] * 5, "add_generation_prompt": True},
     "output longer than"),
]


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def run_capped(driver, source, variables):
    with tempfile.NamedTemporaryFile("w", suffix=".jinja", encoding="utf-8") as f:
        f.write(source)
        f.flush()
        start = time.monotonic()
        proc = subprocess.run([driver, f.name], input=(json.dumps(variables) + "\n").encode(),
                              capture_output=True, timeout=60, preexec_fn=_limit_memory)
        return proc, time.monotonic() - start


@pytest.mark.parametrize("name,source,variables,expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_case_ends_with_a_clear_error(driver, name, source, variables, expected):
    proc, seconds = run_capped(driver, source, variables)
    assert proc.returncode == 0, f"driver died ({proc.returncode}): {proc.stderr[-500:]!r}"
    result = json.loads(proc.stdout)
    assert "error" in result, f"expected an error, got output of {len(result.get('ok', ''))} chars"
    assert expected in result["error"]
    assert seconds < 20, f"took {seconds:.1f} s"


def test_megabyte_messages_render(driver):
    variables = {"messages": [{"role": "user", "content": MB}] * 3, "add_generation_prompt": True}
    proc, seconds = run_capped(driver, SMOLLM2, variables)
    assert proc.returncode == 0
    out = json.loads(proc.stdout)["ok"]
    assert out.count(MB) == 3 and out.endswith("<|im_start|>assistant\n")
    assert seconds < 20
