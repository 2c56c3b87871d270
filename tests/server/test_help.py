"""--help of the programs operators run: para-server, para-bench, para-cli generate and
para-bench-engine print every flag they accept with its default, and exit 0."""

import pathlib
import re

import pytest

import server_harness as h

pytestmark = h.requires_binaries


def binary(name: str) -> str:
    return str(pathlib.Path(h.SERVER).parent / name)


def flags_with_defaults(help_text: str) -> dict:
    """flag name -> the line(s) describing it, from our --help format."""
    out, current = {}, None
    for line in help_text.splitlines():
        m = re.match(r"  --([a-z0-9-]+)", line)
        if m:
            current = m[1]
            out[current] = line
        elif current and line.startswith("      "):
            out[current] += line
    return out


def absl_flags_of(program: str, source_suffix: str) -> set:
    """The flags abseil itself lists (--helpfull) for the program's own source file."""
    text = h.run(program, "--helpfull", check=False).stdout
    section = re.search(r"Flags from [^\n]*" + re.escape(source_suffix) + r":\n(.*?)(?:\n\n|\Z)", text, re.S)
    assert section, text[:2000]
    return {m.replace("_", "-") for m in re.findall(r"^\s+--([a-z0-9_]+) ", section[1], re.M)}


@pytest.mark.parametrize("program,source", [("para-server", "server/main.cc"),
                                            ("para-bench", "bench/para_bench.cc")])
def test_abseil_programs_list_every_flag_with_its_default(program, source):
    p = h.run(binary(program), "--help")
    shown = flags_with_defaults(p.stdout)
    expected = absl_flags_of(binary(program), source)
    assert len(expected) > 10
    assert set(shown) == expected
    for name, text in shown.items():
        assert "(default: " in text, text
    if program == "para-server":
        assert "(default: 50051)" in shown["port"]
        assert "(default: 8080)" in shown["http-port"]
        for flag in ("served-model-name", "metrics-compat", "engine-stall-timeout-ms"):
            assert flag in shown


@pytest.mark.parametrize("argv,must_have", [
    (["para-cli", "generate", "--help"], {"model", "prompt", "max-tokens", "temperature", "threads", "json",
                                          "ignore-eos", "adapter", "max-num-seqs", "prefix-caching"}),
    (["para-cli", "--help"], {"model", "prompt"}),
    (["para-bench-engine", "--help"], {"model", "batches", "prompt-len", "decode-steps", "prefill-len",
                                       "adapters", "compare", "adapter-dir", "threads"}),
])
def test_tool_help_lists_flags_the_parser_accepts(argv, must_have, tmp_path):
    p = h.run(binary(argv[0]), *argv[1:])
    shown = flags_with_defaults(p.stdout)
    assert must_have <= set(shown)
    for name, text in shown.items():
        assert "(default: " in text, text
    # Every flag shown is one the parser accepts (it fails later, at the missing model, instead).
    sub = ["generate"] if argv[0] == "para-cli" else []
    for name, text in shown.items():
        switch = not re.match(r"  --[a-z0-9-]+ \S", text)
        args = [f"--{name}"] if switch else [f"--{name}", "1"]
        extra = [] if name == "model" else ["--model", str(tmp_path / "no-model")]
        r = h.run(binary(argv[0]), *sub, *args, *extra, check=False)
        assert "unknown flag" not in r.stderr, (name, r.stderr)
    r = h.run(binary(argv[0]), *sub, "--no-such-flag", "--model", str(tmp_path), check=False)
    assert r.returncode != 0 and "unknown flag --no-such-flag" in r.stderr
