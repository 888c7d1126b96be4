#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Enforces the dependency direction of docs/architecture.md: spec/ and common/ see nothing of ours
# above them; the engine never sees gRPC, protobuf or the services; the coordinator and the client
# interfaces speak the speculation vocabulary (spec/) only, never the engine or the judge; services/
# reach the engine and the judge only where they load models (the binaries and the CLI). Fails
# naming each offending include.
set -uo pipefail
repo="${1:?usage: layering_test.sh REPO}"
cd "$repo"
status=0
sources=(--include='*.h' --include='*.cc' --include='*.cu' --include='*.cuh')
check() {  # check WHY PATTERN PATH... (paths may be directories or files; tests are not checked)
  local why="$1" pattern="$2" hits
  shift 2
  hits=$(grep -rnE "${sources[@]}" --exclude='*_test.cc' "$pattern" "$@" 2>/dev/null)
  if [[ -n "$hits" ]]; then
    echo "layering violation ($why):"
    echo "$hits"
    status=1
  fi
}
check "common/ must not depend on other modules" "#include \"(spec|engine|judge|transport|workers|clients|coordinator|services|proto|bench|tests)/|#include \"verdict/v1/" common
check "spec/ may include only common/" "#include \"(spec/)?(engine|judge|transport|workers|clients|coordinator|services|proto|bench|tests)/|#include \"verdict/v1/|#include [<\"](grpcpp?|google/protobuf)/" spec
check "engine/ must not depend on gRPC, protobuf or higher layers" \
  '#include [<"](grpcpp?/|google/protobuf/|verdict/v1/|services/|workers/|coordinator/|clients/|transport/|judge/)' engine
check "workers/ are plain cores: no gRPC, protobuf, services or coordinator" \
  '#include [<"](grpcpp?/|google/protobuf/|verdict/v1/|services/|coordinator/|clients/grpc/)' workers
check "the coordinator sees spec/, common/ and the client interfaces, never gRPC, the engine or the judge" \
  '#include [<"](grpcpp?/|google/protobuf/|verdict/v1/|services/|transport/|engine/|judge/|workers/|clients/grpc/)' coordinator
check "clients/ speak spec/ (and the wire in clients/grpc/), never the engine, the judge or the workers" \
  '#include [<"](engine/|judge/|workers/|coordinator/|services/|transport/)' clients
check "the judge core sits below workers/ and the coordinator (only its evaluation tool decodes through local/)" \
  '#include [<"](grpcpp?/|google/protobuf/|verdict/v1/|services/|workers/|coordinator/|clients/|transport/|local/)' \
  judge/*.h judge/*.cc judge/testing judge/training judge/dataset judge/tasks
check "local/ is one process: no gRPC, protobuf, services or transport" \
  '#include [<"](grpcpp?/|google/protobuf/|verdict/v1/|services/|transport/|clients/grpc/)' local
check "the client interfaces and fakes are plain C++" '#include [<"](grpcpp?/|google/protobuf/|verdict/v1/)' \
  clients/worker_clients.h clients/status_join.h clients/testing
check "the gRPC adapters of services/ reach the engine and the judge only through the worker cores (the tokenizer, model config and activation dtypes excepted)" \
  '#include [<"](judge/|engine/(model\.h|kv_cache|backend|sampler|generator|slice_runner|model_loader|cuda/|kernels/|io/))' \
  services/coordinator services/draft services/shard services/reactor_util.h
if [[ $status -eq 0 ]]; then echo "layering: ok"; fi
exit $status
