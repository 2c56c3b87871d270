"""The four tenant tasks: generated prompt/response data with exact-match answers.

    add      two-number addition            "What is 482 + 739?"                    -> "1221"
    sort     sort five numbers ascending    "Sort in ascending order: 42, 7, 93..."  -> "7, 42, 93, ..."
    reverse  reverse the order of words     "Reverse the order of the words: a b c"  -> "c b a"
    isodate  a written date to ISO 8601     "Write this date in ISO 8601: 7 March 2021" -> "2021-03-07"

Every split is a pure function of (task, split, n): its own random.Random seed, and the test
split never repeats a training prompt. Every prompt carries the same short system message, so the
base model is told the answer format too.
"""
import calendar
import random

SYSTEM = "Answer with the result only."
SEEDS = {"train": 1000, "test": 2000}
WORDS = ("apple river stone cloud tiger music paper garden window silver yellow bridge candle forest "
         "planet rocket summer winter orange butter coffee dragon engine flower guitar hammer island "
         "jacket kitten ladder marble needle ocean pencil rabbit saddle tomato velvet wagon zebra "
         "anchor basket castle desert feather glacier harbor igloo jungle kettle lemon mirror").split()
MONTHS = [calendar.month_name[m] for m in range(1, 13)]


def _add(rng):
    a, b = rng.randint(100, 999), rng.randint(100, 999)
    return f"What is {a} + {b}?", str(a + b)


def _sort(rng):
    xs = rng.sample(range(1, 100), 5)
    return ("Sort these numbers in ascending order: " + ", ".join(map(str, xs)),
            ", ".join(map(str, sorted(xs))))


def _reverse(rng):
    ws = rng.sample(WORDS, rng.randint(4, 6))
    return "Reverse the order of the words: " + " ".join(ws), " ".join(reversed(ws))


def _isodate(rng):
    y, m = rng.randint(1950, 2049), rng.randint(1, 12)
    d = rng.randint(1, calendar.monthrange(y, m)[1])
    style = rng.randrange(3)
    if style == 0:
        text = f"{MONTHS[m - 1]} {d}, {y}"
    elif style == 1:
        text = f"{d} {MONTHS[m - 1]} {y}"
    else:
        text = f"{MONTHS[m - 1][:3]} {d} {y}"
    return f"Write this date in ISO 8601 format: {text}", f"{y:04d}-{m:02d}-{d:02d}"


TASKS = {"add": _add, "sort": _sort, "reverse": _reverse, "isodate": _isodate}
# the longest answer of each task in tokens is well under this (digits are single tokens)
MAX_NEW_TOKENS = 24


def generate(task, split, n, exclude=()):
    """n distinct rows {"system", "prompt", "response"} of a task's split, none of whose prompts
    is in exclude."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {sorted(TASKS)}")
    rng = random.Random(f"{task}:{SEEDS[split]}")
    seen, rows = set(exclude), []
    while len(rows) < n:
        prompt, response = TASKS[task](rng)
        if prompt in seen:
            continue
        seen.add(prompt)
        rows.append({"system": SYSTEM, "prompt": prompt, "response": response})
    return rows


def splits(task, n_train, n_test):
    train = generate(task, "train", n_train)
    test = generate(task, "test", n_test, exclude={r["prompt"] for r in train})
    return train, test
