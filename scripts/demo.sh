#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job, for now: set up, build, inspect the small model the repository ships, stream a
# generation from it, then generate again with speculative decoding (its small draft model proposes,
# the model verifies) and print the speculation statistics. (The trained judge demo on a task with
# checkable answers and the cluster arrive with later issues.) Extra arguments go to both
# `verdict generate` runs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
bash "$repo/scripts/build.sh" --target verdict >/dev/null
verdict="${BUILD_DIR:-$repo/build}/bin/verdict"
model="${VERDICT_DEMO_MODEL:-$repo/assets/models/tiny-stories}"
draft="${VERDICT_DEMO_DRAFT:-}"
if [[ -z "${VERDICT_DEMO_MODEL:-}" && -z "$draft" ]]; then draft="$repo/assets/models/tiny-stories-draft"; fi
"$verdict" inspect --model "$model"
echo
"$verdict" generate --model "$model" --prompt "${VERDICT_DEMO_PROMPT:-Once upon a time}" \
  --max-tokens 48 "$@"
if [[ -n "$draft" ]]; then
  echo
  echo "== speculative decoding: draft $(basename "$draft") proposes up to 8 tokens, the target verifies =="
  "$verdict" generate --model "$model" --draft "$draft" --k 8 \
    --prompt "${VERDICT_DEMO_PROMPT:-Once upon a time}" --max-tokens 48 "$@"
fi
