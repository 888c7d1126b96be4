#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The arithmetic world: word problems with one numeric answer and an exact correctness oracle.

A problem is a canonical tuple (name, item, start, ((verb, amount), ...)) with one or two
operations; every intermediate value lies in [0, 99]. Its prompt is, e.g.

    Q: Ann has 23 apples. She buys 14 more and gives away 9. How many apples does Ann have?
    A:

and its answer text starts with a single space right after "A:" (the leading-space convention:
prompt + answer is the full text, byte for byte; the C++ labeler compares bytes exactly). The
answer is one of several deterministic RENDERINGS, all correct. A rendering is a choice of an
opening (only for a words-style first step), one FORM per operation step and one FINAL line:

    step forms  E1 "23 + 14 = 37."                   equation, operands in problem order
                E2 "14 + 23 = 37."                   commuted operands (only for +)
                E3 "37 = 23 + 14."                   result first
                W1 "After buying 14 she has 37."     words (a first W step is preceded by the
                W2 "She buys 14, so she has 37."     opening "Ann starts with 23.")
    final lines F1 "The answer is 28."  F2 "Answer: 28."  F3 "So Ann has 28 apples."

Steps are joined by single spaces, so e.g. " 23 + 14 = 37. 37 - 9 = 28. The answer is 28." and
" Ann starts with 23. After buying 14 she has 37. 37 - 9 = 28. Answer: 28." are both correct.
The CORRECT SET of a problem is the set of all its renderings (at most 5 * 5 * 3 = 75); a text
is a correct prefix iff it is a prefix of one of them.

Splits: a problem is evaluation-only iff the SHA-256 of its canonical tuple's repr falls in a
fixed 10% bucket (EVAL_BUCKET_PERCENT); training generators skip those problems and evaluation
sets are drawn only from them.

CLI (from the repository root, project venv):
    python tools/arith_world.py eval --seed 1 --count 500 --out eval.jsonl
    python tools/arith_world.py train-tasks --seed 1 --count 2000 --out train.jsonl
    python tools/arith_world.py sample --style words --count 3
The JSONL lines are {"id", "prompt", "answers": [all renderings], "final_answer"}, the task file
format of `verdict judge data` and `verdict judge eval`.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import re
import sys
from typing import Iterator, NamedTuple, Sequence

# ----------------------------------------------------------------------------------------------
# Vocabulary of the world

NAMES = [("Ann", "She"), ("Ben", "He"), ("Mia", "She"), ("Tom", "He"), ("Lily", "She"),
         ("Sam", "He"), ("Zoe", "She"), ("Max", "He"), ("Eva", "She"), ("Leo", "He")]
PRONOUN = dict(NAMES)
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "cards", "coins", "books"]
# verb (3rd person present, as in the prompt) -> (sign, gerund)
VERBS = {
    "buys": (+1, "buying"), "finds": (+1, "finding"), "gets": (+1, "getting"),
    "is given": (+1, "being given"),
    "gives away": (-1, "giving away"), "eats": (-1, "eating"), "loses": (-1, "losing"),
    "sells": (-1, "selling"),
}
PLUS_VERBS = [v for v, (s, _) in VERBS.items() if s > 0]
MINUS_VERBS = [v for v, (s, _) in VERBS.items() if s < 0]
MAX_VALUE = 99
EVAL_BUCKET_PERCENT = 10

STEP_FORMS = ["E1", "E2", "E3", "W1", "W2"]
FINAL_FORMS = ["F1", "F2", "F3"]
# Named whole-answer styles (a form per step, a final form); E2 falls back to E1 on a - step.
STYLES = {
    "equations": ("E1", "F1"),      # the target's preferred style
    "commuted": ("E2", "F1"),
    "result-first": ("E3", "F1"),
    "words": ("W1", "F2"),          # the draft's preferred style
    "words-so": ("W2", "F3"),
}


class Problem(NamedTuple):
    name: str
    item: str
    start: int
    ops: tuple  # ((verb, amount), ...)

    def canonical(self) -> str:
        return repr((self.name, self.item, self.start, tuple(tuple(o) for o in self.ops)))

    def values(self) -> list[int]:
        """start, then the value after each operation."""
        vals = [self.start]
        for verb, amount in self.ops:
            vals.append(vals[-1] + VERBS[verb][0] * amount)
        return vals

    @property
    def answer(self) -> int:
        return self.values()[-1]


def is_eval(p: Problem) -> bool:
    h = hashlib.sha256(p.canonical().encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") % 100 < EVAL_BUCKET_PERCENT


# The arithmetic models' chat template (tokenizer_config.json): a user turn is a question in the
# prompt() format, an assistant turn the answer after "A:".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'Q: ' + message['content'] | trim + '\\nA:' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'] | trim + '\\n' }}{% else %}"
    "{{ raise_exception('the arithmetic world has user and assistant turns only') }}{% endif %}{% endfor %}")


def prompt(p: Problem) -> str:
    pron = PRONOUN[p.name]
    parts = []
    for verb, amount in p.ops:
        parts.append(f"{verb} {amount} more" if VERBS[verb][0] > 0 else f"{verb} {amount}")
    return (f"Q: {p.name} has {p.start} {p.item}. {pron} {' and '.join(parts)}. "
            f"How many {p.item} does {p.name} have?\nA:")


# ----------------------------------------------------------------------------------------------
# Renderings


def step_forms(p: Problem, i: int) -> list[str]:
    """The forms allowed for step i (E2 only for +)."""
    return [f for f in STEP_FORMS if not (f == "E2" and VERBS[p.ops[i][0]][0] < 0)]


def render_step(p: Problem, i: int, form: str) -> str:
    vals = p.values()
    a, r = vals[i], vals[i + 1]
    verb, b = p.ops[i]
    sign, gerund = VERBS[verb]
    op = "+" if sign > 0 else "-"
    pron = PRONOUN[p.name]
    if form == "E2" and sign < 0:
        form = "E1"
    if form == "E1":
        return f"{a} {op} {b} = {r}."
    if form == "E2":
        return f"{b} {op} {a} = {r}."
    if form == "E3":
        return f"{r} = {a} {op} {b}."
    if form == "W1":
        return f"After {gerund} {b} {pron.lower()} has {r}."
    if form == "W2":
        return f"{pron} {verb} {b}, so {pron.lower()} has {r}."
    raise ValueError(form)


def render_final(p: Problem, form: str) -> str:
    if form == "F1":
        return f"The answer is {p.answer}."
    if form == "F2":
        return f"Answer: {p.answer}."
    if form == "F3":
        return f"So {p.name} has {p.answer} {p.item}."
    raise ValueError(form)


def render(p: Problem, forms: Sequence[str], final: str) -> str:
    """The answer text (leading space included) for one form per step and a final form."""
    parts = []
    if forms[0] in ("W1", "W2"):
        parts.append(f"{p.name} starts with {p.start}.")
    for i, f in enumerate(forms):
        parts.append(render_step(p, i, f))
    parts.append(render_final(p, final))
    return " " + " ".join(parts)


def render_style(p: Problem, style: str) -> str:
    step, final = STYLES[style]
    return render(p, [step] * len(p.ops), final)


def all_choices(p: Problem) -> list[tuple[tuple[str, ...], str]]:
    per_step = [step_forms(p, i) for i in range(len(p.ops))]
    return [(forms, final) for forms in itertools.product(*per_step) for final in FINAL_FORMS]


def renderings(p: Problem) -> list[str]:
    """The correct set: every rendering, in a fixed order, the 'equations' style first."""
    out = [render_style(p, "equations")]
    for forms, final in all_choices(p):
        t = render(p, forms, final)
        if t not in out:
            out.append(t)
    return out


# ----------------------------------------------------------------------------------------------
# Oracle

_NUM = re.compile(r"\d+")


def is_correct_prefix(p: Problem, text: str) -> bool:
    """True iff `text` (answer text, leading space included) is a prefix of a rendering."""
    return any(r.startswith(text) for r in renderings(p))


def is_full_correct(p: Problem, text: str) -> bool:
    return text.rstrip() in renderings(p)


def final_answer(text: str) -> int | None:
    """The last integer in the text (what `--check final-answer` compares), None if none."""
    nums = _NUM.findall(text)
    return int(nums[-1]) if nums else None


def check(p: Problem, text: str) -> bool:
    """Final-answer correctness."""
    return final_answer(text) == p.answer


# ----------------------------------------------------------------------------------------------
# Generation


def random_problem(rng: random.Random) -> Problem:
    name, _ = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    n_ops = 1 if rng.random() < 0.35 else 2
    start = rng.randint(2, MAX_VALUE)
    cur, ops = start, []
    for _ in range(n_ops):
        plus = rng.random() < 0.5
        if cur >= MAX_VALUE:
            plus = False
        if cur <= 0:
            plus = True
        if plus:
            amount = rng.randint(1, MAX_VALUE - cur)
            verb = rng.choice(PLUS_VERBS)
            cur += amount
        else:
            amount = rng.randint(1, cur)
            verb = rng.choice(MINUS_VERBS)
            cur -= amount
        ops.append((verb, amount))
    return Problem(name, item, start, tuple(ops))


def problems(seed: int, split: str) -> Iterator[Problem]:
    """An endless, deterministic stream of problems of one split ("train" or "eval")."""
    if split not in ("train", "eval"):
        raise ValueError(split)
    rng = random.Random(f"arith-{split}-{seed}")
    want_eval = split == "eval"
    while True:
        p = random_problem(rng)
        if is_eval(p) == want_eval:
            yield p


def unique_problems(seed: int, split: str, count: int) -> list[Problem]:
    out, seen = [], set()
    for p in problems(seed, split):
        if p in seen:
            continue
        seen.add(p)
        out.append(p)
        if len(out) == count:
            return out
    return out


def task_line(p: Problem, idx: str) -> dict:
    return {"id": idx, "prompt": prompt(p), "answers": renderings(p),
            "final_answer": str(p.answer)}


def write_tasks(path: str, seed: int, split: str, count: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i, p in enumerate(unique_problems(seed, split, count)):
            f.write(json.dumps(task_line(p, f"{split}-{seed}-{i}")) + "\n")


def sample_answer(p: Problem, rng: random.Random, mixture: dict[str, float]) -> str:
    """An answer drawn from a style mixture: {style name: weight, ..., "uniform": weight}, where
    "uniform" is uniform over all renderings (every step form, every final line)."""
    names = list(mixture)
    style = rng.choices(names, weights=[mixture[n] for n in names])[0]
    if style == "uniform":
        forms = tuple(rng.choice(step_forms(p, i)) for i in range(len(p.ops)))
        return render(p, forms, rng.choice(FINAL_FORMS))
    return render_style(p, style)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd, help_ in (("eval", "write an evaluation task file (eval bucket only)"),
                       ("train-tasks", "write a task file from the training bucket")):
        s = sub.add_parser(cmd, help=help_)
        s.add_argument("--seed", type=int, default=1)
        s.add_argument("--count", type=int, default=500)
        s.add_argument("--out", required=True)
    s = sub.add_parser("sample", help="print example problems and answers")
    s.add_argument("--style", default="all", choices=["all", "renderings", *STYLES])
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--count", type=int, default=3)
    args = ap.parse_args(argv)
    if args.cmd == "eval":
        write_tasks(args.out, args.seed, "eval", args.count)
    elif args.cmd == "train-tasks":
        write_tasks(args.out, args.seed, "train", args.count)
    else:
        for p in unique_problems(args.seed, "train", args.count):
            print(prompt(p))
            if args.style == "renderings":
                for r in renderings(p):
                    print("   " + repr(r))
            else:
                for st in (STYLES if args.style == "all" else [args.style]):
                    print(f"  [{st}]{render_style(p, st)}")
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
