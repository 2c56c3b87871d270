"""Conformance of the C++ chat-template engine with Python's jinja2 as transformers configures
it: the SmolLM2 template and templates written in the styles of the major families, each over
the conversations of conversations.py, compared byte for byte (see harness.mismatch)."""
import os

import pytest

import conversations
from harness import compare

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
TEMPLATES = sorted(f for f in os.listdir(TEMPLATE_DIR) if f.endswith(".jinja"))


def test_every_family_is_present():
    for name in ("smollm2", "chatml_tools", "llama2", "llama3", "mistral", "gemma"):
        assert f"{name}.jinja" in TEMPLATES


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_matches_jinja2(driver, template):
    with open(os.path.join(TEMPLATE_DIR, template), encoding="utf-8") as f:
        source = f.read()
    cases = conversations.variable_sets()
    assert len(cases) >= 20
    failures, counts = compare(driver, source, cases)
    print(f"{template}: {len(cases)} conversations, {counts}")
    assert not failures, f"{len(failures)} of {len(cases)} differ:\n" + "\n".join(failures[:5])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # a snippet tests the '\\q' escape
def test_snippets_match_jinja2(driver):
    import snippets
    failures = []
    for i, (source, variables) in enumerate(snippets.SNIPPETS):
        problems, _ = compare(driver, source, [(f"snippet {i}", variables)])
        failures += [f"{p}\n    template: {source!r}" for p in problems]
    print(f"{len(snippets.SNIPPETS)} snippets")
    assert not failures, f"{len(failures)} snippets differ:\n" + "\n".join(failures)
