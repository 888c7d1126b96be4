#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The one test command: installs what is missing, builds, and runs every CTest test that a
# machine without a GPU can run (labels: unit; GPU tests skip themselves).
# Extra arguments go to ctest (e.g. scripts/test.sh -R tokenizer).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh" --test
bash "$repo/scripts/build.sh"
cd "${BUILD_DIR:-$repo/build}"
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
# The whole suite (no ctest arguments) also soaks AddressSanitizer builds of the services
# (scripts/asan_soak.sh; VERDICT_SKIP_ASAN_SOAK=1 skips it).
if [[ $# -eq 0 && "${VERDICT_SKIP_ASAN_SOAK:-}" != "1" ]]; then
  bash "$repo/scripts/asan_soak.sh"
fi
