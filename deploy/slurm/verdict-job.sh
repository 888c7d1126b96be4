#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The body of a Verdict Slurm job; verdict-het.sbatch and verdict.sbatch run it (see README.md).
#   verdict-job.sh het           component 0: one target shard per node; component 1: draft + coordinator
#   verdict-job.sh homogeneous   the first N nodes: one shard each; the last node: draft + coordinator
# It renders the cluster config from the allocation (`verdict config render`), starts one srun step
# per member with its own log, waits for the coordinator's /readyz, optionally sends a smoke
# request, then supervises: a member that fails stops the others and fails the job; a member that
# stops cleanly (scancel --signal=TERM JOBID signals every step) stops the others and ends the job
# successfully. Every setting comes from the environment (defaults for a CPU-only cluster):
#   VERDICT_ROOT       where deploy/ and the models the template names are (default: the submit dir)
#   VERDICT_BIN        verdict binaries (default: $VERDICT_ROOT/bin, else $VERDICT_ROOT/build/bin)
#   VERDICT_TEMPLATE   cluster config template (default: deploy/slurm/cluster.template.textproto)
#   VERDICT_RUN_DIR    config, endpoints file and member logs; on a shared file system
#                      (default: $VERDICT_ROOT/verdict-run/$SLURM_JOB_ID)
#   VERDICT_IFACE      take each node's address from this interface (e.g. ib0) instead of NodeAddr
#   VERDICT_ADDRESS    nodeaddr (default: Slurm's NodeAddr) or hostname
#   VERDICT_NUM_LAYERS the target's layer count when the batch node cannot read the model
#   VERDICT_DEVICE     cpu | cuda (default: the template's)
#   VERDICT_GPUS_PER_SHARD, VERDICT_GPUS_DRAFT   GPUs per member step (default 0: none asked for)
#   VERDICT_CONTAINER_IMAGE, VERDICT_CONTAINER_MOUNTS   run members in a container (pyxis)
#   VERDICT_UCX_TLS    UCX transports for activations (e.g. rc,sm,self); VERDICT_UCX_NET_DEVICES
#   VERDICT_COORDINATOR_PORT (50051), VERDICT_HTTP_PORT (8000), VERDICT_ADMIN_PORT (8080)
#   VERDICT_RENDER_ARGS  more `verdict config render` flags (word-split)
#   VERDICT_READY_TIMEOUT (600 s), VERDICT_STOP_GRACE (30 s)
#   VERDICT_SMOKE_PROMPT  if set, one request once ready (VERDICT_SMOKE_POLICY, VERDICT_SMOKE_MAX_TOKENS)
set -uo pipefail

mode="${1:-}"
[[ "$mode" == het || "$mode" == homogeneous ]] || { echo "usage: verdict-job.sh het|homogeneous" >&2; exit 2; }
: "${SLURM_JOB_ID:?verdict-job.sh runs inside a Slurm job (sbatch)}"

root="${VERDICT_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ -n "${VERDICT_BIN:-}" ]]; then bin="$VERDICT_BIN"
elif [[ -n "${VERDICT_CONTAINER_IMAGE:-}" ]]; then bin=/opt/verdict/bin
elif [[ -x "$root/bin/verdict" ]]; then bin="$root/bin"
else bin="$root/build/bin"; fi
template="${VERDICT_TEMPLATE:-$root/deploy/slurm/cluster.template.textproto}"
run_dir="${VERDICT_RUN_DIR:-$root/verdict-run/$SLURM_JOB_ID}"
coordinator_port="${VERDICT_COORDINATOR_PORT:-50051}"
http_port="${VERDICT_HTTP_PORT:-8000}"
admin_port="${VERDICT_ADMIN_PORT:-8080}"
ready_timeout="${VERDICT_READY_TIMEOUT:-600}"
stop_grace="${VERDICT_STOP_GRACE:-30}"

log() { echo "verdict-job[$SLURM_JOB_ID]: $*" >&2; }
mkdir -p "$run_dir" || { log "cannot create $run_dir"; exit 1; }
[[ -n "${VERDICT_UCX_NET_DEVICES:-}" ]] && export UCX_NET_DEVICES="$VERDICT_UCX_NET_DEVICES"

# ---- the allocation: which nodes run what ------------------------------------------------------
# het_args GROUP: sets `het` to the srun flag that picks the component (nothing when homogeneous).
het=()
het_args() { het=(); if [[ "$mode" == het ]]; then het=(--het-group="$1"); fi; }
if [[ "$mode" == het ]]; then
  mapfile -t shard_nodes < <(scontrol show hostnames "${SLURM_JOB_NODELIST_HET_GROUP_0:?not a heterogeneous job}")
  mapfile -t service_nodes < <(scontrol show hostnames "${SLURM_JOB_NODELIST_HET_GROUP_1:?no component 1}")
  service_node="${service_nodes[0]}"
  shard_group=0 service_group=1
else
  mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
  if ((${#nodes[@]} == 1)); then shard_nodes=("${nodes[0]}")
  else shard_nodes=("${nodes[@]:0:${#nodes[@]}-1}"); fi
  service_node="${nodes[-1]}"
  shard_group="" service_group=""
fi

# The address peers dial on `node`: an interface's IPv4 address (a probe step on the node), the
# host name, or Slurm's NodeAddr.
address_of() {
  local node="$1" group="$2" addr
  if [[ -n "${VERDICT_IFACE:-}" ]]; then
    het_args "$group"
    addr="$(srun "${het[@]}" --overlap --nodes=1 --ntasks=1 --nodelist="$node" \
      ip -4 -o addr show dev "$VERDICT_IFACE" | awk '{print $4}' | cut -d/ -f1 | head -n1)"
  elif [[ "${VERDICT_ADDRESS:-nodeaddr}" == hostname ]]; then
    addr="$node"
  else
    addr="$(scontrol show node "$node" | tr ' ' '\n' | sed -n 's/^NodeAddr=//p' | head -n1)"
  fi
  [[ -n "$addr" ]] || { log "no address for node $node (VERDICT_IFACE=${VERDICT_IFACE:-}, VERDICT_ADDRESS=${VERDICT_ADDRESS:-nodeaddr})"; return 1; }
  echo "$addr"
}
shard_addrs=()
for node in "${shard_nodes[@]}"; do shard_addrs+=("$(address_of "$node" "$shard_group")") || exit 1; done
service_addr="$(address_of "$service_node" "$service_group")" || exit 1
log "shards on ${shard_nodes[*]} (${shard_addrs[*]}); draft and coordinator on $service_node ($service_addr)"

# ---- the cluster config --------------------------------------------------------------------------
config="$run_dir/cluster.textproto"
render=("$bin/verdict" config render --template "$template" --shard-hosts "${shard_addrs[*]}"
        --draft-host "$service_addr" --coordinator-host "$service_addr" --coordinator-port "$coordinator_port"
        --http-port "$http_port" --admin-port "$admin_port" --name "slurm-$SLURM_JOB_ID" --out "$config")
[[ -n "${VERDICT_NUM_LAYERS:-}" ]] && render+=(--num-layers "$VERDICT_NUM_LAYERS")
[[ -n "${VERDICT_DEVICE:-}" ]] && render+=(--device "$VERDICT_DEVICE")
[[ -n "${VERDICT_UCX_TLS:-}" ]] && render+=(--ucx-tls "$VERDICT_UCX_TLS")
# shellcheck disable=SC2206  # word splitting is the point
[[ -n "${VERDICT_RENDER_ARGS:-}" ]] && render+=($VERDICT_RENDER_ARGS)
(cd "$root" && "${render[@]}") || { log "cannot render the cluster config from $template"; exit 1; }
check=("$bin/verdict" config check "$config")
[[ -n "${VERDICT_NUM_LAYERS:-}" ]] && check+=(--num-layers "$VERDICT_NUM_LAYERS")
(cd "$root" && "${check[@]}") || { log "the rendered config $config does not check"; exit 1; }

# ---- the members: one srun step each -----------------------------------------------------------
names=() pids=()
container=()
[[ -n "${VERDICT_CONTAINER_IMAGE:-}" ]] && container=(--container-image="$VERDICT_CONTAINER_IMAGE"
  ${VERDICT_CONTAINER_MOUNTS:+--container-mounts="$VERDICT_CONTAINER_MOUNTS"} --container-workdir="$root")
start_member() {  # name group node gpus command...
  local name="$1" group="$2" node="$3" gpus="$4"
  shift 4
  het_args "$group"
  local flags=("${het[@]}" --nodes=1 --ntasks=1 --nodelist="$node" --job-name="verdict-$name"
               --output="$run_dir/$name.log" --chdir="$root" --kill-on-bad-exit=1 "${container[@]}")
  # GPU members get their GPUs to themselves; the rest share the node with them.
  if ((gpus > 0)); then flags+=(--gres="gpu:$gpus"); else flags+=(--overlap); fi
  srun "${flags[@]}" "$@" &
  names+=("$name") pids+=($!)
  log "started $name on $node (step log $run_dir/$name.log)"
}
for i in "${!shard_nodes[@]}"; do
  # The index is fixed here, per step, never taken from a variable the batch shell expands for all.
  start_member "shard-$i" "$shard_group" "${shard_nodes[$i]}" "${VERDICT_GPUS_PER_SHARD:-0}" \
    "$bin/verdict-shard" --config "$config" --shard "$i"
done
if grep -q '^draft {' "$config"; then
  start_member draft "$service_group" "$service_node" "${VERDICT_GPUS_DRAFT:-0}" "$bin/verdict-draft" --config "$config"
fi
start_member coordinator "$service_group" "$service_node" 0 "$bin/verdict-coordinator" --config "$config"

# ---- stopping ------------------------------------------------------------------------------------
stop_requested=0
alive() { local p; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
# TERM to every step (members stop cleanly), then KILL to whatever is left after the grace period.
stop_members() {
  alive || return 0
  scancel --signal=TERM "$SLURM_JOB_ID" 2>/dev/null
  local deadline=$((SECONDS + stop_grace))
  while alive && ((SECONDS < deadline)); do sleep 0.5; done
  if alive; then
    log "members still running after ${stop_grace}s: killing them"
    scancel --signal=KILL "$SLURM_JOB_ID" 2>/dev/null
    while alive; do sleep 0.5; done
  fi
}
on_signal() { stop_requested=1; log "stop requested"; stop_members; }
trap on_signal TERM INT
fail() { log "$*"; stop_members; wait; log "job failed; member logs in $run_dir"; exit 1; }

# ---- readiness -------------------------------------------------------------------------------------
ready_url="http://$service_addr:$admin_port/readyz"
[[ "$service_addr" == *:* ]] && ready_url="http://[$service_addr]:$admin_port/readyz"
deadline=$((SECONDS + ready_timeout))
until curl -fsS --max-time 2 "$ready_url" >/dev/null 2>&1; do
  ((stop_requested)) && { wait; exit 0; }
  for j in "${!pids[@]}"; do
    kill -0 "${pids[$j]}" 2>/dev/null || fail "${names[$j]} exited before the cluster was ready; see $run_dir/${names[$j]}.log"
  done
  ((SECONDS < deadline)) || fail "the coordinator was not ready (${ready_url}) after ${ready_timeout}s"
  sleep 1
done
grpc="$service_addr:$coordinator_port"
[[ "$service_addr" == *:* ]] && grpc="[$service_addr]:$coordinator_port"
if [[ -n "${VERDICT_SMOKE_PROMPT:-}" ]]; then
  smoke=("$bin/verdict" client generate --addr "$grpc" --prompt "$VERDICT_SMOKE_PROMPT"
         --max-tokens "${VERDICT_SMOKE_MAX_TOKENS:-32}")
  [[ -n "${VERDICT_SMOKE_POLICY:-}" ]] && smoke+=(--policy "$VERDICT_SMOKE_POLICY")
  if out="$("${smoke[@]}" 2>&1)"; then
    log "smoke request answered: $(echo "$out" | tr '\n' ' ' | cut -c1-300)"
  else
    fail "the smoke request failed: $out"
  fi
fi
# Written last: its presence means the cluster is ready (and answered the smoke request).
{
  echo "grpc=$grpc"
  echo "admin=${ready_url%/readyz}"
  echo "http=${ready_url%:*/readyz}:$http_port"
} > "$run_dir/endpoints.tmp" && mv "$run_dir/endpoints.tmp" "$run_dir/endpoints"
log "ready: gRPC $grpc, admin ${ready_url%/readyz}; endpoints in $run_dir/endpoints"

# ---- supervision -------------------------------------------------------------------------------------
status=0
while ((${#pids[@]} > 0)); do
  finished=""
  wait -n -p finished "${pids[@]}"
  rc=$?
  [[ -z "$finished" ]] && continue  # a trapped signal interrupted the wait
  for j in "${!pids[@]}"; do
    [[ "${pids[$j]}" == "$finished" ]] || continue
    name="${names[$j]}"
    unset 'pids[j]' 'names[j]'
    pids=("${pids[@]}") names=("${names[@]}")
    break
  done
  if ((rc != 0)); then
    ((stop_requested)) || log "$name failed (exit $rc); see $run_dir/$name.log"
    status=1
  else
    log "$name stopped"
  fi
  # One member gone, cleanly or not: the cluster cannot serve without it. Stop the rest: at once
  # after a failure; after a clean stop (scancel --signal=TERM reached every step) give the others
  # the grace period to finish on their own first.
  if ((${#pids[@]} > 0)) && ! ((stop_requested)); then
    stop_requested=1
    if ((status)); then
      log "stopping the other members"
    else
      log "stopping the cluster"
      deadline=$((SECONDS + stop_grace))
      while alive && ((SECONDS < deadline)); do sleep 0.5; done
    fi
    stop_members
  fi
done
((status == 0)) && log "stopped cleanly" || log "job failed; member logs in $run_dir"
exit "$status"
