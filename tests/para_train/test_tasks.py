"""The tenant tasks' data generators (tools/para_train/para_train/tasks.py; no torch needed): the
same splits on every run, test prompts never in training, and every answer right, checked by
parsing the prompt independently of the generator."""
import datetime
import json
import pathlib
import re
import subprocess
import sys

import pytest

TOOLKIT = pathlib.Path(__file__).resolve().parents[2] / "tools" / "para_train"
sys.path.insert(0, str(TOOLKIT))
from para_train import tasks as T  # noqa: E402

TASKS = ["add", "sort", "reverse", "isodate"]


def _answer(task, prompt):
    """The right answer, worked out from the prompt text alone."""
    body = prompt.split(":", 1)[1].strip() if ":" in prompt else prompt
    if task == "add":
        a, b = map(int, re.fullmatch(r"What is (\d+) \+ (\d+)\?", prompt).groups())
        return str(a + b)
    if task == "sort":
        return ", ".join(str(x) for x in sorted(int(s) for s in body.split(",")))
    if task == "reverse":
        return " ".join(body.split()[::-1])
    for fmt in ("%B %d, %Y", "%d %B %Y", "%b %d %Y"):
        try:
            return datetime.datetime.strptime(body, fmt).date().isoformat()
        except ValueError:
            pass
    raise AssertionError(f"unparseable date in {prompt!r}")


@pytest.mark.parametrize("task", TASKS)
def test_splits_are_fixed_disjoint_and_right(task):
    train, test = T.splits(task, 300, 50)
    again_train, again_test = T.splits(task, 300, 50)
    assert (train, test) == (again_train, again_test), "a split changed between two runs"
    assert len(train) == 300 and len(test) == 50
    train_prompts = {r["prompt"] for r in train}
    assert len(train_prompts) == 300, "duplicate training prompts"
    assert not train_prompts & {r["prompt"] for r in test}, "a test prompt is also a training prompt"
    for r in train + test:
        assert r["system"] == T.SYSTEM
        assert r["response"] == _answer(task, r["prompt"]), r


def test_a_longer_split_starts_with_the_shorter_one():
    """n only cuts the stream: the first 50 rows of a 100-row split are the 50-row split."""
    assert T.generate("sort", "train", 100)[:50] == T.generate("sort", "train", 50)


def test_isodate_covers_all_three_written_forms_and_leap_days():
    rows = T.generate("isodate", "train", 2000)
    def form(date):
        if re.fullmatch(r"[A-Z][a-z]+ \d+, \d{4}", date):
            return "Month D, YYYY"
        if re.fullmatch(r"\d+ [A-Z][a-z]+ \d{4}", date):
            return "D Month YYYY"
        assert re.fullmatch(r"[A-Z][a-z]{2} \d+ \d{4}", date), date
        return "Mon D YYYY"
    assert {form(r["prompt"].split(": ")[1]) for r in rows} == {"Month D, YYYY", "D Month YYYY", "Mon D YYYY"}
    assert any(r["response"].endswith("-02-29") for r in rows), "no 29 February in 2000 dates"


def test_data_command_writes_jsonl(tmp_path):
    p = subprocess.run([sys.executable, "-m", "para_train", "data", "--task", "reverse", "--out", str(tmp_path),
                        "--train-n", "20", "--test-n", "5"], cwd=TOOLKIT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert rows == T.generate("reverse", "train", 20)
    assert len((tmp_path / "test.jsonl").read_text().splitlines()) == 5


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown task 'mul'"):
        T.generate("mul", "train", 1)
