#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Forced-style diagnostic and draft/target comparison for the arithmetic world's models.

FORCED STYLE: for a set of alternative renderings of a problem (e.g. the five named styles), the
answer is forced into one of them by feeding its tokens up to and including the first token at
which it differs from every other alternative (the point where a judge would have accepted a
draft token in that style); the TARGET then finishes greedily. Success = the finished answer is
in the correct set (and so its final answer is right). Three families of alternatives:
  style       the five named styles (arith_world.STYLES) from the first token;
  step2       two-operation problems, first step in the target's form (E1), second step in each
              form (E1, E2, E3, W1, W2), final line F1;
  final       problems' steps in E1, final line F1 / F2 / F3.
OVERALL: greedy final-answer and full-solution accuracy of target and draft on the eval set,
their styles, and at the first token where the draft's greedy answer differs from the target's:
whether each side's token is a digit, and whether the draft's token keeps the answer correct.

Usage (repository root, project venv):
    .venv/bin/python tools/arith_diagnostics.py --target assets/models/arith-target \
        --draft assets/models/arith-draft --count 500 [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arith_world as W  # noqa: E402
import train_arith_models as T  # noqa: E402

EVAL_SEED = 1  # the same problems as `arith_world.py eval --seed 1`


def forced_prefix(tok, variant: str, others: list[str]) -> str | None:
    """The variant's text up to and including the first token at which it differs from every
    other alternative; None if it equals one of them."""
    ids = T.encode(tok, variant)
    k = 0
    for o in others:
        if o == variant:
            return None
        oi = T.encode(tok, o)
        d = next((i for i, (a, b) in enumerate(zip(ids, oi)) if a != b), min(len(ids), len(oi)))
        k = max(k, d)
    return tok.decode(ids[:k + 1], skip_special_tokens=False)


def forced_family(model, tok, probs, variants_of) -> dict[str, dict]:
    """variants_of(p) -> {label: rendering} (or None to skip p). Per label: n, full-correct
    share, final-answer share."""
    jobs = []  # (label, problem, prefix)
    for p in probs:
        vs = variants_of(p)
        if not vs:
            continue
        for label, text in vs.items():
            pre = forced_prefix(tok, text, [t for l2, t in vs.items() if l2 != label])
            if pre is not None:
                jobs.append((label, p, pre))
    outs = T.greedy_answers(model, tok, [W.prompt(p) for _, p, _ in jobs],
                            forced=[pre for _, _, pre in jobs], max_new=80)
    res: dict[str, dict] = {}
    for (label, p, _), out in zip(jobs, outs):
        r = res.setdefault(label, {"n": 0, "full_correct": 0, "final_answer": 0})
        r["n"] += 1
        r["full_correct"] += W.is_full_correct(p, out)
        r["final_answer"] += W.check(p, out)
    for r in res.values():
        r["full_correct_acc"] = r["full_correct"] / r["n"]
        r["final_answer_acc"] = r["final_answer"] / r["n"]
    return res


def is_digit_token(tok, tid: int) -> bool:
    s = tok.decode([tid], skip_special_tokens=False).strip()
    return s.isdigit()


def compare(tok, probs, t_out, d_out) -> dict:
    c = Counter()
    for p, t, d in zip(probs, t_out, d_out):
        ti, di = T.encode(tok, t), T.encode(tok, d)
        i = next((i for i, (a, b) in enumerate(zip(ti, di)) if a != b), None)
        if i is None:
            c["same" if len(ti) == len(di) else "one_is_prefix"] += 1
            continue
        c["diverge"] += 1
        td, dd = is_digit_token(tok, ti[i]), is_digit_token(tok, di[i])
        c[f"target_{'digit' if td else 'nondigit'}/draft_{'digit' if dd else 'nondigit'}"] += 1
        ok = W.is_correct_prefix(p, tok.decode(di[:i + 1], skip_special_tokens=False))
        c[f"draft_token_{'correct' if ok else 'wrong'}_{'digit' if dd else 'nondigit'}"] += 1
    return dict(sorted(c.items()))


def mistake_kind(token: str) -> str:
    """What kind of token a model's first wrong token is (token text, leading space stripped)."""
    t = token.strip()
    if not t:
        return "whitespace"
    if t.isdigit():
        return "digit"
    if t in ("+", "-", "="):
        return "operator"
    words = {n for n, _ in W.NAMES} | {pr for _, pr in W.NAMES}
    if t in words:
        return "name or pronoun"
    verbs = {w for v, (_, g) in W.VERBS.items() for w in (*v.split(), *g.split())}
    if t in verbs or t.rstrip(",") in verbs:
        return "verb"
    return "other word or punctuation"


def first_mistakes(tok, probs, outs: list[str]) -> dict:
    """For each wrong greedy answer, the kind of its first wrong token (the first token after which
    the text is no longer a prefix of any rendering), or "ends early" for a correct prefix that
    stops before the answer is complete."""
    c = Counter()
    for p, text in zip(probs, outs):
        if W.is_full_correct(p, text):
            continue
        ids = T.encode(tok, text)
        i = next((i for i in range(len(ids))
                  if not W.is_correct_prefix(p, tok.decode(ids[:i + 1], skip_special_tokens=False))),
                 None)
        c["ends early" if i is None else mistake_kind(tok.decode([ids[i]]))] += 1
    return dict(c.most_common())


CARD = """# {name} (arithmetic-world {role})

A tiny Llama-architecture model ({params:,} parameters, f32) trained from scratch on the
arithmetic word problems of `tools/arith_world.py` (e.g. "Q: Ann has 23 apples. She buys 14 more
and gives away 9. How many apples does Ann have?\\nA:", answer " 23 + 14 = 37. 37 - 9 = 28. The
answer is 28."). It is the {role} of the judge-decoding demonstration pair of this repository
(target `assets/models/arith-target`, draft `assets/models/arith-draft`, and an early, weaker
draft checkpoint `assets/models/arith-draft-weak` for making judge training data). It knows
nothing beyond this world.

- Data: freshly generated TRAINING-bucket problems (a problem whose SHA-256 bucket is in the 10%
  evaluation bucket is never trained on), {problems:,} problem instances ({steps} steps x batch
  {batch}); one or two operations, all values in [0, 99]; the answer text starts with a space
  right after "A:".
- Answer style mixture: {mixture}. "uniform" = uniform over all renderings (step forms E1
  "a + b = r.", E2 "b + a = r." (+ only), E3 "r = a + b.", W1 "After buying b she has r.", W2 "She
  buys b, so she has r." (a words first step opens with "Ann starts with a."), final lines "The
  answer is r." / "Answer: r." / "So Ann has r apples."); named styles: equations = E1 + "The
  answer is", words = W1 + "Answer:".
- Tokenizer: byte-level BPE (Hugging Face `tokenizers`) trained on the world's text, pre-tokenizer
  Sequence[Digits(individual_digits), ByteLevel(use_regex)] (single-digit tokens), vocabulary
  {vocab} including `<|begin_of_text|>` and `<|end_of_text|>`; shared by target and draft.
- Model: `LlamaForCausalLM`, hidden {hidden}, {layers} layers, {heads} heads ({kv} KV heads),
  intermediate {inter}, tied embeddings, context 256.
- Training: sequences `<|begin_of_text|>` prompt answer `<|end_of_text|>`, loss on the answer and
  end tokens only, AdamW (peak lr {lr:g}, 3% linear warmup, cosine decay to 2%), {steps} steps,
  {minutes:.1f} minutes on one CPU thread (shared 2-core machine), final smoothed loss {loss:.4f}.
  The accuracy log during training is `train.log` beside this card.

## Accuracy (greedy, {count} held-out evaluation problems, `arith_world.py eval --seed 1`)

{greedy}
{forced}{mistakes}
## Reproduce

From the repository root with the project venv (one thread; fixed seeds and step counts, so a
rerun reproduces the weights up to PyTorch CPU kernel differences):

    .venv/bin/python tools/train_arith_models.py tokenizer --out assets/models/arith-target/tokenizer.json
    .venv/bin/python {command}
    .venv/bin/python tools/arith_diagnostics.py --target assets/models/arith-target \\
        --draft assets/models/arith-draft --draft assets/models/arith-draft-weak --write-cards
"""


def write_cards(target: Path, drafts: list[Path], report: dict, forced_lines, greedy_lines):
    for d in [target, *drafts]:
        summ = json.loads((d / "train_summary.json").read_text())
        cfg = json.loads((d / "config.json").read_text())
        weak = "command" not in summ  # an early checkpoint of a longer run
        if weak:
            main = json.loads((d.parent / "arith-draft" / "train_summary.json").read_text())
            summ = {**main, "steps": summ["step"], "train_s": summ["train_s"],
                    "loss": summ["loss"]}
        role = "target" if d == target else ("weak draft" if weak else "draft")
        if d.name.endswith("-strong"):
            role = "stronger draft (an alternative to arith-draft: the same recipe, 3x the steps)"
        forced = ""
        if d == target:
            forced = ("\nForced-style diagnostic (the answer is forced into a style up to the "
                      "first token where it differs from every alternative, then the target "
                      "finishes greedily):\n\n" + "\n".join(forced_lines) + "\n")
        mistakes = ""
        if d != target and f"mistakes_{d}" in report:
            rows = "\n".join(f"| {k} | {v} |" for k, v in report[f"mistakes_{d}"].items())
            mistakes = ("\nThe first wrong token of each wrong greedy answer (of "
                        f"{report['count']} held-out problems), by kind:\n\n"
                        f"| first wrong token | answers |\n|---|---|\n{rows}\n")
        text = CARD.format(
            name=d.name, role=role, params=summ["params"], problems=summ["steps"] * summ["batch"],
            steps=summ["steps"], batch=summ["batch"], mixture=summ["mixture"],
            vocab=cfg["vocab_size"], hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"],
            heads=cfg["num_attention_heads"], kv=cfg["num_key_value_heads"],
            inter=cfg["intermediate_size"], lr=summ["lr"], minutes=summ["train_s"] / 60,
            loss=summ["loss"], count=report["count"], greedy="\n".join(greedy_lines),
            forced=forced, mistakes=mistakes, command=summ["command"] + (
                f"   # this checkpoint: the same run saved at step {summ['steps']}"
                if weak else ""))
        (d / "README.md").write_text(text)
        print(f"wrote {d / 'README.md'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", type=Path, default=Path("assets/models/arith-target"))
    ap.add_argument("--draft", type=Path, action="append", default=None,
                    help="draft model directory (repeatable)")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write-cards", action="store_true",
                    help="write README.md model cards into the target and draft directories "
                         "from their train_summary.json and these results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    drafts = args.draft or [Path("assets/models/arith-draft")]
    tok = Tokenizer.from_file(str(args.target / "tokenizer.json"))
    probs = W.unique_problems(EVAL_SEED, "eval", args.count)
    target = LlamaForCausalLM.from_pretrained(args.target).float().eval()
    report: dict = {"count": len(probs)}

    def styles(p):
        return {s: W.render_style(p, s) for s in W.STYLES}

    def step2(p):
        if len(p.ops) < 2:
            return None
        return {f: W.render(p, ["E1", f], "F1") for f in W.step_forms(p, 1)}

    def finals(p):
        return {f: W.render(p, ["E1"] * len(p.ops), f) for f in W.FINAL_FORMS}

    forced_lines = ["| family | forced into | n | full-solution correct | final answer correct |",
                    "|---|---|---|---|---|"]
    for fam, fn in (("style", styles), ("step2", step2), ("final", finals)):
        res = forced_family(target, tok, probs, fn)
        report[f"forced_{fam}"] = res
        for label, r in res.items():
            forced_lines.append(
                f"| {fam} | {label} | {r['n']} | {100 * r['full_correct_acc']:.1f}% | "
                f"{100 * r['final_answer_acc']:.1f}% |")
    print(f"# forced-style diagnostic, target {args.target}, {len(probs)} eval problems")
    print("\n".join(forced_lines))

    prompts = [W.prompt(p) for p in probs]
    outs = {"target": T.greedy_answers(target, tok, prompts, max_new=80)}
    for d in drafts:
        m = LlamaForCausalLM.from_pretrained(d).float().eval()
        outs[str(d)] = T.greedy_answers(m, tok, prompts, max_new=80)
    greedy_lines = ["| model | final answer correct | full-solution correct | greedy styles |",
                    "|---|---|---|---|"]
    for name, out in outs.items():
        fa = sum(W.check(p, o) for p, o in zip(probs, out)) / len(probs)
        fc = sum(W.is_full_correct(p, o) for p, o in zip(probs, out)) / len(probs)
        st = dict(Counter(T.classify(p, o) for p, o in zip(probs, out)).most_common())
        report[f"greedy_{name}"] = {"final_answer_acc": fa, "full_correct_acc": fc, "styles": st}
        greedy_lines.append(f"| {name} | {100 * fa:.1f}% | {100 * fc:.1f}% | {st} |")
    print()
    print("\n".join(greedy_lines))
    print()
    for d in drafts:
        cmp = compare(tok, probs, outs["target"], outs[str(d)])
        report[f"first_divergence_{d}"] = cmp
        print(f"first divergence, target vs {d}: {cmp}")
        report[f"mistakes_{d}"] = first_mistakes(tok, probs, outs[str(d)])
        print(f"first wrong token of {d}'s wrong answers: {report[f'mistakes_{d}']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.write_cards:
        write_cards(args.target, drafts, report, forced_lines, greedy_lines)


if __name__ == "__main__":
    main()
