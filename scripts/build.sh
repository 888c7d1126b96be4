#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Configures and builds Verdict into build/ (Release with debug info, ccache, Ninja).
# Environment: CI=true turns warnings into errors; VERDICT_CUDA=AUTO|ON|OFF (default AUTO);
# BUILD_DIR overrides the build directory; JOBS the parallelism.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$repo/build}"
werror=OFF
[[ "${CI:-}" == "true" ]] && werror=ON
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
if [[ ! -f "$build/build.ninja" ]] || [[ "${RECONFIGURE:-}" == "1" ]]; then
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DVERDICT_WERROR="$werror" -DVERDICT_CUDA="${VERDICT_CUDA:-AUTO}" >/dev/null
else
  cmake -S "$repo" -B "$build" -DVERDICT_WERROR="$werror" >/dev/null
fi
cmake --build "$build" -j "${JOBS:-$(nproc)}" "$@"
