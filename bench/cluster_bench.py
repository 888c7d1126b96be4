#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Cluster benchmark: the arithmetic-world models through a local cluster (`verdict up`, 2 target
shards over UCX) next to the same work in one process (`verdict judge eval`).

Prints, for target-only, standard speculative (greedy) and judge decoding at k = 16:
- tokens/s and tokens per target pass through the cluster (sequential requests; server-side time),
  and in one process;
- the per-pass overhead of distribution: (cluster seconds per target pass) - (one-process seconds
  per pass), i.e. coordinator + network hops + batching loops;
- pipelining: the same with the coordinator's pipelined drafting off, and the share of blocks whose
  optimistic draft was used;
- throughput with 16 concurrent streams.

Usage (after bash scripts/build.sh):  .venv/bin/python bench/cluster_bench.py [--problems 50]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import arith_world  # noqa: E402
from local_cluster import DRAFT, HEAD, TARGET, Cluster, write_config  # noqa: E402

BIN = os.path.join(REPO, "build", "bin")


def client(addr, prompt, *args):
    r = subprocess.run([os.path.join(BIN, "verdict"), "client", "generate", "--addr", addr, "--prompt", prompt,
                        "--json", *args], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout)


def run_mode(addr, prompts, args):
    outs = [client(addr, p, *args) for p in prompts]
    tokens = sum(o["completion_tokens"] for o in outs)
    passes = sum(o["target_passes"] for o in outs)
    seconds = sum(o["seconds"] for o in outs)
    hits = sum(o["optimistic_hits"] for o in outs)
    blocks = sum(o["optimistic_blocks"] for o in outs)
    return {"tokens": tokens, "passes": passes, "seconds": seconds, "tok_s": tokens / seconds,
            "tok_pass": tokens / passes, "s_pass": seconds / passes, "hits": hits, "blocks": blocks}


def in_process(tasks):
    r = subprocess.run([os.path.join(BIN, "verdict"), "judge", "eval", "--model", TARGET, "--draft", DRAFT,
                        "--judge", HEAD, "--tasks", tasks, "--check", "final-answer", "--max-tokens", "96",
                        "--k", "16", "--threads", "1", "--policies", "target,greedy,judge", "--json", "-"],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    rows = {row["name"]: row for row in json.loads(r.stdout)["policies"]}
    return {name: {"tok_s": row["tokens_per_second"], "tok_pass": row["tokens_per_target_pass"],
                   "s_pass": row["seconds"] / max(row["target_passes"], 1)} for name, row in rows.items()}


def shard_busy_seconds(admins):
    """Seconds each shard has spent in forward passes (its /metrics)."""
    out = []
    for i, a in enumerate(admins):
        with urllib.request.urlopen(f"http://{a}/metrics", timeout=10) as r:
            text = r.read().decode()
        m = re.search(r'verdict_shard_forward_seconds_total\{shard="%d"\} ([0-9.e+-]+)' % i, text)
        out.append(float(m.group(1)))
    return out


def concurrent(addr, prompts, streams, args, admins=None):
    """Tokens/s over `streams` concurrent requests, and how busy the shards were together."""
    before = shard_busy_seconds(admins) if admins else None
    results = [None] * streams
    def go(i):
        results[i] = client(addr, prompts[i % len(prompts)], *args)
    start = time.time()
    threads = [threading.Thread(target=go, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - start
    tok_s = sum(r["completion_tokens"] for r in results) / wall
    if not admins:
        return tok_s, None
    busy = [b - a for a, b in zip(before, shard_busy_seconds(admins))]
    return tok_s, (busy, wall)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=50)
    args = ap.parse_args()
    probs = arith_world.unique_problems(seed=31, split="eval", count=args.problems)
    prompts = [arith_world.prompt(p) for p in probs]
    with tempfile.TemporaryDirectory() as tmp:
        tasks = os.path.join(tmp, "tasks.jsonl")
        arith_world.write_tasks(tasks, seed=31, split="eval", count=args.problems)
        local = in_process(tasks)
        modes = {"target": ["--no-speculation"], "greedy": ["--k", "16"],
                 "judge": ["--k", "16", "--policy", "judge"]}
        results = {}
        for pipelined in (True, False):
            config, addr = write_config(tmp, 2, "ucx", pipelined=pipelined)
            cluster = Cluster(BIN, config)
            try:
                for name, margs in modes.items():
                    if not pipelined and name == "target":
                        continue
                    results[(name, pipelined)] = run_mode(addr, prompts, margs)
                if pipelined:
                    results["concurrent1"] = concurrent(addr, prompts, 1, modes["judge"])[0]
                    results["concurrent16"], results["overlap"] = concurrent(
                        addr, prompts * 2, 64, modes["judge"], write_config.shard_admin)
            finally:
                cluster.stop()
    cpu = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", cpu)
    print(f"# cluster bench: {args.problems} held-out arith problems, 2 target shards over UCX (tcp), "
          f"k = 16, {os.cpu_count()} cores ({model.group(1) if model else '?'})")
    print(f"{'mode':<8} {'where':<22} {'tok/s':>8} {'tok/pass':>9} {'ms/pass':>8} {'pipelined guesses held':>24}")
    for name in modes:
        lp = local[name]
        print(f"{name:<8} {'one process':<22} {lp['tok_s']:8.1f} {lp['tok_pass']:9.2f} {1e3 * lp['s_pass']:8.2f} {'':>24}")
        for pipelined in (True, False):
            r = results.get((name, pipelined))
            if r is None:
                continue
            where = "cluster, pipelined" if pipelined else "cluster, not pipelined"
            held = f"{r['hits']}/{r['blocks']}" if r["blocks"] else "-"
            print(f"{name:<8} {where:<22} {r['tok_s']:8.1f} {r['tok_pass']:9.2f} {1e3 * r['s_pass']:8.2f} {held:>24}")
    for name in modes:
        r = results[(name, True)]
        print(f"distribution overhead per target pass ({name}): "
              f"{1e3 * (r['s_pass'] - local[name]['s_pass']):.2f} ms")
    for name in ("greedy", "judge"):
        on, off = results[(name, True)], results[(name, False)]
        print(f"pipelining ({name}): {1e3 * off['s_pass']:.2f} -> {1e3 * on['s_pass']:.2f} ms per pass "
              f"({100 * (on['s_pass'] / off['s_pass'] - 1):+.0f}%)")
    print(f"judge decoding, 1 stream: {results['concurrent1']:.1f} tok/s; 64 concurrent streams: "
          f"{results['concurrent16']:.1f} tok/s (client wall time, process start-up included)")
    busy, wall = results["overlap"]
    print(f"shard overlap under 64 streams: shard busy time {' + '.join(f'{b:.2f}' for b in busy)} s in "
          f"{wall:.2f} s of wall time; both shards busy at once at least "
          f"{max(0.0, sum(busy) - wall):.2f} s (sum of busy time beyond the wall time)")


if __name__ == "__main__":
    main()
