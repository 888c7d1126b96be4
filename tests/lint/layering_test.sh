#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Enforces the dependency direction of DESIGN.md / STYLE.md: the engine never sees gRPC, protobuf or
# the services; common sees nothing of ours but itself. Fails naming each offending include.
set -uo pipefail
repo="${1:?usage: layering_test.sh REPO}"
cd "$repo"
status=0
check() {  # check DIR PATTERN WHY
  local hits
  hits=$(grep -rnE --include='*.h' --include='*.cc' --include='*.cu' --include='*.cuh' "$2" "$1" 2>/dev/null)
  if [[ -n "$hits" ]]; then
    echo "layering violation ($3):"
    echo "$hits"
    status=1
  fi
}
check engine '#include [<"](grpcpp?/|google/protobuf/|proto/|services/|workers/|coordinator/|clients/|transport/|judge/)' \
  "engine/ must not depend on gRPC, protobuf or higher layers"
check common '#include "(engine|services|workers|coordinator|clients|transport|judge|proto)/' \
  "common/ must not depend on other modules"
check workers '#include [<"](grpcpp?/|google/protobuf/|verdict/v1/|services/|coordinator/|clients/)' \
  "workers/ are plain cores: no gRPC, protobuf, services, coordinator or clients"
check coordinator '#include [<"](grpcpp?/|google/protobuf/|verdict/v1/|services/|transport/|engine/(model|kv_cache|backend|model_loader)|workers/(draft_worker|target_shard))' \
  "the coordinator sees the worker clients and plain messages, never gRPC or engine internals"
check clients/worker_clients.h '#include [<"](grpcpp?/|google/protobuf/|engine/model)' \
  "the client interfaces are plain C++"
if [[ $status -eq 0 ]]; then echo "layering: ok"; fi
exit $status
