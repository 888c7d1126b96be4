#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job, for now: set up, build, inspect the small model the repository ships and stream a
# generation from it. (The trained draft/target demo pair and the cluster arrive with later issues;
# this script will then start the whole cluster.) Extra arguments go to `verdict generate`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
bash "$repo/scripts/build.sh" --target verdict >/dev/null
verdict="${BUILD_DIR:-$repo/build}/bin/verdict"
model="${VERDICT_DEMO_MODEL:-$repo/assets/models/tiny-stories}"
"$verdict" inspect --model "$model"
echo
"$verdict" generate --model "$model" --prompt "${VERDICT_DEMO_PROMPT:-Once upon a time}" \
  --max-tokens 48 "$@"
