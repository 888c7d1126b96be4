#!/bin/bash
# Packs the GPU test and CLI binaries with the shared libraries they need (minus glibc and the CUDA
# libraries the GPU node has) into .devcarry/bundle.tar.xz, for running bench/gpu/run_gpu_checks.sh
# on a GPU machine that lacks this build machine's Debian libraries. Build first:
#   ninja -C build verdict cuda_backend_test
# EXTRA_BINARIES="path ..." adds more programs (e.g. a diagnosis driver) to the bundle.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rm -rf .devcarry && mkdir -p .devcarry/stage/bin .devcarry/stage/lib
binaries=(build/bin/verdict build/engine/cuda/cuda_backend_test ${EXTRA_BINARIES:-})
for b in "${binaries[@]}"; do strip -o ".devcarry/stage/bin/$(basename "$b")" "$b"; done
for b in "${binaries[@]}"; do ldd "$b" | awk '/=>/ {print $3}'; done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread*|libdl.so*|librt.so*|ld-linux*|libcublas*|libcuda*) continue ;;
  esac
  cp -L "$lib" .devcarry/stage/lib/
done
tar -C .devcarry/stage -cJf .devcarry/bundle.tar.xz bin lib
rm -rf .devcarry/stage
ls -la .devcarry
