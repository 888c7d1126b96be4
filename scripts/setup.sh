#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs everything a fresh Debian 12 machine needs to build and run Verdict: Debian packages
# (compiler toolchain and C++ libraries) and a Python virtualenv (.venv; the demo's tools need only
# the standard library). With --test it also installs the tests' pinned references and clients
# (tools/requirements.txt: PyTorch, transformers, tokenizers, openai, ...; about 3 GB), which only
# the test command needs. Idempotent, and quiet when everything is present.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
with_tests=false
[[ "${1:-}" == "--test" ]] && with_tests=true

apt_packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libabsl-dev            # Status/StatusOr, strings, containers, synchronization
  nlohmann-json3-dev     # JSON: safetensors headers, config.json, tokenizer.json, CLI output
  libcli11-dev           # the verdict command line
  libgtest-dev libgmock-dev  # unit tests
  libbenchmark-dev       # micro-benchmarks (bench/)
  libopenblas-dev        # sgemm for large (prefill) matrix products
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler  # services, wire contract
  libucx-dev ucx-utils   # activations between target shards
  libssl-dev openssl     # TLS material, key hashes, the development CA; openssl: tests' reference
  libcpp-httplib-dev prometheus-cpp-dev  # admin HTTP endpoints, /metrics, the OpenAI-compatible API
  chromium               # headless browser: the dashboard test
  curl                   # raw HTTP clients: the demo's and the SSE framing test's
  python3 python3-venv python3-pip
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv="$repo/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup: creating the Python virtualenv $venv"
  python3 -m venv "$venv"
fi
if $with_tests; then
  req="$repo/tools/requirements.txt"
  stamp="$venv/.requirements.sha256"
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "setup: installing the tests' references into $venv (pinned tools/requirements.txt)"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
  fi
fi
