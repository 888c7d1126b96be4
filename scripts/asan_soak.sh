#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The short soak (bench/soak.py: RPC fault injection, members killed and frozen, 400 requests) on
# AddressSanitizer builds of the four service binaries, in their own build tree (build-asan/, ccache).
# Fails on any ASan report from any member (written under the build tree's asan-logs/), on a hung
# or corrupted request, or on a session left open. Leak checking is off: the members are mostly
# SIGKILLed, and gRPC's process-wide objects are still held at a normal exit.
# ThreadSanitizer is not run: Debian's Abseil and gRPC are not built with it, so their mutexes are
# invisible to it and it reports races that are not there.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$repo/build}-asan"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
if [[ ! -f "$build/build.ninja" ]]; then
  flags="-fsanitize=address -fno-omit-frame-pointer"
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVERDICT_CUDA=OFF \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address \
    -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=address >/dev/null
fi
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target verdict verdict-coordinator verdict-draft verdict-shard
logs="$build/asan-logs"
rm -rf "$logs" && mkdir -p "$logs"
ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=0" UCX_NET_DEVICES=lo \
  "$repo/.venv/bin/python" "$repo/bench/soak.py" --requests 400 --streams 16 --fault-every 2 --prompts 4 \
  --seed "${VERDICT_SOAK_SEED:-11}" --bin "$build/bin"
if compgen -G "$logs/asan*" >/dev/null; then
  echo "asan_soak: AddressSanitizer reports:" >&2
  cat "$logs"/asan* >&2
  exit 1
fi
echo "asan_soak: no AddressSanitizer report"
