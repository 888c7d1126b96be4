#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The arithmetic world's benchmark table: target alone, draft alone, standard speculative decoding,
# judge decoding at the shipped threshold and two others, the training-free rules (target
# probability, draft-target KL), the trivial "accept any mismatch without a digit" rule and the
# oracle judge, each at k = 8, 16 and 32, greedy, on held-out problems.
#
#   bash tools/eval_arith_judge.sh [OUT_JSON] [COUNT]      (after bash scripts/build.sh)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_json="${1:-$repo/assets/models/arith-judge/eval.json}"
count="${2:-500}"
verdict="${VERDICT:-$repo/build/bin/verdict}"
models="$repo/assets/models"
tasks="$(mktemp --suffix=.jsonl)"
trap 'rm -f "$tasks"' EXIT
"$repo/.venv/bin/python" "$repo/tools/arith_world.py" eval --seed 1 --count "$count" --out "$tasks"
thresholds="${JUDGE_THRESHOLDS:-0.2,0.8}"
judge_rows="judge"
for t in ${thresholds//,/ }; do judge_rows="$judge_rows,judge@$t"; done
"$verdict" judge eval --model "$models/arith-target" --draft "$models/arith-draft" \
  --judge "$models/arith-judge/judge-head.safetensors" --tasks "$tasks" --check final-answer \
  --max-tokens 96 --k 8,16,32 --threads 1 --json "$out_json" \
  --policies "target,draft,greedy,$judge_rows,lossy-prob@0.05,lossy-prob@0.2,lossy-prob@0.5,lossy-kl@0.5,lossy-kl@2,nondigit,oracle"
# Refresh the judge's model card (data, training and this table) when the judge data is at hand.
data="${JUDGE_WORK_DIR:-$repo/build/arith-judge}"
if [[ -d "$data/data-draft" && -d "$data/data-weak" ]]; then
  "$repo/.venv/bin/python" "$repo/tools/arith_judge_card.py" --data "$data/data-draft,$data/data-weak" \
    --out "$(dirname "$out_json")"
fi
