#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the model card of the shipped arithmetic-world judge head (assets/models/arith-judge/
README.md) from what `tools/make_arith_judge.sh` and `tools/eval_arith_judge.sh` left behind:

- the judge datasets' index.jsonl (every recorded draft proposal with its label): how many
  proposals were wrong and what kind of token the wrong ones were (digit, operator, name or
  pronoun, verb, ...), per dataset;
- `verdict judge data` and `verdict judge train` reports (data-*.txt, train-report.txt);
- eval.json from `verdict judge eval --json` rendered as the benchmark table (also printed, for
  docs/arith-world.md).

Usage: arith_judge_card.py --data DIR[,DIR...] [--out assets/models/arith-judge]
"""

from __future__ import annotations

import argparse
import os
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arith_diagnostics import mistake_kind  # noqa: E402


def proposal_table(dirs: list[Path]) -> str:
    lines = ["| dataset | proposals | wrong | wrong: " + " / ".join(KINDS) + " |",
             "|---|---|---|---|"]
    for d in dirs:
        total, kinds = 0, Counter()
        with open(d / "index.jsonl") as f:
            for line in f:
                row = json.loads(line)
                total += 1
                if not row["label"]:
                    kinds[mistake_kind(row["token_text"]) if row["token_id"] != EOS_ID
                          else "ends early"] += 1
        wrong = sum(kinds.values())
        lines.append(f"| {d.name} | {total} | {wrong} ({100 * wrong / max(total, 1):.1f}%) | "
                     + " / ".join(str(kinds.get(k, 0)) for k in KINDS) + " |")
    return "\n".join(lines)


KINDS = ["digit", "operator", "name or pronoun", "verb", "other word or punctuation",
         "whitespace", "ends early"]
EOS_ID = -1  # set from the tokenizer in main()


def eval_table(path: Path) -> str:
    rows = json.loads(path.read_text())["policies"]
    lines = ["| policy | k | accuracy | target passes / answer | tokens / target pass | "
             "accepted by judge or rule | wrong tokens let through |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        k = "-" if r["k"] is None else str(r["k"])
        lines.append(
            f"| {r['name']} | {k} | {100 * r['accuracy']:.1f}% | "
            f"{r['target_passes_per_answer']:.2f} | {r['tokens_per_target_pass']:.2f} | "
            f"{100 * r['lossy_accepted_share']:.1f}% | {r['wrong_let_through']} |")
    return "\n".join(lines)


CARD = """# arith-judge (judge head for assets/models/arith-target)

A linear judge head (`verdict-judge-head/1` safetensors) for the arithmetic-world target
`assets/models/arith-target`, trained WITH THE PRODUCT: `verdict judge data` collected the
target's post-final-norm hidden states (and log-probabilities) at draft proposals on
training-bucket problems, `verdict judge train` fitted and calibrated it. It refuses to load for
any other target (fingerprint check).

## Training data (`verdict judge data`, labels: {labels})

Two datasets trained on together: the shipped draft's own greedy proposals (its real style, where
wrong tokens are rare) and the early weak draft checkpoint sampled at temperature 1 (many more
wrong tokens of every kind, so the head learns where to say no). A proposal is labelled correct
iff the answer up to and including it is still a prefix of a correct rendering{rollout}.
Recorded proposals stop at the first wrong one of each block (what the judge sees at inference).

{proposals}

```
{data_reports}
```

## Training and calibration (`verdict judge train --features auto --max-far {far}`)

```
{train_report}
```

## Measured (`tools/eval_arith_judge.sh`: {count} held-out problems, greedy)

{table}

## Reproduce

    bash scripts/build.sh
    bash tools/make_arith_judge.sh          # judge data x2, judge train -> judge-head.safetensors
    bash tools/eval_arith_judge.sh          # judge eval -> eval.json
    .venv/bin/python tools/arith_judge_card.py --data build/arith-judge/data-draft,build/arith-judge/data-weak
"""


def main() -> None:
    global EOS_ID
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="judge dataset directories, comma-separated")
    ap.add_argument("--out", type=Path, default=Path("assets/models/arith-judge"))
    ap.add_argument("--tokenizer", type=Path,
                    default=Path("assets/models/arith-target/tokenizer.json"))
    args = ap.parse_args()
    from tokenizers import Tokenizer
    EOS_ID = Tokenizer.from_file(str(args.tokenizer)).token_to_id("<|end_of_text|>")
    dirs = [Path(d) for d in args.data.split(",")]
    meta = json.loads((dirs[0] / "dataset.json").read_text())
    labels = meta.get("info", {}).get("labels", "prefix")
    train_report = (args.out / "train-report.txt").read_text().strip()
    far = os.environ.get("JUDGE_MAX_FAR", "0.01")
    eval_json = args.out / "eval.json"
    table = eval_table(eval_json) if eval_json.exists() else "(run tools/eval_arith_judge.sh)"
    count = "?"
    if eval_json.exists():
        count = json.loads(eval_json.read_text())["policies"][0]["examples"]
    text = CARD.format(
        labels=labels,
        rollout=(" AND the target, continuing greedily from it, still reaches the right final "
                 "answer (rollout labels: they also mark dead ends a prefix check misses)"
                 if "rollout" in str(labels) else ""),
        proposals=proposal_table(dirs),
        data_reports="\n".join((args.out / f"data-{n}.txt").read_text().strip()
                               for n in ("draft", "weak") if (args.out / f"data-{n}.txt").exists()),
        far=far, train_report=train_report, count=count, table=table)
    # Reports name files by absolute path; the card names them from the repository root.
    repo = str(Path(__file__).resolve().parent.parent) + "/"
    (args.out / "README.md").write_text(text.replace(repo, ""))
    print(f"wrote {args.out / 'README.md'}")
    print(table)


if __name__ == "__main__":
    main()
