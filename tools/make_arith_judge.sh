#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Trains the shipped judge head of the arithmetic world WITH THE PRODUCT (`verdict judge data` and
# `verdict judge train`) and measures it with `verdict judge eval` on held-out problems.
#
#   bash tools/make_arith_judge.sh [WORK_DIR]        (after bash scripts/build.sh)
#
# Judge data comes from training-bucket problems only, in two parts trained on together:
#   1. the shipped draft's own greedy proposals (its real, non-aligned but mostly correct style);
#   2. the weaker early draft checkpoint sampled at temperature 1: wrong tokens are rare in part 1
#      (the draft is good), and the head must see enough of them to learn where to say no.
# The threshold is chosen for a fixed false-accept rate on validation prompts (JUDGE_MAX_FAR).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-${JUDGE_WORK_DIR:-$repo/build/arith-judge}}"
verdict="${VERDICT:-$repo/build/bin/verdict}"
python="$repo/.venv/bin/python"
models="$repo/assets/models"
out="$models/arith-judge"
problems="${JUDGE_TRAIN_PROBLEMS:-2000}"
mkdir -p "$work" "$out"

"$python" "$repo/tools/arith_world.py" train-tasks --seed 101 --count "$problems" --out "$work/tasks-a.jsonl"
"$python" "$repo/tools/arith_world.py" train-tasks --seed 202 --count "$problems" --out "$work/tasks-b.jsonl"
"$verdict" judge data --model "$models/arith-target" --draft "$models/arith-draft" \
  --tasks "$work/tasks-a.jsonl" --out "$work/data-draft" --overwrite --k 16 --max-tokens 96 --quiet \
  --labels "${JUDGE_LABELS:-rollout}" \
  | tee "$out/data-draft.txt"
"$verdict" judge data --model "$models/arith-target" --draft "$models/arith-draft-weak" \
  --tasks "$work/tasks-b.jsonl" --out "$work/data-weak" --overwrite --k 16 --max-tokens 96 \
  --draft-temperature 1.0 --seed 1 --quiet --labels "${JUDGE_LABELS:-rollout}" | tee "$out/data-weak.txt"
"$verdict" judge train --data "$work/data-draft,$work/data-weak" --out "$out/judge-head.safetensors" \
  --features auto --max-far "${JUDGE_MAX_FAR:-0.01}" --seed 0 | tee "$out/train-report.txt"
