"""Runs the C++ template_driver and compares its results with the jinja2 reference."""
import json
import os
import re
import subprocess
import tempfile

import jinja_reference


def run_driver(driver, source, variable_sets, timeout=120):
    """Renders `source` with each variables dict through the C++ driver; returns results in the
    reference's form: ("ok", text), ("raised", message) or ("error", message)."""
    with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False, encoding="utf-8") as f:
        f.write(source)
        path = f.name
    try:
        stdin = "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in variable_sets)
        proc = subprocess.run([driver, path], input=stdin.encode("utf-8"), capture_output=True,
                              timeout=timeout)
    finally:
        os.unlink(path)
    assert proc.returncode == 0, f"template_driver exited {proc.returncode}: {proc.stderr!r}"
    results = []
    for line in proc.stdout.decode("utf-8").split("\n"):
        if not line:
            continue
        d = json.loads(line)
        if "ok" in d:
            results.append(("ok", d["ok"]))
        elif d.get("raised"):
            results.append(("raised", d["error"]))
        else:
            results.append(("error", d["error"]))
    assert len(results) == len(variable_sets), "template_driver returned too few results"
    return results


def first_difference(a, b):
    """A short description of where strings a and b first differ."""
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    return (f"first difference at character {i} (lengths {len(a)} vs {len(b)}):\n"
            f"  jinja2: {a[max(0, i - 40):i + 40]!r}\n  ours:   {b[max(0, i - 40):i + 40]!r}")


def mismatch(expected, got):
    """None when our result matches jinja2's, else a description. Texts must be identical;
    raise_exception messages identical; any other jinja2 error must be an error of ours whose
    message contains jinja2's."""
    kind, value = expected
    if got[0] != kind:
        return f"jinja2 gave {kind} {value[:300]!r}, ours gave {got[0]} {got[1][:300]!r}"
    if kind == "ok" and got[1] != value:
        return first_difference(value, got[1])
    if kind == "raised" and got[1] != value:
        return f"raise_exception message differs: jinja2 {value!r}, ours {got[1]!r}"
    if kind == "error":
        message = value.split(": ", 1)[1] if ": " in value else value
        # Python's own SyntaxError from jinja2's generated code names a line of that code.
        message = re.sub(r" \(<template>, line \d+\)$", "", message)
        if message not in got[1]:
            return f"error message differs: jinja2 {value!r}, ours {got[1]!r}"
    return None


def compare(driver, source, cases):
    """[(case name, variables)] -> (list of failure descriptions, counts by result kind)."""
    ours = run_driver(driver, source, [v for _, v in cases])
    failures = []
    counts = {"ok": 0, "raised": 0, "error": 0}
    for (name, variables), got in zip(cases, ours):
        expected = jinja_reference.render(source, variables)
        counts[expected[0]] += 1
        problem = mismatch(expected, got)
        if problem:
            failures.append(f"{name}: {problem}")
    return failures, counts
